//! `corr_order(matrix)`: the keys of a `layer_corr` matrix in the leaf
//! order of hierarchical clustering (average linkage on 1 − r), the order
//! that makes block structure visible in a heatmap. Use one layer's order
//! to draw every layer (input order, output order).
//!
//! ```sql
//! SELECT corr_order(m) FROM matrices WHERE layer = 'logits';
//! ```

use layercorr_kernels::cluster::leaf_order;
use libduckdb_sys as ffi;

use super::capi::old_ffi::{chunk_len, column, set_null, set_str_list, LogicalType};
use super::capi::raw_register::{CallContext, ScalarFunction};
use super::corr_struct::{corr_matrix_type, read_keyed_matrix};

/// The `corr_order` scalar function.
pub struct CorrOrder;

impl ScalarFunction for CorrOrder {
    const NAME: &'static str = "corr_order";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        vec![(
            vec![corr_matrix_type()],
            LogicalType::list(&LogicalType::varchar()),
        )]
    }

    unsafe fn invoke(
        input: ffi::duckdb_data_chunk,
        output: ffi::duckdb_vector,
        _ctx: &CallContext,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let matrix_vec = column(input, 0);
        for row in 0..rows {
            let Some(m) = read_keyed_matrix(matrix_vec, rows, row, "matrix")? else {
                set_null(output, row);
                continue;
            };
            let order = leaf_order(&m.values, m.n()).map_err(|e| e.to_string())?;
            let keys: Vec<&str> = order.iter().map(|i| m.keys[*i].as_str()).collect();
            set_str_list(output, row, &keys)?;
        }
        Ok(())
    }
}
