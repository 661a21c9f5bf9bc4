//! DuckDB logical types: owned handles, the constructors the function
//! files declare their arguments with, and the Rust types that map to
//! DuckDB's fixed-width ones.

use std::ffi::{c_char, CStr, CString};

use libduckdb_sys as ffi;

use super::c_string;

/// A logical type's constructor, so that argument lists can be declared
/// once as constants.
pub type TypeFn = fn() -> LogicalType;

/// What a vector holds, as far as the binding tells types apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    Integer,
    Bigint,
    Float,
    Double,
    Varchar,
    Blob,
    List,
    Struct,
    Map,
    /// Any type the binding does not read directly (cast by DuckDB first).
    Other(ffi::DUCKDB_TYPE),
}

impl Kind {
    pub(super) fn of_id(id: ffi::DUCKDB_TYPE) -> Kind {
        match id {
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => Kind::Boolean,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => Kind::Integer,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => Kind::Bigint,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT => Kind::Float,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => Kind::Double,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => Kind::Varchar,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_BLOB => Kind::Blob,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_LIST => Kind::List,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT => Kind::Struct,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_MAP => Kind::Map,
            other => Kind::Other(other),
        }
    }
}

/// A Rust type stored unchanged in a DuckDB vector of kind [`Plain::KIND`].
pub trait Plain: Copy + 'static {
    /// The vector kind whose data is an array of `Self`.
    const KIND: Kind;
}

impl Plain for bool {
    const KIND: Kind = Kind::Boolean;
}
impl Plain for i32 {
    const KIND: Kind = Kind::Integer;
}
impl Plain for i64 {
    const KIND: Kind = Kind::Bigint;
}
impl Plain for f32 {
    const KIND: Kind = Kind::Float;
}
impl Plain for f64 {
    const KIND: Kind = Kind::Double;
}

/// A logical type we created and must destroy.
pub struct LogicalType(pub(crate) ffi::duckdb_logical_type);

impl LogicalType {
    fn of(id: ffi::DUCKDB_TYPE) -> LogicalType {
        // SAFETY: creating a primitive logical type has no preconditions.
        LogicalType(unsafe { ffi::duckdb_create_logical_type(id) })
    }
    /// `VARCHAR`.
    pub fn varchar() -> LogicalType {
        Self::of(ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR)
    }
    /// `FLOAT`.
    pub fn float() -> LogicalType {
        Self::of(ffi::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT)
    }
    /// `DOUBLE`.
    pub fn double() -> LogicalType {
        Self::of(ffi::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE)
    }
    /// `BIGINT`.
    pub fn bigint() -> LogicalType {
        Self::of(ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT)
    }
    /// `INTEGER`.
    pub fn integer() -> LogicalType {
        Self::of(ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER)
    }
    /// `BOOLEAN`.
    pub fn boolean() -> LogicalType {
        Self::of(ffi::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN)
    }
    /// `BLOB`.
    pub fn blob() -> LogicalType {
        Self::of(ffi::DUCKDB_TYPE_DUCKDB_TYPE_BLOB)
    }
    /// `ANY` (parameters that accept several types).
    pub fn any() -> LogicalType {
        Self::of(ffi::DUCKDB_TYPE_DUCKDB_TYPE_ANY)
    }
    /// `child[]`.
    pub fn list(child: &LogicalType) -> LogicalType {
        // SAFETY: `child` is a live logical type; DuckDB copies it.
        LogicalType(unsafe { ffi::duckdb_create_list_type(child.0) })
    }
    /// `MAP(key, value)`.
    pub fn map(key: &LogicalType, value: &LogicalType) -> LogicalType {
        // SAFETY: both types are live; DuckDB copies them.
        LogicalType(unsafe { ffi::duckdb_create_map_type(key.0, value.0) })
    }
    /// `STRUCT(name type, ...)`.
    pub fn structure(fields: &[(&str, &LogicalType)]) -> LogicalType {
        let names: Vec<CString> = fields.iter().map(|(n, _)| c_string(n)).collect();
        let mut name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut types: Vec<ffi::duckdb_logical_type> = fields.iter().map(|(_, t)| t.0).collect();
        // SAFETY: both arrays hold `fields.len()` live entries; DuckDB copies them.
        LogicalType(unsafe {
            ffi::duckdb_create_struct_type(
                types.as_mut_ptr(),
                name_ptrs.as_mut_ptr(),
                fields.len() as u64,
            )
        })
    }

    /// What the type is.
    pub fn kind(&self) -> Kind {
        // SAFETY: the type is live.
        Kind::of_id(unsafe { ffi::duckdb_get_type_id(self.0) })
    }

    /// The element type of a LIST (`None` for other types).
    pub fn list_child(&self) -> Option<LogicalType> {
        // SAFETY: the type is live and a LIST; DuckDB returns an owned copy.
        (self.kind() == Kind::List)
            .then(|| LogicalType(unsafe { ffi::duckdb_list_type_child_type(self.0) }))
    }

    /// Names of the fields of a STRUCT type (empty for other types).
    pub fn field_names(&self) -> Vec<String> {
        if self.kind() != Kind::Struct {
            return Vec::new();
        }
        // SAFETY: the type is a live STRUCT; child names are owned by us
        // and freed with duckdb_free.
        unsafe {
            (0..ffi::duckdb_struct_type_child_count(self.0))
                .map(|i| {
                    let name = ffi::duckdb_struct_type_child_name(self.0, i);
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

    /// An owned copy.
    pub fn copy(&self) -> LogicalType {
        // The C API has no copy function: the child type of a list of
        // `self` is a new, owned copy; the list is destroyed.
        let list = LogicalType::list(self);
        // SAFETY: `list` is a live LIST type; the child is returned owned.
        LogicalType(unsafe { ffi::duckdb_list_type_child_type(list.0) })
    }
}

impl Drop for LogicalType {
    fn drop(&mut self) {
        // SAFETY: we own this type.
        unsafe { ffi::duckdb_destroy_logical_type(&mut self.0) };
    }
}
