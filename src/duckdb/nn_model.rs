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

use super::capi::{BindArgs, Bound, CallContext, LogicalType, OutputChunk, TableFunction};
use super::error::{Error, Result};
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
        let path = args
            .positional(0)
            .as_string()
            .ok_or_else(|| Error::invalid("model is NULL"))?;
        let overrides = overrides_from_value(args.named("preprocess"))?;
        let files = ctx.files()?;
        let (_, model) = cached_model_with(files.as_ref(), Path::new(&path), &overrides)?;
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

    fn init(_: &Self::Bind) -> Result<Self::State> {
        Ok(false)
    }

    fn next(bind: &Self::Bind, done: &mut bool, output: &mut OutputChunk) -> Result<usize> {
        if *done {
            return Ok(0);
        }
        *done = true;
        let info = &bind.model.info;
        let mut columns = output.columns();
        let [path, sha256, ir_version, opset, producer, producer_version, input_name, input_type, input_shape, outputs, preprocessing] =
            columns.as_mut_slice()
        else {
            return Err(Error::internal("nn_model output without eleven columns"));
        };
        path.set_str(0, &bind.path)?;
        sha256.set_str(0, &info.sha256)?;
        ir_version.set_value(0, info.ir_version)?;
        opset.set_value(0, info.opset)?;
        producer.set_str(0, &info.producer_name)?;
        producer_version.set_str(0, &info.producer_version)?;
        input_name.set_str(0, &info.input_name)?;
        input_type.set_str(0, &info.input_type)?;
        input_shape.set_str(0, &info.input_shape)?;
        outputs.set_str_list(0, &bind.model.outputs)?;
        let rows = &bind.model.preprocessing_sources;
        let (mut entries, offset) = preprocessing.append_list(0, rows.len())?;
        let mut fields = entries.fields()?;
        let [key, value, source] = fields.as_mut_slice() else {
            return Err(Error::internal(
                "a preprocessing entry without three fields",
            ));
        };
        for (i, row) in rows.iter().enumerate() {
            key.set_str(offset + i, &row.key)?;
            value.set_str(offset + i, &row.value)?;
            source.set_str(offset + i, &row.source)?;
        }
        Ok(1)
    }
}
