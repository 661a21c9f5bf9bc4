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

use layercorr_kernels::{compare::similarity_matrix_of, CompareMethod, CorrMethod};
use libduckdb_sys as ffi;

use super::capi::old_ffi::{
    chunk_len, column, column_count, set_null, set_value, LogicalType, TypeFn,
};
use super::capi::raw_register::{trailing_optional, CallContext, ScalarFunction};
use super::corr_struct::{
    check_same_keys, corr_matrix_type, read_keyed_matrix, read_matrix_method, KeyedMatrix,
};
use super::layer_similarity::name_matrix;
use super::method_arg::method_at;

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
        for_each_pair(
            input,
            output,
            |_| Ok(()),
            |row, method, (), MatrixPair { a, b, kinds }| {
                let value = similarity_matrix_of(&[&a.values, &b.values], &kinds, a.n(), method)
                    .map_err(|e| name_matrix(e, &pair_names()))?
                    .get(0, 1);
                set_value(output, row, value);
                Ok(())
            },
        )
    }
}

/// The names of `rsa`'s two matrices, for errors.
pub fn pair_names() -> [String; 2] {
    PAIR.map(String::from)
}

/// Overloads of a function of two matrices: `(matrix_a, matrix_b)` then one
/// more optional trailing argument of `tail` at a time, all returning
/// `result()`.
pub fn pair_signatures(tail: &[TypeFn], result: TypeFn) -> Vec<(Vec<LogicalType>, LogicalType)> {
    trailing_optional(&[corr_matrix_type, corr_matrix_type], tail, result)
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

/// The argument names of a function of two matrices.
const PAIR: [&str; 2] = ["matrix_a", "matrix_b"];

/// Matrices read from one row, and each one's recorded `layer_corr` method.
pub type Matrices = (Vec<KeyedMatrix>, Vec<Option<CorrMethod>>);

/// Reads the matrices of `vecs` (argument names `names`) at `row`: `None`
/// when any is NULL, an error when the keys of one differ from the first's;
/// then each one's recorded `layer_corr` method.
///
/// # Safety
/// Every vector is a live flat matrix STRUCT vector of `rows` rows.
pub unsafe fn read_matrices(
    vecs: &[ffi::duckdb_vector],
    names: &[&str],
    rows: usize,
    row: usize,
) -> Result<Option<Matrices>, String> {
    let mut mats = Vec::with_capacity(vecs.len());
    for (&v, name) in vecs.iter().zip(names) {
        mats.push(read_keyed_matrix(v, rows, row, name)?);
    }
    let Some(mats) = mats.into_iter().collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    for (m, name) in mats.iter().zip(names).skip(1) {
        check_same_keys(&mats[0].keys, names[0], &m.keys, name)?;
    }
    let kinds = vecs
        .iter()
        .zip(names)
        .map(|(&v, name)| read_matrix_method(v, row, name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((mats, kinds)))
}

/// The row loop of a scalar function whose first `names.len()` arguments
/// are matrices and whose next is the optional method (default pearson):
/// per row, reads the method, then `args(row)` (the further arguments,
/// checked even where a matrix is NULL), then the matrices; a NULL matrix
/// gives a NULL result, otherwise `f(row, method, args, matrices, kinds)`
/// writes it.
///
/// # Safety
/// `input` is a live chunk of those columns, `output` the result vector.
pub unsafe fn for_each_row<T>(
    input: ffi::duckdb_data_chunk,
    output: ffi::duckdb_vector,
    names: &[&str],
    mut args: impl FnMut(usize) -> Result<T, String>,
    mut f: impl FnMut(
        usize,
        CompareMethod,
        T,
        Vec<KeyedMatrix>,
        Vec<Option<CorrMethod>>,
    ) -> Result<(), String>,
) -> Result<(), String> {
    let rows = chunk_len(input);
    let k = names.len();
    let vecs: Vec<ffi::duckdb_vector> = (0..k).map(|i| column(input, i)).collect();
    let method_vec = (column_count(input) > k).then(|| column(input, k));
    let mut last_method = None;
    for row in 0..rows {
        let method = method_at(method_vec, row, CompareMethod::Pearson, &mut last_method)?;
        let extra = args(row)?;
        let Some((mats, kinds)) = read_matrices(&vecs, names, rows, row)? else {
            set_null(output, row);
            continue;
        };
        f(row, method, extra, mats, kinds)?;
    }
    Ok(())
}

/// [`for_each_row`] for `(matrix_a, matrix_b [, method, ...])`.
///
/// # Safety
/// See [`for_each_row`].
pub unsafe fn for_each_pair<T>(
    input: ffi::duckdb_data_chunk,
    output: ffi::duckdb_vector,
    args: impl FnMut(usize) -> Result<T, String>,
    mut f: impl FnMut(usize, CompareMethod, T, MatrixPair) -> Result<(), String>,
) -> Result<(), String> {
    for_each_row(
        input,
        output,
        &PAIR,
        args,
        |row, method, extra, mut mats, kinds| {
            let (b, a) = (mats.pop(), mats.pop());
            let (Some(a), Some(b)) = (a, b) else {
                return Err("expected two matrices".into());
            };
            let kinds = [kinds[0], kinds[1]];
            f(row, method, extra, MatrixPair { a, b, kinds })
        },
    )
}
