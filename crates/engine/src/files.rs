//! Where the engine's bytes come from.
//!
//! The engine never opens a file itself: models and images are read through
//! a [`FileSource`] handed in by the caller. Inside DuckDB that is the host's
//! own virtual file system, so its sandbox (`enable_external_access`,
//! `allowed_directories`, ...) and every file system registered with it
//! (fsspec from Python, httpfs) apply by construction; outside a host
//! (tests, examples) it is [`LocalFiles`].
//!
//! Every read names its largest acceptable size, so that no file can make
//! the engine allocate without bound.

use std::io::Read;
use std::path::Path;

/// A model file larger than this is refused before it is read.
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// An image file larger than this is refused before it is read (a 64 MP
/// photo is well under it even as an uncompressed TIFF).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// Why a file could not be read, worded for a SQL user (the host's own
/// message where the host refused).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub String);

/// Reads whole files by path.
pub trait FileSource: Send + Sync {
    /// The bytes of the file at `path`, refusing files over `max_bytes`.
    fn read(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, FileError>;
}

/// Whether `path` names a file of the local file system (no `scheme://`).
pub fn is_local(path: &str) -> bool {
    !path.contains("://") || path.starts_with("file://")
}

/// Why a local path cannot be read as a whole file without blocking or
/// reading forever: FIFOs, sockets and devices (`/dev/urandom` never ends, a
/// FIFO blocks until a writer appears) and folders. `None` for a regular
/// file, a missing file (the reader's own error names it) or a non-local
/// path.
pub fn special_file_reason(path: &str) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    if !is_local(path) {
        return None;
    }
    let local = path.strip_prefix("file://").unwrap_or(path);
    let kind = std::fs::metadata(local).ok()?.file_type();
    let what = if kind.is_file() {
        return None;
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Some(format!("the path is {what}, not a regular file"))
}

/// The refusal for a file of `size` bytes above `max_bytes`.
pub fn too_large(size: u64, max_bytes: u64) -> FileError {
    FileError(format!(
        "the file is {size} bytes, above the limit of {max_bytes} bytes"
    ))
}

/// A glob pattern may match at most this many files.
pub const MAX_GLOB_MATCHES: usize = 10_000_000;

/// Whether `text` is a glob pattern rather than one path.
pub fn has_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// The folder a local glob pattern starts from: its components before the
/// first one with a wildcard (`.` when the first one has one).
pub fn glob_base(pattern: &str) -> String {
    let mut base: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        if has_glob(part) {
            break;
        }
        base.push(part);
    }
    match base.join("/") {
        b if b.is_empty() && pattern.starts_with('/') => "/".to_string(),
        b if b.is_empty() => ".".to_string(),
        b => b,
    }
}

/// The regular files matching a local glob `pattern`, sorted, each real
/// file once (symbolic links that lead to a file already listed are
/// dropped, and `**` does not follow a link back into a folder it is
/// already in). At most [`MAX_GLOB_MATCHES`] files.
pub fn expand_local_glob(pattern: &str) -> Result<Vec<String>, FileError> {
    let bad = |e: &dyn std::fmt::Display| FileError(format!("bad glob pattern '{pattern}': {e}"));
    let mut found: Vec<String> = Vec::new();
    let mut push = |path: &Path| -> Result<(), FileError> {
        if found.len() >= MAX_GLOB_MATCHES {
            return Err(FileError(format!(
                "'{pattern}' matches more than {MAX_GLOB_MATCHES} files"
            )));
        }
        if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            found.push(path.to_string_lossy().into_owned());
        }
        Ok(())
    };
    if pattern.contains("**") {
        // The glob crate follows symbolic links into loops until the
        // kernel's limit; walkdir detects them.
        let compiled = glob::Pattern::new(pattern).map_err(|e| bad(&e))?;
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let base = glob_base(pattern);
        for entry in walkdir::WalkDir::new(&base).follow_links(true) {
            let Ok(entry) = entry else { continue };
            if entry.file_type().is_file() && compiled.matches_path_with(entry.path(), options) {
                push(entry.path())?;
            }
        }
    } else {
        for path in glob::glob(pattern).map_err(|e| bad(&e))?.flatten() {
            push(&path)?;
        }
    }
    found.sort();
    let mut seen = std::collections::HashSet::new();
    found.retain(|p| {
        let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.into());
        seen.insert(real)
    });
    Ok(found)
}

/// Plain `std::fs` reads, for use outside a DuckDB host.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFiles;

impl FileSource for LocalFiles {
    fn read(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, FileError> {
        if let Some(reason) = special_file_reason(path) {
            return Err(FileError(reason));
        }
        let io_error = |e: std::io::Error| FileError(e.to_string());
        let file = std::fs::File::open(Path::new(path)).map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        if size > max_bytes {
            return Err(too_large(size, max_bytes));
        }
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(size as usize)
            .map_err(|_| FileError(format!("cannot allocate {size} bytes for the file")))?;
        // `take` bounds a file that grows while it is read.
        file.take(max_bytes)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_folders_are_refused_without_reading() {
        let err = LocalFiles.read("/dev/zero", 1 << 20).unwrap_err().0;
        assert!(err.contains("a device"), "{err}");
        let err = LocalFiles.read("/tmp", 1 << 20).unwrap_err().0;
        assert!(err.contains("a folder"), "{err}");
    }

    #[test]
    fn size_limit_is_checked_before_reading() {
        let path = std::env::temp_dir().join(format!("layercorr-files-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 1000]).unwrap();
        let name = path.to_string_lossy().into_owned();
        assert_eq!(LocalFiles.read(&name, 1000).unwrap().len(), 1000);
        let err = LocalFiles.read(&name, 999).unwrap_err().0;
        assert!(err.contains("1000 bytes") && err.contains("999"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn globs_list_each_real_file_once_through_symlink_loops() {
        let dir = std::env::temp_dir().join(format!("layercorr-glob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.jpg"), b"a").unwrap();
        std::fs::write(dir.join("sub/b.jpg"), b"b").unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("loop")).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("loop2")).unwrap();
        let d = dir.to_string_lossy();
        let all = expand_local_glob(&format!("{d}/**/*.jpg")).unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        let one_level = expand_local_glob(&format!("{d}/*/*.jpg")).unwrap();
        assert_eq!(one_level.len(), 2, "{one_level:?}");
        assert!(expand_local_glob(&format!("{d}/[.jpg")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn glob_base_is_the_literal_prefix() {
        assert_eq!(glob_base("data/photos/*.jpg"), "data/photos");
        assert_eq!(glob_base("/data/**/x.png"), "/data");
        assert_eq!(glob_base("*.jpg"), ".");
        assert_eq!(glob_base("/*.jpg"), "/");
    }

    #[test]
    fn remote_paths_are_not_local() {
        assert!(is_local("photos/a.jpg"));
        assert!(is_local("file:///tmp/a.jpg"));
        assert!(!is_local("memory://a.jpg"));
        assert!(!is_local("s3://bucket/a.jpg"));
        assert_eq!(special_file_reason("memory://x"), None);
    }
}
