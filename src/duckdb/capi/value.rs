//! Owned bind-time values (table function arguments, settings) and what
//! the binding reads out of them.

use std::ffi::CStr;

use libduckdb_sys as ffi;

use super::types::{Kind, LogicalType};

/// An owned `duckdb_value`.
pub struct Value(pub(crate) ffi::duckdb_value);

impl Drop for Value {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own this value.
            unsafe { ffi::duckdb_destroy_value(&mut self.0) };
        }
    }
}

impl Value {
    /// Whether the value is missing or SQL NULL.
    pub fn is_null(&self) -> bool {
        // SAFETY: checked for a null pointer first.
        self.0.is_null() || unsafe { ffi::duckdb_is_null_value(self.0) }
    }

    /// The value's type (owned copy); `None` for a missing value.
    fn logical_type(&self) -> Option<LogicalType> {
        // SAFETY: the value is live; its type belongs to it, so we copy it.
        (!self.0.is_null()).then(|| {
            let borrowed = LogicalType(unsafe { ffi::duckdb_get_value_type(self.0) });
            let owned = borrowed.copy();
            std::mem::forget(borrowed);
            owned
        })
    }

    /// What the value is (`None` for a missing value).
    pub fn kind(&self) -> Option<Kind> {
        self.logical_type().map(|t| t.kind())
    }

    /// The value as text (any type is cast), `None` for NULL.
    pub fn as_string(&self) -> Option<String> {
        if self.is_null() {
            return None;
        }
        // SAFETY: the value is live; DuckDB returns a malloc'd C string we free.
        unsafe {
            let raw = ffi::duckdb_get_varchar(self.0);
            if raw.is_null() {
                return None;
            }
            let text = CStr::from_ptr(raw).to_string_lossy().into_owned();
            ffi::duckdb_free(raw as *mut std::ffi::c_void);
            Some(text)
        }
    }

    /// The value as a boolean, `None` for NULL.
    pub fn as_bool(&self) -> Option<bool> {
        if self.is_null() {
            return None;
        }
        // SAFETY: the value is live.
        Some(unsafe { ffi::duckdb_get_bool(self.0) })
    }

    /// The elements of a LIST value (`None` for NULL or another type).
    pub fn list_items(&self) -> Option<Vec<Value>> {
        if self.is_null() || self.kind() != Some(Kind::List) {
            return None;
        }
        // SAFETY: the value is a live LIST value; each child is owned.
        unsafe {
            let len = ffi::duckdb_get_list_size(self.0);
            Some(
                (0..len)
                    .map(|i| Value(ffi::duckdb_get_list_child(self.0, i)))
                    .collect(),
            )
        }
    }

    /// The element type of a LIST value.
    pub fn list_child_kind(&self) -> Option<Kind> {
        self.logical_type()?.list_child().map(|t| t.kind())
    }

    /// The elements of a LIST value as strings; NULL elements are `None`.
    pub fn list_strings(&self) -> Option<Vec<Option<String>>> {
        Some(self.list_items()?.iter().map(Value::as_string).collect())
    }

    /// The bytes of a BLOB value (copied), `None` for NULL or another type.
    pub fn as_blob(&self) -> Option<Vec<u8>> {
        if self.is_null() || self.kind() != Some(Kind::Blob) {
            return None;
        }
        // SAFETY: the value is a live BLOB value; DuckDB hands out a
        // malloc'd copy we copy again and free.
        unsafe {
            let blob = ffi::duckdb_get_blob(self.0);
            let bytes = if blob.data.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(blob.data as *const u8, blob.size as usize).to_vec()
            };
            ffi::duckdb_free(blob.data);
            Some(bytes)
        }
    }

    /// The fields of a STRUCT value, by name (`None` for another type).
    pub fn struct_fields(&self) -> Option<Vec<(String, Value)>> {
        let ty = self.logical_type()?;
        if self.is_null() || ty.kind() != Kind::Struct {
            return None;
        }
        let names = ty.field_names();
        Some(
            names
                .into_iter()
                .enumerate()
                // SAFETY: a live STRUCT value with a child per field name.
                .map(|(i, n)| {
                    (
                        n,
                        Value(unsafe { ffi::duckdb_get_struct_child(self.0, i as u64) }),
                    )
                })
                .collect(),
        )
    }

    /// The entries of a MAP value, keys as text (`None` for a NULL key).
    pub fn map_entries(&self) -> Option<Vec<(Option<String>, Value)>> {
        if self.is_null() || self.kind() != Some(Kind::Map) {
            return None;
        }
        // SAFETY: the value is a live MAP value; keys and values are owned.
        unsafe {
            Some(
                (0..ffi::duckdb_get_map_size(self.0))
                    .map(|i| {
                        let key = Value(ffi::duckdb_get_map_key(self.0, i)).as_string();
                        (key, Value(ffi::duckdb_get_map_value(self.0, i)))
                    })
                    .collect(),
            )
        }
    }
}
