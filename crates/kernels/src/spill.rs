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
//! Written by hand: the data is a flat run of `f32` rows written once and
//! read by offset, which `std::fs::File` with `FileExt::read_exact_at`
//! does directly; a general key-value or mmap crate would add nothing.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{KernelError, Result};
use crate::rows::{check_row_length, RowMatrix};
use crate::source::{RowSlice, RowSource};

/// Bytes gathered before one `write` to the file.
const WRITE_BUFFER_BYTES: usize = 4 << 20;

static SPILL_COUNTER: AtomicU64 = AtomicU64::new(0);

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
    dir: PathBuf,
    n: usize,
    d: usize,
    /// Rows written but not yet flushed to the file.
    pending: Vec<u8>,
}

impl SpillRows {
    /// A new, empty spill file in `dir` (removed from the folder at once, so
    /// nothing is left behind even if the host is killed).
    pub fn create(dir: PathBuf, d: usize) -> Result<Self> {
        let fail = |e: std::io::Error| KernelError::Spill {
            dir: dir.display().to_string(),
            reason: e.to_string(),
        };
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
        std::fs::remove_file(&path).map_err(fail)?;
        Ok(SpillRows {
            file,
            dir,
            n: 0,
            d,
            pending: Vec::new(),
        })
    }

    fn io_error(&self, e: std::io::Error) -> KernelError {
        KernelError::Spill {
            dir: self.dir.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// Appends one row.
    pub fn push_row(&mut self, row: &[f32]) -> Result<()> {
        check_row_length(row, self.n, self.d)?;
        let bytes = as_bytes(row);
        if self.pending.len() + bytes.len() > WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        if bytes.len() >= WRITE_BUFFER_BYTES {
            self.file.write_all(bytes).map_err(|e| self.io_error(e))?;
        } else {
            self.pending.extend_from_slice(bytes);
        }
        self.n += 1;
        Ok(())
    }

    /// Writes the rows still in the write buffer; reads see every row only
    /// after this.
    pub fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.file
                .write_all(&self.pending)
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
        let offset = ((row * self.d + c0) * 4) as u64;
        self.file
            .read_exact_at(as_bytes_mut(dst), offset)
            .map_err(|e| KernelError::Spill {
                dir: self.dir.display().to_string(),
                reason: e.to_string(),
            })
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

/// Where one new row of a [`RowStore`] goes (see [`RowStore::extend_rows`]).
#[derive(Debug)]
pub enum RowSink<'a> {
    /// The row's place in the memory buffer.
    Memory(&'a mut [f32]),
    /// The row's place in the spill file.
    File {
        /// The spill file (positional writes need no `&mut`).
        file: &'a File,
        /// Its folder, for error messages.
        dir: &'a PathBuf,
        /// Byte offset of the row's first value.
        offset: u64,
    },
}

impl RowSink<'_> {
    /// Writes `values` as the row's columns `c0..c0 + values.len()`.
    pub fn write(&mut self, c0: usize, values: &[f32]) -> Result<()> {
        match self {
            RowSink::Memory(row) => {
                let len = row.len();
                let dst = row
                    .get_mut(c0..c0 + values.len())
                    .ok_or(KernelError::BadShape {
                        what: "row sink write",
                        expected: len,
                        got: c0 + values.len(),
                    })?;
                dst.copy_from_slice(values);
                Ok(())
            }
            RowSink::File { file, dir, offset } => file
                .write_all_at(as_bytes(values), *offset + (c0 * 4) as u64)
                .map_err(|e| KernelError::Spill {
                    dir: dir.display().to_string(),
                    reason: e.to_string(),
                }),
        }
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

    /// Makes room for `r` more rows and returns one writer per new row, so
    /// that rows can be written a column piece at a time from several
    /// threads (the streaming Gram writes each piece as it reads it for
    /// its products, instead of copying the rows in a pass of their own).
    /// Moves to a file first if the rows would pass the policy's limit.
    /// The rows already there stay readable through the returned
    /// [`EarlierRows`] while the new ones are written.
    pub fn extend_rows(
        &mut self,
        r: usize,
        policy: &SpillPolicy,
    ) -> Result<(EarlierRows<'_>, Vec<RowSink<'_>>)> {
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
                let sinks = new.chunks_mut(d.max(1)).map(RowSink::Memory).collect();
                Ok((EarlierRows::Memory(RowSlice::new(old, first, d)?), sinks))
            }
            RowStore::Spilled(s) => {
                s.flush()?;
                let first = s.n;
                s.n += r;
                let (file, dir) = (&s.file, &s.dir);
                let sinks = (first..first + r)
                    .map(|row| RowSink::File {
                        file,
                        dir,
                        offset: (row * d * 4) as u64,
                    })
                    .collect();
                let earlier = FileRows {
                    file,
                    dir,
                    n: first,
                    d,
                };
                Ok((EarlierRows::File(earlier), sinks))
            }
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

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = SpillRows::create(PathBuf::from("/nonexistent/layercorr"), 3).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/layercorr"), "{err}");
    }
}
