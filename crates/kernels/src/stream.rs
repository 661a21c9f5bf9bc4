//! The Gram matrix of a group's rows, accumulated while the rows arrive.
//!
//! An aggregate sees its rows a chunk at a time, and the host frees each
//! chunk once the aggregate has looked at it. Keeping every row and doing
//! all the products at the end costs a copy of the rows on one thread and
//! a second read of them later. [`StreamingGram`] instead multiplies each
//! arriving block of rows at once, on every core: with itself (lower
//! triangle) and with the rows that came before it (a rectangular
//! product), reading the block straight from the host's memory. The block
//! is also kept in the group's [`RowStore`], where later blocks will read
//! it for their own products: copied piece by piece in the same pass, in
//! memory or through the page cache into a spill file, except that a large
//! block bound for a spill file is written whole, past the page cache, by
//! a thread of its own (see [`crate::spill`]).
//!
//! The products go, as in [`crate::gram`], through `f32` column chunks of
//! shifted rows summed into an `f64` accumulator; here it is a packed lower
//! triangle stored row by row, which grows by appending as rows arrive.
//! Small blocks are held back until they are worth a pass over the earlier
//! rows. A block straight from the host is multiplied at once if it has
//! at least [`MIN_DIRECT_ROWS`] rows and a quarter of the rows before it;
//! rows held back wait in the store until there are [`MIN_SETTLE_ROWS`]
//! and half the rows before them, since multiplying them costs a read of
//! themselves as well. A group that arrives a few rows per chunk thus
//! reads its earlier rows only a few times in all: the blocks grow
//! geometrically, and the earlier rows read for all of them add up to
//! about twice the group.
//!
//! For pearson, spearman (rows ranked by the caller) and cosine, whose
//! shift is known from each row alone. Euclidean and gram centre by the
//! column means over all rows, so their rows are kept until the end
//! ([`crate::corr::correlation_matrix_of`]); [`CorrAccumulator`] picks.

use faer::linalg::matmul::matmul as rect_matmul;
use faer::linalg::matmul::triangular::BlockStructure;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::corr::inverse_spreads;
use crate::corr::{check_shape, correlation_matrix_of};
use crate::error::{KernelError, Result};
use crate::gram::{
    default_chunk, fill_chunk, gram_of_rows, par_rows_mut, rescale_rows, shift_sum, sum_f64, Shift,
    Span,
};
use crate::memory::{square_len, try_with_capacity};
use crate::source::{Permuted, RowRange, RowSource};
use crate::spill::{FileAppend, NewRowPlaces, RowStore, SpillPolicy};
use crate::{try_zeroed, CorrMethod, SquareMatrix};

/// Blocks from the host smaller than this wait for more rows.
pub const MIN_DIRECT_ROWS: usize = 128;
/// Rows waiting in the store are multiplied once there are this many.
pub const MIN_SETTLE_ROWS: usize = 256;
/// Blocks of at least this many rows are written to a spill file past the
/// page cache: such a block is most of a host chunk (2048 rows), so later
/// blocks of its group, if any, are as large and read it back rarely.
/// Smaller blocks come from chunks shared by many groups and are read
/// back by the next few blocks, so they stay in the page cache.
const DIRECT_WRITE_MIN_ROWS: usize = 1024;
/// The pearson shift of a row is the mean of its first this many values.
const SHIFT_SPAN: usize = 2048;

/// Offset of row `i` in a packed lower triangle stored row by row.
fn lower_row(i: usize) -> usize {
    i * (i + 1) / 2
}

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
fn check_not_empty(batch: &[&[f32]], first: usize) -> Result<()> {
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
    /// Every row so far, for the products with later blocks.
    store: RowStore,
    /// The shift of every stored row.
    shifts: Vec<f32>,
    /// Sums of the shifted values of the rows in `lower`.
    row_sums: Vec<f64>,
    /// Smallest and largest value of each row in `lower`, for the exact
    /// test of a constant (or, for cosine, all-zero) row.
    spans: Vec<Span>,
    /// Packed lower triangle, row by row, of the first `done` rows.
    lower: Vec<f64>,
    /// Rows whose products are in `lower`; the rest of the store waits.
    done: usize,
}

/// The new rows of one block.
enum NewRows<'a> {
    /// In the host's memory; each piece is also copied to the store as it
    /// is read, while it is in cache.
    Slices {
        rows: &'a [&'a [f32]],
        copies: Copies<'a>,
    },
    /// Every row of a source (stored rows).
    Source(&'a dyn RowSource),
}

impl NewRows<'_> {
    fn len(&self) -> usize {
        match self {
            NewRows::Slices { rows, .. } => rows.len(),
            NewRows::Source(rows) => rows.n(),
        }
    }

    /// The first non-finite value of new row `i`, as an error for row
    /// `first + i` of the group.
    fn non_finite(&self, i: usize, first: usize) -> Result<Option<KernelError>> {
        let found = |row: &[f32]| {
            row.iter()
                .position(|x| !x.is_finite())
                .map(|col| KernelError::NonFinite {
                    row: first + i,
                    col,
                    value: row[col],
                })
        };
        match self {
            NewRows::Slices { rows, .. } => Ok(found(rows[i])),
            NewRows::Source(rows) => {
                let mut buf = vec![0f32; rows.d()];
                rows.read(i, 0, &mut buf)?;
                Ok(found(&buf))
            }
        }
    }
}

/// Where the pieces of host rows go as they are read.
enum Copies<'a> {
    /// Each row's place in the memory store.
    Memory(Vec<&'a mut [f32]>),
    /// The rows' places in the spill file (through the page cache).
    File(FileAppend<'a>),
    /// Nowhere: a writer thread writes the rows whole.
    Elsewhere,
}

/// Working buffers of the block products, kept between blocks: a fresh
/// buffer of many megabytes costs page faults and zeroing each time, and
/// one DuckDB chunk brings a block for every group in it. Reuse one across
/// the calls made for one chunk; it frees its memory when dropped.
#[derive(Debug, Default)]
pub struct BlockBuffers {
    new: Vec<f32>,
    earlier: Vec<f32>,
    rect: Vec<f32>,
    tri: Vec<f32>,
}

/// The first `len` values of `v`, grown (zero-filled) if it is shorter;
/// what was there before is left for the caller to overwrite.
fn at_least<'a>(v: &'a mut Vec<f32>, len: usize, what: &'static str) -> Result<&'a mut [f32]> {
    if v.len() < len {
        v.try_reserve_exact(len - v.len())
            .map_err(|_| KernelError::TooLarge {
                what,
                bytes: (len as u64).saturating_mul(4),
            })?;
        v.resize(len, 0.0);
    }
    Ok(&mut v[..len])
}

/// One block's products: new rows `p..p + r` with the first `p` rows and,
/// if `triangle`, with themselves; added into `lower_new` (the packed
/// lower rows `p..p + r`) and, if given, the new rows' sums into `sums`
/// and their spans into `spans`.
struct Block<'a> {
    earlier: &'a dyn RowSource,
    p: usize,
    earlier_shifts: &'a [f32],
    new: NewRows<'a>,
    new_shifts: &'a [f32],
    triangle: bool,
}

/// Start of packed lower row `p + i` relative to row `p`.
fn lower_offset(p: usize) -> impl Fn(usize) -> usize + Sync {
    move |i| lower_row(p + i) - lower_row(p)
}

impl Block<'_> {
    fn run(
        self,
        d: usize,
        bufs: &mut BlockBuffers,
        lower_new: &mut [f64],
        sums: Option<&mut [f64]>,
        spans: Option<&mut [Span]>,
    ) -> Result<()> {
        let Block {
            earlier,
            p,
            earlier_shifts,
            mut new,
            new_shifts,
            triangle,
        } = self;
        let r = new.len();
        let cw_max = default_chunk(p + r, d);
        let b_new = at_least(
            &mut bufs.new,
            r.saturating_mul(cw_max),
            "stream chunk buffer",
        )?;
        let b_old = at_least(
            &mut bufs.earlier,
            p.saturating_mul(cw_max),
            "stream chunk buffer",
        )?;
        let rect_len = r.saturating_mul(p);
        let rect = at_least(&mut bufs.rect, rect_len, "stream cross products")?;
        let tri_len = if triangle {
            crate::memory::square_len(r, "stream products")?
        } else {
            0
        };
        let tri = at_least(&mut bufs.tri, tri_len, "stream products")?;
        let mut new_sums: Vec<f64> = try_zeroed(r, "stream row sums")?;
        let mut earlier_sums: Vec<f64> = try_zeroed(p, "stream row sums")?;
        let mut new_spans: Vec<Span> = try_with_capacity(r, "stream row spans")?;
        new_spans.resize(r, Span::EMPTY);
        let mut chunk_new_spans = new_spans.clone();
        let mut chunk_old_spans: Vec<Span> = try_with_capacity(p, "stream row spans")?;
        chunk_old_spans.resize(p, Span::EMPTY);
        let par = Par::rayon(0);

        let mut c0 = 0;
        while c0 < d {
            let cw = cw_max.min(d - c0);
            let bn = &mut b_new[..r * cw];
            let bad = fill_new(
                &mut new,
                new_shifts,
                c0,
                bn,
                &mut new_sums,
                &mut chunk_new_spans,
            )?;
            if let Some(i) = bad {
                return Err(new
                    .non_finite(i, p)?
                    .unwrap_or(KernelError::Overflow { row: p + i }));
            }
            for (s, c) in new_spans.iter_mut().zip(&chunk_new_spans) {
                *s = s.merge(*c);
            }
            // Every streamed method is unchanged by scaling a row, so rows
            // too small or large for f32 products are scaled for this
            // chunk and the products divided back below.
            let unscale_new = rescale_rows(bn, cw, Shift::PerRow(new_shifts), &chunk_new_spans)?;
            let lhs = MatRef::from_row_major_slice(&bn[..], r, cw);
            if triangle {
                // Column-major upper triangle: column i holds (0..=i, i),
                // which by symmetry is row i of the lower triangle.
                gram_of_rows(
                    MatMut::from_column_major_slice_mut(&mut *tri, r, r),
                    BlockStructure::TriangularUpper,
                    lhs,
                    par,
                );
            }
            let mut unscale_old = None;
            if p > 0 {
                // The earlier rows were checked for non-finite values when
                // they arrived; their sums are already known.
                let bo = &mut b_old[..p * cw];
                fill_chunk(
                    earlier,
                    Shift::PerRow(earlier_shifts),
                    c0,
                    bo,
                    &mut earlier_sums,
                    &mut [],
                    &mut chunk_old_spans,
                )?;
                unscale_old =
                    rescale_rows(bo, cw, Shift::PerRow(earlier_shifts), &chunk_old_spans)?;
                let rhs = MatRef::from_row_major_slice(&bo[..], p, cw);
                // (B_old B_newᵀ) column-major: column i is new row i's
                // products with the p earlier rows.
                rect_matmul(
                    MatMut::from_column_major_slice_mut(&mut *rect, p, r),
                    Accum::Replace,
                    rhs,
                    lhs.transpose(),
                    1.0f32,
                    par,
                );
            }
            let (rect, tri) = (&*rect, &*tri);
            let (inv_new, inv_old) = (unscale_new.as_deref(), unscale_old.as_deref());
            let scaled = inv_new.is_some() || inv_old.is_some();
            par_rows_mut(lower_new, 0..r, &lower_offset(p), &|i, row| {
                let (cross, own) = row.split_at_mut(p);
                let products = &rect[i * p..(i + 1) * p];
                let own_products: &[f32] = if triangle {
                    &tri[i * r..i * r + i + 1]
                } else {
                    &[]
                };
                if !scaled {
                    for (a, &v) in cross.iter_mut().zip(products) {
                        *a += v as f64;
                    }
                    if triangle {
                        for (a, &v) in own.iter_mut().zip(own_products) {
                            *a += v as f64;
                        }
                    }
                    return;
                }
                let inv_i = inv_new.map_or(1.0, |v| v[i]);
                let inv_k = |inv: Option<&[f64]>, k: usize| inv.map_or(1.0, |v| v[k]);
                for (k, (a, &v)) in cross.iter_mut().zip(products).enumerate() {
                    *a += v as f64 * (inv_i * inv_k(inv_old, k));
                }
                if triangle {
                    for (k, (a, &v)) in own.iter_mut().zip(own_products).enumerate() {
                        *a += v as f64 * (inv_i * inv_k(inv_new, k));
                    }
                }
            });
            c0 += cw;
        }
        if triangle {
            let diag_of = |i: usize| lower_new[lower_offset(p)(i) + p + i];
            if let Some(i) = (0..r).find(|&i| !diag_of(i).is_finite()) {
                return Err(KernelError::Overflow { row: p + i });
            }
        }
        if let Some(s) = sums {
            for (a, b) in s.iter_mut().zip(&new_sums) {
                *a += b;
            }
        }
        if let Some(s) = spans {
            s.copy_from_slice(&new_spans);
        }
        Ok(())
    }
}

/// Columns `c0..c0 + cw` of the new rows, shifted, into `b` (`r x cw`);
/// adds the row sums, sets the rows' spans of these columns, and writes
/// host rows to their sinks on the way. Returns the first new row with a
/// non-finite value.
fn fill_new(
    new: &mut NewRows<'_>,
    shifts: &[f32],
    c0: usize,
    b: &mut [f32],
    sums: &mut [f64],
    spans: &mut [Span],
) -> Result<Option<usize>> {
    let r = sums.len();
    let cw = b.len() / r.max(1);
    match new {
        NewRows::Slices { rows, copies } => {
            let mut memory: Vec<Option<&mut [f32]>> = try_with_capacity(r, "stream row places")?;
            let file = match copies {
                Copies::Memory(places) => {
                    memory.extend(places.iter_mut().map(|p| Some(&mut **p)));
                    None
                }
                Copies::File(f) => Some(&*f),
                Copies::Elsewhere => None,
            };
            memory.resize_with(r, || None);
            b.par_chunks_mut(cw)
                .zip(memory.par_iter_mut())
                .zip(sums.par_iter_mut())
                .zip(spans.par_iter_mut())
                .enumerate()
                .with_min_len(4)
                .map(|(i, (((dst, copy), sum), span))| {
                    let src = &rows[i][c0..c0 + cw];
                    if let Some(copy) = copy {
                        copy[c0..c0 + cw].copy_from_slice(src);
                    }
                    if let Some(f) = file {
                        f.write_piece(i, c0, src)?;
                    }
                    let s = shift_sum(src, dst, shifts[i], span);
                    *sum += s;
                    Ok((!s.is_finite()).then_some(i))
                })
                .try_reduce(|| None, |a, b| Ok(a.into_iter().chain(b).min()))
        }
        NewRows::Source(rows) => {
            fill_chunk(*rows, Shift::PerRow(shifts), c0, b, sums, &mut [], spans)
        }
    }
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
            row_sums: Vec::new(),
            spans: Vec::new(),
            lower: Vec::new(),
            done: 0,
        }
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

    fn grow_lower(&mut self, rows: usize) -> Result<()> {
        let len = rows
            .checked_add(1)
            .and_then(|m| m.checked_mul(rows))
            .map(|m| m / 2)
            .ok_or(KernelError::TooLarge {
                what: "stream accumulator",
                bytes: u64::MAX,
            })?;
        let extra = len.saturating_sub(self.lower.len());
        self.lower
            .try_reserve_exact(extra)
            .map_err(|_| KernelError::TooLarge {
                what: "stream accumulator",
                bytes: (len as u64).saturating_mul(8),
            })?;
        let extra_rows = rows.saturating_sub(self.row_sums.len());
        let fail = |_| KernelError::TooLarge {
            what: "stream row sums",
            bytes: (rows as u64).saturating_mul(16),
        };
        self.row_sums.try_reserve_exact(extra_rows).map_err(fail)?;
        self.spans.try_reserve_exact(extra_rows).map_err(fail)?;
        self.lower.resize(len, 0.0);
        self.row_sums.resize(rows, 0.0);
        self.spans.resize(rows, Span::EMPTY);
        Ok(())
    }

    /// Adds rows (each `d` values, in the caller's memory). A block large
    /// enough is multiplied now, while the rows are at hand; a small one is
    /// stored and waits for more.
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
        check_not_empty(batch, p)?;
        if let Some((i, row)) = batch.iter().enumerate().find(|(_, row)| row.len() != d) {
            return Err(KernelError::RowLength {
                row: p + i,
                expected: d,
                got: row.len(),
            });
        }
        let method = self.method;
        self.shifts
            .try_reserve(r)
            .map_err(|_| KernelError::TooLarge {
                what: "stream row shifts",
                bytes: ((p + r) as u64).saturating_mul(4),
            })?;
        self.shifts
            .extend(batch.iter().map(|row| Self::shift_of(method, d, row)));
        if self.done < p || r < direct_threshold(p) {
            let (_, places) = self.store.extend_rows(r, policy)?;
            places.write_all(batch)?;
            if self.n() - self.done >= settle_threshold(self.done) {
                self.settle(bufs)?;
            }
            return Ok(());
        }
        self.grow_lower(p + r)?;
        let (earlier, places) = self.store.extend_rows(r, policy)?;
        // Large blocks bypass the page cache through a writer thread (whole,
        // aligned rows); the others are copied piece by piece in the pass
        // that reads them, while each piece is in cache.
        let (copies, writer) = match places {
            NewRowPlaces::Memory(m) => (Copies::Memory(m), None),
            NewRowPlaces::File(append) if r >= DIRECT_WRITE_MIN_ROWS => {
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
        };
        let lower_new = &mut self.lower[lower_row(p)..];
        let sums = Some(&mut self.row_sums[p..]);
        let spans = Some(&mut self.spans[p..]);
        match writer {
            None => block.run(d, bufs, lower_new, sums, spans)?,
            // The rows go to the file on a thread of their own, past the
            // page cache, while both cores multiply (see spill.rs); the
            // host's rows stay valid until this call returns.
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

    /// Multiplies the rows still waiting.
    fn settle(&mut self, bufs: &mut BlockBuffers) -> Result<()> {
        let (p, n, d) = (self.done, self.n(), self.d);
        if p == n {
            return Ok(());
        }
        self.store.finish()?;
        self.grow_lower(n)?;
        let rows = self.store.source();
        let waiting = RowRange::new(rows, p, n - p)?;
        let block = Block {
            earlier: rows,
            p,
            earlier_shifts: &self.shifts[..p],
            new: NewRows::Source(&waiting),
            new_shifts: &self.shifts[p..n],
            triangle: true,
        };
        block.run(
            d,
            bufs,
            &mut self.lower[lower_row(p)..],
            Some(&mut self.row_sums[p..]),
            Some(&mut self.spans[p..]),
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
        self.grow_lower(p + r)?;
        {
            // Row p + i of the new triangle: p cross products, then row i of
            // other's own triangle.
            let lower_new = &mut self.lower[lower_row(p)..];
            let at = lower_offset(p);
            for i in 0..r {
                lower_new[at(i) + p..at(i + 1)]
                    .copy_from_slice(&other.lower[lower_row(i)..lower_row(i + 1)]);
            }
            self.row_sums[p..].copy_from_slice(&other.row_sums);
            self.spans[p..].copy_from_slice(&other.spans);
            other.store.finish()?;
            self.store.finish()?;
            let block = Block {
                earlier: self.store.source(),
                p,
                earlier_shifts: &self.shifts,
                new: NewRows::Source(other.store.source()),
                new_shifts: &other.shifts,
                triangle: false,
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
        crate::rows::check_permutation(order, n)?;
        self.settle(&mut BlockBuffers::default())?;
        let mut diag: Vec<f64> = try_zeroed(n, "stream diagonal")?;
        for (i, g) in diag.iter_mut().enumerate() {
            *g = self.lower[lower_row(i) + i];
        }
        // Pearson and spearman: cov_ij = G_ij − m_i m_j with m = row sum / √d.
        let mut centre: Vec<f64> = try_zeroed(n, "stream row means")?;
        if method != CorrMethod::Cosine {
            let sqrt_d = (d as f64).sqrt();
            for (c, s) in centre.iter_mut().zip(&self.row_sums) {
                *c = s / sqrt_d;
            }
        }
        let mut var: Vec<f64> = try_zeroed(n, "stream variances")?;
        for ((v, g), c) in var.iter_mut().zip(&diag).zip(&centre) {
            *v = g - c * c;
        }
        // The rows are still at hand for the few whose variance must be
        // recomputed exactly; the constant test itself uses the spans.
        self.store.finish()?;
        let inv = inverse_spreads(&var, &diag, &self.spans, method, self.store.source())?;
        drop((diag, var));
        std::mem::replace(&mut self.store, RowStore::new(d)).release();
        let mut out: Vec<f32> =
            try_zeroed(square_len(n, "correlation matrix")?, "correlation matrix")?;
        let (centre, inv) = (&centre, &inv);
        par_rows_mut(&mut self.lower, 0..n, &lower_row, &|i, row| {
            for (j, g) in row.iter_mut().enumerate() {
                *g = if i == j {
                    1.0
                } else {
                    ((*g - centre[i] * centre[j]) * inv[i] * inv[j]).clamp(-1.0, 1.0)
                };
            }
        });
        mirror_lower(&self.lower, n, &mut out);
        drop(self.lower);
        let mut m = SquareMatrix { n, data: out };
        if order.iter().enumerate().any(|(k, &o)| k != o) {
            permute_square(&mut m, order)?;
        }
        Ok(m)
    }
}

/// The full symmetric `n x n` matrix of a packed lower triangle (row by
/// row), by blocks of rows: a row's lower part is contiguous in `lower`;
/// its upper part is, for a block of rows, a contiguous piece of each
/// later row.
fn mirror_lower(lower: &[f64], n: usize, out: &mut [f32]) {
    const BR: usize = 32;
    out.par_chunks_mut(BR * n).enumerate().for_each(|(b, blk)| {
        let i0 = b * BR;
        let i1 = i0 + blk.len() / n;
        for (k, orow) in blk.chunks_mut(n).enumerate() {
            let i = i0 + k;
            for (o, &v) in orow[..=i].iter_mut().zip(&lower[lower_row(i)..]) {
                *o = v as f32;
            }
        }
        for j in i0 + 1..n {
            let hi = i1.min(j);
            let start = lower_row(j);
            for (k, &v) in lower[start + i0..start + hi].iter().enumerate() {
                blk[k * n + j] = v as f32;
            }
        }
    });
}

/// Reorders rows and columns of `m` so that new `(a, b)` is old
/// `(order[a], order[b])`: columns within each row (in parallel), then
/// whole rows along the permutation's cycles.
fn permute_square(m: &mut SquareMatrix<f32>, order: &[usize]) -> Result<()> {
    let n = m.n;
    m.data.par_chunks_mut(n).try_for_each_init(
        || try_zeroed::<f32>(n, "row reorder buffer"),
        |tmp, row| {
            let tmp = tmp.as_mut().map_err(|e| e.clone())?;
            for (t, &o) in tmp.iter_mut().zip(order) {
                *t = row[o];
            }
            row.copy_from_slice(tmp);
            Ok::<(), KernelError>(())
        },
    )?;
    let mut rows = crate::rows::RowMatrix::from_vec(std::mem::take(&mut m.data), n, n)?;
    rows.permute_rows(order)?;
    m.data = rows.into_vec();
    Ok(())
}

/// A group's rows on their way to one matrix: products accumulated as
/// they arrive for the methods that [`streams`], rows kept until the end
/// for the others.
#[derive(Debug)]
pub enum CorrAccumulator {
    /// Pearson, spearman, cosine.
    Streaming(StreamingGram),
    /// Euclidean, gram: every row, multiplied at the end.
    Rows {
        /// The rows.
        store: RowStore,
        /// The method.
        method: CorrMethod,
    },
}

impl CorrAccumulator {
    /// An empty accumulator for rows of `d` values.
    pub fn new(d: usize, method: CorrMethod) -> Self {
        if streams(method) {
            CorrAccumulator::Streaming(StreamingGram::new(d, method))
        } else {
            CorrAccumulator::Rows {
                store: RowStore::new(d),
                method,
            }
        }
    }

    /// Values per row.
    pub fn d(&self) -> usize {
        match self {
            CorrAccumulator::Streaming(s) => s.d(),
            CorrAccumulator::Rows { store, .. } => store.d(),
        }
    }

    /// Rows so far.
    pub fn n(&self) -> usize {
        match self {
            CorrAccumulator::Streaming(s) => s.n(),
            CorrAccumulator::Rows { store, .. } => store.n(),
        }
    }

    /// Adds rows in arrival order (see [`StreamingGram::push_rows`]).
    pub fn push_rows(
        &mut self,
        batch: &[&[f32]],
        policy: &SpillPolicy,
        bufs: &mut BlockBuffers,
    ) -> Result<()> {
        check_not_empty(batch, self.n())?;
        match self {
            CorrAccumulator::Streaming(s) => s.push_rows(batch, policy, bufs),
            CorrAccumulator::Rows { store, .. } => {
                for row in batch {
                    store.push_row(row, policy)?;
                }
                Ok(())
            }
        }
    }

    /// Adds `other`'s rows; returns whether they now come after this
    /// one's. Both must be for the same method.
    pub fn merge(&mut self, other: CorrAccumulator, policy: &SpillPolicy) -> Result<bool> {
        match (self, other) {
            (CorrAccumulator::Streaming(a), CorrAccumulator::Streaming(b)) => a.merge(b, policy),
            (CorrAccumulator::Rows { store: a, .. }, CorrAccumulator::Rows { store: b, .. }) => {
                // `append` rejects rows of another length.
                let keeps = a.append_keeps_order(&b);
                a.append(b, policy)?;
                Ok(keeps)
            }
            _ => Err(KernelError::BadShape {
                what: "merge of accumulators of different methods",
                expected: 0,
                got: 1,
            }),
        }
    }

    /// The matrix in the order `order` (new row `k` is arrival row
    /// `order[k]`); errors name arrival rows.
    pub fn finish(self, order: &[usize]) -> Result<SquareMatrix<f32>> {
        match self {
            CorrAccumulator::Streaming(s) => s.finish(order),
            CorrAccumulator::Rows { mut store, method } => {
                store.finish()?;
                let in_order = order.iter().enumerate().all(|(k, &o)| k == o);
                let result = if in_order {
                    correlation_matrix_of(store.source(), method, None)
                } else {
                    correlation_matrix_of(&Permuted::new(store.source(), order)?, method, None)
                };
                result.map_err(|e| match e.row() {
                    Some(r) if r < order.len() => e.with_row(order[r]),
                    _ => e,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::rank_row_into;
    use rand::{Rng, SeedableRng};

    fn policy(limit: Option<usize>) -> SpillPolicy {
        SpillPolicy::in_temp_dir(limit)
    }

    /// Activation-like rows: a shared pattern, noise, a large offset on
    /// some rows (to test the shift), ReLU zeros.
    fn rows(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let pattern: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        (0..n)
            .map(|i| {
                let offset = if i % 3 == 0 { 500.0 } else { 0.0 };
                pattern
                    .iter()
                    .map(|&s| {
                        let v: f32 = 0.6 * s + 0.8 * rng.gen_range(-1.0f32..1.0);
                        offset + v.max(-0.2)
                    })
                    .collect()
            })
            .collect()
    }

    fn pearson64(a: &[f32], b: &[f32]) -> f64 {
        let d = a.len() as f64;
        let ma = a.iter().map(|&x| x as f64).sum::<f64>() / d;
        let mb = b.iter().map(|&x| x as f64).sum::<f64>() / d;
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (x as f64 - ma, y as f64 - mb);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa * bb).sqrt()
    }

    fn cosine64(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum();
        let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum();
        dot / (na * nb).sqrt()
    }

    fn check(
        m: &SquareMatrix<f32>,
        data: &[Vec<f32>],
        order: &[usize],
        f: fn(&[f32], &[f32]) -> f64,
    ) {
        let n = data.len();
        assert_eq!(m.n(), n);
        for a in 0..n {
            for b in 0..n {
                let want = if a == b {
                    1.0
                } else {
                    f(&data[order[a]], &data[order[b]])
                };
                let got = m.get(a, b) as f64;
                assert!((got - want).abs() < 1e-5, "({a},{b}): {got} vs {want}");
            }
        }
    }

    /// A `method` accumulator fed `data` in blocks of `sizes` (repeated),
    /// rows past `limit` bytes spilled.
    fn streamed(
        method: CorrMethod,
        data: &[Vec<f32>],
        sizes: &[usize],
        limit: Option<usize>,
    ) -> StreamingGram {
        let mut g = StreamingGram::new(data[0].len(), method);
        let mut at = 0;
        for &s in sizes.iter().cycle() {
            if at >= data.len() {
                break;
            }
            let end = (at + s).min(data.len());
            let batch: Vec<&[f32]> = data[at..end].iter().map(Vec::as_slice).collect();
            g.push_rows(&batch, &policy(limit), &mut BlockBuffers::default())
                .unwrap();
            at = end;
        }
        g
    }

    #[test]
    fn blocks_of_any_size_give_pearson_of_the_whole() {
        let d = 5000; // more than one column chunk at the smallest width
        let data = rows(300, d, 1);
        let ident: Vec<usize> = (0..data.len()).collect();
        for sizes in [vec![300], vec![1], vec![7, 130, 2], vec![150, 20, 200]] {
            for limit in [None, Some(1 << 20)] {
                let g = streamed(CorrMethod::Pearson, &data, &sizes, limit);
                assert_eq!(g.is_spilled(), limit.is_some());
                check(&g.finish(&ident).unwrap(), &data, &ident, pearson64);
            }
        }
    }

    #[test]
    fn rows_held_back_settle_and_later_blocks_use_them() {
        // A few rows per chunk (nn_activations feeding layer_corr): they
        // settle at MIN_SETTLE_ROWS, then at half the rows before them; a
        // block straight from the host after a settle reads the settled
        // rows back.
        let d = 1000;
        let data = rows(700, d, 11);
        let ident: Vec<usize> = (0..data.len()).collect();
        for sizes in [vec![8], vec![300, 8, 400]] {
            for limit in [None, Some(1 << 20)] {
                let g = streamed(CorrMethod::Pearson, &data, &sizes, limit);
                check(&g.finish(&ident).unwrap(), &data, &ident, pearson64);
            }
        }
    }

    #[test]
    fn merged_partial_groups_give_the_whole_in_the_right_order() {
        let d = 700;
        let data = rows(260, d, 2);
        for (limit_a, limit_b) in [
            (None, None),
            (None, Some(1)),
            (Some(1), None),
            (Some(1), Some(1)),
        ] {
            let mut a = streamed(CorrMethod::Pearson, &data[..100], &[40, 60], limit_a);
            let b = streamed(CorrMethod::Pearson, &data[100..], &[5, 155], limit_b);
            let keeps = a.merge(b, &policy(None)).unwrap();
            let arrival: Vec<Vec<f32>> = if keeps {
                data.clone()
            } else {
                data[100..].iter().chain(&data[..100]).cloned().collect()
            };
            let ident: Vec<usize> = (0..arrival.len()).collect();
            check(&a.finish(&ident).unwrap(), &arrival, &ident, pearson64);
        }
    }

    #[test]
    fn order_permutes_rows_and_columns() {
        let d = 300;
        let data = rows(40, d, 3);
        let mut order: Vec<usize> = (0..40).collect();
        order.reverse();
        order.swap(3, 17);
        let g = streamed(CorrMethod::Pearson, &data, &[40], None);
        check(&g.finish(&order).unwrap(), &data, &order, pearson64);
    }

    #[test]
    fn cosine_and_spearman_match_their_definitions() {
        let d = 400;
        let data = rows(30, d, 4);
        let ident: Vec<usize> = (0..30).collect();
        let g = streamed(CorrMethod::Cosine, &data, &[11], None);
        check(&g.finish(&ident).unwrap(), &data, &ident, cosine64);

        let ranked: Vec<Vec<f32>> = data
            .iter()
            .map(|r| {
                let mut out = vec![0f32; d];
                rank_row_into(r, &mut out).unwrap();
                out
            })
            .collect();
        let g = streamed(CorrMethod::Spearman, &ranked, &[30], None);
        // Spearman is pearson of the average ranks.
        check(&g.finish(&ident).unwrap(), &ranked, &ident, pearson64);
    }

    #[test]
    fn bad_rows_are_errors_naming_their_arrival_row() {
        let d = 50;
        // 300 rows: one block past MIN_DIRECT_ROWS, multiplied on arrival.
        let mut data = rows(300, d, 5);
        data[150] = vec![2.5; d];
        let ident: Vec<usize> = (0..300).collect();
        let g = streamed(CorrMethod::Pearson, &data, &[130, 170], None);
        let e = g.finish(&ident).unwrap_err();
        assert!(
            matches!(e, KernelError::ConstantRow { row: 150, .. }),
            "{e}"
        );

        data[150][7] = f32::NAN;
        let mut g = StreamingGram::new(d, CorrMethod::Pearson);
        let batch: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let e = g
            .push_rows(&batch, &policy(None), &mut BlockBuffers::default())
            .unwrap_err();
        assert!(
            matches!(
                e,
                KernelError::NonFinite {
                    row: 150,
                    col: 7,
                    ..
                }
            ),
            "{e}"
        );

        let mut g = StreamingGram::new(d, CorrMethod::Pearson);
        let short = [1.0f32; 3];
        let e = g
            .push_rows(
                &[&data[0], &short],
                &policy(None),
                &mut BlockBuffers::default(),
            )
            .unwrap_err();
        assert!(
            matches!(
                e,
                KernelError::RowLength {
                    row: 1,
                    expected: 50,
                    got: 3
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn tiny_and_huge_rows_stream_like_the_rows_themselves() {
        let d = 600;
        let data = rows(300, d, 9);
        let ident: Vec<usize> = (0..data.len()).collect();
        for method in [
            CorrMethod::Pearson,
            CorrMethod::Cosine,
            CorrMethod::Spearman,
        ] {
            let prepare = |rows: &[Vec<f32>]| -> Vec<Vec<f32>> {
                if method != CorrMethod::Spearman {
                    return rows.to_vec();
                }
                rows.iter()
                    .map(|r| {
                        let mut out = vec![0f32; d];
                        rank_row_into(r, &mut out).unwrap();
                        out
                    })
                    .collect()
            };
            let want = streamed(method, &prepare(&data), &[300], None)
                .finish(&ident)
                .unwrap();
            for scale in [1e-38f32, 1e30] {
                // Every third row scaled: mixed magnitudes in one block;
                // blocks direct, held back and settled.
                let scaled: Vec<Vec<f32>> = data
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let s = if i % 3 == 0 { 1.0 } else { scale };
                        r.iter().map(|v| v * s).collect()
                    })
                    .collect();
                for sizes in [vec![300], vec![7, 130, 2]] {
                    let ranked = prepare(&scaled);
                    let got = streamed(method, &ranked, &sizes, None)
                        .finish(&ident)
                        .unwrap_or_else(|e| panic!("{method} {scale}: {e}"));
                    if method == CorrMethod::Spearman && scale < 1.0 {
                        // Near 1e-38 float32 keeps few digits, so distinct
                        // values can tie and the ranks themselves change:
                        // compare with the definition on these ranks.
                        check(&got, &ranked, &ident, pearson64);
                        continue;
                    }
                    let err = want
                        .as_slice()
                        .iter()
                        .zip(got.as_slice())
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(err <= 1e-5, "{method} {scale} {sizes:?}: {err:e}");
                }
            }
        }
    }

    #[test]
    fn an_empty_activation_is_an_error_naming_its_row() {
        for method in CorrMethod::ALL {
            let mut acc = CorrAccumulator::new(0, method);
            let empty: &[f32] = &[];
            let e = acc
                .push_rows(&[empty, empty], &policy(None), &mut BlockBuffers::default())
                .unwrap_err();
            assert_eq!(e, KernelError::EmptyRow { row: 0 });
            assert_eq!(e.row(), Some(0));
            assert!(e.to_string().contains("empty activation"), "{e}");
            // After rows of values, an empty one is named by its row.
            let mut acc = CorrAccumulator::new(3, method);
            let full: &[f32] = &[1.0, 2.0, 4.0];
            let e = acc
                .push_rows(
                    &[full, full, empty],
                    &policy(None),
                    &mut BlockBuffers::default(),
                )
                .unwrap_err();
            assert_eq!(e, KernelError::EmptyRow { row: 2 }, "{method}");
        }
    }

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        let mut g = StreamingGram::new(4, CorrMethod::Pearson);
        // n (n + 1) / 2 overflows usize: an error, not a wrapped size.
        let e = g.grow_lower(usize::MAX / 2).unwrap_err();
        assert!(matches!(e, KernelError::TooLarge { .. }), "{e}");
        // A triangle of 2^31 rows (16 EiB) cannot be allocated.
        let e = g.grow_lower(1 << 31).unwrap_err();
        assert!(e.to_string().starts_with("cannot allocate "), "{e}");
    }

    #[test]
    fn accumulator_of_kept_rows_maps_errors_to_arrival_rows() {
        let d = 20;
        let mut data = rows(10, d, 6);
        data[2][3] = f32::INFINITY;
        let mut order: Vec<usize> = (0..10).collect();
        order.reverse();
        for method in [CorrMethod::Gram, CorrMethod::Euclidean] {
            let mut acc = CorrAccumulator::new(d, method);
            assert!(matches!(acc, CorrAccumulator::Rows { .. }));
            let batch: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
            acc.push_rows(&batch, &policy(None), &mut BlockBuffers::default())
                .unwrap();
            let e = acc.finish(&order).unwrap_err();
            assert!(
                matches!(e, KernelError::NonFinite { row: 2, col: 3, .. }),
                "{e}"
            );
        }
    }
}
