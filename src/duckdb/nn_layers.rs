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

use super::capi::{
    next_page, BindArgs, Bound, CallContext, LogicalType, OutputChunk, TableFunction,
};
use super::error::{Error, Result};
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
        let model = args
            .positional(0)
            .as_string()
            .ok_or_else(|| Error::invalid("model is NULL"))?;
        let overrides = overrides_from_value(args.named("preprocess"))?;
        let files = ctx.files()?;
        let (_, loaded) = cached_model_with(files.as_ref(), Path::new(&model), &overrides)?;
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

    fn init(_: &Self::Bind) -> Result<Self::State> {
        Ok(0)
    }

    fn next(bind: &Self::Bind, next_row: &mut usize, output: &mut OutputChunk) -> Result<usize> {
        let rows = next_page(&bind.layers, next_row);
        let mut columns = output.columns();
        let [name, op, shape, size, position, node, tract_op] = columns.as_mut_slice() else {
            return Err(Error::internal("nn_layers output without seven columns"));
        };
        for (i, layer) in rows.iter().enumerate() {
            name.set_str(i, &layer.name)?;
            op.set_str(i, &layer.op)?;
            shape.set_list(i, &layer.shape)?;
            size.set_value(i, layer.size)?;
            position.set_value(i, layer.position)?;
            if layer.node.is_empty() {
                node.set_null(i)?;
            } else {
                node.set_str(i, &layer.node)?;
            }
            tract_op.set_str(i, &layer.tract_op)?;
        }
        Ok(rows.len())
    }
}
