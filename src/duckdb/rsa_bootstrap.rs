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

use ::duckdb::ffi;
use layercorr_kernels::resample::bootstrap;
use layercorr_kernels::CompareMethod;

use super::ffi::{chunk_len, column, column_count, set_null, set_value, struct_child, LogicalType};
use super::layer_similarity::name_matrix;
use super::method_arg::{method_at, resample_options};
use super::register::{CallContext, ScalarFunction};
use super::rsa::{pair_names, pair_signatures, read_pair, MatrixPair};

/// The `rsa_bootstrap` scalar function.
pub struct RsaBootstrap;

/// `STRUCT(estimate DOUBLE, ci_low DOUBLE, ci_high DOUBLE, se DOUBLE)`.
fn result_type() -> LogicalType {
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
        pair_signatures(
            &[
                LogicalType::varchar,
                LogicalType::bigint,
                LogicalType::bigint,
                LogicalType::double,
            ],
            result_type,
        )
    }

    unsafe fn invoke(
        input: ffi::duckdb_data_chunk,
        output: ffi::duckdb_vector,
        _ctx: &CallContext,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let (a_vec, b_vec) = (column(input, 0), column(input, 1));
        let method_vec = (column_count(input) >= 3).then(|| column(input, 2));
        let mut last_method = None;
        for row in 0..rows {
            let method = method_at(method_vec, row, CompareMethod::Pearson, &mut last_method)?;
            let opts = resample_options(input, 3, row, "rsa_bootstrap", "resamples")?;
            let Some(MatrixPair { a, b, kinds }) = read_pair(a_vec, b_vec, rows, row)? else {
                set_null(output, row);
                continue;
            };
            let r = bootstrap(&[&a.values, &b.values], &kinds, a.n(), method, opts)
                .map_err(|e| name_matrix(e, &pair_names()))?;
            let values = [
                r.estimate.get(0, 1),
                r.ci_low.get(0, 1),
                r.ci_high.get(0, 1),
                r.se.get(0, 1),
            ];
            for (i, v) in values.into_iter().enumerate() {
                set_value(struct_child(output, i), row, v);
            }
        }
        Ok(())
    }
}
