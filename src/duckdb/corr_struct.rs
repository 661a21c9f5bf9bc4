//! The value `layer_corr` returns and the other functions take:
//! `STRUCT(keys VARCHAR[], matrix FLOAT[][], method VARCHAR)`, keys sorted
//! ascending, `matrix[i][j]` for `keys[i]`, `keys[j]`, `method` the
//! `layer_corr` method that made it (so that a comparison given the wrong
//! kind of matrix is an error). Matrices stored before the method was
//! recorded, `STRUCT(keys VARCHAR[], matrix FLOAT[][])`, are read too:
//! DuckDB does not cast between STRUCTs of different fields implicitly, so
//! every reader registers both forms ([`with_legacy_overloads`]); their
//! kind is unknown and not checked.
//!
//! Reading and writing it lives here once, for `layer_corr` (writes),
//! `layer_similarity`, `rsa`, the resampling functions, `corr_order` and
//! the heatmaps (read); so does the L x L value of `layer_similarity`,
//! `STRUCT(layers VARCHAR[], matrix DOUBLE[][])`, written by the
//! similarity aggregates and read by `similarity_heatmap`.

use layercorr_kernels::CorrMethod;

use super::capi::{
    trailing_optional, Column, Lists, LogicalType, Output, Plain, Strings, TypeFn, Values,
};
use super::error::{ArgumentContext, Error, Result};

/// `VARCHAR[]`: a list of keys (a key order).
pub fn key_list_type() -> LogicalType {
    LogicalType::list(&LogicalType::varchar())
}

/// `STRUCT(keys VARCHAR[], matrix FLOAT[][], method VARCHAR)`.
pub fn corr_matrix_type() -> LogicalType {
    let keys = LogicalType::list(&LogicalType::varchar());
    let rows = LogicalType::list(&LogicalType::list(&LogicalType::float()));
    let method = LogicalType::varchar();
    LogicalType::structure(&[("keys", &keys), ("matrix", &rows), ("method", &method)])
}

/// `STRUCT(keys VARCHAR[], matrix FLOAT[][])`: matrices stored before
/// `layer_corr` recorded its method.
pub fn legacy_corr_matrix_type() -> LogicalType {
    let keys = LogicalType::list(&LogicalType::varchar());
    let rows = LogicalType::list(&LogicalType::list(&LogicalType::float()));
    LogicalType::structure(&[("keys", &keys), ("matrix", &rows)])
}

fn is_matrix_type(ty: &LogicalType) -> bool {
    ty.field_names() == ["keys", "matrix", "method"]
}

/// The overloads of a function that takes matrices: `fixed`, then each
/// prefix of `optional` (see [`trailing_optional`]), each also with the
/// legacy matrix type in any of its matrix positions.
pub fn matrix_overloads(
    fixed: &[TypeFn],
    optional: &[TypeFn],
    result: TypeFn,
) -> Vec<(Vec<LogicalType>, LogicalType)> {
    with_legacy_overloads(trailing_optional(fixed, optional, result))
}

/// Every signature once more for each combination of the legacy matrix
/// type in the positions of [`corr_matrix_type`] parameters, so that
/// stored matrices of both forms bind.
fn with_legacy_overloads(
    signatures: Vec<(Vec<LogicalType>, LogicalType)>,
) -> Vec<(Vec<LogicalType>, LogicalType)> {
    let mut out = Vec::new();
    for (params, ret) in signatures {
        let slots: Vec<usize> = (0..params.len())
            .filter(|&i| is_matrix_type(&params[i]))
            .collect();
        for mask in 1..(1usize << slots.len()) {
            let variant = params
                .iter()
                .enumerate()
                .map(|(i, p)| match slots.iter().position(|&s| s == i) {
                    Some(bit) if mask & (1 << bit) != 0 => legacy_corr_matrix_type(),
                    _ => p.copy(),
                })
                .collect();
            out.push((variant, ret.copy()));
        }
        out.push((params, ret));
    }
    out
}

/// `STRUCT(layers VARCHAR[], matrix DOUBLE[][])`, what `layer_similarity`
/// returns and `similarity_heatmap` takes.
pub fn similarity_type() -> LogicalType {
    let layers = LogicalType::list(&LogicalType::varchar());
    let rows = LogicalType::list(&LogicalType::list(&LogicalType::double()));
    LogicalType::structure(&[("layers", &layers), ("matrix", &rows)])
}

/// Layer names and the row-major L x L values.
pub type LayerMatrix = (Vec<String>, Vec<f64>);

/// A column of `similarity_type()`, its parts resolved once per chunk.
pub struct SimilarityColumn<'a> {
    column: Column<'a>,
    layers: Lists<'a>,
    matrix: SquareColumn<'a, f64>,
}

impl<'a> SimilarityColumn<'a> {
    /// Resolves the fields of `column`.
    pub fn of(column: Column<'a>) -> Result<SimilarityColumn<'a>> {
        let fields = column.fields()?;
        let [layers, matrix, ..] = fields.as_slice() else {
            return Err(Error::internal("a similarity STRUCT without two fields"));
        };
        Ok(SimilarityColumn {
            column,
            layers: layers.lists()?,
            matrix: SquareColumn::of(matrix)?,
        })
    }

    /// The L x L similarity at `row`; `Ok(None)` for NULL.
    pub fn read(&self, row: usize) -> Result<Option<LayerMatrix>> {
        if !self.column.is_valid(row) {
            return Ok(None);
        }
        let layers = self
            .layers
            .strings_at(row)?
            .ok_or_else(|| Error::invalid("layers are NULL"))?;
        let values = self
            .matrix
            .read(row, layers.len(), "layers")?
            .ok_or_else(|| Error::invalid("matrix is NULL"))?;
        Ok(Some((layers, values)))
    }
}

/// A `T[][]` column of square matrices, its lists resolved once.
struct SquareColumn<'a, T> {
    outer: Lists<'a>,
    inner: Lists<'a>,
    values: Values<'a, T>,
}

impl<'a, T: Plain> SquareColumn<'a, T> {
    fn of(column: &Column<'a>) -> Result<SquareColumn<'a, T>> {
        let outer = column.lists()?;
        let inner = outer.child.lists()?;
        let values = inner.child.values::<T>()?;
        Ok(SquareColumn {
            outer,
            inner,
            values,
        })
    }

    /// The `n` x `n` values at `row`, row-major; `None` for NULL; errors
    /// name a row of the wrong length or a NULL (`per` says what the rows
    /// stand for).
    fn read(&self, row: usize, n: usize, per: &str) -> Result<Option<Vec<T>>> {
        let Some(rows) = self.outer.range(row)? else {
            return Ok(None);
        };
        if rows.len() != n {
            return Err(Error::invalid(format!(
                "matrix has {} rows for {n} {per}",
                rows.len()
            )));
        }
        let mut out = Vec::with_capacity(n.saturating_mul(n));
        for (i, r) in rows.enumerate() {
            let range = self
                .inner
                .range(r)?
                .ok_or_else(|| Error::invalid(format!("matrix row {} is NULL", i + 1)))?;
            if range.len() != n {
                return Err(Error::invalid(format!(
                    "matrix row {} has {} values, expected {n}",
                    i + 1,
                    range.len()
                )));
            }
            let start = range.start;
            let slice = self.values.slice(range).map_err(|bad| {
                Error::invalid(format!(
                    "matrix row {}: element {} of the list is NULL",
                    i + 1,
                    bad - start + 1
                ))
            })?;
            out.extend_from_slice(slice);
        }
        Ok(Some(out))
    }
}

/// Writes `layers` and one or more L x L matrices (row-major) at `row` of
/// a `similarity_type()` output, or of a STRUCT that continues it with
/// more matrices (`layer_similarity_ci`'s `ci_low`, `ci_high`).
pub fn write_similarity(
    output: &mut Output,
    row: usize,
    layers: &[String],
    matrices: &[&[f64]],
) -> Result<()> {
    let mut fields = output.fields()?;
    let Some((layers_out, rest)) = fields.split_first_mut() else {
        return Err(Error::internal("a similarity STRUCT without fields"));
    };
    layers_out.set_str_list(row, layers)?;
    for (out, values) in rest.iter_mut().zip(matrices) {
        write_rows(out, row, layers.len(), values)?;
    }
    Ok(())
}

/// A keyed square matrix read from or written to DuckDB.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedMatrix {
    /// Row/column keys.
    pub keys: Vec<String>,
    /// `n * n` values, row-major.
    pub values: Vec<f32>,
}

impl KeyedMatrix {
    /// Number of keys (rows).
    pub fn n(&self) -> usize {
        self.keys.len()
    }

    /// Bytes the matrix holds: its values and its keys.
    pub fn bytes(&self) -> u64 {
        let keys: usize = self
            .keys
            .iter()
            .map(|k| k.len() + std::mem::size_of::<String>())
            .sum();
        (self.values.len() * std::mem::size_of::<f32>() + keys) as u64
    }
}

/// A column of `corr_matrix_type()` (or the legacy form without
/// `method`), its parts resolved once per chunk.
pub struct MatrixColumn<'a> {
    column: Column<'a>,
    keys: Lists<'a>,
    matrix: SquareColumn<'a, f32>,
    method: Option<Strings<'a>>,
}

impl<'a> MatrixColumn<'a> {
    /// Resolves the fields of `column`.
    pub fn of(column: Column<'a>) -> Result<MatrixColumn<'a>> {
        let fields = column.named_fields()?;
        let [(_, keys), (_, matrix), ..] = fields.as_slice() else {
            return Err(Error::internal("a matrix STRUCT without keys and matrix"));
        };
        let method = fields
            .iter()
            .find(|(name, _)| name == "method")
            .map(|(_, c)| c.strings())
            .transpose()?;
        Ok(MatrixColumn {
            column,
            keys: keys.lists()?,
            matrix: SquareColumn::of(matrix)?,
            method,
        })
    }

    /// The keyed matrix at `row`; `Ok(None)` for NULL. `what` names the
    /// argument in errors.
    pub fn read(&self, row: usize, what: &str) -> Result<Option<KeyedMatrix>> {
        if !self.column.is_valid(row) {
            return Ok(None);
        }
        let read = || -> Result<KeyedMatrix> {
            let keys = self
                .keys
                .strings_at(row)
                .of_argument("keys")?
                .ok_or_else(|| Error::invalid("keys are NULL"))?;
            let values = self
                .matrix
                .read(row, keys.len(), "keys")?
                .ok_or_else(|| Error::invalid("matrix is NULL"))?;
            Ok(KeyedMatrix { keys, values })
        };
        read().map(Some).of_argument(what)
    }

    /// The `layer_corr` method recorded in the matrix at `row`: `None` for
    /// a legacy matrix (no `method` field) or a NULL method.
    pub fn method(&self, row: usize, what: &str) -> Result<Option<CorrMethod>> {
        let Some(text) = self.method.and_then(|m| m.text(row)) else {
            return Ok(None);
        };
        text.parse::<CorrMethod>()
            .map(Some)
            .map_err(|e| Error::invalid(format!("method field: {e}")))
            .of_argument(what)
    }
}

/// Writes a keyed matrix at `row` of an output of `corr_matrix_type()`.
pub fn write_keyed_matrix(
    output: &mut Output,
    row: usize,
    keys: &[String],
    values: &[f32],
    method: CorrMethod,
) -> Result<()> {
    let n = keys.len();
    let mut write = || -> Result<()> {
        let mut fields = output.fields()?;
        let [keys_out, matrix_out, method_out] = fields.as_mut_slice() else {
            return Err(Error::internal("a matrix STRUCT without three fields"));
        };
        method_out.set_str(row, method.name())?;
        keys_out.set_str_list(row, keys)?;
        write_rows(matrix_out, row, n, values)
    };
    write().map_err(|e| {
        let mb = (n * n * 4) as f64 / (1 << 20) as f64;
        Error::Host(format!(
            "cannot hand the {n} x {n} matrix ({mb:.0} MB) to DuckDB: {e}"
        ))
    })
}

/// Writes `r * c` row-major `values` as the `T[][]` list at `row`
/// (`r` rows of `c`), reserving the room for all of them first.
pub fn write_rows<T: Plain>(output: &mut Output, row: usize, r: usize, values: &[T]) -> Result<()> {
    let c = values.len().checked_div(r).unwrap_or(0);
    let (mut rows_out, offset) = output.append_list(row, r)?;
    let total = rows_out.list_len()?.saturating_add(values.len());
    rows_out.reserve_list(total)?;
    for i in 0..r {
        rows_out.set_list(offset + i, &values[i * c..(i + 1) * c])?;
    }
    Ok(())
}

/// Checks that two matrices are on the same keys, naming the first
/// difference.
pub fn check_same_keys(a: &[String], a_name: &str, b: &[String], b_name: &str) -> Result<()> {
    if a.len() != b.len() {
        return Err(Error::invalid(format!(
            "{a_name} has {} keys but {b_name} has {}; matrices must be on the same keys",
            a.len(),
            b.len()
        )));
    }
    if let Some(i) = (0..a.len()).find(|i| a[*i] != b[*i]) {
        return Err(Error::invalid(format!(
            "{a_name} and {b_name} are on different keys: key {} is '{}' in {a_name} but '{}' in {b_name}",
            i + 1,
            a[i],
            b[i]
        )));
    }
    Ok(())
}
