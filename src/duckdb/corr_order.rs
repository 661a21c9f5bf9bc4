//! `corr_order(matrix)`: the keys of a `layer_corr` matrix in the leaf
//! order of hierarchical clustering (average linkage on 1 − r), the order
//! that makes block structure visible in a heatmap. Use one layer's order
//! to draw every layer (input order, output order).
//!
//! ```sql
//! SELECT corr_order(m) FROM matrices WHERE layer = 'logits';
//! ```

use layercorr_kernels::cluster::leaf_order;

use super::capi::{CallContext, Chunk, LogicalType, Output, ScalarFunction};
use super::corr_struct::{corr_matrix_type, key_list_type, matrix_overloads, MatrixColumn};
use super::error::Result;

/// The `corr_order` scalar function.
pub struct CorrOrder;

impl ScalarFunction for CorrOrder {
    const NAME: &'static str = "corr_order";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        matrix_overloads(&[corr_matrix_type], &[], key_list_type)
    }

    fn invoke(input: &Chunk, output: &mut Output, _ctx: &CallContext) -> Result<()> {
        let matrices = MatrixColumn::of(input.column(0)?)?;
        for row in 0..input.rows() {
            let Some(m) = matrices.read(row, "matrix")? else {
                output.set_null(row)?;
                continue;
            };
            let order = leaf_order(&m.values, m.n())?;
            let keys: Vec<&str> = order.iter().map(|i| m.keys[*i].as_str()).collect();
            output.set_str_list(row, &keys)?;
        }
        Ok(())
    }
}
