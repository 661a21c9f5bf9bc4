//! `nn_layers(model [, preprocess := {...}])`: one row per capturable layer
//! of an ONNX model, with the shapes that the `preprocess` override (if
//! any) gives.
//!
//! Columns `layer VARCHAR, op VARCHAR, shape BIGINT[] (per image, no batch
//! axis), size BIGINT, position INTEGER, node VARCHAR, tract_op VARCHAR`,
//! topological order, with the pseudo-layer `input` first. `op` is the ONNX
//! operator type and `node` the ONNX node name that writes the tensor
//! (NULL for `input`); `tract_op` is what tract made of it. Use it to pick layers for `nn_activations`
//! and to order layers by depth in `layer_similarity(... ORDER BY position)`.
//!
//! ```sql
//! SELECT layer, op, shape, size FROM nn_layers('data/models/efficientnet_lite0.onnx');
//! ```

use std::path::Path;
use std::sync::Arc;

use libduckdb_sys as ffi;

use super::capi::old_ffi::{column, set_list, set_null, set_str, set_value, LogicalType};
use super::capi::raw_register::{next_page, BindArgs, Bound, CallContext, TableFunction};
use super::preprocess_arg::overrides_from_value;
use layercorr_engine::model::{cached_model_with, LoadedModel};

/// The `nn_layers` table function.
pub struct NnLayers;

impl TableFunction for NnLayers {
    type Bind = Arc<LoadedModel>;
    type State = usize;
    const NAME: &'static str = "nn_layers";

    fn parameters() -> Vec<LogicalType> {
        vec![LogicalType::varchar()]
    }

    fn named_parameters() -> Vec<(&'static str, LogicalType)> {
        vec![("preprocess", LogicalType::any())]
    }

    fn bind(args: &BindArgs, ctx: &CallContext) -> Bound<Self::Bind> {
        let model = args.positional(0).as_string().ok_or("model is NULL")?;
        let overrides = overrides_from_value(args.named("preprocess"))?;
        let files = ctx.files()?;
        let (_, loaded) = cached_model_with(files.as_ref(), Path::new(&model), &overrides)
            .map_err(|e| e.to_string())?;
        let columns = vec![
            ("layer", LogicalType::varchar()),
            ("op", LogicalType::varchar()),
            ("shape", LogicalType::list(&LogicalType::bigint())),
            ("size", LogicalType::bigint()),
            ("position", LogicalType::integer()),
            ("node", LogicalType::varchar()),
            ("tract_op", LogicalType::varchar()),
        ];
        Ok((loaded, columns))
    }

    fn init(_: &Self::Bind) -> Result<Self::State, String> {
        Ok(0)
    }

    unsafe fn next(
        bind: &Self::Bind,
        next_row: &mut usize,
        output: ffi::duckdb_data_chunk,
    ) -> Result<usize, String> {
        let rows = next_page(&bind.layers, next_row);
        let (name, op, shape, size, position, node, tract_op) = (
            column(output, 0),
            column(output, 1),
            column(output, 2),
            column(output, 3),
            column(output, 4),
            column(output, 5),
            column(output, 6),
        );
        for (i, layer) in rows.iter().enumerate() {
            set_str(name, i, &layer.name)?;
            set_str(op, i, &layer.op)?;
            set_list(shape, i, &layer.shape)?;
            set_value(size, i, layer.size);
            set_value(position, i, layer.position);
            if layer.node.is_empty() {
                set_null(node, i);
            } else {
                set_str(node, i, &layer.node)?;
            }
            set_str(tract_op, i, &layer.tract_op)?;
        }
        Ok(rows.len())
    }
}
