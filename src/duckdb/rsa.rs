//! `rsa(matrix_a, matrix_b [, method])`: the second-order comparison of
//! one pair of `layer_corr` matrices, for self-joins (layer vs layer,
//! model vs model, checkpoint vs checkpoint).
//!
//! Same methods and numbers as `layer_similarity` (`pearson` default,
//! `spearman`, `cka`, `cka_debiased`, `cka_rbf`, `procrustes`,
//! `mutual_knn`). NULL in gives NULL out; matrices on different keys are
//! an error naming the first differing key, and a matrix of the wrong kind
//! for the method an error naming its `layer_corr` method.
//!
//! ```sql
//! SELECT a.layer, b.layer, rsa(a.m, b.m) FROM lite0 a, lite1 b;
//! ```

use ::duckdb::ffi;
use layercorr_kernels::{compare::similarity_matrix_of, CompareMethod, CorrMethod};

use super::corr_struct::{
    check_same_keys, corr_matrix_type, read_keyed_matrix, read_matrix_method, KeyedMatrix,
};
use super::ffi::{chunk_len, column, column_count, set_null, set_value, LogicalType};
use super::layer_similarity::name_matrix;
use super::method_arg::method_at;
use super::register::{CallContext, ScalarFunction};

/// The `rsa` scalar function.
pub struct Rsa;

impl ScalarFunction for Rsa {
    const NAME: &'static str = "rsa";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        pair_signatures(&[LogicalType::varchar], LogicalType::double)
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
            let Some(MatrixPair { a, b, kinds }) = read_pair(a_vec, b_vec, rows, row)? else {
                set_null(output, row);
                continue;
            };
            let value = similarity_matrix_of(&[&a.values, &b.values], &kinds, a.n(), method)
                .map_err(|e| name_matrix(e, &pair_names()))?
                .get(0, 1);
            set_value(output, row, value);
        }
        Ok(())
    }
}

/// The names of `rsa`'s two matrices, for errors.
pub fn pair_names() -> [String; 2] {
    ["matrix_a".to_string(), "matrix_b".to_string()]
}

/// Overloads of a function of two matrices: `(matrix_a, matrix_b)` then one
/// more optional trailing argument of `tail` at a time, all returning
/// `result()`.
pub fn pair_signatures(
    tail: &[fn() -> LogicalType],
    result: fn() -> LogicalType,
) -> Vec<(Vec<LogicalType>, LogicalType)> {
    (0..=tail.len())
        .map(|k| {
            let mut params = vec![corr_matrix_type(), corr_matrix_type()];
            params.extend(tail[..k].iter().map(|t| t()));
            (params, result())
        })
        .collect()
}

/// Two matrices on the same keys, with the `layer_corr` method each records.
pub struct MatrixPair {
    /// `matrix_a`.
    pub a: KeyedMatrix,
    /// `matrix_b`.
    pub b: KeyedMatrix,
    /// Each matrix's `layer_corr` method, where it records one.
    pub kinds: [Option<CorrMethod>; 2],
}

/// Reads `matrix_a` and `matrix_b` at `row`: `None` when either is NULL, an
/// error when their keys differ.
///
/// # Safety
/// Both vectors are live flat matrix STRUCT vectors of `rows` rows.
pub unsafe fn read_pair(
    a_vec: ffi::duckdb_vector,
    b_vec: ffi::duckdb_vector,
    rows: usize,
    row: usize,
) -> Result<Option<MatrixPair>, String> {
    let a = read_keyed_matrix(a_vec, rows, row, "matrix_a")?;
    let b = read_keyed_matrix(b_vec, rows, row, "matrix_b")?;
    let (Some(a), Some(b)) = (a, b) else {
        return Ok(None);
    };
    check_same_keys(&a.keys, "matrix_a", &b.keys, "matrix_b")?;
    let kinds = [
        read_matrix_method(a_vec, row, "matrix_a")?,
        read_matrix_method(b_vec, row, "matrix_b")?,
    ];
    Ok(Some(MatrixPair { a, b, kinds }))
}
