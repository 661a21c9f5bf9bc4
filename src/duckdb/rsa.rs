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
use layercorr_kernels::{compare::similarity_matrix_of, CompareMethod};

use super::corr_struct::{
    check_same_keys, corr_matrix_type, read_keyed_matrix, read_matrix_method,
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
        vec![
            (
                vec![corr_matrix_type(), corr_matrix_type()],
                LogicalType::double(),
            ),
            (
                vec![
                    corr_matrix_type(),
                    corr_matrix_type(),
                    LogicalType::varchar(),
                ],
                LogicalType::double(),
            ),
        ]
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
            let a = read_keyed_matrix(a_vec, rows, row, "matrix_a")?;
            let b = read_keyed_matrix(b_vec, rows, row, "matrix_b")?;
            let (Some(a), Some(b)) = (a, b) else {
                set_null(output, row);
                continue;
            };
            check_same_keys(&a.keys, "matrix_a", &b.keys, "matrix_b")?;
            let kinds = [
                read_matrix_method(a_vec, row, "matrix_a")?,
                read_matrix_method(b_vec, row, "matrix_b")?,
            ];
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
