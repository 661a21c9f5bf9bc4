//! `rsa_bootstrap(matrix_a, matrix_b [, method [, resamples [, seed [, level]]]])`:
//! `rsa` with a bootstrap confidence interval over images.
//!
//! Returns `STRUCT(estimate DOUBLE, ci_low DOUBLE, ci_high DOUBLE, se DOUBLE)`:
//! the value on all images, the percentile interval at `level` (default
//! 0.95) of `resamples` (default 1000, at most 100000) resamples, and the
//! standard deviation of the resampled values. Images are drawn with
//! replacement; the pairs of an image with its own copy are left out
//! where the method leaves the diagonal out (as rsatoolbox does), so
//! duplicates make no false perfect matches. The same `seed` (default
//! fixed) gives the same numbers at any thread count. Methods as `rsa`;
//! `cka_rbf` keeps the bandwidth of all images in every resample.
//!
//! ```sql
//! SELECT (rsa_bootstrap(a.m, b.m, 'cka_debiased', 1000, 42)).* FROM mats a, mats b
//! WHERE a.layer = 'input' AND b.layer = 'logits';
//! ```

use layercorr_kernels::resample::bootstrap;

use super::capi::{CallContext, Chunk, LogicalType, Output, ScalarFunction};
use super::error::{Error, Result};
use super::method_arg::{resample_options, RESAMPLE_ARGS};
use super::rsa::{for_each_pair, pair_names, pair_signatures, MatrixPair};

/// The `rsa_bootstrap` scalar function.
pub struct RsaBootstrap;

/// `STRUCT(estimate DOUBLE, ci_low DOUBLE, ci_high DOUBLE, se DOUBLE)`, the
/// result of `rsa_bootstrap` and `rsa_bootstrap_diff`.
pub fn interval_type() -> LogicalType {
    let d = LogicalType::double();
    LogicalType::structure(&[
        ("estimate", &d),
        ("ci_low", &d),
        ("ci_high", &d),
        ("se", &d),
    ])
}

impl ScalarFunction for RsaBootstrap {
    const NAME: &'static str = "rsa_bootstrap";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        pair_signatures(&RESAMPLE_ARGS, interval_type)
    }

    fn invoke(input: &Chunk, output: &mut Output, _ctx: &CallContext) -> Result<()> {
        for_each_pair(
            input,
            output,
            |row| resample_options(input, 3, row, "rsa_bootstrap", "resamples"),
            |output, row, method, opts, MatrixPair { a, b, kinds }| {
                let r = bootstrap(&[&a.values, &b.values], &kinds, a.n(), method, opts)
                    .map_err(|e| Error::at_matrix(e, &pair_names()))?;
                let values = [
                    r.estimate.get(0, 1),
                    r.ci_low.get(0, 1),
                    r.ci_high.get(0, 1),
                    r.se.get(0, 1),
                ];
                output.set_fields(row, &values)
            },
        )
    }
}
