//! `layer_similarity(layer, matrix [, method])`: the L x L second-order
//! matrix over the group's per-layer matrices.
//!
//! Takes the `STRUCT(keys, matrix)` values made by `layer_corr`, all on the
//! same keys, and returns `STRUCT(layers VARCHAR[], matrix DOUBLE[][])`.
//! Layer order is the input order: use the aggregate's `ORDER BY` (e.g. by
//! `position` from `nn_layers`); without it, the order in which rows
//! arrive. Methods: `pearson` (default; correlation of the strict upper
//! triangles), `spearman`, `cka` (linear CKA on double-centred matrices),
//! `cka_debiased` (unbiased HSIC on U-centred matrices, Kornblith et al.'s
//! `debiased=True`; needs 4 keys), `cka_rbf` (CKA of Gaussian kernels of
//! `euclidean` matrices, bandwidth σ² = median squared distance),
//! `procrustes` (orthogonal Procrustes similarity of `gram` matrices, the
//! nuclear norm of Xᵀ Y over ‖X‖ ‖Y‖), `mutual_knn` (mean overlap of each
//! key's 10 nearest neighbours; largest similarity, smallest distance).
//! Rows with a NULL matrix are skipped; a layer given twice, matrices on
//! different keys, constant matrices, and a matrix of a kind the method
//! cannot use (`procrustes` on pearson, `cka_rbf` on gram) are errors
//! naming the layers.
//!
//! ```sql
//! SELECT layer_similarity(layer, m ORDER BY position) FROM matrices JOIN layers USING (layer);
//! ```

use layercorr_kernels::{compare::similarity_matrix_of, CompareMethod, CorrMethod, KernelError};
use libduckdb_sys as ffi;

use super::capi::old_ffi::{
    append_list, chunk_len, column, column_count, set_list, set_str_list, str_at, struct_child,
    LogicalType, Validity,
};
use super::capi::raw_register::Aggregate;
use super::corr_struct::{
    check_same_keys, corr_matrix_type, read_keyed_matrix, read_matrix_method, similarity_type,
    KeyedMatrix,
};
use super::method_arg::{merge_method, method_at};

/// The `layer_similarity` aggregate.
pub struct LayerSimilarity;

/// A group's matrices, the `layer_corr` method of each (if recorded), and
/// their side `n`.
pub(super) type GroupMatrices<'a> = (Vec<&'a [f32]>, &'a [Option<CorrMethod>], usize);

/// The group's layers and their matrices, in arrival order.
#[derive(Default)]
pub struct SimilarityState {
    layers: Vec<String>,
    matrices: Vec<KeyedMatrix>,
    kinds: Vec<Option<CorrMethod>>,
    pub(super) method: Option<CompareMethod>,
}

impl SimilarityState {
    /// Adds row `row` of `(layer, matrix [, method, ...])` columns to
    /// `state`; a NULL matrix is skipped.
    ///
    /// # Safety
    /// `input` is a live chunk of those columns; see [`Aggregate::update`].
    pub(super) unsafe fn update_row(
        input: ffi::duckdb_data_chunk,
        row: usize,
        state: &mut SimilarityState,
        last_method: &mut Option<(String, CompareMethod)>,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let (layer_vec, matrix_vec) = (column(input, 0), column(input, 1));
        let method_vec = (column_count(input) >= 3).then(|| column(input, 2));
        let method = method_at(method_vec, row, CompareMethod::Pearson, last_method)?;
        if !Validity::of(layer_vec).is_valid(row) {
            return Err("layer name is NULL".into());
        }
        let layer = str_at(layer_vec, row).into_owned();
        let what = format!("matrix of layer '{layer}'");
        let Some(matrix) = read_keyed_matrix(matrix_vec, rows, row, &what)? else {
            return Ok(());
        };
        let kind = read_matrix_method(matrix_vec, row, &what)?;
        merge_method(&mut state.method, method)?;
        if state.layers.contains(&layer) {
            return Err(format!(
                "layer '{layer}' appears twice in the group; group by model or checkpoint too"
            ));
        }
        state.layers.push(layer);
        state.matrices.push(matrix);
        state.kinds.push(kind);
        Ok(())
    }

    /// Moves `source` into `target`.
    pub(super) fn merge(source: &mut Self, target: &mut Self) -> Result<(), String> {
        if let Some(m) = source.method {
            merge_method(&mut target.method, m)?;
        }
        for layer in &source.layers {
            if target.layers.contains(layer) {
                return Err(format!(
                    "layer '{layer}' appears twice in the group; group by model or checkpoint too"
                ));
            }
        }
        target.layers.append(&mut source.layers);
        target.matrices.append(&mut source.matrices);
        target.kinds.append(&mut source.kinds);
        Ok(())
    }

    /// The group's matrices, checked to be on the same keys: views, kinds,
    /// and `n`.
    pub(super) fn checked(&self) -> Result<GroupMatrices<'_>, String> {
        let Some(first) = self.matrices.first() else {
            return Err("the group has no non-NULL matrices".into());
        };
        for (layer, m) in self.layers.iter().zip(&self.matrices).skip(1) {
            check_same_keys(
                &first.keys,
                &format!("layer '{}'", self.layers[0]),
                &m.keys,
                &format!("layer '{layer}'"),
            )?;
        }
        let views = self.matrices.iter().map(|m| m.values.as_slice()).collect();
        Ok((views, &self.kinds, first.n()))
    }

    /// The layer names, in order.
    pub(super) fn layers(&self) -> &[String] {
        &self.layers
    }

    /// Frees the matrices.
    pub(super) fn clear(&mut self) {
        self.matrices.clear();
    }
}

/// Adds the matrix index's name to a kernel error.
pub fn name_matrix(e: KernelError, names: &[String]) -> String {
    match e.matrix_index().and_then(|i| names.get(i)) {
        Some(name) => format!("{e} (matrix {} is '{name}')", e.matrix_index().unwrap_or(0)),
        None => e.to_string(),
    }
}

impl Aggregate for LayerSimilarity {
    type State = SimilarityState;
    const NAME: &'static str = "layer_similarity";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        vec![
            (
                vec![LogicalType::varchar(), corr_matrix_type()],
                similarity_type(),
            ),
            (
                vec![
                    LogicalType::varchar(),
                    corr_matrix_type(),
                    LogicalType::varchar(),
                ],
                similarity_type(),
            ),
        ]
    }

    unsafe fn update(
        input: ffi::duckdb_data_chunk,
        state_of: &mut dyn FnMut(usize) -> *mut SimilarityState,
    ) -> Result<(), String> {
        let mut last_method = None;
        for row in 0..chunk_len(input) {
            SimilarityState::update_row(input, row, &mut *state_of(row), &mut last_method)?;
        }
        Ok(())
    }

    fn combine(source: &mut SimilarityState, target: &mut SimilarityState) -> Result<(), String> {
        SimilarityState::merge(source, target)
    }

    unsafe fn finalize(
        state: &mut SimilarityState,
        output: ffi::duckdb_vector,
        row: usize,
    ) -> Result<(), String> {
        let method = state.method.unwrap_or(CompareMethod::Pearson);
        let (views, kinds, n) = state.checked()?;
        let result = similarity_matrix_of(&views, kinds, n, method)
            .map_err(|e| name_matrix(e, &state.layers))?;
        let l = state.layers.len();
        set_str_list(struct_child(output, 0), row, &state.layers)?;
        let (rows_vec, offset) = append_list(struct_child(output, 1), row, l)?;
        for i in 0..l {
            set_list(rows_vec, offset + i, result.row(i))?;
        }
        state.matrices.clear();
        Ok(())
    }
}
