//! `similarity_heatmap(similarity [, title])`: a PNG (BLOB) of the L x L
//! matrix from `layer_similarity`, layer names on both axes and values
//! written in the cells when L <= 30.
//!
//! ```sql
//! SELECT write_png('out/similarity.png', similarity_heatmap(s, 'Pearson')) FROM sim;
//! ```

use ::duckdb::ffi;
use layercorr_render::{labeled_matrix, LabeledMatrixOptions};

use super::corr_struct::similarity_type;
use super::ffi::{
    chunk_len, column, column_count, list_entries, set_blob, set_null, str_list_at, struct_child,
    LogicalType, Validity,
};
use super::picture::{optional_text, value_range};
use super::register::{CallContext, ScalarFunction};

/// The `similarity_heatmap` scalar function.
pub struct SimilarityHeatmap;

/// Layer names and the row-major L x L values.
type LayerMatrix = (Vec<String>, Vec<f64>);

/// Reads the L x L similarity at `row`.
unsafe fn read_similarity(
    vector: ffi::duckdb_vector,
    rows: usize,
    row: usize,
) -> Result<Option<LayerMatrix>, String> {
    if !Validity::of(vector).is_valid(row) {
        return Ok(None);
    }
    let layers = str_list_at(struct_child(vector, 0), rows, row)?.ok_or("layers are NULL")?;
    let matrix_vec = struct_child(vector, 1);
    let outer = list_entries(matrix_vec, rows)[row];
    let l = layers.len();
    if outer.length as usize != l {
        return Err(format!("matrix has {} rows for {l} layers", outer.length));
    }
    let inner = ffi::duckdb_list_vector_get_child(matrix_vec);
    let inner_rows = ffi::duckdb_list_vector_get_size(matrix_vec) as usize;
    let entries = list_entries(inner, inner_rows);
    let data = ffi::duckdb_vector_get_data(ffi::duckdb_list_vector_get_child(inner)) as *const f64;
    let mut values = Vec::with_capacity(l * l);
    for i in 0..l {
        let e = entries[outer.offset as usize + i];
        if e.length as usize != l {
            return Err(format!(
                "matrix row {} has {} values, expected {l}",
                i + 1,
                e.length
            ));
        }
        values.extend_from_slice(std::slice::from_raw_parts(data.add(e.offset as usize), l));
    }
    Ok(Some((layers, values)))
}

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
