//! `rsa_permutation(matrix_a, matrix_b [, method [, permutations [, seed]]])`:
//! `rsa` with a permutation test (Mantel's test).
//!
//! Returns `STRUCT(estimate DOUBLE, p_value DOUBLE)`. The image labels of
//! `matrix_b` are permuted (rows and columns together) `permutations`
//! times (default 1000, at most 100000); `p_value = (1 + #{permuted ≥
//! estimate}) / (1 + permutations)`, one-sided (more similar than chance).
//! The same `seed` (default fixed) gives the same p-value at any thread
//! count. Methods as `rsa`.
//!
//! ```sql
//! SELECT (rsa_permutation(a.m, b.m, 'spearman', 10000)).* FROM mats a, mats b
//! WHERE a.layer = 'block3' AND b.layer = 'block4';
//! ```

use layercorr_kernels::resample::permutation_test;

use super::capi::{CallContext, Chunk, LogicalType, Output, ScalarFunction};
use super::error::{Error, Result};
use super::method_arg::resample_options;
use super::rsa::{for_each_pair, pair_names, pair_signatures, MatrixPair};

/// The `rsa_permutation` scalar function.
pub struct RsaPermutation;

/// `STRUCT(estimate DOUBLE, p_value DOUBLE)`.
fn result_type() -> LogicalType {
    let d = LogicalType::double();
    LogicalType::structure(&[("estimate", &d), ("p_value", &d)])
}

impl ScalarFunction for RsaPermutation {
    const NAME: &'static str = "rsa_permutation";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        pair_signatures(
            &[
                LogicalType::varchar,
                LogicalType::bigint,
                LogicalType::bigint,
            ],
            result_type,
        )
    }

    fn invoke(input: &Chunk, output: &mut Output, _ctx: &CallContext) -> Result<()> {
        for_each_pair(
            input,
            output,
            |row| resample_options(input, 3, row, "rsa_permutation", "permutations"),
            |output, row, method, opts, MatrixPair { a, b, kinds }| {
                let r = permutation_test(
                    &a.values,
                    &b.values,
                    kinds,
                    a.n(),
                    method,
                    opts.resamples,
                    opts.seed,
                )
                .map_err(|e| Error::at_matrix(e, &pair_names()))?;
                output.set_fields(row, &[r.estimate, r.p_value])
            },
        )
    }
}
