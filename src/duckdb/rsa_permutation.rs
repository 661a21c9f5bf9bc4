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

use ::duckdb::ffi;
use layercorr_kernels::resample::permutation_test;
use layercorr_kernels::CompareMethod;

use super::ffi::{chunk_len, column, column_count, set_null, set_value, struct_child, LogicalType};
use super::layer_similarity::name_matrix;
use super::method_arg::{method_at, resample_options};
use super::register::{CallContext, ScalarFunction};
use super::rsa::{pair_names, pair_signatures, read_pair, MatrixPair};

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
        let rows = chunk_len(input);
        let (a_vec, b_vec) = (column(input, 0), column(input, 1));
        let method_vec = (column_count(input) >= 3).then(|| column(input, 2));
        let mut last_method = None;
        for row in 0..rows {
            let method = method_at(method_vec, row, CompareMethod::Pearson, &mut last_method)?;
            let opts = resample_options(input, 3, row, "rsa_permutation", "permutations")?;
            let Some(MatrixPair { a, b, kinds }) = read_pair(a_vec, b_vec, rows, row)? else {
                set_null(output, row);
                continue;
            };
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
        }
        Ok(())
    }
}
