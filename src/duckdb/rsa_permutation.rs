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
use libduckdb_sys as ffi;

use super::capi::old_ffi::{set_value, struct_child, LogicalType};
use super::capi::raw_register::{CallContext, ScalarFunction};
use super::layer_similarity::name_matrix;
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

    unsafe fn invoke(
        input: ffi::duckdb_data_chunk,
        output: ffi::duckdb_vector,
        _ctx: &CallContext,
    ) -> Result<(), String> {
        for_each_pair(
            input,
            output,
            |row| resample_options(input, 3, row, "rsa_permutation", "permutations"),
            |row, method, opts, MatrixPair { a, b, kinds }| {
                let r = permutation_test(
                    &a.values,
                    &b.values,
                    kinds,
                    a.n(),
                    method,
                    opts.resamples,
                    opts.seed,
                )
                .map_err(|e| name_matrix(e, &pair_names()))?;
                set_value(struct_child(output, 0), row, r.estimate);
                set_value(struct_child(output, 1), row, r.p_value);
                Ok(())
            },
        )
    }
}
