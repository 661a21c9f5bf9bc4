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

use std::ffi::CStr;

use layercorr_kernels::CorrMethod;
use libduckdb_sys as ffi;

use super::capi::api_guard::list_reserve;
use super::capi::old_ffi::{
    append_list, list_entries, set_list, set_str, set_str_list, str_at, str_list_at, struct_child,
    FloatLists, LogicalType, Validity,
};

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

/// Names of the fields of STRUCT type `ty` (empty for other types).
fn struct_fields(ty: ffi::duckdb_logical_type) -> Vec<String> {
    // SAFETY: `ty` is a live logical type; child names are owned by us and
    // freed with duckdb_free.
    unsafe {
        if ffi::duckdb_get_type_id(ty) != ffi::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT {
            return Vec::new();
        }
        (0..ffi::duckdb_struct_type_child_count(ty))
            .map(|i| {
                let name = ffi::duckdb_struct_type_child_name(ty, i);
                if name.is_null() {
                    return String::new();
                }
                let text = CStr::from_ptr(name).to_string_lossy().into_owned();
                ffi::duckdb_free(name as *mut std::ffi::c_void);
                text
            })
            .collect()
    }
}

fn is_matrix_type(ty: &LogicalType) -> bool {
    struct_fields(ty.0) == ["keys", "matrix", "method"]
}

/// Every signature once more for each combination of the legacy matrix
/// type in the positions of [`corr_matrix_type`] parameters, so that
/// stored matrices of both forms bind.
pub fn with_legacy_overloads(
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
                    _ => copy_type(p),
                })
                .collect();
            out.push((variant, copy_type(&ret)));
        }
        out.push((params, ret));
    }
    out
}

/// An owned copy of a logical type.
fn copy_type(ty: &LogicalType) -> LogicalType {
    // SAFETY: `ty` is live. The C API has no copy function: the child type
    // of a list of `ty` is a new, owned copy; the list is destroyed.
    unsafe {
        let list = ffi::duckdb_create_list_type(ty.0);
        let child = ffi::duckdb_list_type_child_type(list);
        let mut list = list;
        ffi::duckdb_destroy_logical_type(&mut list);
        LogicalType(child)
    }
}

/// The `layer_corr` method recorded in the matrix at `row`: `None` for a
/// legacy matrix (no `method` field) or a NULL method.
///
/// # Safety
/// `vector` must be a live flat STRUCT vector with more than `row` rows.
pub unsafe fn read_matrix_method(
    vector: ffi::duckdb_vector,
    row: usize,
    what: &str,
) -> Result<Option<CorrMethod>, String> {
    let mut ty = ffi::duckdb_vector_get_column_type(vector);
    let fields = struct_fields(ty);
    ffi::duckdb_destroy_logical_type(&mut ty);
    let Some(index) = fields.iter().position(|f| f == "method") else {
        return Ok(None);
    };
    let child = struct_child(vector, index);
    if !Validity::of(child).is_valid(row) {
        return Ok(None);
    }
    let text = str_at(child, row);
    text.parse::<CorrMethod>()
        .map(Some)
        .map_err(|e| format!("{what}: method field: {e}"))
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

/// Reads the L x L similarity at `row` of a flat vector of
/// `similarity_type()`; `Ok(None)` for NULL.
///
/// # Safety
/// `vector` must be a live flat vector of `similarity_type()`.
pub unsafe fn read_similarity(
    vector: ffi::duckdb_vector,
    rows: usize,
    row: usize,
) -> Result<Option<LayerMatrix>, String> {
    if !Validity::of(vector).is_valid(row) {
        return Ok(None);
    }
    let layers = str_list_at(struct_child(vector, 0), rows, row)?.ok_or("layers are NULL")?;
    let matrix_vec = struct_child(vector, 1);
    let outer = list_entries(matrix_vec, rows)[row];
    let l = layers.len();
    if outer.length as usize != l {
        return Err(format!("matrix has {} rows for {l} layers", outer.length));
    }
    let inner = ffi::duckdb_list_vector_get_child(matrix_vec);
    let inner_rows = ffi::duckdb_list_vector_get_size(matrix_vec) as usize;
    let entries = list_entries(inner, inner_rows);
    let data = ffi::duckdb_vector_get_data(ffi::duckdb_list_vector_get_child(inner)) as *const f64;
    let mut values = Vec::with_capacity(l * l);
    for i in 0..l {
        let e = entries[outer.offset as usize + i];
        if e.length as usize != l {
            return Err(format!(
                "matrix row {} has {} values, expected {l}",
                i + 1,
                e.length
            ));
        }
        values.extend_from_slice(std::slice::from_raw_parts(data.add(e.offset as usize), l));
    }
    Ok(Some((layers, values)))
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
}

/// Reads the keyed matrix at `row` of a flat STRUCT vector of `rows` rows;
/// `Ok(None)` for NULL. `what` names the argument in errors.
///
/// # Safety
/// `vector` must be a live flat vector of `corr_matrix_type()`.
pub unsafe fn read_keyed_matrix(
    vector: ffi::duckdb_vector,
    rows: usize,
    row: usize,
    what: &str,
) -> Result<Option<KeyedMatrix>, String> {
    if !Validity::of(vector).is_valid(row) {
        return Ok(None);
    }
    let keys_vec = struct_child(vector, 0);
    let matrix_vec = struct_child(vector, 1);
    let keys = str_list_at(keys_vec, rows, row)
        .map_err(|e| format!("{what}: keys: {e}"))?
        .ok_or_else(|| format!("{what}: keys are NULL"))?;
    if !Validity::of(matrix_vec).is_valid(row) {
        return Err(format!("{what}: matrix is NULL"));
    }
    let outer = list_entries(matrix_vec, rows)[row];
    let n = keys.len();
    if outer.length as usize != n {
        return Err(format!(
            "{what}: matrix has {} rows for {n} keys",
            outer.length
        ));
    }
    let inner_vec = ffi::duckdb_list_vector_get_child(matrix_vec);
    let inner_rows = ffi::duckdb_list_vector_get_size(matrix_vec) as usize;
    let inner = FloatLists::new(inner_vec, inner_rows);
    let mut values = Vec::with_capacity(n * n);
    for i in 0..n {
        let r = inner
            .get(outer.offset as usize + i)
            .map_err(|e| format!("{what}: matrix row {}: {e}", i + 1))?
            .ok_or_else(|| format!("{what}: matrix row {} is NULL", i + 1))?;
        if r.len() != n {
            return Err(format!(
                "{what}: matrix row {} has {} values, expected {n}",
                i + 1,
                r.len()
            ));
        }
        values.extend_from_slice(r);
    }
    Ok(Some(KeyedMatrix { keys, values }))
}

/// Writes a keyed matrix at `row` of a STRUCT output vector.
///
/// # Safety
/// `vector` must be a live writable vector of `corr_matrix_type()`.
pub unsafe fn write_keyed_matrix(
    vector: ffi::duckdb_vector,
    row: usize,
    keys: &[String],
    values: &[f32],
    method: CorrMethod,
) -> Result<(), String> {
    let n = keys.len();
    let write = || -> Result<(), String> {
        set_str(struct_child(vector, 2), row, method.name())?;
        set_str_list(struct_child(vector, 0), row, keys)?;
        let (rows_vec, offset) = append_list(struct_child(vector, 1), row, n)?;
        let total = ffi::duckdb_list_vector_get_size(rows_vec) as usize + n * n;
        list_reserve(rows_vec, total)?;
        for i in 0..n {
            set_list(rows_vec, offset + i, &values[i * n..(i + 1) * n])?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let mb = (n * n * 4) as f64 / (1 << 20) as f64;
        format!("cannot hand the {n} x {n} matrix ({mb:.0} MB) to DuckDB: {e}")
    })
}

/// Checks that two matrices are on the same keys, naming the first
/// difference.
pub fn check_same_keys(
    a: &[String],
    a_name: &str,
    b: &[String],
    b_name: &str,
) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!(
            "{a_name} has {} keys but {b_name} has {}; matrices must be on the same keys",
            a.len(),
            b.len()
        ));
    }
    if let Some(i) = (0..a.len()).find(|i| a[*i] != b[*i]) {
        return Err(format!(
            "{a_name} and {b_name} are on different keys: key {} is '{}' in {a_name} but '{}' in {b_name}",
            i + 1,
            a[i],
            b[i]
        ));
    }
    Ok(())
}
