//! The per-query preprocessing override: the `preprocess` argument of
//! `nn_activations` (named in the table form, a `MAP(VARCHAR, VARCHAR)`
//! argument in the scalar form) and of `nn_model`.
//!
//! It takes the `layercorr.*` preprocessing keys without the prefix, as a
//! STRUCT (`{'resize': 'letterbox', 'pad_value': 114}`) or a MAP
//! (`MAP {'resize': 'letterbox'}`); values may be text or numbers, and a
//! list such as `[123.7, 116.3, 103.5]` stands for `'123.7,116.3,103.5'`.
//! Keys are checked here (unknown or repeated: an error naming the key and
//! listing the valid ones); values when the model is prepared.

use std::ffi::CStr;

use libduckdb_sys as ffi;

use super::ffi::{list_entries, str_at, struct_child, LogicalType, Validity, Value};
use layercorr_engine::model::Overrides;

/// `MAP(VARCHAR, VARCHAR)`, the scalar form's override argument.
pub fn map_type() -> LogicalType {
    let varchar = LogicalType::varchar();
    // SAFETY: both types are live; DuckDB copies them into the new type.
    LogicalType(unsafe { ffi::duckdb_create_map_type(varchar.0, varchar.0) })
}

/// A value as override text: lists become comma-separated values.
fn value_text(key: &str, value: &Value) -> Result<String, String> {
    if let Some(items) = value.list_strings() {
        let items: Option<Vec<String>> = items.into_iter().collect();
        return items
            .map(|v| v.join(","))
            .ok_or_else(|| format!("preprocess value of '{key}' has a NULL element"));
    }
    value
        .as_string()
        .ok_or_else(|| format!("preprocess value of '{key}' is NULL"))
}

/// The overrides of a bind-time `preprocess` value (STRUCT or MAP); no
/// value means none.
pub fn overrides_from_value(value: Option<Value>) -> Result<Overrides, String> {
    let Some(value) = value else {
        return Ok(Overrides::none());
    };
    if value.is_null() {
        return Err("preprocess is NULL".into());
    }
    let mut pairs = Vec::new();
    match value.type_id() {
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT => {
            // SAFETY: the value is a live STRUCT value; its type belongs to it.
            unsafe {
                let ty = ffi::duckdb_get_value_type(value.0);
                for i in 0..ffi::duckdb_struct_type_child_count(ty) {
                    let raw = ffi::duckdb_struct_type_child_name(ty, i);
                    if raw.is_null() {
                        return Err("preprocess has an unnamed field".into());
                    }
                    let key = CStr::from_ptr(raw).to_string_lossy().into_owned();
                    ffi::duckdb_free(raw as *mut std::ffi::c_void);
                    let child = Value(ffi::duckdb_get_struct_child(value.0, i));
                    pairs.push((key.clone(), value_text(&key, &child)?));
                }
            }
        }
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_MAP => {
            // SAFETY: the value is a live MAP value.
            unsafe {
                for i in 0..ffi::duckdb_get_map_size(value.0) {
                    let key = Value(ffi::duckdb_get_map_key(value.0, i))
                        .as_string()
                        .ok_or("preprocess has a NULL key")?;
                    let child = Value(ffi::duckdb_get_map_value(value.0, i));
                    pairs.push((key.clone(), value_text(&key, &child)?));
                }
            }
        }
        _ => {
            return Err(
                "preprocess must be a STRUCT or a MAP of preprocessing keys, e.g. {'resize': 'letterbox'}"
                    .into(),
            )
        }
    }
    Overrides::new(pairs).map_err(|e| e.to_string())
}

/// The overrides in row `row` of a flat `MAP(VARCHAR, VARCHAR)` vector of
/// `rows` rows; a NULL map means none.
///
/// # Safety
/// `vector` must be a live flat `MAP(VARCHAR, VARCHAR)` vector.
pub unsafe fn overrides_at(
    vector: ffi::duckdb_vector,
    rows: usize,
    row: usize,
) -> Result<Overrides, String> {
    if !Validity::of(vector).is_valid(row) {
        return Ok(Overrides::none());
    }
    let entry = list_entries(vector, rows)[row];
    let entries = ffi::duckdb_list_vector_get_child(vector);
    let (keys, values) = (struct_child(entries, 0), struct_child(entries, 1));
    let values_ok = Validity::of(values);
    let mut pairs = Vec::with_capacity(entry.length as usize);
    for i in entry.offset as usize..(entry.offset + entry.length) as usize {
        let key = str_at(keys, i).into_owned();
        if !values_ok.is_valid(i) {
            return Err(format!("preprocess value of '{key}' is NULL"));
        }
        pairs.push((key, str_at(values, i).into_owned()));
    }
    Overrides::new(pairs).map_err(|e| e.to_string())
}
