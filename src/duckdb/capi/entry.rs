//! The extension's entry point, written by hand.
//!
//! duckdb-rs' `duckdb_entrypoint_c_api` macro hands over only a
//! `Connection`, but aggregates need the raw connection, and the macro does
//! not catch panics. This function initialises the C API function table
//! (minimum DuckDB version v1.5.6, matching the file footer), opens a raw
//! connection on the host database — valid only during this call —,
//! registers every function, and reports any failure through
//! `access.set_error` instead of unwinding into the host.

use libduckdb_sys as ffi;

use super::c_string;

/// Minimum C API version; must equal the footer's (see `scripts/append_footer.py`).
const MIN_DUCKDB_VERSION: &str = "v1.5.6";

unsafe fn init(
    info: ffi::duckdb_extension_info,
    access: *const ffi::duckdb_extension_access,
) -> Result<bool, String> {
    let have_api = ffi::duckdb_rs_extension_api_init(info, access, MIN_DUCKDB_VERSION)
        .map_err(str::to_string)?;
    if !have_api {
        return Ok(false);
    }
    let get_api = (*access)
        .get_api
        .ok_or("the host gave no get_api function")?;
    let version = c_string(MIN_DUCKDB_VERSION);
    let api = get_api(info, version.as_ptr());
    if api.is_null() || !super::api_guard::install(api) {
        return Err("the host's C API lacks the list and string functions".into());
    }
    let get_database = (*access)
        .get_database
        .ok_or("the host gave no get_database function")?;
    let db_ptr = get_database(info);
    if db_ptr.is_null() {
        return Ok(false);
    }
    let mut con: ffi::duckdb_connection = std::ptr::null_mut();
    if ffi::duckdb_connect(*db_ptr, &mut con) != ffi::DuckDBSuccess {
        return Err("cannot open a connection to register functions".into());
    }
    let result = crate::duckdb::register_all(con);
    // The settings in force at load time, for the aggregates (which get no
    // client context of their own).
    let mut context: ffi::duckdb_client_context = std::ptr::null_mut();
    ffi::duckdb_connection_get_client_context(con, &mut context);
    if let Ok(host) = super::host::Host::new(context) {
        let _ = host.settings();
    }
    ffi::duckdb_disconnect(&mut con);
    result.map(|_| true).map_err(String::from)
}

/// Called by DuckDB on `LOAD 'layercorr.duckdb_extension'`.
///
/// # Safety
/// `info` and `access` must be the pointers DuckDB passes to an extension
/// entry point.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn layercorr_init_c_api(
    info: ffi::duckdb_extension_info,
    access: *const ffi::duckdb_extension_access,
) -> bool {
    let outcome = std::panic::catch_unwind(|| init(info, access))
        .unwrap_or_else(|_| Err("layercorr: panic while loading the extension".into()));
    match outcome {
        Ok(loaded) => loaded,
        Err(message) => {
            if let Some(set_error) = (*access).set_error {
                let message = c_string(&format!("layercorr: {message}"));
                set_error(info, message.as_ptr());
            }
            false
        }
    }
}
