//! Everything of the binding that touches DuckDB's C API, and so every
//! `unsafe` of the crate: the rest of the crate is compiled with
//! `unsafe_code` denied.
//!
//! - [`register`]: the three shapes of SQL function (table, scalar,
//!   aggregate) as safe traits, and the `extern "C"` trampolines that
//!   DuckDB calls, which catch panics and report errors;
//! - [`input`], [`output`]: typed, bounds-checked views of the chunks and
//!   vectors a function reads and writes;
//! - [`types`], [`value`]: logical types and bind-time values;
//! - [`host`]: the caller's settings and DuckDB's file system;
//! - [`api_guard`]: the C API calls that allocate, behind a C++ try/catch;
//! - [`entry`]: the extension's entry point.
//!
//! duckdb-rs' vector and function wrappers are not used: they sit behind
//! its `vtab` feature, which compiles Arrow, its scalar wrapper hides the
//! per-thread init that gives a call its client context, and it has no
//! aggregates.

pub mod api_guard;
pub mod entry;
pub mod host;
pub mod input;
pub mod output;
pub mod register;
pub mod settings;
pub mod types;
pub mod value;

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::duckdb::error::Error;

pub use input::{Chunk, Column, FloatLists, Lists, Strings, Values};
pub use output::{Output, OutputChunk};
pub use register::{
    next_page, trailing_optional, Aggregate, BindArgs, Bound, CallContext, ScalarFunction, States,
    TableFunction,
};
pub use types::{Kind, LogicalType, Plain, TypeFn};
pub use value::Value;

/// A C string for DuckDB, with interior NULs replaced so it never fails.
pub fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

/// Runs `body`, turning a panic into an internal error so that it never
/// unwinds into DuckDB (which would abort the host process).
pub fn guard<T, E: From<Error>>(
    body: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Error::internal(what).into())
        }
    }
}

/// The message DuckDB shows for an error of SQL function `name`: the
/// error prefixed with the function's name, unless it already starts with
/// it (the picture crate's errors name their function themselves).
fn message(name: &str, error: &Error) -> CString {
    let text = error.to_string();
    match text.strip_prefix(name) {
        Some(rest) if rest.starts_with(": ") => c_string(&text),
        _ => c_string(&format!("{name}: {text}")),
    }
}
