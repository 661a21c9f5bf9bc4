//! The spill file: rows of `f32` in an unlinked temporary file, written
//! once and read back by offset.
//!
//! The format is a flat run of rows. Rows of wide layers are padded to a
//! multiple of 4096 bytes so that a block of them can be written with
//! `O_DIRECT` from an aligned buffer, or from the caller's memory when its
//! rows are aligned ([`FileAppend::write_rows`]), past the
//! page cache; shorter rows are packed. Everything else goes through the
//! page cache, which keeps the file in RAM while there is room. Written by
//! hand: `std::fs::File` with positional reads and writes does all of it,
//! and a key-value or mmap crate would add nothing. When to spill, and which
//! rows bypass the cache, is decided by [`crate::store`] and
//! [`crate::stream`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{KernelError, Result};
use crate::rows::check_row_length;
use crate::source::RowSource;

/// Bytes gathered before one `write` to the file.
pub(crate) const WRITE_BUFFER_BYTES: usize = 4 << 20;
/// File offset, length and memory alignment that `O_DIRECT` accepts on
/// every common device (the logical block size is 512 or 4096).
pub(crate) const DIRECT_ALIGN: usize = 4096;
/// Rows at least this long are padded to [`DIRECT_ALIGN`] in the file, so
/// that they can be written with `O_DIRECT`; shorter rows are packed (the
/// padding would cost too much of the file, and their groups rarely spill).
const PADDED_ROW_MIN_BYTES: usize = 64 << 10;
/// Size of the aligned buffer of one `O_DIRECT` write.
pub(crate) const DIRECT_STAGING_BYTES: usize = 8 << 20;

/// Bytes from one row's start to the next in a spill file of rows of `d`.
pub(crate) fn row_stride(d: usize) -> usize {
    let bytes = d * 4;
    if bytes >= PADDED_ROW_MIN_BYTES {
        bytes.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN
    } else {
        bytes
    }
}

/// A second handle on the file at `path` that bypasses the page cache, or
/// `None` where the file system refuses `O_DIRECT` (writes then go through
/// the ordinary handle).
#[cfg(target_os = "linux")]
fn open_direct(path: &std::path::Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &std::path::Path) -> Option<File> {
    None
}

static SPILL_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An I/O failure on a spill file in `dir`, as the kernels report it.
pub(crate) fn spill_error(dir: &std::path::Path, e: std::io::Error) -> KernelError {
    KernelError::Spill {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    }
}

fn as_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any alignment of u8 is satisfied.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

fn as_bytes_mut(values: &mut [f32]) -> &mut [u8] {
    // SAFETY: every bit pattern is a valid f32, and the length is exact.
    unsafe {
        std::slice::from_raw_parts_mut(
            values.as_mut_ptr().cast::<u8>(),
            std::mem::size_of_val(values),
        )
    }
}

/// Rows of `d` `f32` values in an unlinked temporary file.
#[derive(Debug)]
pub struct SpillRows {
    file: File,
    /// The same file opened with `O_DIRECT`, where the file system allows.
    direct: Option<File>,
    dir: PathBuf,
    n: usize,
    d: usize,
    /// Bytes per row in the file ([`row_stride`]).
    stride: usize,
    /// The last rows, not yet written to the file (the rows before them
    /// are in the file, or handed to a writer).
    pending: Vec<u8>,
}

impl SpillRows {
    /// A new, empty spill file in `dir` (removed from the folder at once, so
    /// nothing is left behind even if the host is killed).
    pub fn create(dir: PathBuf, d: usize) -> Result<Self> {
        let fail = |e| spill_error(&dir, e);
        let name = format!(
            "layercorr-spill-{}-{}",
            std::process::id(),
            SPILL_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(fail)?;
        let stride = row_stride(d);
        let direct = if stride.is_multiple_of(DIRECT_ALIGN) {
            open_direct(&path)
        } else {
            None
        };
        std::fs::remove_file(&path).map_err(fail)?;
        Ok(SpillRows {
            file,
            direct,
            dir,
            n: 0,
            d,
            stride,
            pending: Vec::new(),
        })
    }

    fn io_error(&self, e: std::io::Error) -> KernelError {
        spill_error(&self.dir, e)
    }

    /// Appends one row.
    pub fn push_row(&mut self, row: &[f32]) -> Result<()> {
        check_row_length(row, self.n, self.d)?;
        let bytes = as_bytes(row);
        if self.pending.len() + self.stride > WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        if self.stride >= WRITE_BUFFER_BYTES {
            self.file
                .write_all_at(bytes, (self.n * self.stride) as u64)
                .map_err(|e| self.io_error(e))?;
        } else {
            self.pending.extend_from_slice(bytes);
            self.pending
                .resize(self.pending.len() + self.stride - bytes.len(), 0);
        }
        self.n += 1;
        Ok(())
    }

    /// Writes the rows still in the write buffer; reads see every row only
    /// after this. Writes are positional: rows handed to a [`FileAppend`]
    /// may have moved the end of the file past the handle's cursor.
    pub fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            let first_pending = self.n - self.pending.len() / self.stride.max(1);
            self.file
                .write_all_at(&self.pending, (first_pending * self.stride) as u64)
                .map_err(|e| self.io_error(e))?;
            self.pending.clear();
            self.pending.shrink_to_fit();
        }
        Ok(())
    }

    /// Appends every row of `other` (a flushed source), a row at a time.
    pub fn append_from(&mut self, other: &dyn RowSource) -> Result<()> {
        let mut row = vec![0f32; other.d()];
        for i in 0..other.n() {
            other.read(i, 0, &mut row)?;
            self.push_row(&row)?;
        }
        Ok(())
    }

    /// Reserves the next `r` rows (after a [`SpillRows::flush`]) and returns
    /// the rows before them, for reading, and the reserved ones, for
    /// writing; both by position, so from any thread.
    pub(crate) fn reserve(&mut self, r: usize) -> Result<(FileRows<'_>, FileAppend<'_>)> {
        self.flush()?;
        let first = self.n;
        self.n += r;
        let (file, dir, d, stride) = (&self.file, &self.dir, self.d, self.stride);
        let earlier = FileRows {
            file,
            dir,
            n: first,
            d,
            stride,
        };
        let append = FileAppend {
            file,
            direct: self.direct.as_ref(),
            dir,
            d,
            stride,
            first,
            count: r,
        };
        Ok((earlier, append))
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Values per row.
    pub fn d(&self) -> usize {
        self.d
    }
}

impl RowSource for SpillRows {
    fn n(&self) -> usize {
        self.n
    }

    fn d(&self) -> usize {
        self.d
    }

    fn read(&self, row: usize, c0: usize, dst: &mut [f32]) -> Result<()> {
        if !self.pending.is_empty() {
            return Err(KernelError::BadShape {
                what: "spill read (rows not flushed)",
                expected: 0,
                got: self.pending.len(),
            });
        }
        FileRows {
            file: &self.file,
            dir: &self.dir,
            n: self.n,
            d: self.d,
            stride: self.stride,
        }
        .read(row, c0, dst)
    }
}

/// The first `n` rows of a spill file, read by position (shared access).
#[derive(Debug, Clone, Copy)]
pub struct FileRows<'a> {
    file: &'a File,
    dir: &'a PathBuf,
    n: usize,
    d: usize,
    stride: usize,
}

impl RowSource for FileRows<'_> {
    fn n(&self) -> usize {
        self.n
    }

    fn d(&self) -> usize {
        self.d
    }

    fn read(&self, row: usize, c0: usize, dst: &mut [f32]) -> Result<()> {
        if row >= self.n || c0 + dst.len() > self.d {
            return Err(KernelError::BadShape {
                what: "spill read (row out of range)",
                expected: self.n,
                got: row,
            });
        }
        let offset = (row * self.stride + c0 * 4) as u64;
        self.file
            .read_exact_at(as_bytes_mut(dst), offset)
            .map_err(|e| spill_error(self.dir, e))
    }
}

/// Rows `first..first + count` of a spill file, reserved by
/// [`crate::store::RowStore::extend_rows`] and written whole by [`FileAppend::write_rows`]
/// (shared access: positional writes, so another thread may do it).
#[derive(Debug)]
pub struct FileAppend<'a> {
    file: &'a File,
    direct: Option<&'a File>,
    dir: &'a PathBuf,
    d: usize,
    stride: usize,
    first: usize,
    count: usize,
}

impl FileAppend<'_> {
    fn io_error(&self, e: std::io::Error) -> KernelError {
        spill_error(self.dir, e)
    }

    /// Writes `values` as columns `c0..` of reserved row `i` (through the
    /// page cache), so that a row can be written a piece at a time from
    /// the pass that reads it.
    pub fn write_piece(&self, i: usize, c0: usize, values: &[f32]) -> Result<()> {
        if i >= self.count || c0 + values.len() > self.d {
            return Err(KernelError::BadShape {
                what: "spill row piece",
                expected: self.d,
                got: c0 + values.len(),
            });
        }
        self.file
            .write_all_at(
                as_bytes(values),
                ((self.first + i) * self.stride + c0 * 4) as u64,
            )
            .map_err(|e| self.io_error(e))
    }

    /// Writes every reserved row; `rows` must be exactly that many rows of
    /// `d` values. With `bypass_cache`, rows go to the disk with `O_DIRECT`
    /// through an aligned buffer where the file system allows (falling back
    /// to the page cache for any write it refuses).
    pub fn write_rows(&self, rows: &[&[f32]], bypass_cache: bool) -> Result<()> {
        if rows.len() != self.count {
            return Err(KernelError::BadShape {
                what: "spill rows",
                expected: self.count,
                got: rows.len(),
            });
        }
        if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != self.d) {
            return Err(KernelError::RowLength {
                row: self.first + i,
                expected: self.d,
                got: row.len(),
            });
        }
        let offset = |i: usize| ((self.first + i) * self.stride) as u64;
        let direct = self.direct.filter(|_| bypass_cache);
        let Some(direct) = direct else {
            for (i, row) in rows.iter().enumerate() {
                self.file
                    .write_all_at(as_bytes(row), offset(i))
                    .map_err(|e| self.io_error(e))?;
            }
            return Ok(());
        };
        let write = |bytes: &[u8], at: u64| -> Result<()> {
            if direct.write_all_at(bytes, at).is_err() {
                self.file
                    .write_all_at(bytes, at)
                    .map_err(|e| self.io_error(e))?;
            }
            Ok(())
        };
        if rows.iter().all(|row| self.writable_in_place(row)) {
            // Each row goes to the disk straight from the caller's memory:
            // no copy at all.
            for (i, row) in rows.iter().enumerate() {
                write(as_bytes(row), offset(i))?;
            }
            return Ok(());
        }
        let per_write = (DIRECT_STAGING_BYTES / self.stride).clamp(1, rows.len().max(1));
        let mut staging = AlignedBytes::zeroed(per_write * self.stride)?;
        for (k, group) in rows.chunks(per_write).enumerate() {
            let buf = staging.as_mut_slice();
            // Each row lands at the start of its stride; the padding stays
            // zero from the allocation.
            for (slot, row) in buf.chunks_mut(self.stride).zip(group) {
                slot[..row.len() * 4].copy_from_slice(as_bytes(row));
            }
            write(&buf[..group.len() * self.stride], offset(k * per_write))?;
        }
        Ok(())
    }

    /// Whether `row` can be written with `O_DIRECT` from where it is: it
    /// fills its stride exactly (a multiple of [`DIRECT_ALIGN`] bytes) and
    /// starts on an aligned address, as rows of a page-aligned buffer of
    /// wide activations do.
    fn writable_in_place(&self, row: &[f32]) -> bool {
        std::mem::size_of_val(row) == self.stride
            && self.stride.is_multiple_of(DIRECT_ALIGN)
            && (row.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
    }
}

/// A zeroed byte buffer whose start is aligned to [`DIRECT_ALIGN`].
struct AlignedBytes {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBytes {
    fn zeroed(len: usize) -> Result<Self> {
        let mut raw = Vec::new();
        let total = len.saturating_add(DIRECT_ALIGN);
        raw.try_reserve_exact(total)
            .map_err(|_| KernelError::TooLarge {
                what: "spill write buffer",
                bytes: total as u64,
            })?;
        raw.resize(total, 0);
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
        Ok(AlignedBytes { raw, start, len })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRowPlaces, RowStore, SpillPolicy};

    fn policy(limit: Option<usize>) -> SpillPolicy {
        SpillPolicy::in_temp_dir(limit)
    }

    fn read_all(s: &dyn RowSource) -> Vec<Vec<f32>> {
        (0..s.n())
            .map(|i| {
                let mut r = vec![0f32; s.d()];
                s.read(i, 0, &mut r).unwrap();
                r
            })
            .collect()
    }

    /// Rows of `d` values, different in every row and column.
    fn wide_rows(n: usize, d: usize, seed: f32) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                (0..d)
                    .map(|j| seed + i as f32 * 1e3 + j as f32 * 0.25)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn wide_rows_are_padded_and_read_back_by_piece() {
        // 16400 values = 65600 bytes: past the padding threshold and not a
        // multiple of 4096, so every row after the first starts in padding.
        let d = 16_400;
        assert!(row_stride(d).is_multiple_of(DIRECT_ALIGN));
        assert!(row_stride(d) > d * 4);
        assert_eq!(row_stride(10), 40);
        let p = policy(Some(0));
        let mut store = RowStore::new(d);
        let data = wide_rows(5, d, 1.0);
        for r in &data {
            store.push_row(r, &p).unwrap();
        }
        store.finish().unwrap();
        assert_eq!(read_all(store.source()), data);
        let mut piece = [0f32; 3];
        store.source().read(3, d - 3, &mut piece).unwrap();
        assert_eq!(piece, data[3][d - 3..]);
    }

    #[test]
    fn reserved_rows_written_whole_read_back_both_ways() {
        let d = 16_400;
        for bypass_cache in [false, true] {
            let p = policy(Some(0));
            let mut store = RowStore::new(d);
            let first = wide_rows(3, d, 0.0);
            for r in &first {
                store.push_row(r, &p).unwrap();
            }
            let later = wide_rows(17, d, 5e5);
            let refs: Vec<&[f32]> = later.iter().map(Vec::as_slice).collect();
            {
                let (earlier, places) = store.extend_rows(refs.len(), &p).unwrap();
                assert_eq!(read_all(&earlier), first);
                let NewRowPlaces::File(append) = places else {
                    panic!("a store past its limit hands out file places");
                };
                assert!(append.write_rows(&refs[1..], bypass_cache).is_err());
                append.write_rows(&refs, bypass_cache).unwrap();
            }
            store.finish().unwrap();
            let all: Vec<Vec<f32>> = first.iter().chain(&later).cloned().collect();
            assert_eq!(read_all(store.source()), all, "bypass_cache {bypass_cache}");
        }
    }

    #[test]
    fn aligned_rows_written_in_place_read_back() {
        // 16384 values = 64 KiB: a stride with no padding, so rows of an
        // aligned buffer go to the disk from where they are; one row out
        // of line sends the whole block through the staging buffer.
        let d = 16_384;
        assert_eq!(row_stride(d), d * 4);
        let n = 6;
        let mut raw = vec![0f32; (n + 1) * d + DIRECT_ALIGN / 4];
        let skip = raw.as_ptr().align_offset(DIRECT_ALIGN);
        let data = wide_rows(n + 1, d, 3.0);
        for (i, row) in data.iter().enumerate() {
            raw[skip + i * d..skip + (i + 1) * d].copy_from_slice(row);
        }
        let aligned: Vec<&[f32]> = (0..n)
            .map(|i| &raw[skip + i * d..skip + (i + 1) * d])
            .collect();
        let mut misaligned = aligned.clone();
        let shifted = &raw[skip + n * d - 1..skip + (n + 1) * d - 1];
        misaligned[2] = shifted;
        for (rows, in_place) in [(&aligned, true), (&misaligned, false)] {
            let p = policy(Some(0));
            let mut store = RowStore::new(d);
            {
                let (_, places) = store.extend_rows(rows.len(), &p).unwrap();
                let NewRowPlaces::File(append) = places else {
                    panic!("a store past its limit hands out file places");
                };
                assert_eq!(rows.iter().all(|r| append.writable_in_place(r)), in_place);
                append.write_rows(rows, true).unwrap();
            }
            store.finish().unwrap();
            let want: Vec<Vec<f32>> = rows.iter().map(|r| r.to_vec()).collect();
            assert_eq!(read_all(store.source()), want, "in place {in_place}");
        }
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = SpillRows::create(PathBuf::from("/nonexistent/layercorr"), 3).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/layercorr"), "{err}");
    }
}
