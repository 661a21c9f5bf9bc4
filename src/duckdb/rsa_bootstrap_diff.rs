//! `rsa_bootstrap_diff(reference, matrix_a, matrix_b [, method [, resamples [, seed [, level]]]])`:
//! is `matrix_a` more (or less) similar to `reference` than `matrix_b` is,
//! beyond the variation over images?
//!
//! Returns `STRUCT(estimate DOUBLE, ci_low DOUBLE, ci_high DOUBLE, se DOUBLE)`
//! for `rsa(reference, matrix_a) − rsa(reference, matrix_b)`: its value on
//! all images and a paired bootstrap over images (one draw of images
//! serves all three matrices in each resample, so what the two
//! similarities share cancels), percentile interval at `level` (default
//! 0.95) of `resamples` (default 1000, at most 100000); the pairs of an
//! image with its own copy are left out as in `rsa_bootstrap`. An interval
//! that excludes 0 says the two differ beyond chance. Same seed, same
//! numbers at any thread count; methods as `rsa`.
//!
//! ```sql
//! SELECT (rsa_bootstrap_diff(i.m, a.m, b.m)).* FROM mats i, mats a, mats b
//! WHERE i.layer = 'input' AND a.layer = 'blocks.3' AND b.layer = 'blocks.4';
//! ```

use layercorr_kernels::resample::bootstrap_difference;

use super::capi::{CallContext, Chunk, LogicalType, Output, ScalarFunction};
use super::corr_struct::{corr_matrix_type, matrix_overloads};
use super::error::{Error, Result};
use super::method_arg::{resample_options, RESAMPLE_ARGS};
use super::rsa::for_each_row;
use super::rsa_bootstrap::interval_type;

/// The `rsa_bootstrap_diff` scalar function.
pub struct RsaBootstrapDiff;

/// The argument names of the three matrices.
const NAMES: [&str; 3] = ["reference", "matrix_a", "matrix_b"];

impl ScalarFunction for RsaBootstrapDiff {
    const NAME: &'static str = "rsa_bootstrap_diff";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        matrix_overloads(
            &[corr_matrix_type, corr_matrix_type, corr_matrix_type],
            &RESAMPLE_ARGS,
            interval_type,
        )
    }

    fn invoke(input: &Chunk, output: &mut Output, _ctx: &CallContext) -> Result<()> {
        for_each_row(
            input,
            output,
            &NAMES,
            |row| resample_options(input, 4, row, "rsa_bootstrap_diff", "resamples"),
            |output, row, method, opts, mats, kinds| {
                let n = mats.first().map_or(0, |m| m.n());
                let values: Vec<&[f32]> = mats.iter().map(|m| &m.values[..]).collect();
                let (Ok(values), Ok(kinds)) =
                    (<[_; 3]>::try_from(values), <[_; 3]>::try_from(kinds))
                else {
                    return Err(Error::internal("expected three matrices"));
                };
                let names = NAMES.map(String::from);
                let r = bootstrap_difference(values, kinds, n, method, opts)
                    .map_err(|e| Error::at_matrix(e, &names))?;
                output.set_fields(row, &[r.estimate, r.ci_low, r.ci_high, r.se])
            },
        )
    }
}
