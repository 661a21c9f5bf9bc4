//! `nn_weights(model)`: one row per weight tensor with its summary
//! statistics — `tensor, layer, shape, count, mean, std, min, max,
//! near_zero` (fraction of weights with |w| at most 1% of the tensor's
//! largest magnitude) — to compare weight distributions across layers and
//! checkpoints.
//!
//! ```sql
//! SELECT layer, count, std, near_zero FROM nn_weights('model.onnx') WHERE tensor LIKE '%weight';
//! ```

use std::path::Path;

use super::capi::{
    next_page, BindArgs, Bound, CallContext, LogicalType, OutputChunk, TableFunction,
};
use super::error::{Error, Result};
use layercorr_engine::model::{cached_model, WeightInfo};

/// The `nn_weights` table function.
pub struct NnWeights;

impl TableFunction for NnWeights {
    type Bind = Vec<WeightInfo>;
    type State = usize;
    const NAME: &'static str = "nn_weights";

    fn parameters() -> Vec<LogicalType> {
        vec![LogicalType::varchar()]
    }

    fn bind(args: &BindArgs, ctx: &CallContext) -> Bound<Self::Bind> {
        let model = args
            .positional(0)
            .as_string()
            .ok_or_else(|| Error::invalid("model is NULL"))?;
        let files = ctx.files()?;
        let (_, loaded) = cached_model(files.as_ref(), Path::new(&model))?;
        let columns = vec![
            ("tensor", LogicalType::varchar()),
            ("layer", LogicalType::varchar()),
            ("shape", LogicalType::list(&LogicalType::bigint())),
            ("count", LogicalType::bigint()),
            ("mean", LogicalType::double()),
            ("std", LogicalType::double()),
            ("min", LogicalType::double()),
            ("max", LogicalType::double()),
            ("near_zero", LogicalType::double()),
        ];
        Ok((loaded.weights(), columns))
    }

    fn init(_: &Self::Bind) -> Result<Self::State> {
        Ok(0)
    }

    fn next(weights: &Self::Bind, next_row: &mut usize, output: &mut OutputChunk) -> Result<usize> {
        let rows = next_page(weights, next_row);
        let mut columns = output.columns();
        let [tensor, layer, shape, count, mean, std, min, max, near_zero] = columns.as_mut_slice()
        else {
            return Err(Error::internal("nn_weights output without nine columns"));
        };
        for (i, w) in rows.iter().enumerate() {
            tensor.set_str(i, &w.tensor)?;
            layer.set_str(i, &w.layer)?;
            shape.set_list(i, &w.shape)?;
            count.set_value(i, w.count)?;
            mean.set_value(i, w.mean)?;
            std.set_value(i, w.std)?;
            min.set_value(i, w.min)?;
            max.set_value(i, w.max)?;
            near_zero.set_value(i, w.near_zero)?;
        }
        Ok(rows.len())
    }
}
