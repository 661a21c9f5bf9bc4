//! `corr_heatmap(matrix [, order [, title]])`: a PNG (BLOB) of one
//! `layer_corr` matrix, with a colour bar; correlations use a diverging
//! scale from −1 to 1, other methods their own range. `order` (a key list,
//! e.g. `corr_order` of the input or output layer) reorders rows and
//! columns so that several layers can be drawn in the same image order;
//! it must name every key of the matrix exactly once.
//! Write it with `write_png`, or show the bytes in a notebook.
//!
//! ```sql
//! SELECT write_png('out/input.png', corr_heatmap(m, NULL, 'input')) FROM matrices WHERE layer = 'input';
//! ```

use layercorr_render::{key_order, matrix_heatmap, HeatmapOptions};

use super::capi::{CallContext, Chunk, LogicalType, Output, ScalarFunction};
use super::corr_struct::{corr_matrix_type, key_list_type, matrix_overloads, MatrixColumn};
use super::error::Result;
use super::picture::{display_key, optional_list, optional_text, reorder, value_range};

/// The `corr_heatmap` scalar function.
pub struct CorrHeatmap;

impl ScalarFunction for CorrHeatmap {
    const NAME: &'static str = "corr_heatmap";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        matrix_overloads(
            &[corr_matrix_type],
            &[key_list_type, LogicalType::varchar],
            LogicalType::blob,
        )
    }

    fn invoke(input: &Chunk, output: &mut Output, _ctx: &CallContext) -> Result<()> {
        let matrices = MatrixColumn::of(input.column(0)?)?;
        for row in 0..input.rows() {
            let Some(mut m) = matrices.read(row, "matrix")? else {
                output.set_null(row)?;
                continue;
            };
            if let Some(order) = optional_list(input, 1, row)? {
                // A permutation of the keys, or an error naming the key
                // given twice or missing (reorder alone would draw a
                // duplicated key twice and drop another).
                key_order(Self::NAME, &m.keys, &order)?;
                m = reorder(&m, &order)?;
            }
            let title = optional_text(input, 2, row)?.unwrap_or_default();
            let opts = HeatmapOptions {
                title,
                value_range: value_range(m.values.iter().copied()),
                tick_labels: Some(m.keys.iter().map(|k| display_key(k)).collect()),
                ..HeatmapOptions::default()
            };
            let png = matrix_heatmap(&m.values, m.n(), &opts)?;
            output.set_blob(row, &png)?;
        }
        Ok(())
    }
}
