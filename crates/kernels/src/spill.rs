//! Activation rows kept in a temporary file instead of memory.
//!
//! An aggregate must keep every row of its group while more may come,
//! because the N x N matrix needs all pairs (the streaming Gram multiplies
//! each new block with every earlier row; euclidean and gram wait for all
//! rows before the first product). Inside DuckDB that copy comes
//! on top of the table and of the chunk DuckDB has just scanned, so a
//! 1.6 GB layer would cost three times its size. [`RowStore`] keeps rows in
//! memory up to a limit and past it writes them to an unlinked temporary
//! file ([`SpillRows`]); the kernels read them back a column chunk at a
//! time through [`RowSource`], and [`RowStore::extend_rows`] lets a block
//! of new rows be written a piece at a time from several threads. The
//! operating system's page cache keeps the file in RAM while there is room
//! (reading it back costs a copy, like reading our own buffer would) and
//! can write it to disk when there is not, so the process's own memory
//! stays at the chunk buffer plus N².
//!
//! Putting a page into the page cache costs this host's CPU, about 0.5 s
//! per GB when memory is free and twice that when the cache must first
//! evict (`dd` of 1.6 GB: 0.8–3.2 s of system time, against 0.4 s with
//! `O_DIRECT`), next to about 7 s of products at N = 2000, D = 200704.
//! So a large block that is multiplied as it arrives (the streaming Gram
//! decides) has its rows written whole, by a thread of their own, with
//! `O_DIRECT` ([`NewRowPlaces::File`],
//! [`FileAppend::write_rows`]): the disk copies them from an aligned buffer
//! while both cores multiply, and the kernel's part is pinning pages.
//! Rows of wide layers are therefore padded to a multiple of 4096 bytes in
//! the file. Rows that wait for a later block are read back soon, so they
//! go through the page cache as before.
//!
//! Written by hand: the data is a flat run of `f32` rows written once and
//! read by offset, which `std::fs::File` with `FileExt::read_exact_at`
//! does directly; a general key-value or mmap crate would add nothing.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::rows::{check_row_length, RowMatrix};
use crate::source::{RowSlice, RowSource};

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
fn row_stride(d: usize) -> usize {
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
fn spill_error(dir: &std::path::Path, e: std::io::Error) -> KernelError {
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

/// The rows a [`RowStore`] held before [`RowStore::extend_rows`].
#[derive(Debug, Clone, Copy)]
pub enum EarlierRows<'a> {
    /// In the memory buffer.
    Memory(RowSlice<'a>),
    /// In the spill file.
    File(FileRows<'a>),
}

impl RowSource for EarlierRows<'_> {
    fn n(&self) -> usize {
        match self {
            EarlierRows::Memory(m) => m.n(),
            EarlierRows::File(f) => f.n(),
        }
    }

    fn d(&self) -> usize {
        match self {
            EarlierRows::Memory(m) => m.d(),
            EarlierRows::File(f) => f.d(),
        }
    }

    fn contiguous(&self) -> Option<&[f32]> {
        match self {
            EarlierRows::Memory(m) => m.contiguous(),
            EarlierRows::File(_) => None,
        }
    }

    fn read(&self, row: usize, c0: usize, dst: &mut [f32]) -> Result<()> {
        match self {
            EarlierRows::Memory(m) => m.read(row, c0, dst),
            EarlierRows::File(f) => f.read(row, c0, dst),
        }
    }
}

/// Where the new rows of [`RowStore::extend_rows`] go.
#[derive(Debug)]
pub enum NewRowPlaces<'a> {
    /// Each new row's place in the memory buffer, to be filled in place
    /// (a piece at a time, from any thread).
    Memory(Vec<&'a mut [f32]>),
    /// The new rows' places in the spill file, written whole.
    File(FileAppend<'a>),
}

impl NewRowPlaces<'_> {
    /// Writes `rows` (one per new row) through the page cache: for rows
    /// that will be read back soon.
    pub fn write_all(self, rows: &[&[f32]]) -> Result<()> {
        match self {
            NewRowPlaces::Memory(mut places) => {
                if places.len() != rows.len() {
                    return Err(KernelError::BadShape {
                        what: "new rows",
                        expected: places.len(),
                        got: rows.len(),
                    });
                }
                places
                    .par_iter_mut()
                    .zip(rows.par_iter())
                    .try_for_each(|(place, row)| {
                        check_row_length(row, 0, place.len())?;
                        place.copy_from_slice(row);
                        Ok(())
                    })
            }
            NewRowPlaces::File(append) => append.write_rows(rows, false),
        }
    }
}

/// Rows `first..first + count` of a spill file, reserved by
/// [`RowStore::extend_rows`] and written whole by [`FileAppend::write_rows`]
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
        let per_write = (DIRECT_STAGING_BYTES / self.stride).clamp(1, rows.len().max(1));
        let mut staging = AlignedBytes::zeroed(per_write * self.stride)?;
        for (k, group) in rows.chunks(per_write).enumerate() {
            let buf = staging.as_mut_slice();
            // Each row lands at the start of its stride; the padding stays
            // zero from the allocation.
            for (slot, row) in buf.chunks_mut(self.stride).zip(group) {
                slot[..row.len() * 4].copy_from_slice(as_bytes(row));
            }
            let bytes = &buf[..group.len() * self.stride];
            let at = offset(k * per_write);
            if direct.write_all_at(bytes, at).is_err() {
                self.file
                    .write_all_at(bytes, at)
                    .map_err(|e| self.io_error(e))?;
            }
        }
        Ok(())
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

/// A group's rows: in memory while small, in a spill file past a limit.
#[derive(Debug)]
pub enum RowStore {
    /// All rows in one buffer.
    Memory(RowMatrix),
    /// All rows in a temporary file.
    Spilled(SpillRows),
}

/// When and where a [`RowStore`] moves its rows to a file.
#[derive(Debug, Clone)]
pub struct SpillPolicy {
    /// Rows stay in memory while they take at most this many bytes;
    /// `None` never spills.
    pub limit_bytes: Option<usize>,
    /// Folder of the spill files.
    pub dir: PathBuf,
}

impl SpillPolicy {
    /// Spill files in the system's temporary folder (`TMPDIR`), past
    /// `limit_bytes` of rows (`None`: never).
    pub fn in_temp_dir(limit_bytes: Option<usize>) -> Self {
        SpillPolicy {
            limit_bytes,
            dir: std::env::temp_dir(),
        }
    }
}

impl RowStore {
    /// An empty store for rows of `d` values.
    pub fn new(d: usize) -> Self {
        RowStore::Memory(RowMatrix::new(d))
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        match self {
            RowStore::Memory(m) => m.n(),
            RowStore::Spilled(s) => s.n(),
        }
    }

    /// Values per row.
    pub fn d(&self) -> usize {
        match self {
            RowStore::Memory(m) => m.d(),
            RowStore::Spilled(s) => s.d(),
        }
    }

    /// Whether the rows are in a file.
    pub fn is_spilled(&self) -> bool {
        matches!(self, RowStore::Spilled(_))
    }

    /// Appends one row, moving everything to a file once the memory held
    /// passes the policy's limit.
    pub fn push_row(&mut self, row: &[f32], policy: &SpillPolicy) -> Result<()> {
        match self {
            RowStore::Memory(m) => {
                m.push_row(row)?;
                self.spill_if_over(policy)
            }
            RowStore::Spilled(s) => s.push_row(row),
        }
    }

    /// Appends all rows of `other` (parallel aggregation's combine).
    pub fn append(&mut self, other: RowStore, policy: &SpillPolicy) -> Result<()> {
        if other.d() != self.d() {
            return Err(KernelError::RowLength {
                row: self.n(),
                expected: self.d(),
                got: other.d(),
            });
        }
        match (&mut *self, other) {
            (RowStore::Memory(m), RowStore::Memory(o)) => {
                m.append(&o)?;
                self.spill_if_over(policy)
            }
            (RowStore::Memory(m), RowStore::Spilled(mut o)) => {
                // Keep the file (usually the larger part) and write the
                // memory rows after it; callers track row order by keys.
                let mine = std::mem::take(m);
                o.append_from(&mine)?;
                *self = RowStore::Spilled(o);
                Ok(())
            }
            (RowStore::Spilled(s), RowStore::Memory(o)) => s.append_from(&o),
            (RowStore::Spilled(s), RowStore::Spilled(mut o)) => {
                o.flush()?;
                s.append_from(&o)
            }
        }
    }

    /// Whether `append(other)` puts `other`'s rows after this store's rows
    /// (true) or before them (false: a memory store appended with a spilled
    /// one keeps the file first).
    pub fn append_keeps_order(&self, other: &RowStore) -> bool {
        !(matches!(self, RowStore::Memory(_)) && matches!(other, RowStore::Spilled(_)))
    }

    fn spill_if_over(&mut self, policy: &SpillPolicy) -> Result<()> {
        let RowStore::Memory(m) = self else {
            return Ok(());
        };
        let Some(limit) = policy.limit_bytes else {
            return Ok(());
        };
        if m.n() * m.d() * 4 <= limit {
            return Ok(());
        }
        let mut file = SpillRows::create(policy.dir.clone(), m.d())?;
        file.append_from(m)?;
        *self = RowStore::Spilled(file);
        Ok(())
    }

    /// Makes room for `r` more rows and returns their places, so that
    /// they can be written while they are used: a piece at a time from
    /// several threads in memory (the streaming Gram copies each piece as
    /// it reads it for its products), or whole by one writer thread in a
    /// file. Moves to a file first if the rows would pass the policy's
    /// limit. The rows already there stay readable through the returned
    /// [`EarlierRows`] while the new ones are written.
    pub fn extend_rows(
        &mut self,
        r: usize,
        policy: &SpillPolicy,
    ) -> Result<(EarlierRows<'_>, NewRowPlaces<'_>)> {
        let d = self.d();
        if let (RowStore::Memory(m), Some(limit)) = (&*self, policy.limit_bytes) {
            if (m.n() + r).saturating_mul(d).saturating_mul(4) > limit {
                let mut file = SpillRows::create(policy.dir.clone(), d)?;
                file.append_from(m)?;
                *self = RowStore::Spilled(file);
            }
        }
        match self {
            RowStore::Memory(m) => {
                let first = m.n();
                m.extend_zeroed(r)?;
                let (old, new) = m.as_mut_slice().split_at_mut(first * d);
                let mut places = crate::memory::try_with_capacity(r, "row store places")?;
                places.extend(new.chunks_mut(d.max(1)));
                Ok((
                    EarlierRows::Memory(RowSlice::new(old, first, d)?),
                    NewRowPlaces::Memory(places),
                ))
            }
            RowStore::Spilled(s) => {
                s.flush()?;
                let first = s.n;
                s.n += r;
                let (file, dir, stride) = (&s.file, &s.dir, s.stride);
                let earlier = FileRows {
                    file,
                    dir,
                    n: first,
                    d,
                    stride,
                };
                let append = FileAppend {
                    file,
                    direct: s.direct.as_ref(),
                    dir,
                    d,
                    stride,
                    first,
                    count: r,
                };
                Ok((EarlierRows::File(earlier), NewRowPlaces::File(append)))
            }
        }
    }

    /// Frees the rows. A spill file is closed on a thread of its own:
    /// closing the last handle of an unlinked file gives its blocks back to
    /// the file system, about 0.6 s per GB on ext4 here, which the caller
    /// need not wait for.
    pub fn release(self) {
        if let RowStore::Spilled(file) = self {
            // If no thread can be started, the closure (and the file) is
            // dropped here instead.
            let _ = std::thread::Builder::new()
                .name("layercorr-spill-close".into())
                .spawn(move || drop(file));
        }
    }

    /// Flushes a spill file's write buffer; call before reading.
    pub fn finish(&mut self) -> Result<()> {
        match self {
            RowStore::Memory(_) => Ok(()),
            RowStore::Spilled(s) => s.flush(),
        }
    }

    /// The rows as a source for the kernels (after [`RowStore::finish`]).
    pub fn source(&self) -> &dyn RowSource {
        match self {
            RowStore::Memory(m) => m,
            RowStore::Spilled(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: Option<usize>) -> SpillPolicy {
        SpillPolicy::in_temp_dir(limit)
    }

    fn rows(n: usize, d: usize, seed: f32) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| (0..d).map(|j| seed + (i * d + j) as f32 * 0.5).collect())
            .collect()
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

    #[test]
    fn spills_past_the_limit_and_reads_back_every_value() {
        let p = policy(Some(100));
        let mut store = RowStore::new(7);
        let data = rows(20, 7, 1.0);
        for r in &data {
            store.push_row(r, &p).unwrap();
        }
        assert!(store.is_spilled());
        store.finish().unwrap();
        assert_eq!(read_all(store.source()), data);
        let mut piece = [0f32; 3];
        store.source().read(5, 2, &mut piece).unwrap();
        assert_eq!(piece, [data[5][2], data[5][3], data[5][4]]);
    }

    #[test]
    fn stays_in_memory_without_a_limit() {
        let p = policy(None);
        let mut store = RowStore::new(3);
        for r in rows(1000, 3, 0.0) {
            store.push_row(&r, &p).unwrap();
        }
        assert!(!store.is_spilled());
    }

    #[test]
    fn append_combines_every_pairing_of_memory_and_file() {
        let small = policy(Some(1 << 20));
        let tiny = policy(Some(8));
        for (a_spilled, b_spilled) in [(false, false), (false, true), (true, false), (true, true)] {
            let (a_rows, b_rows) = (rows(4, 5, 0.0), rows(3, 5, 100.0));
            let mut a = RowStore::new(5);
            let mut b = RowStore::new(5);
            for r in &a_rows {
                a.push_row(r, if a_spilled { &tiny } else { &small })
                    .unwrap();
            }
            for r in &b_rows {
                b.push_row(r, if b_spilled { &tiny } else { &small })
                    .unwrap();
            }
            let keeps_order = a.append_keeps_order(&b);
            a.append(b, &small).unwrap();
            a.finish().unwrap();
            let expected: Vec<Vec<f32>> = if keeps_order {
                a_rows.iter().chain(&b_rows).cloned().collect()
            } else {
                b_rows.iter().chain(&a_rows).cloned().collect()
            };
            assert_eq!(read_all(a.source()), expected, "{a_spilled} {b_spilled}");
        }
    }

    #[test]
    fn rejects_rows_of_another_length_and_unflushed_reads() {
        let p = policy(Some(0));
        let mut store = RowStore::new(4);
        store.push_row(&[1.0, 2.0, 3.0, 4.0], &p).unwrap();
        assert!(store.push_row(&[1.0], &p).is_err());
        let mut buf = [0f32; 4];
        assert!(store.source().read(0, 0, &mut buf).is_err());
        store.finish().unwrap();
        store.source().read(0, 0, &mut buf).unwrap();
        assert_eq!(buf, [1.0, 2.0, 3.0, 4.0]);
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
    fn rows_pushed_after_reserved_ones_land_after_them() {
        // Positional flushes: the rows reserved by extend_rows are written
        // without moving the file's cursor, and must not be overwritten by
        // rows appended later (a combine after a streamed block).
        let p = policy(Some(0));
        let mut store = RowStore::new(4);
        let data = rows(6, 4, 0.0);
        store.push_row(&data[0], &p).unwrap();
        {
            let refs: Vec<&[f32]> = data[1..4].iter().map(Vec::as_slice).collect();
            let (_, places) = store.extend_rows(3, &p).unwrap();
            places.write_all(&refs).unwrap();
        }
        let mut tail = RowStore::new(4);
        for r in &data[4..] {
            tail.push_row(r, &policy(None)).unwrap();
        }
        store.append(tail, &p).unwrap();
        store.finish().unwrap();
        assert_eq!(read_all(store.source()), data);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = SpillRows::create(PathBuf::from("/nonexistent/layercorr"), 3).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/layercorr"), "{err}");
    }
}
