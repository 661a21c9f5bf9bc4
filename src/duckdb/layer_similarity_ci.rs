//! `layer_similarity_ci(layer, matrix [, method [, resamples [, seed [, level]]]])`:
//! `layer_similarity` with bootstrap confidence intervals over images.
//!
//! Returns `STRUCT(layers VARCHAR[], matrix DOUBLE[][], ci_low DOUBLE[][],
//! ci_high DOUBLE[][])`: the L x L matrix on all images and the percentile
//! interval bounds at `level` (default 0.95) from `resamples` (default
//! 1000, at most 100000) resamples. One draw of images serves every pair
//! of layers; the pairs of an image with its own copy are left out where
//! the method leaves the diagonal out (as rsatoolbox does). The same `seed`
//! (default fixed) gives the same numbers at any thread count. Methods,
//! layer order, NULLs and errors as `layer_similarity`; the optional
//! arguments must be the same for the whole group.
//!
//! Cost: resamples run in parallel on every core; each reads the `L`
//! matrices once at the images drawn (about `0.4 N²` entries) and adds an
//! `L x L` product, so pearson, spearman, cka, cka_debiased, cka_rbf and
//! mutual_knn take seconds for 1,000 resamples of `L = 21` at `N = 500`.
//! `procrustes` needs an eigendecomposition per layer and an SVD per pair
//! in every resample: minutes at that size, so use fewer resamples or
//! `rsa_bootstrap` on the pairs of interest.
//!
//! ```sql
//! SELECT layer_similarity_ci(layer, m, 'cka_debiased', 1000 ORDER BY position) FROM matrices;
//! ```

use layercorr_kernels::resample::{bootstrap, BootstrapOptions};
use layercorr_kernels::CompareMethod;

use super::capi::{Aggregate, Chunk, LogicalType, Output, States};
use super::corr_struct::write_similarity;
use super::corr_struct::{corr_matrix_type, matrix_overloads};
use super::error::{Error, Result};
use super::layer_similarity::{SimilarityColumns, SimilarityState};
use super::method_arg::{resample_options, RESAMPLE_ARGS};

/// The `layer_similarity_ci` aggregate.
pub struct LayerSimilarityCi;

/// The group's matrices and its resampling options.
#[derive(Default)]
pub struct CiState {
    inner: SimilarityState,
    opts: Option<BootstrapOptions>,
}

fn merge_opts(state: &mut Option<BootstrapOptions>, opts: BootstrapOptions) -> Result<()> {
    match state {
        Some(o) if *o != opts => Err(Error::invalid(format!(
            "resamples, seed and level must be the same for the whole group ({}, {}, {} and {}, {}, {})",
            o.resamples, o.seed as i64, o.level, opts.resamples, opts.seed as i64, opts.level
        ))),
        _ => {
            *state = Some(opts);
            Ok(())
        }
    }
}

/// `STRUCT(layers VARCHAR[], matrix DOUBLE[][], ci_low DOUBLE[][], ci_high DOUBLE[][])`.
fn result_type() -> LogicalType {
    let layers = LogicalType::list(&LogicalType::varchar());
    let rows = || LogicalType::list(&LogicalType::list(&LogicalType::double()));
    LogicalType::structure(&[
        ("layers", &layers),
        ("matrix", &rows()),
        ("ci_low", &rows()),
        ("ci_high", &rows()),
    ])
}

impl Aggregate for LayerSimilarityCi {
    type State = CiState;
    const NAME: &'static str = "layer_similarity_ci";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        matrix_overloads(
            &[LogicalType::varchar, corr_matrix_type],
            &RESAMPLE_ARGS,
            result_type,
        )
    }

    fn update(input: &Chunk, states: &mut States<CiState>) -> Result<()> {
        let columns = SimilarityColumns::of(input)?;
        let mut last_method = None;
        for row in 0..input.rows() {
            let opts = resample_options(input, 3, row, "layer_similarity_ci", "resamples")?;
            let state = states.get(row);
            merge_opts(&mut state.opts, opts)?;
            SimilarityState::update_row(&columns, row, &mut state.inner, &mut last_method)?;
        }
        Ok(())
    }

    fn combine(source: &mut CiState, target: &mut CiState) -> Result<()> {
        if let Some(o) = source.opts {
            merge_opts(&mut target.opts, o)?;
        }
        SimilarityState::merge(&mut source.inner, &mut target.inner)
    }

    fn finalize(state: &mut CiState, output: &mut Output, row: usize) -> Result<()> {
        let method = state.inner.method.unwrap_or(CompareMethod::Pearson);
        let opts = state.opts.unwrap_or_default();
        state.inner.reserve_working(3, opts.resamples as u64)?;
        let (views, kinds, n) = state.inner.checked()?;
        let result = bootstrap(&views, kinds, n, method, opts)
            .map_err(|e| Error::at_matrix(e, state.inner.layers()))?;
        let matrices = [
            result.estimate.as_slice(),
            result.ci_low.as_slice(),
            result.ci_high.as_slice(),
        ];
        write_similarity(output, row, state.inner.layers(), &matrices)?;
        state.inner.clear();
        Ok(())
    }
}
