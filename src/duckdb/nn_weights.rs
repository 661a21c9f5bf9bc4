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

use libduckdb_sys as ffi;

use super::capi::old_ffi::{column, set_list, set_str, set_value, LogicalType};
use super::capi::raw_register::{next_page, BindArgs, Bound, CallContext, TableFunction};
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
        let model = args.positional(0).as_string().ok_or("model is NULL")?;
        let files = ctx.files()?;
        let (_, loaded) =
            cached_model(files.as_ref(), Path::new(&model)).map_err(|e| e.to_string())?;
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

    fn init(_: &Self::Bind) -> Result<Self::State, String> {
        Ok(0)
    }

    unsafe fn next(
        weights: &Self::Bind,
        next_row: &mut usize,
        output: ffi::duckdb_data_chunk,
    ) -> Result<usize, String> {
        let rows = next_page(weights, next_row);
        let cols: Vec<ffi::duckdb_vector> = (0..9).map(|i| column(output, i)).collect();
        for (i, w) in rows.iter().enumerate() {
            set_str(cols[0], i, &w.tensor)?;
            set_str(cols[1], i, &w.layer)?;
            set_list(cols[2], i, &w.shape)?;
            set_value(cols[3], i, w.count);
            set_value(cols[4], i, w.mean);
            set_value(cols[5], i, w.std);
            set_value(cols[6], i, w.min);
            set_value(cols[7], i, w.max);
            set_value(cols[8], i, w.near_zero);
        }
        Ok(rows.len())
    }
}
