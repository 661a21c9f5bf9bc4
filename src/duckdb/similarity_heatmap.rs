//! `similarity_heatmap(similarity [, title])`: a PNG (BLOB) of the L x L
//! matrix from `layer_similarity`, layer names on both axes and values
//! written in the cells when L <= 30.
//!
//! ```sql
//! SELECT write_png('out/similarity.png', similarity_heatmap(s, 'Pearson')) FROM sim;
//! ```

use layercorr_render::{labeled_matrix, LabeledMatrixOptions};

use super::capi::{CallContext, Chunk, LogicalType, Output, ScalarFunction};
use super::corr_struct::{similarity_type, SimilarityColumn};
use super::error::Result;
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

    fn invoke(input: &Chunk, output: &mut Output, _ctx: &CallContext) -> Result<()> {
        let similarities = SimilarityColumn::of(input.column(0)?)?;
        for row in 0..input.rows() {
            let Some((layers, values)) = similarities.read(row)? else {
                output.set_null(row)?;
                continue;
            };
            let opts = LabeledMatrixOptions {
                title: optional_text(input, 1, row)?.unwrap_or_default(),
                value_range: value_range(values.iter().copied()),
                show_values: layers.len() <= 30,
                ..LabeledMatrixOptions::default()
            };
            let png = labeled_matrix(&values, layers.len(), &layers, &opts)?;
            output.set_blob(row, &png)?;
        }
        Ok(())
    }
}
