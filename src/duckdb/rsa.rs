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

use super::capi::{CallContext, Chunk, LogicalType, Output, ScalarFunction, TypeFn};
use super::corr_struct::{
    check_same_keys, corr_matrix_type, matrix_overloads, KeyedMatrix, MatrixColumn,
};
use super::error::{Error, Result};
use super::method_arg::method_at;

/// The `rsa` scalar function.
pub struct Rsa;

impl ScalarFunction for Rsa {
    const NAME: &'static str = "rsa";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        pair_signatures(&[LogicalType::varchar], LogicalType::double)
    }

    fn invoke(input: &Chunk, output: &mut Output, _ctx: &CallContext) -> Result<()> {
        for_each_pair(
            input,
            output,
            |_| Ok(()),
            |output, row, method, (), MatrixPair { a, b, kinds }| {
                let value = similarity_matrix_of(&[&a.values, &b.values], &kinds, a.n(), method)
                    .map_err(|e| Error::at_matrix(e, &pair_names()))?
                    .get(0, 1);
                output.set_value(row, value)
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
    matrix_overloads(&[corr_matrix_type, corr_matrix_type], tail, result)
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

/// Reads the matrices of `columns` (argument names `names`) at `row`:
/// `None` when any is NULL, an error when the keys of one differ from the
/// first's; then each one's recorded `layer_corr` method.
pub fn read_matrices(
    columns: &[MatrixColumn],
    names: &[&str],
    row: usize,
) -> Result<Option<Matrices>> {
    let mut mats = Vec::with_capacity(columns.len());
    for (column, name) in columns.iter().zip(names) {
        mats.push(column.read(row, name)?);
    }
    let Some(mats) = mats.into_iter().collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    for (m, name) in mats.iter().zip(names).skip(1) {
        check_same_keys(&mats[0].keys, names[0], &m.keys, name)?;
    }
    let kinds = columns
        .iter()
        .zip(names)
        .map(|(column, name)| column.method(row, name))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((mats, kinds)))
}

/// The row loop of a scalar function whose first `names.len()` arguments
/// are matrices and whose next is the optional method (default pearson):
/// per row, reads the method, then `args(row)` (the further arguments,
/// checked even where a matrix is NULL), then the matrices; a NULL matrix
/// gives a NULL result, otherwise `f(output, row, method, args, matrices,
/// kinds)` writes it.
pub fn for_each_row<T>(
    input: &Chunk,
    output: &mut Output,
    names: &[&str],
    mut args: impl FnMut(usize) -> Result<T>,
    mut f: impl FnMut(
        &mut Output,
        usize,
        CompareMethod,
        T,
        Vec<KeyedMatrix>,
        Vec<Option<CorrMethod>>,
    ) -> Result<()>,
) -> Result<()> {
    let k = names.len();
    let columns = (0..k)
        .map(|i| MatrixColumn::of(input.column(i)?))
        .collect::<Result<Vec<_>>>()?;
    let methods = input.optional(k).map(|c| c.strings()).transpose()?;
    let mut last_method = None;
    for row in 0..input.rows() {
        let method = method_at(
            methods.as_ref(),
            row,
            CompareMethod::Pearson,
            &mut last_method,
        )?;
        let extra = args(row)?;
        let Some((mats, kinds)) = read_matrices(&columns, names, row)? else {
            output.set_null(row)?;
            continue;
        };
        f(output, row, method, extra, mats, kinds)?;
    }
    Ok(())
}

/// [`for_each_row`] for `(matrix_a, matrix_b [, method, ...])`.
pub fn for_each_pair<T>(
    input: &Chunk,
    output: &mut Output,
    args: impl FnMut(usize) -> Result<T>,
    mut f: impl FnMut(&mut Output, usize, CompareMethod, T, MatrixPair) -> Result<()>,
) -> Result<()> {
    for_each_row(
        input,
        output,
        &PAIR,
        args,
        |output, row, method, extra, mut mats, kinds| {
            let (b, a) = (mats.pop(), mats.pop());
            let (Some(a), Some(b)) = (a, b) else {
                return Err(Error::internal("expected two matrices"));
            };
            let kinds = [kinds[0], kinds[1]];
            f(output, row, method, extra, MatrixPair { a, b, kinds })
        },
    )
}
