//! The Gram matrix of a group's rows, accumulated while the rows arrive:
//! pearson, spearman and cosine, whose shift is known from each row alone.
//!
//! An aggregate sees its rows a chunk at a time, and the host frees each
//! chunk once the aggregate has looked at it. Keeping every row and doing
//! all the products at the end would cost a copy of the rows on one thread
//! and a second read of them later. [`StreamingGram`] instead multiplies
//! each arriving block of rows at once, on every core ([`block`]): with
//! itself and with the rows that came before it, reading the block
//! straight from the host's memory. The block is also kept in the group's
//! [`RowStore`], where later blocks read it for their own products.
//!
//! This module is the policy. Small blocks are held back until they are
//! worth a pass over the earlier rows: a block from the host is multiplied
//! at once if it has at least [`MIN_DIRECT_ROWS`] rows and a quarter of the
//! rows before it; rows held back wait in the store until there are
//! [`MIN_SETTLE_ROWS`] and half the rows before them, since multiplying
//! them costs a read of themselves as well. The blocks thus grow
//! geometrically, and the earlier rows read for all of them add up to
//! about twice the group. A large block bound for a spill file is written
//! whole, past the page cache, by a thread of its own while the products
//! run; smaller ones are copied piece by piece in the pass that reads them.
//! Spearman rows are ranked on their way into the store and multiplied
//! from there.

mod block;

use crate::error::{KernelError, Result};
use crate::method::CorrMethod;
use crate::numeric::sum_f64;
use crate::rank::{check_len, rank_into, RankScratch};
use crate::rows::{check_permutation, RowMatrix};
use crate::source::RowRange;
use crate::square::SquareMatrix;
use crate::store::{NewRowPlaces, RowStore, SpillPolicy};
use crate::triangle::{check_shape, lower_row, Triangle};
pub use block::BlockBuffers;
use block::{Block, Copies, NewRows};

/// Blocks from the host smaller than this wait for more rows.
pub const MIN_DIRECT_ROWS: usize = 128;
/// Rows waiting in the store are multiplied once there are this many.
pub const MIN_SETTLE_ROWS: usize = 256;
/// Blocks of at least this many rows, or of [`DIRECT_WRITE_MIN_BYTES`],
/// are written to a spill file past the page cache, on a writer thread
/// while the products run: such a block is most of a host chunk (2048
/// rows) or a large group arriving whole, so later blocks of its group, if
/// any, read it back rarely, and a copy into the page cache would cost
/// more than the write. Smaller blocks come from chunks shared by many
/// groups and are read back by the next few blocks, so they stay in the
/// page cache.
const DIRECT_WRITE_MIN_ROWS: usize = 1024;
/// See [`DIRECT_WRITE_MIN_ROWS`].
const DIRECT_WRITE_MIN_BYTES: usize = 64 << 20;
/// The pearson shift of a row is the mean of its first this many values.
const SHIFT_SPAN: usize = 2048;

/// A block of `r` rows from the host after `p` earlier ones is multiplied
/// at once if `r >= max(MIN_DIRECT_ROWS, p / 4)`.
fn direct_threshold(p: usize) -> usize {
    MIN_DIRECT_ROWS.max(p / 4)
}

/// `w` rows waiting in the store after `p` multiplied ones are multiplied
/// once `w >= max(MIN_SETTLE_ROWS, p / 2)`.
fn settle_threshold(p: usize) -> usize {
    MIN_SETTLE_ROWS.max(p / 2)
}

/// [`KernelError::EmptyRow`] for the first row of `batch` with no values
/// (rows numbered from `first`): an empty activation has nothing to
/// correlate, and would otherwise be mistaken for a shape error later.
pub(crate) fn check_not_empty(batch: &[&[f32]], first: usize) -> Result<()> {
    match batch.iter().position(|row| row.is_empty()) {
        Some(i) => Err(KernelError::EmptyRow { row: first + i }),
        None => Ok(()),
    }
}

/// Whether [`StreamingGram`] serves `method` (its shift is per row).
pub fn streams(method: CorrMethod) -> bool {
    matches!(
        method,
        CorrMethod::Pearson | CorrMethod::Spearman | CorrMethod::Cosine
    )
}

/// Products of a group's rows, accumulated block by block (see the module
/// documentation); rows are numbered in arrival order.
#[derive(Debug)]
pub struct StreamingGram {
    method: CorrMethod,
    d: usize,
    /// Every row so far (spearman: its ranks), for later blocks.
    store: RowStore,
    /// The shift of every stored row.
    shifts: Vec<f32>,
    /// Products of the first `done` rows.
    tri: Triangle,
    /// Rows whose products are in `tri`; the rest of the store waits.
    done: usize,
    /// Column chunk width (tests); `None`: the default.
    chunk: Option<usize>,
}

impl StreamingGram {
    /// An empty accumulator for rows of `d` values and a method that
    /// [`streams`].
    pub fn new(d: usize, method: CorrMethod) -> Self {
        StreamingGram {
            method,
            d,
            store: RowStore::new(d),
            shifts: Vec::new(),
            tri: Triangle::default(),
            done: 0,
            chunk: None,
        }
    }

    /// The same with a fixed column chunk width, so that tests reach many
    /// chunks with few values.
    #[cfg(test)]
    pub(crate) fn with_chunk(mut self, chunk: Option<usize>) -> Self {
        self.chunk = chunk;
        self
    }

    /// Rows so far.
    pub fn n(&self) -> usize {
        self.store.n()
    }

    /// Values per row.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Whether the kept rows are in a file.
    pub fn is_spilled(&self) -> bool {
        self.store.is_spilled()
    }

    /// The shift of a stored row: the mean of its first values (pearson),
    /// the mean rank `(d + 1) / 2` (spearman: average ranks sum to
    /// `d (d + 1) / 2` in every row, so the shifted ranks are exact
    /// half-integers), none (cosine).
    fn shift_of(method: CorrMethod, d: usize, row: &[f32]) -> f32 {
        match method {
            CorrMethod::Spearman => ((d as f64 + 1.0) * 0.5) as f32,
            CorrMethod::Pearson => {
                let head = &row[..SHIFT_SPAN.min(row.len())];
                (sum_f64(head) / head.len().max(1) as f64) as f32
            }
            _ => 0.0,
        }
    }

    /// Records the shifts of `rows` (as stored).
    fn push_shifts<'a>(&mut self, rows: impl Iterator<Item = &'a [f32]>, r: usize) -> Result<()> {
        let p = self.shifts.len();
        self.shifts
            .try_reserve(r)
            .map_err(|_| KernelError::TooLarge {
                what: "stream row shifts",
                bytes: ((p + r) as u64).saturating_mul(4),
            })?;
        let (method, d) = (self.method, self.d);
        self.shifts
            .extend(rows.map(|row| Self::shift_of(method, d, row)));
        Ok(())
    }

    /// Adds rows (each `d` values, in the caller's memory). A block large
    /// enough is multiplied now, while the rows are at hand; a small one is
    /// stored and waits for more. Spearman rows are ranked into the store.
    pub fn push_rows(
        &mut self,
        batch: &[&[f32]],
        policy: &SpillPolicy,
        bufs: &mut BlockBuffers,
    ) -> Result<()> {
        let (p, r, d) = (self.n(), batch.len(), self.d);
        if r == 0 {
            return Ok(());
        }
        self.check_batch(batch)?;
        let direct = self.done == p && r >= direct_threshold(p);
        if self.method == CorrMethod::Spearman || !direct {
            self.store_batch(batch, policy)?;
            if direct || self.n() - self.done >= settle_threshold(self.done) {
                self.settle(bufs)?;
            }
            return Ok(());
        }
        self.push_shifts(batch.iter().copied(), r)?;
        self.tri.grow(p + r)?;
        let (earlier, places) = self.store.extend_rows(r, policy)?;
        // Large blocks bypass the page cache through a writer thread (whole,
        // aligned rows); the others are copied piece by piece in the pass
        // that reads them, while each piece is in cache.
        let (copies, writer) = match places {
            NewRowPlaces::Memory(m) => (Copies::Memory(m), None),
            NewRowPlaces::File(append)
                if r >= DIRECT_WRITE_MIN_ROWS
                    || r.saturating_mul(d).saturating_mul(4) >= DIRECT_WRITE_MIN_BYTES =>
            {
                (Copies::Elsewhere, Some(append))
            }
            NewRowPlaces::File(append) => (Copies::File(append), None),
        };
        let block = Block {
            earlier: &earlier,
            p,
            earlier_shifts: &self.shifts[..p],
            new: NewRows::Slices {
                rows: batch,
                copies,
            },
            new_shifts: &self.shifts[p..],
            triangle: true,
            chunk: self.chunk,
        };
        let lower_new = &mut self.tri.lower[lower_row(p)..];
        let sums = Some(&mut self.tri.row_sums[p..]);
        let spans = Some(&mut self.tri.spans[p..]);
        match writer {
            None => block.run(d, bufs, lower_new, sums, spans)?,
            // The rows go to the file on a thread of their own, past the
            // page cache, while the pool multiplies; the host's rows stay
            // valid until this call returns.
            Some(append) => std::thread::scope(|scope| {
                let writer = scope.spawn(move || append.write_rows(batch, true));
                let products = block.run(d, bufs, lower_new, sums, spans);
                let written = writer.join().unwrap_or_else(|_| {
                    Err(KernelError::Spill {
                        dir: policy.dir.display().to_string(),
                        reason: "the writer thread panicked".into(),
                    })
                });
                products.and(written)
            })?,
        }
        self.done = p + r;
        Ok(())
    }

    /// Adds rows (as [`StreamingGram::push_rows`]) to the store only: their
    /// products wait for [`StreamingGram::settle_waiting`] (or a later
    /// push, or the end), which may run elsewhere once the caller's rows
    /// are gone, since it reads them from the store.
    pub fn store_rows(&mut self, batch: &[&[f32]], policy: &SpillPolicy) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.check_batch(batch)?;
        self.store_batch(batch, policy)
    }

    /// Multiplies the rows that wait in the store.
    pub fn settle_waiting(&mut self, bufs: &mut BlockBuffers) -> Result<()> {
        self.settle(bufs)
    }

    /// [`KernelError::EmptyRow`] or [`KernelError::RowLength`] for the
    /// first row of `batch` that is empty or not `d` values long.
    fn check_batch(&self, batch: &[&[f32]]) -> Result<()> {
        let p = self.n();
        check_not_empty(batch, p)?;
        match batch
            .iter()
            .enumerate()
            .find(|(_, row)| row.len() != self.d)
        {
            Some((i, row)) => Err(KernelError::RowLength {
                row: p + i,
                expected: self.d,
                got: row.len(),
            }),
            None => Ok(()),
        }
    }

    /// Copies `batch` into the store (spearman: its ranks) and records the
    /// rows' shifts; their products wait.
    fn store_batch(&mut self, batch: &[&[f32]], policy: &SpillPolicy) -> Result<()> {
        let (p, r, d) = (self.n(), batch.len(), self.d);
        if self.method == CorrMethod::Spearman {
            check_len(d)?;
            let (_, places) = self.store.extend_rows(r, policy)?;
            places.write_with(batch, RankScratch::default, |scratch, i, row, out| {
                rank_into(row, out, scratch).map_err(|(col, value)| KernelError::NonFinite {
                    row: p + i,
                    col,
                    value,
                })
            })?;
            return self.push_shifts(std::iter::repeat_n(&[][..], r), r);
        }
        self.push_shifts(batch.iter().copied(), r)?;
        let (_, places) = self.store.extend_rows(r, policy)?;
        places.write_all(batch)
    }

    /// Adds every row of `rows` when nothing was pushed yet, taking the
    /// matrix itself as the store instead of copying it (spearman: ranked
    /// in place); otherwise as [`StreamingGram::push_rows`].
    pub fn push_matrix(
        &mut self,
        mut rows: RowMatrix,
        policy: &SpillPolicy,
        bufs: &mut BlockBuffers,
    ) -> Result<()> {
        if self.n() > 0 || rows.d() != self.d || rows.d() == 0 {
            let batch: Vec<&[f32]> = (0..rows.n()).map(|i| rows.row(i)).collect();
            return self.push_rows(&batch, policy, bufs);
        }
        if self.method == CorrMethod::Spearman {
            crate::rank::rank_rows(&mut rows)?;
        }
        let d = self.d;
        self.push_shifts(rows.as_slice().chunks(d), rows.n())?;
        self.store = RowStore::Memory(rows);
        self.settle(bufs)
    }

    /// Multiplies the rows still waiting.
    fn settle(&mut self, bufs: &mut BlockBuffers) -> Result<()> {
        let (p, n, d) = (self.done, self.n(), self.d);
        if p == n {
            return Ok(());
        }
        self.store.finish()?;
        self.tri.grow(n)?;
        let rows = self.store.source();
        let waiting = RowRange::new(rows, p, n - p)?;
        let block = Block {
            earlier: rows,
            p,
            earlier_shifts: &self.shifts[..p],
            new: NewRows::Source(&waiting),
            new_shifts: &self.shifts[p..n],
            triangle: true,
            chunk: self.chunk,
        };
        block.run(
            d,
            bufs,
            &mut self.tri.lower[lower_row(p)..],
            Some(&mut self.tri.row_sums[p..]),
            Some(&mut self.tri.spans[p..]),
        )?;
        self.done = n;
        Ok(())
    }

    /// Adds every row of `other` (parallel aggregation's combine): only the
    /// products between the two sets are new. Returns whether `other`'s rows
    /// now come after this one's (true) or before them (false).
    pub fn merge(&mut self, mut other: StreamingGram, policy: &SpillPolicy) -> Result<bool> {
        if other.d != self.d {
            return Err(KernelError::RowLength {
                row: self.n(),
                expected: self.d,
                got: other.d,
            });
        }
        let mut bufs = BlockBuffers::default();
        self.settle(&mut bufs)?;
        other.settle(&mut bufs)?;
        let keeps_order = self.store.append_keeps_order(&other.store);
        if !keeps_order {
            std::mem::swap(self, &mut other);
        }
        let (p, r, d) = (self.n(), other.n(), self.d);
        if r == 0 {
            return Ok(keeps_order);
        }
        self.tri.grow(p + r)?;
        {
            // Row p + i of the new triangle: p cross products, then row i of
            // other's own triangle.
            let lower_new = &mut self.tri.lower[lower_row(p)..];
            let at = block::lower_offset(p);
            for i in 0..r {
                lower_new[at(i) + p..at(i + 1)]
                    .copy_from_slice(&other.tri.lower[lower_row(i)..lower_row(i + 1)]);
            }
            self.tri.row_sums[p..].copy_from_slice(&other.tri.row_sums);
            self.tri.spans[p..].copy_from_slice(&other.tri.spans);
            other.store.finish()?;
            self.store.finish()?;
            let block = Block {
                earlier: self.store.source(),
                p,
                earlier_shifts: &self.shifts,
                new: NewRows::Source(other.store.source()),
                new_shifts: &other.shifts,
                triangle: false,
                chunk: self.chunk,
            };
            block.run(d, &mut bufs, lower_new, None, None)?;
        }
        self.shifts
            .try_reserve(r)
            .map_err(|_| KernelError::TooLarge {
                what: "stream row shifts",
                bytes: ((p + r) as u64).saturating_mul(4),
            })?;
        self.shifts.extend_from_slice(&other.shifts);
        self.store.append(other.store, policy)?;
        self.store.finish()?;
        self.done = p + r;
        Ok(keeps_order)
    }

    /// The N x N matrix, rows and columns in the order `order` (new row `k`
    /// is arrival row `order[k]`). Errors name arrival rows.
    pub fn finish(mut self, order: &[usize]) -> Result<SquareMatrix<f32>> {
        let (n, d, method) = (self.n(), self.d, self.method);
        check_shape(n, d, method)?;
        check_permutation(order, n)?;
        self.settle(&mut BlockBuffers::default())?;
        // The rows are still at hand for the few whose variance must be
        // recomputed exactly; the constant test itself uses the spans.
        self.store.finish()?;
        self.tri.map_entries(method, d, self.store.source())?;
        self.store.release();
        self.tri.into_matrix(order)
    }
}

#[cfg(test)]
mod tests;
