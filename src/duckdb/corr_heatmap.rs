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
use libduckdb_sys as ffi;

use super::capi::old_ffi::{chunk_len, column, column_count, set_blob, set_null, LogicalType};
use super::capi::raw_register::{CallContext, ScalarFunction};
use super::corr_struct::{corr_matrix_type, read_keyed_matrix};
use super::picture::{display_key, optional_list, optional_text, reorder, value_range};

/// The `corr_heatmap` scalar function.
pub struct CorrHeatmap;

impl ScalarFunction for CorrHeatmap {
    const NAME: &'static str = "corr_heatmap";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        let keys = || LogicalType::list(&LogicalType::varchar());
        vec![
            (vec![corr_matrix_type()], LogicalType::blob()),
            (vec![corr_matrix_type(), keys()], LogicalType::blob()),
            (
                vec![corr_matrix_type(), keys(), LogicalType::varchar()],
                LogicalType::blob(),
            ),
        ]
    }

    unsafe fn invoke(
        input: ffi::duckdb_data_chunk,
        output: ffi::duckdb_vector,
        _ctx: &CallContext,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let columns = column_count(input);
        for row in 0..rows {
            let Some(mut m) = read_keyed_matrix(column(input, 0), rows, row, "matrix")? else {
                set_null(output, row);
                continue;
            };
            if let Some(order) = optional_list(input, columns, 1, rows, row)? {
                // A permutation of the keys, or an error naming the key
                // given twice or missing (reorder alone would draw a
                // duplicated key twice and drop another).
                key_order(Self::NAME, &m.keys, &order).map_err(|e| e.to_string())?;
                m = reorder(&m, &order)?;
            }
            let title = optional_text(input, columns, 2, row).unwrap_or_default();
            let opts = HeatmapOptions {
                title,
                value_range: value_range(&m.values),
                tick_labels: Some(m.keys.iter().map(|k| display_key(k)).collect()),
                ..HeatmapOptions::default()
            };
            let png = matrix_heatmap(&m.values, m.n(), &opts).map_err(|e| e.to_string())?;
            set_blob(output, row, &png)?;
        }
        Ok(())
    }
}
