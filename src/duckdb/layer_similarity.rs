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

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

use layercorr_kernels::{compare::similarity_matrix_of, CompareMethod, CorrMethod};

use super::capi::{Aggregate, Chunk, LogicalType, Output, States, Strings};
use super::corr_struct::{
    check_same_keys, corr_matrix_type, matrix_overloads, similarity_type, write_similarity,
    KeyedMatrix, MatrixColumn,
};
use super::error::{Error, Result};
use super::method_arg::{merge_method, method_at};
use super::reservation::Reservation;

/// Bytes held by the groups of `layer_similarity` and `layer_similarity_ci`
/// in progress, counted against `memory_limit`.
static RESERVED: AtomicU64 = AtomicU64::new(0);

/// The `layer_similarity` aggregate.
pub struct LayerSimilarity;

/// A group's matrices, the `layer_corr` method of each (if recorded), and
/// their side `n`.
pub(super) type GroupMatrices<'a> = (Vec<&'a [f32]>, &'a [Option<CorrMethod>], usize);

/// The group's layers and their matrices, in arrival order, and the bytes
/// they hold, counted against `memory_limit`.
#[derive(Default)]
pub struct SimilarityState {
    layers: Vec<String>,
    seen: HashSet<String>,
    matrices: Vec<KeyedMatrix>,
    kinds: Vec<Option<CorrMethod>>,
    pub(super) method: Option<CompareMethod>,
    reservation: Reservation,
}

/// The `(layer, matrix [, method, ...])` columns of one chunk.
pub(super) struct SimilarityColumns<'a> {
    layers: Strings<'a>,
    matrices: MatrixColumn<'a>,
    methods: Option<Strings<'a>>,
}

impl<'a> SimilarityColumns<'a> {
    /// Reads the columns of `input`.
    pub(super) fn of(input: &Chunk<'a>) -> Result<SimilarityColumns<'a>> {
        Ok(SimilarityColumns {
            layers: input.column(0)?.strings()?,
            matrices: MatrixColumn::of(input.column(1)?)?,
            methods: input.optional(2).map(|c| c.strings()).transpose()?,
        })
    }
}

fn twice(layer: &str) -> Error {
    Error::invalid(format!(
        "layer '{layer}' appears twice in the group; group by model or checkpoint too"
    ))
}

impl SimilarityState {
    /// Adds row `row` of `columns` to `state`; a NULL matrix is skipped.
    pub(super) fn update_row(
        columns: &SimilarityColumns,
        row: usize,
        state: &mut SimilarityState,
        last_method: &mut Option<(String, CompareMethod)>,
    ) -> Result<()> {
        let method = method_at(
            columns.methods.as_ref(),
            row,
            CompareMethod::Pearson,
            last_method,
        )?;
        let layer = columns
            .layers
            .text(row)
            .ok_or_else(|| Error::invalid("layer name is NULL"))?
            .into_owned();
        let what = format!("matrix of layer '{layer}'");
        let Some(matrix) = columns.matrices.read(row, &what)? else {
            return Ok(());
        };
        let kind = columns.matrices.method(row, &what)?;
        merge_method(&mut state.method, method)?;
        if state.seen.contains(&layer) {
            return Err(twice(&layer));
        }
        let count = state.matrices.len() + 1;
        state.reservation.grow(&RESERVED, matrix.bytes(), || {
            format!("the group's {count} matrices of {} keys", matrix.n())
        })?;
        state.seen.insert(layer.clone());
        state.layers.push(layer);
        state.matrices.push(matrix);
        state.kinds.push(kind);
        Ok(())
    }

    /// Moves `source` into `target`.
    pub(super) fn merge(source: &mut Self, target: &mut Self) -> Result<()> {
        if let Some(m) = source.method {
            merge_method(&mut target.method, m)?;
        }
        if let Some(layer) = source.layers.iter().find(|l| target.seen.contains(*l)) {
            return Err(twice(layer));
        }
        target.seen.extend(source.seen.drain());
        target.layers.append(&mut source.layers);
        target.matrices.append(&mut source.matrices);
        target.kinds.append(&mut source.kinds);
        target.reservation.absorb(&mut source.reservation);
        Ok(())
    }

    /// The group's matrices, checked to be on the same keys: views, kinds,
    /// and `n`.
    pub(super) fn checked(&self) -> Result<GroupMatrices<'_>> {
        let Some(first) = self.matrices.first() else {
            return Err(Error::invalid("the group has no non-NULL matrices"));
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

    /// Counts the comparison's working memory beside the matrices against
    /// `memory_limit`, before it starts: `outputs` L x L results and, when
    /// resampling, `resamples` values of every pair of layers. An upper
    /// estimate: a second copy's worth of every matrix in `f64` (spearman's
    /// tie classes, cka_rbf's kernels, mutual_knn's neighbour orders), four
    /// L x L sums beside the results (and DuckDB's copy of them), and the
    /// resampled values.
    pub(super) fn reserve_working(&mut self, outputs: u64, resamples: u64) -> Result<()> {
        let (l, n) = (
            self.matrices.len() as u64,
            self.matrices.first().map_or(0, |m| m.n() as u64),
        );
        let per_matrix = l.saturating_mul(n.saturating_mul(n)).saturating_mul(8);
        let squares = l.saturating_mul(l).saturating_mul(8 * (4 + 2 * outputs));
        let pairs = l.saturating_mul(l.saturating_sub(1)) / 2;
        let draws = resamples.saturating_mul(pairs).saturating_mul(8);
        let need = self
            .reservation
            .bytes()
            .saturating_add(per_matrix)
            .saturating_add(squares)
            .saturating_add(draws);
        self.reservation.reserve(&RESERVED, need, || {
            let resampled = if resamples > 0 {
                format!(", {resamples} resamples")
            } else {
                String::new()
            };
            format!("comparing {l} matrices of {n} keys{resampled}")
        })
    }

    /// The layer names, in order.
    pub(super) fn layers(&self) -> &[String] {
        &self.layers
    }

    /// Frees the matrices and gives their count back.
    pub(super) fn clear(&mut self) {
        self.matrices.clear();
        self.reservation.release();
    }
}

impl Aggregate for LayerSimilarity {
    type State = SimilarityState;
    const NAME: &'static str = "layer_similarity";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        matrix_overloads(
            &[LogicalType::varchar, corr_matrix_type],
            &[LogicalType::varchar],
            similarity_type,
        )
    }

    fn update(input: &Chunk, states: &mut States<SimilarityState>) -> Result<()> {
        let columns = SimilarityColumns::of(input)?;
        let mut last_method = None;
        for row in 0..input.rows() {
            SimilarityState::update_row(&columns, row, states.get(row), &mut last_method)?;
        }
        Ok(())
    }

    fn combine(source: &mut SimilarityState, target: &mut SimilarityState) -> Result<()> {
        SimilarityState::merge(source, target)
    }

    fn finalize(state: &mut SimilarityState, output: &mut Output, row: usize) -> Result<()> {
        let method = state.method.unwrap_or(CompareMethod::Pearson);
        state.reserve_working(1, 0)?;
        let (views, kinds, n) = state.checked()?;
        let result = similarity_matrix_of(&views, kinds, n, method)
            .map_err(|e| Error::at_matrix(e, &state.layers))?;
        write_similarity(output, row, &state.layers, &[result.as_slice()])?;
        state.clear();
        Ok(())
    }
}
