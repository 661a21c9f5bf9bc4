//! Second-order comparison: how alike two (or L) similarity matrices are.
//!
//! This is the entry point behind `rsa` ([`compare_pair`]) and
//! `layer_similarity` ([`similarity_matrix`]); [`crate::resample`] calls
//! the same code on resampled and permuted images for intervals and
//! p-values. The methods fall into two families:
//!
//! * **centred vectors** ([`centred`]): each matrix becomes one vector and
//!   the result is the cosine between vectors — pearson (strict upper
//!   triangle minus its mean), spearman (its average-tie ranks), cka
//!   (double-centred full matrix), cka_debiased (U-centred matrix with zero
//!   diagonal, Kornblith et al.'s unbiased HSIC) and cka_rbf (cka of
//!   `exp(-d² / (2 σ²))` from a distance matrix). The `L x L` Gram of those
//!   vectors is accumulated in fixed-size chunks, so nothing of size `L·n²`
//!   is stored;
//! * **per pair** ([`procrustes`], [`knn`]): orthogonal Procrustes from the
//!   eigenvectors of each Gram matrix, and the mutual k-nearest-neighbour
//!   overlap.
//!
//! Every method reads its matrices through a [`View`]: a list of distinct
//! images (indices into the matrix, one list per matrix) and how many times
//! each was drawn. The plain comparison is the view of all images once;
//! a bootstrap resample is the distinct images drawn, weighted by their
//! multiplicity; a permutation maps the images of one matrix. Weighting an
//! image `w` times is exactly the matrix of the resample with `w` copies of
//! it, except that the pairs of an image with its own copy are left out
//! wherever a method leaves the diagonal out (as rsatoolbox's bootstrap
//! does), so duplicates do not make false perfect matches.
//!
//! Results do not depend on the number of threads: work is cut into a
//! fixed number of pieces that are summed in a fixed order.

use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::method::{CompareMethod, CorrMethod};
use crate::SquareMatrix;

pub(crate) mod centred;

pub(crate) use centred::Spare;
pub(crate) mod knn;
pub(crate) mod procrustes;

/// Neighbours per image for `mutual_knn` (as in the platonic-representation
/// paper), or all other images when there are fewer.
pub const KNN_K: usize = 10;

/// `cka_rbf` bandwidth: `σ² = RBF_SIGMA_FRAC² · median(d²)`, the median of
/// the squared distances over the full matrix (diagonal included), as
/// Kornblith et al.'s `gram_rbf(x, threshold=1.0)`.
pub const RBF_SIGMA_FRAC: f64 = 1.0;

/// The comparison of two `n x n` row-major matrices by `method`.
///
/// Equal to entry `[0][1]` of [`similarity_matrix`] on `[a, b]`.
///
/// Errors: see [`similarity_matrix`]; the matrix index is 0 for `a` and 1
/// for `b`.
pub fn compare_pair(a: &[f32], b: &[f32], n: usize, method: CompareMethod) -> Result<f64> {
    Ok(similarity_matrix(&[a, b], n, method)?.get(0, 1))
}

/// The `L x L` matrix of `method` between `L` matrices of `n x n` values
/// each (row-major). The diagonal is exactly 1 and the result symmetric.
///
/// The kind of each matrix is not known here: `mutual_knn` takes a matrix
/// with an all-zero diagonal for distances (nearest = smallest), any other
/// for similarities. [`similarity_matrix_of`] takes the kinds.
///
/// Errors: no matrices ([`KernelError::NoMatrices`]); `n` below
/// [`CompareMethod::min_rows`] ([`KernelError::TooFewRows`]); a matrix
/// whose length is not `n * n` ([`KernelError::MatrixLength`]); a NaN or
/// infinity anywhere in a matrix ([`KernelError::NonFiniteMatrix`]); a
/// matrix with nothing to compare: constant upper triangle, or a centred
/// matrix of zero norm ([`KernelError::ConstantMatrix`]). The smallest
/// matrix index is reported.
pub fn similarity_matrix(
    mats: &[&[f32]],
    n: usize,
    method: CompareMethod,
) -> Result<SquareMatrix<f64>> {
    similarity_matrix_of(mats, &vec![None; mats.len()], n, method)
}

/// [`similarity_matrix`] for matrices whose `layer_corr` method is known
/// (`None`: unknown, e.g. a matrix stored before the method was recorded).
///
/// Errors: those of [`similarity_matrix`], and a matrix of a kind the
/// method cannot use ([`KernelError::WrongMatrixKind`]).
pub fn similarity_matrix_of(
    mats: &[&[f32]],
    kinds: &[Option<CorrMethod>],
    n: usize,
    method: CompareMethod,
) -> Result<SquareMatrix<f64>> {
    let input = Input::new(mats, kinds, n, method)?;
    let identity: Vec<u32> = (0..n as u32).collect();
    let view = View {
        maps: vec![&identity[..]; mats.len()],
        weights: Weights::Ones,
    };
    input.similarity(&view, true)
}

/// Checks that each matrix's kind suits `method`.
pub fn check_kinds(method: CompareMethod, kinds: &[Option<CorrMethod>]) -> Result<()> {
    for (index, kind) in kinds.iter().enumerate() {
        if let Some(kind) = kind {
            if let Err(accepted) = method.accepts(*kind) {
                return Err(KernelError::WrongMatrixKind {
                    index,
                    method: method.name(),
                    kind: kind.name(),
                    accepted,
                });
            }
        }
    }
    Ok(())
}

/// How many times each image of a [`View`] counts.
#[derive(Debug, Clone)]
pub(crate) enum Weights {
    /// Every image once.
    Ones,
    /// Multiplicities (bootstrap draws), one per view position.
    Counts(Vec<f64>),
}

impl Weights {
    #[inline]
    pub(crate) fn get(&self, a: usize) -> f64 {
        match self {
            Weights::Ones => 1.0,
            Weights::Counts(w) => w[a],
        }
    }

    /// Number of drawn images (positions): `Σ w`.
    pub(crate) fn total(&self, m: usize) -> f64 {
        match self {
            Weights::Ones => m as f64,
            Weights::Counts(w) => w.iter().sum(),
        }
    }
}

/// Which images each matrix is read at: position `a` of matrix `k` is
/// image `maps[k][a]`; all maps have the same length `m`.
pub(crate) struct View<'a> {
    pub(crate) maps: Vec<&'a [u32]>,
    pub(crate) weights: Weights,
}

impl View<'_> {
    pub(crate) fn m(&self) -> usize {
        self.maps.first().map_or(0, |m| m.len())
    }
}

/// Validated input matrices and what every view of them shares (ranks of
/// the full upper triangle, RBF bandwidths, neighbour directions).
pub(crate) struct Input<'a> {
    pub(crate) mats: &'a [&'a [f32]],
    pub(crate) n: usize,
    pub(crate) method: CompareMethod,
    base: Vec<centred::Base>,
    /// For mutual_knn: whether nearest means smallest (distances).
    smallest: Vec<bool>,
    /// For mutual_knn when resampling: every image's other images, nearest
    /// first (`n − 1` per image), see [`knn::orders`].
    orders: Vec<Vec<u32>>,
}

impl<'a> Input<'a> {
    /// Validates the matrices (lengths, finiteness, kinds) and prepares
    /// what all views share.
    pub(crate) fn new(
        mats: &'a [&'a [f32]],
        kinds: &[Option<CorrMethod>],
        n: usize,
        method: CompareMethod,
    ) -> Result<Input<'a>> {
        let what = method.name();
        if mats.is_empty() {
            return Err(KernelError::NoMatrices { what });
        }
        let min = method.min_rows();
        if n < min {
            return Err(KernelError::TooFewRows { what, n, min });
        }
        if kinds.len() != mats.len() {
            return Err(KernelError::BadShape {
                what: "matrix kinds",
                expected: mats.len(),
                got: kinds.len(),
            });
        }
        check_kinds(method, kinds)?;
        let nn = n.saturating_mul(n);
        if let Some((index, m)) = mats.iter().enumerate().find(|(_, m)| m.len() != nn) {
            return Err(KernelError::MatrixLength {
                index,
                n,
                expected: nn,
                got: m.len(),
            });
        }
        if n > u32::MAX as usize {
            return Err(KernelError::BadShape {
                what: "matrix side (at most 2^32 - 1 keys)",
                expected: u32::MAX as usize,
                got: n,
            });
        }
        let bad = mats
            .par_iter()
            .enumerate()
            .filter_map(|(index, m)| {
                let pos = m.iter().position(|x| !x.is_finite())?;
                Some(KernelError::NonFiniteMatrix {
                    index,
                    row: pos / n,
                    col: pos % n,
                    value: m[pos],
                })
            })
            .min_by_key(|e| e.matrix_index());
        if let Some(e) = bad {
            return Err(e);
        }
        let base = mats
            .par_iter()
            .enumerate()
            .map(|(index, m)| centred::Base::new(m, n, method, index))
            .collect::<Result<Vec<_>>>()?;
        let smallest = mats
            .iter()
            .zip(kinds)
            .map(|(m, kind)| match kind {
                Some(k) => *k == CorrMethod::Euclidean,
                None => (0..n).all(|i| m[i * n + i] == 0.0),
            })
            .collect();
        Ok(Input {
            mats,
            n,
            method,
            base,
            smallest,
            orders: Vec::new(),
        })
    }

    /// Precomputes what many views of the same matrices share, at the
    /// cost of one more `n x n` array per matrix: the kernel of `cka_rbf`
    /// and the neighbour order of `mutual_knn` (other methods: nothing).
    /// The numbers of [`Input::similarity`] stay the same, up to the
    /// `f32` rounding of the stored kernel.
    pub(crate) fn precompute(&mut self) -> Result<()> {
        match self.method {
            CompareMethod::CkaRbf => {
                let mats = self.mats;
                let method = self.method;
                self.base
                    .par_iter_mut()
                    .zip(mats.par_iter())
                    .try_for_each(|(b, m)| b.precompute(m, method))
            }
            CompareMethod::MutualKnn => {
                self.orders = knn::orders(self)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The `L x L` matrix on one view. `par`: use the rayon pool inside
    /// (the plain comparison) or stay on the calling thread (one of many
    /// resamples run in parallel). Both give the same numbers.
    pub(crate) fn similarity(&self, view: &View, par: bool) -> Result<SquareMatrix<f64>> {
        self.similarity_with(view, par, &mut centred::Spare::new())
    }

    /// [`Input::similarity`] reusing the buffers in `spare` (one per thread
    /// across many resamples).
    pub(crate) fn similarity_with(
        &self,
        view: &View,
        par: bool,
        spare: &mut centred::Spare,
    ) -> Result<SquareMatrix<f64>> {
        match self.method {
            CompareMethod::Pearson
            | CompareMethod::Spearman
            | CompareMethod::Cka
            | CompareMethod::CkaDebiased
            | CompareMethod::CkaRbf => centred::similarity(self, &self.base, view, par, spare),
            CompareMethod::Procrustes => procrustes::similarity(self, view, par),
            CompareMethod::MutualKnn => {
                knn::similarity(self, &self.smallest, &self.orders, view, par)
            }
        }
    }
}

/// A symmetric `L x L` result from its strict lower triangle `lower(i, j)`
/// (`i > j`), diagonal 1, values clamped to `[-1, 1]`.
pub(crate) fn symmetric(
    l: usize,
    lower: impl Fn(usize, usize) -> f64,
) -> Result<SquareMatrix<f64>> {
    let mut out = vec![0f64; l * l];
    for i in 0..l {
        out[i * l + i] = 1.0;
        for j in 0..i {
            let r = lower(i, j).clamp(-1.0, 1.0);
            out[i * l + j] = r;
            out[j * l + i] = r;
        }
    }
    SquareMatrix::from_vec(l, out)
}

/// Runs `f` over `0..count`, in parallel or not, results in index order.
pub(crate) fn map_indices<T: Send>(
    count: usize,
    par: bool,
    f: impl Fn(usize) -> Result<T> + Sync + Send,
) -> Result<Vec<T>> {
    if par {
        (0..count).into_par_iter().map(f).collect()
    } else {
        (0..count).map(f).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
