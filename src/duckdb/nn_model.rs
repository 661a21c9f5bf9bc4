//! `nn_model(model [, preprocess := {...}])`: one row describing an ONNX
//! model file, with the preprocessing a query with the same `preprocess`
//! override would use.
//!
//! Columns: `model VARCHAR` (the path as given), `sha256 VARCHAR`,
//! `ir_version BIGINT`, `opset BIGINT` (the default operator set),
//! `producer_name VARCHAR`, `producer_version VARCHAR`, `input_name
//! VARCHAR`, `input_type VARCHAR` (`float`, `uint8`, ...), `input_shape
//! VARCHAR` (declared, `?` for symbolic dimensions), `outputs VARCHAR[]`,
//! and `preprocessing STRUCT(key VARCHAR, value VARCHAR, source VARCHAR)[]`:
//! every preprocessing value in force and where it came from (`override`,
//! `metadata`, `declared shape`, `declared type`, `default`).
//!
//! ```sql
//! SELECT sha256, opset, input_shape FROM nn_model('data/models/efficientnet_lite0.onnx');
//! SELECT p.* FROM (SELECT unnest(preprocessing) AS p FROM nn_model('m.onnx'));
//! FROM nn_model('m.onnx', preprocess := {'resize': 'letterbox'});
//! ```

use std::path::Path;
use std::sync::Arc;

use libduckdb_sys as ffi;

use super::capi::old_ffi::{
    append_list, column, set_str, set_str_list, set_value, struct_child, LogicalType,
};
use super::capi::raw_register::{BindArgs, Bound, CallContext, TableFunction};
use super::preprocess_arg::overrides_from_value;
use layercorr_engine::model::{cached_model_with, LoadedModel};

/// The `nn_model` table function.
pub struct NnModel;

/// What bind resolved: the path as given and the parsed model.
pub struct Described {
    path: String,
    model: Arc<LoadedModel>,
}

impl TableFunction for NnModel {
    type Bind = Described;
    type State = bool;
    const NAME: &'static str = "nn_model";

    fn parameters() -> Vec<LogicalType> {
        vec![LogicalType::varchar()]
    }

    fn named_parameters() -> Vec<(&'static str, LogicalType)> {
        vec![("preprocess", LogicalType::any())]
    }

    fn bind(args: &BindArgs, ctx: &CallContext) -> Bound<Self::Bind> {
        let path = args.positional(0).as_string().ok_or("model is NULL")?;
        let overrides = overrides_from_value(args.named("preprocess"))?;
        let files = ctx.files()?;
        let (_, model) = cached_model_with(files.as_ref(), Path::new(&path), &overrides)
            .map_err(|e| e.to_string())?;
        let entry = LogicalType::structure(&[
            ("key", &LogicalType::varchar()),
            ("value", &LogicalType::varchar()),
            ("source", &LogicalType::varchar()),
        ]);
        let columns = vec![
            ("model", LogicalType::varchar()),
            ("sha256", LogicalType::varchar()),
            ("ir_version", LogicalType::bigint()),
            ("opset", LogicalType::bigint()),
            ("producer_name", LogicalType::varchar()),
            ("producer_version", LogicalType::varchar()),
            ("input_name", LogicalType::varchar()),
            ("input_type", LogicalType::varchar()),
            ("input_shape", LogicalType::varchar()),
            ("outputs", LogicalType::list(&LogicalType::varchar())),
            ("preprocessing", LogicalType::list(&entry)),
        ];
        Ok((Described { path, model }, columns))
    }

    fn init(_: &Self::Bind) -> Result<Self::State, String> {
        Ok(false)
    }

    unsafe fn next(
        bind: &Self::Bind,
        done: &mut bool,
        output: ffi::duckdb_data_chunk,
    ) -> Result<usize, String> {
        if *done {
            return Ok(0);
        }
        *done = true;
        let info = &bind.model.info;
        set_str(column(output, 0), 0, &bind.path)?;
        set_str(column(output, 1), 0, &info.sha256)?;
        set_value(column(output, 2), 0, info.ir_version);
        set_value(column(output, 3), 0, info.opset);
        set_str(column(output, 4), 0, &info.producer_name)?;
        set_str(column(output, 5), 0, &info.producer_version)?;
        set_str(column(output, 6), 0, &info.input_name)?;
        set_str(column(output, 7), 0, &info.input_type)?;
        set_str(column(output, 8), 0, &info.input_shape)?;
        set_str_list(column(output, 9), 0, &bind.model.outputs)?;
        let rows = &bind.model.preprocessing_sources;
        let (entries, offset) = append_list(column(output, 10), 0, rows.len())?;
        let (key, value, source) = (
            struct_child(entries, 0),
            struct_child(entries, 1),
            struct_child(entries, 2),
        );
        for (i, row) in rows.iter().enumerate() {
            set_str(key, offset + i, &row.key)?;
            set_str(value, offset + i, &row.value)?;
            set_str(source, offset + i, &row.source)?;
        }
        Ok(1)
    }
}
