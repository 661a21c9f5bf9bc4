//! What the host database lends a function call: its settings and its file
//! system.
//!
//! Scalar and table functions receive DuckDB's client context (at init and
//! bind); from it we read settings and open files through DuckDB's own
//! virtual file system, so `enable_external_access`, `allowed_directories`,
//! `allowed_paths`, `disabled_filesystems` and every registered file system
//! (fsspec from Python, httpfs) apply to the extension exactly as to
//! `read_csv`. Aggregates get no client context in DuckDB's C API: they use
//! [`Settings::latest`], the settings as last read by any call of ours (and
//! at load time), never more memory than the machine has.

use std::ffi::{c_void, CStr};
use std::sync::{Arc, Mutex, PoisonError};

use libduckdb_sys as ffi;

use super::settings::{parse_kernels, parse_spill_mb, DEFAULT_SPILL_MB, KERNELS, SPILL_MB};
use super::{c_string, Value};
use crate::duckdb::error::{Error, Result};
use layercorr_engine::files::{is_local, special_file_reason, too_large, FileError, FileSource};
use layercorr_engine::model::set_own_kernels;

/// Settings of the host that bind the extension, as read from one client
/// context.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// DuckDB's `memory_limit` in bytes, capped by the machine's memory.
    pub memory_limit: u64,
    /// DuckDB's `temp_directory` (`None`: none set, use the system's).
    pub temp_directory: Option<String>,
    /// Whether DuckDB may touch files outside the database.
    pub external_access: bool,
    /// `layercorr_spill_mb`: megabytes of rows a `layer_corr` group keeps in
    /// memory before spilling (`None`: never spill).
    pub spill_mb: Option<u64>,
    /// `layercorr_kernels`: layercorr's own convolution kernels (`true`)
    /// or tract's.
    pub own_kernels: bool,
}

static LATEST: Mutex<Option<Settings>> = Mutex::new(None);

/// The machine's memory in bytes (`MemTotal`, or a cgroup's `memory.max`
/// when smaller); `u64::MAX` when unknown.
pub fn machine_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb.saturating_mul(1024))
        })
        .unwrap_or(u64::MAX);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    total.min(cgroup)
}

/// Parses DuckDB's rendering of a byte size (`953.6 MiB`, `1.0 GiB`,
/// `1GB`, `512 bytes`).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let scale: f64 = match unit.as_str() {
        "" | "b" | "byte" | "bytes" => 1.0,
        "kb" | "k" => 1e3,
        "kib" => 1024.0,
        "mb" | "m" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "gb" | "g" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tb" | "t" => 1e12,
        "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some((number * scale) as u64)
}

impl Settings {
    /// The settings as last read from a client context; before any, the
    /// defaults (DuckDB's default `memory_limit` is 80% of the machine).
    pub fn latest() -> Settings {
        LATEST
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(Settings::defaults)
    }

    fn defaults() -> Settings {
        Settings {
            memory_limit: machine_memory() / 10 * 8,
            temp_directory: None,
            external_access: true,
            spill_mb: Some(DEFAULT_SPILL_MB),
            own_kernels: true,
        }
    }

    fn remember(&self) {
        set_own_kernels(self.own_kernels);
        *LATEST.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.clone());
    }
}

/// A client context DuckDB handed us, destroyed when dropped.
pub struct Host(ffi::duckdb_client_context);

// SAFETY: a client context wrapper is a reference to DuckDB's
// `ClientContext`, which DuckDB itself uses from all its threads.
unsafe impl Send for Host {}
unsafe impl Sync for Host {}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own this wrapper.
            unsafe { ffi::duckdb_destroy_client_context(&mut self.0) };
        }
    }
}

impl Host {
    /// Wraps a client context DuckDB gave us (ownership passes to `Host`).
    pub fn new(context: ffi::duckdb_client_context) -> Result<Host> {
        if context.is_null() {
            return Err(Error::Host("the host gave no client context".into()));
        }
        Ok(Host(context))
    }

    /// The current value of setting `name` as text, `None` when unset or
    /// unknown.
    pub fn setting(&self, name: &str) -> Option<String> {
        let c_name = c_string(name);
        let mut scope: ffi::duckdb_config_option_scope = 0;
        // SAFETY: the context is live; DuckDB returns an owned value or NULL.
        let value = Value(unsafe {
            ffi::duckdb_client_context_get_config_option(self.0, c_name.as_ptr(), &mut scope)
        });
        value.as_string()
    }

    /// Reads the settings that bind the extension (and remembers them for
    /// the aggregates, which get no client context).
    pub fn settings(&self) -> Result<Settings> {
        let defaults = Settings::defaults();
        let memory_limit = self
            .setting("memory_limit")
            .and_then(|t| parse_bytes(&t))
            .filter(|b| *b > 0)
            .map_or(defaults.memory_limit, |b| b.min(machine_memory()));
        let temp_directory = self
            .setting("temp_directory")
            .filter(|t| !t.trim().is_empty());
        let external_access = self
            .setting("enable_external_access")
            .is_none_or(|t| t.eq_ignore_ascii_case("true"));
        let spill_mb = match self.setting(SPILL_MB) {
            Some(t) => parse_spill_mb(&t)?,
            None => defaults.spill_mb,
        };
        let own_kernels = match self.setting(KERNELS) {
            Some(t) => parse_kernels(&t)?,
            None => defaults.own_kernels,
        };
        let settings = Settings {
            memory_limit,
            temp_directory,
            external_access,
            spill_mb,
            own_kernels,
        };
        settings.remember();
        Ok(settings)
    }

    /// DuckDB's file system as seen from this context.
    pub fn files(&self) -> Result<Arc<HostFiles>> {
        // SAFETY: the context is live; DuckDB returns an owned wrapper.
        let fs = unsafe { ffi::duckdb_client_context_get_file_system(self.0) };
        if fs.is_null() {
            return Err(Error::Host("the host gave no file system".into()));
        }
        Ok(Arc::new(HostFiles(Mutex::new(FileSystem(fs)))))
    }
}

/// An owned `duckdb_file_system`.
struct FileSystem(ffi::duckdb_file_system);

// SAFETY: the wrapper refers to DuckDB's file system, which is thread-safe;
// its error slot is guarded by the mutex in `HostFiles`.
unsafe impl Send for FileSystem {}

impl Drop for FileSystem {
    fn drop(&mut self) {
        // SAFETY: we own this wrapper.
        unsafe { ffi::duckdb_destroy_file_system(&mut self.0) };
    }
}

/// An owned `duckdb_file_handle`, closed and destroyed when dropped.
struct FileHandle(ffi::duckdb_file_handle);

impl Drop for FileHandle {
    fn drop(&mut self) {
        // SAFETY: we own this handle.
        unsafe {
            ffi::duckdb_file_handle_close(self.0);
            ffi::duckdb_destroy_file_handle(&mut self.0);
        }
    }
}

/// Takes the message out of an owned `duckdb_error_data`.
unsafe fn error_message(data: ffi::duckdb_error_data, fallback: &str) -> String {
    error_kind_and_message(data, fallback).1
}

/// Takes the error type and message out of an owned `duckdb_error_data`.
unsafe fn error_kind_and_message(
    mut data: ffi::duckdb_error_data,
    fallback: &str,
) -> (ffi::duckdb_error_type, String) {
    if data.is_null() {
        return (
            ffi::duckdb_error_type_DUCKDB_ERROR_INVALID,
            fallback.to_string(),
        );
    }
    let (kind, text) = if ffi::duckdb_error_data_has_error(data) {
        let raw = ffi::duckdb_error_data_message(data);
        (
            ffi::duckdb_error_data_error_type(data),
            (!raw.is_null()).then(|| CStr::from_ptr(raw).to_string_lossy().into_owned()),
        )
    } else {
        (ffi::duckdb_error_type_DUCKDB_ERROR_INVALID, None)
    };
    ffi::duckdb_destroy_error_data(&mut data);
    (kind, text.unwrap_or_else(|| fallback.to_string()))
}

/// How a file is opened.
#[derive(Clone, Copy)]
enum Mode {
    Read,
    /// Write, creating the file if needed.
    Write,
}

/// DuckDB's virtual file system, as a [`FileSource`] for the engine.
pub struct HostFiles(Mutex<FileSystem>);

impl HostFiles {
    /// Whether DuckDB's sandbox lets us read below the local folder `dir`:
    /// `Err` with DuckDB's own message when it refuses. Other failures
    /// (the folder is missing, cannot be opened as a file) are not a
    /// refusal by the sandbox and pass.
    pub fn sandbox_allows(&self, dir: &str) -> Result<(), FileError> {
        // DuckDB's sandbox judges a path by its text: a name inside the
        // folder stands for every file there (it need not exist).
        let probe = format!("{}/.layercorr-sandbox-probe", dir.trim_end_matches('/'));
        match self.open_raw(&probe, Mode::Read) {
            Ok(_) => Ok(()),
            Err((kind, message)) if kind == ffi::duckdb_error_type_DUCKDB_ERROR_PERMISSION => {
                Err(FileError(message))
            }
            Err(_) => Ok(()),
        }
    }

    fn open(&self, path: &str, mode: Mode) -> Result<FileHandle, FileError> {
        self.open_raw(path, mode)
            .map_err(|(_, message)| FileError(message))
    }

    fn open_raw(
        &self,
        path: &str,
        mode: Mode,
    ) -> Result<FileHandle, (ffi::duckdb_error_type, String)> {
        let fs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let c_path = c_string(path);
        // SAFETY: plain C API calls on objects we own; the options are
        // destroyed before returning.
        unsafe {
            let mut options = ffi::duckdb_create_file_open_options();
            match mode {
                Mode::Read => {
                    ffi::duckdb_file_open_options_set_flag(
                        options,
                        ffi::duckdb_file_flag_DUCKDB_FILE_FLAG_READ,
                        true,
                    );
                }
                Mode::Write => {
                    for flag in [
                        ffi::duckdb_file_flag_DUCKDB_FILE_FLAG_WRITE,
                        ffi::duckdb_file_flag_DUCKDB_FILE_FLAG_CREATE,
                    ] {
                        ffi::duckdb_file_open_options_set_flag(options, flag, true);
                    }
                }
            }
            let mut handle: ffi::duckdb_file_handle = std::ptr::null_mut();
            let state = ffi::duckdb_file_system_open(fs.0, c_path.as_ptr(), options, &mut handle);
            ffi::duckdb_destroy_file_open_options(&mut options);
            if state != ffi::DuckDBSuccess || handle.is_null() {
                return Err(error_kind_and_message(
                    ffi::duckdb_file_system_error_data(fs.0),
                    "the host's file system refused to open it",
                ));
            }
            Ok(FileHandle(handle))
        }
    }

    fn handle_error(handle: &FileHandle, what: &str) -> FileError {
        // SAFETY: the handle is live.
        let message = unsafe { error_message(ffi::duckdb_file_handle_error_data(handle.0), what) };
        FileError(format!("cannot {what} the file: {message}"))
    }

    /// Writes `bytes` as the whole content of the file at `path`.
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FileError> {
        if let Some(reason) = special_file_reason(path) {
            return Err(FileError(reason));
        }
        let handle = self.open(path, Mode::Write)?;
        // DuckDB's C API cannot truncate: a local file (which DuckDB has just
        // let us open for writing) is truncated here; other file systems
        // create a new object on every open for writing.
        if is_local(path) {
            let local = path.strip_prefix("file://").unwrap_or(path);
            std::fs::OpenOptions::new()
                .write(true)
                .open(local)
                .and_then(|f| f.set_len(0))
                .map_err(|e| FileError(format!("cannot truncate the file: {e}")))?;
        }
        let mut written = 0usize;
        while written < bytes.len() {
            let rest = &bytes[written..];
            // SAFETY: the handle is live and `rest` is valid for its length.
            let n = unsafe {
                ffi::duckdb_file_handle_write(
                    handle.0,
                    rest.as_ptr() as *const c_void,
                    rest.len() as i64,
                )
            };
            if n <= 0 {
                return Err(Self::handle_error(&handle, "write"));
            }
            written += n as usize;
        }
        // SAFETY: the handle is live.
        if unsafe { ffi::duckdb_file_handle_sync(handle.0) } != ffi::DuckDBSuccess {
            return Err(Self::handle_error(&handle, "sync"));
        }
        Ok(())
    }
}

impl FileSource for HostFiles {
    fn read(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, FileError> {
        // A FIFO would block DuckDB's open until a writer appears, and a
        // device never ends: refuse them before asking DuckDB.
        if let Some(reason) = special_file_reason(path) {
            return Err(FileError(reason));
        }
        let handle = self.open(path, Mode::Read)?;
        // SAFETY: the handle is live.
        let size = unsafe { ffi::duckdb_file_handle_size(handle.0) };
        if size < 0 {
            return Err(Self::handle_error(&handle, "size"));
        }
        let size = size as u64;
        if size > max_bytes {
            return Err(too_large(size, max_bytes));
        }
        let mut bytes: Vec<u8> = Vec::new();
        bytes
            .try_reserve_exact(size as usize)
            .map_err(|_| FileError(format!("cannot allocate {size} bytes for the file")))?;
        bytes.resize(size as usize, 0);
        let mut filled = 0usize;
        while filled < bytes.len() {
            let rest = &mut bytes[filled..];
            // SAFETY: the handle is live and `rest` is valid for its length.
            let n = unsafe {
                ffi::duckdb_file_handle_read(
                    handle.0,
                    rest.as_mut_ptr() as *mut c_void,
                    rest.len() as i64,
                )
            };
            if n < 0 {
                return Err(Self::handle_error(&handle, "read"));
            }
            if n == 0 {
                break;
            }
            filled += n as usize;
        }
        bytes.truncate(filled);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_as_duckdb_prints_them() {
        assert_eq!(parse_bytes("1GB"), Some(1_000_000_000));
        assert_eq!(parse_bytes("953.6 MiB"), Some((953.6 * 1048576.0) as u64));
        assert_eq!(parse_bytes("1.0 GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("512 bytes"), Some(512));
        assert_eq!(parse_bytes("lots"), None);
    }

    #[test]
    fn extension_settings_parse_or_name_the_bad_value() {
        assert_eq!(parse_spill_mb("64"), Ok(Some(64)));
        assert_eq!(parse_spill_mb("OFF"), Ok(None));
        assert!(parse_spill_mb("-3").unwrap_err().contains("'-3'"));
        assert_eq!(parse_kernels("tract"), Ok(false));
        assert!(parse_kernels("fast").unwrap_err().contains("'fast'"));
    }
}
