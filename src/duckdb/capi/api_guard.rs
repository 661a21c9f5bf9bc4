//! DuckDB C API calls that allocate, made so that a C++ exception cannot
//! reach Rust.
//!
//! Under a `memory_limit` DuckDB throws from inside C API functions such as
//! `duckdb_list_vector_reserve`. An exception unwinding into Rust frames
//! aborts the host process, so these calls go through a small C++ shim
//! (`csrc/api_guard.cpp`) that calls the API function pointer inside
//! `try`/`catch` and hands back the message. The pointers are taken from
//! the extension API table when the extension loads ([`install`]).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use libduckdb_sys as ffi;

type ListSizeFn = unsafe extern "C" fn(ffi::duckdb_vector, ffi::idx_t) -> ffi::duckdb_state;
type AssignFn = unsafe extern "C" fn(ffi::duckdb_vector, ffi::idx_t, *const c_char, ffi::idx_t);

unsafe extern "C" {
    fn layercorr_guarded_list_size(
        f: ListSizeFn,
        vector: ffi::duckdb_vector,
        size: ffi::idx_t,
        buffer: *mut c_char,
        capacity: usize,
    ) -> c_int;
    fn layercorr_guarded_assign(
        f: AssignFn,
        vector: ffi::duckdb_vector,
        row: ffi::idx_t,
        data: *const c_char,
        len: ffi::idx_t,
        buffer: *mut c_char,
        capacity: usize,
    ) -> c_int;
}

/// The allocating API functions, straight from DuckDB's table.
struct Functions {
    list_reserve: ListSizeFn,
    list_set_size: ListSizeFn,
    assign_string: AssignFn,
}

static FUNCTIONS: OnceLock<Functions> = OnceLock::new();

/// Takes the allocating functions from the API table `api` (what
/// `get_api` returned at load time). Returns false if one is missing.
///
/// # Safety
/// `api` must point to DuckDB's `duckdb_ext_api_v1` table.
pub unsafe fn install(api: *const c_void) -> bool {
    let api = &*(api as *const ffi::duckdb_ext_api_v1);
    let (Some(list_reserve), Some(list_set_size), Some(assign_string)) = (
        api.duckdb_list_vector_reserve,
        api.duckdb_list_vector_set_size,
        api.duckdb_vector_assign_string_element_len,
    ) else {
        return false;
    };
    let _ = FUNCTIONS.set(Functions {
        list_reserve,
        list_set_size,
        assign_string,
    });
    true
}

fn functions() -> Result<&'static Functions, String> {
    FUNCTIONS
        .get()
        .ok_or_else(|| "layercorr: the DuckDB API table was not installed".to_string())
}

const MESSAGE_CAPACITY: usize = 1024;

fn outcome(status: c_int, buffer: &[c_char; MESSAGE_CAPACITY], what: &str) -> Result<(), String> {
    match status {
        0 => Ok(()),
        1 => Err(format!("DuckDB refused to {what}")),
        _ => {
            // SAFETY: the shim always writes a NUL-terminated message here.
            let message = unsafe { CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy();
            Err(format!("DuckDB could not {what}: {}", readable(&message)))
        }
    }
}

/// Calls a list-size function (reserve or set size) through the shim.
unsafe fn list_size_call(
    f: ListSizeFn,
    vector: ffi::duckdb_vector,
    size: usize,
    what: &str,
) -> Result<(), String> {
    let mut buffer = [0 as c_char; MESSAGE_CAPACITY];
    let status = layercorr_guarded_list_size(
        f,
        vector,
        size as ffi::idx_t,
        buffer.as_mut_ptr(),
        MESSAGE_CAPACITY,
    );
    outcome(status, &buffer, what)
}

/// `duckdb_list_vector_reserve` then `duckdb_list_vector_set_size`, with
/// DuckDB's exception (e.g. the memory limit) as an error.
///
/// # Safety
/// `vector` must be a live writable LIST vector.
pub unsafe fn list_resize(vector: ffi::duckdb_vector, size: usize) -> Result<(), String> {
    let f = functions()?;
    let what = format!("grow a list vector to {size} elements");
    list_size_call(f.list_reserve, vector, size, &what)?;
    list_size_call(f.list_set_size, vector, size, &what)
}

/// `duckdb_list_vector_reserve` alone (capacity for later appends).
///
/// # Safety
/// `vector` must be a live writable LIST vector.
pub unsafe fn list_reserve(vector: ffi::duckdb_vector, capacity: usize) -> Result<(), String> {
    let what = format!("reserve {capacity} list elements");
    list_size_call(functions()?.list_reserve, vector, capacity, &what)
}

/// `duckdb_vector_assign_string_element_len`: copies `bytes` into row
/// `row` of a VARCHAR or BLOB vector.
///
/// # Safety
/// `vector` must be a live writable VARCHAR/BLOB vector with more than `row` rows.
pub unsafe fn assign_bytes(
    vector: ffi::duckdb_vector,
    row: usize,
    bytes: &[u8],
) -> Result<(), String> {
    let f = functions()?;
    let mut buffer = [0 as c_char; MESSAGE_CAPACITY];
    let status = layercorr_guarded_assign(
        f.assign_string,
        vector,
        row as ffi::idx_t,
        bytes.as_ptr() as *const c_char,
        bytes.len() as ffi::idx_t,
        buffer.as_mut_ptr(),
        MESSAGE_CAPACITY,
    );
    outcome(
        status,
        &buffer,
        &format!("store a string of {} bytes", bytes.len()),
    )
}

/// DuckDB's exceptions carry JSON (`{"exception_type":"Out of Memory",
/// "exception_message":"..."}`); this gives "Out of Memory: ..." instead,
/// or the text unchanged when it is not in that form.
fn readable(what: &str) -> String {
    let field = |name: &str| -> Option<String> {
        let start = what.find(&format!("\"{name}\":\""))? + name.len() + 4;
        let mut out = String::new();
        let mut chars = what[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        None
    };
    match (field("exception_type"), field("exception_message")) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) => message,
        _ => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn json_exceptions_become_type_and_message() {
        let what = r#"{"exception_type":"Out of Memory","exception_message":"failed to allocate 256.0 MiB\n\n* \"reduce\" threads"}"#;
        assert_eq!(
            readable(what),
            "Out of Memory: failed to allocate 256.0 MiB\n\n* \"reduce\" threads"
        );
    }

    #[test]
    fn plain_messages_stay_as_they_are() {
        assert_eq!(readable("std::bad_alloc"), "std::bad_alloc");
        assert_eq!(
            readable(r#"{"exception_message":"broken"#),
            r#"{"exception_message":"broken"#
        );
    }
}
