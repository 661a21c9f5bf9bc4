//! `similarity_heatmap(similarity [, title])`: a PNG (BLOB) of the L x L
//! matrix from `layer_similarity`, layer names on both axes and values
//! written in the cells when L <= 30.
//!
//! ```sql
//! SELECT write_png('out/similarity.png', similarity_heatmap(s, 'Pearson')) FROM sim;
//! ```

use layercorr_render::{labeled_matrix, LabeledMatrixOptions};
use libduckdb_sys as ffi;

use super::capi::old_ffi::{chunk_len, column, column_count, set_blob, set_null, LogicalType};
use super::capi::raw_register::{CallContext, ScalarFunction};
use super::corr_struct::{read_similarity, similarity_type};
use super::picture::{optional_text, value_range};

/// The `similarity_heatmap` scalar function.
pub struct SimilarityHeatmap;

impl ScalarFunction for SimilarityHeatmap {
    const NAME: &'static str = "similarity_heatmap";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        vec![
            (vec![similarity_type()], LogicalType::blob()),
            (
                vec![similarity_type(), LogicalType::varchar()],
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
            let Some((layers, values)) = read_similarity(column(input, 0), rows, row)? else {
                set_null(output, row);
                continue;
            };
            let opts = LabeledMatrixOptions {
                title: optional_text(input, columns, 1, row).unwrap_or_default(),
                value_range: value_range(&values),
                show_values: layers.len() <= 30,
                ..LabeledMatrixOptions::default()
            };
            let png =
                labeled_matrix(&values, layers.len(), &layers, &opts).map_err(|e| e.to_string())?;
            set_blob(output, row, &png)?;
        }
        Ok(())
    }
}
