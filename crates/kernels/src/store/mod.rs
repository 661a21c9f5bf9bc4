//! A group's rows, kept while more may come: in memory up to a limit,
//! past it in a spill file ([`file`]).
//!
//! The `n x n` matrix needs all pairs, so an aggregate keeps every row of
//! its group: the streaming Gram multiplies each new block with every
//! earlier row, and euclidean and gram wait for all rows before the first
//! product. Inside DuckDB that copy comes on top of the table and of the
//! chunk DuckDB has just scanned, so [`RowStore`] keeps rows in memory up to
//! [`SpillPolicy::limit_bytes`] and past it in an unlinked temporary file,
//! read back a column chunk at a time through [`RowSource`]; the operating
//! system's page cache holds the file in RAM while there is room, so the
//! process's own memory stays at the chunk buffers plus `n²`.
//! [`RowStore::extend_rows`] hands out the places of a block of new rows so
//! that they can be written while they are used: a piece at a time from the
//! pass that reads them, or whole by a writer thread.

pub mod file;

use std::path::PathBuf;

use rayon::prelude::*;

use crate::alloc::try_with_capacity;
use crate::error::{KernelError, Result};
use crate::rows::{check_row_length, RowMatrix};
use crate::source::{RowSlice, RowSource};
pub use file::{FileAppend, FileRows, SpillRows};

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

    /// Writes new row `i` as `make(scratch, i, rows[i], out)` makes it from
    /// `rows[i]` (rows transformed on their way in, e.g. ranked), rows in
    /// parallel with one `init()` scratch per thread: in memory straight
    /// into its place, in a file through a row buffer and the page cache.
    /// `rows` must be one per new row, each as long as a stored row; the
    /// error of the smallest failing row is returned.
    pub fn write_with<S, I, F>(self, rows: &[&[f32]], init: I, make: F) -> Result<()>
    where
        I: Fn() -> S + Sync + Send,
        F: Fn(&mut S, usize, &[f32], &mut [f32]) -> Result<()> + Sync + Send,
    {
        let first_error = |e: Option<(usize, KernelError)>| match e {
            Some((_, e)) => Err(e),
            None => Ok(()),
        };
        match self {
            NewRowPlaces::Memory(mut places) => {
                if places.len() != rows.len() {
                    return Err(KernelError::BadShape {
                        what: "new rows",
                        expected: places.len(),
                        got: rows.len(),
                    });
                }
                first_error(
                    places
                        .par_iter_mut()
                        .zip(rows.par_iter())
                        .enumerate()
                        .map_init(&init, |s, (i, (place, row))| {
                            check_row_length(row, i, place.len())
                                .and_then(|()| make(s, i, row, place))
                                .err()
                                .map(|e| (i, e))
                        })
                        .flatten()
                        .min_by_key(|(i, _)| *i),
                )
            }
            NewRowPlaces::File(append) => {
                let append = &append;
                first_error(
                    rows.par_iter()
                        .enumerate()
                        .map_init(
                            || (init(), Vec::new()),
                            |(s, buf), (i, row)| {
                                buf.resize(row.len(), 0f32);
                                make(s, i, row, buf)
                                    .and_then(|()| append.write_piece(i, 0, buf))
                                    .err()
                                    .map(|e| (i, e))
                            },
                        )
                        .flatten()
                        .min_by_key(|(i, _)| *i),
                )
            }
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
                let mut places = try_with_capacity(r, "row store places")?;
                places.extend(new.chunks_mut(d.max(1)));
                Ok((
                    EarlierRows::Memory(RowSlice::new(old, first, d)?),
                    NewRowPlaces::Memory(places),
                ))
            }
            RowStore::Spilled(s) => {
                let (earlier, append) = s.reserve(r)?;
                Ok((EarlierRows::File(earlier), NewRowPlaces::File(append)))
            }
        }
    }

    /// Frees the rows. A spill file is closed on a thread of its own:
    /// closing the last handle of an unlinked file gives its blocks back to
    /// the file system, which takes a while for a large file and which the caller
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
}
