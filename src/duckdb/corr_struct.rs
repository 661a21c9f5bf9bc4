//! The value `layer_corr` returns and the other functions take:
//! `STRUCT(keys VARCHAR[], matrix FLOAT[][])`, keys sorted ascending,
//! `matrix[i][j]` for `keys[i]`, `keys[j]`.
//!
//! Reading and writing it lives here once, for `layer_corr` (writes),
//! `layer_similarity`, `rsa`, `corr_order` and the heatmaps (read).

use ::duckdb::ffi;

use super::api_guard::list_reserve;
use super::ffi::{
    append_list, list_entries, set_list, set_str_list, str_list_at, struct_child, FloatLists,
    LogicalType, Validity,
};

/// `STRUCT(keys VARCHAR[], matrix FLOAT[][])`.
pub fn corr_matrix_type() -> LogicalType {
    let keys = LogicalType::list(&LogicalType::varchar());
    let rows = LogicalType::list(&LogicalType::list(&LogicalType::float()));
    LogicalType::structure(&[("keys", &keys), ("matrix", &rows)])
}

/// `STRUCT(layers VARCHAR[], matrix DOUBLE[][])`, what `layer_similarity`
/// returns and `similarity_heatmap` takes.
pub fn similarity_type() -> LogicalType {
    let layers = LogicalType::list(&LogicalType::varchar());
    let rows = LogicalType::list(&LogicalType::list(&LogicalType::double()));
    LogicalType::structure(&[("layers", &layers), ("matrix", &rows)])
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
) -> Result<(), String> {
    let n = keys.len();
    let write = || -> Result<(), String> {
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
