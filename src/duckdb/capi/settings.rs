//! The extension's own `SET` options, registered with DuckDB so that `SET`,
//! `RESET` and `current_setting()` know them:
//!
//! - `layercorr_spill_mb` (default `256`, or `$LAYERCORR_SPILL_MB`):
//!   megabytes of rows one `layer_corr` group keeps in memory before the
//!   rest goes to a file in DuckDB's `temp_directory`; `off` never spills.
//! - `layercorr_kernels` (default `layercorr`, or `$LAYERCORR_KERNELS`):
//!   the convolution kernels of `nn_activations` (depthwise, dense and
//!   1x1, with the activation after them), layercorr's own or `tract`'s.
//!
//! Values are checked where they are read (`host.rs` calls the parsers
//! here), with an error naming the bad value.

use libduckdb_sys as ffi;

use super::{c_string, LogicalType, Value};
use crate::duckdb::error::{Error, Result};

/// Name of the spill threshold option.
pub const SPILL_MB: &str = "layercorr_spill_mb";
/// Name of the convolution kernels option.
pub const KERNELS: &str = "layercorr_kernels";
/// Megabytes of rows a group keeps in memory before spilling.
pub const DEFAULT_SPILL_MB: u64 = 256;

/// Parses `layercorr_spill_mb`: a number of megabytes or `off`.
pub fn parse_spill_mb(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    t.parse::<u64>().map(Some).map_err(|_| {
        format!("layercorr_spill_mb is '{text}'; expected a number of megabytes or 'off'")
    })
}

/// Parses `layercorr_kernels`: `layercorr` or `tract`.
pub fn parse_kernels(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "layercorr" => Ok(true),
        "tract" => Ok(false),
        _ => Err(format!(
            "layercorr_kernels is '{text}'; expected 'layercorr' or 'tract'"
        )),
    }
}

/// `(name, default, description)` of every option.
fn options() -> Vec<(&'static str, String, &'static str)> {
    let env = |name: &str| std::env::var(name).ok();
    let spill = env("LAYERCORR_SPILL_MB")
        .filter(|v| parse_spill_mb(v).is_ok())
        .unwrap_or_else(|| DEFAULT_SPILL_MB.to_string());
    let kernels = env("LAYERCORR_KERNELS")
        .filter(|v| parse_kernels(v).is_ok())
        .unwrap_or_else(|| "layercorr".to_string());
    vec![
        (
            SPILL_MB,
            spill,
            "megabytes of rows a layer_corr group keeps in memory before spilling to temp_directory ('off': never)",
        ),
        (
            KERNELS,
            kernels,
            "convolution kernels of nn_activations: 'layercorr' (its own) or 'tract'",
        ),
    ]
}

/// Registers every option on `con`.
pub fn register_options(con: ffi::duckdb_connection) -> Result<()> {
    for (name, default, description) in options() {
        // SAFETY: plain C API calls on objects we own until destroyed;
        // DuckDB copies the name, type, default and description.
        unsafe {
            let mut option = ffi::duckdb_create_config_option();
            let c_name = c_string(name);
            let c_default = c_string(&default);
            let c_description = c_string(description);
            ffi::duckdb_config_option_set_name(option, c_name.as_ptr());
            let varchar = LogicalType::varchar();
            ffi::duckdb_config_option_set_type(option, varchar.0);
            let value = Value(ffi::duckdb_create_varchar(c_default.as_ptr()));
            ffi::duckdb_config_option_set_default_value(option, value.0);
            ffi::duckdb_config_option_set_default_scope(
                option,
                ffi::duckdb_config_option_scope_DUCKDB_CONFIG_OPTION_SCOPE_GLOBAL,
            );
            ffi::duckdb_config_option_set_description(option, c_description.as_ptr());
            let state = ffi::duckdb_register_config_option(con, option);
            ffi::duckdb_destroy_config_option(&mut option);
            if state != ffi::DuckDBSuccess {
                return Err(Error::Host(format!("could not register the option {name}")));
            }
        }
    }
    Ok(())
}
