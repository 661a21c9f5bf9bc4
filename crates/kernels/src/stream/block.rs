//! The arithmetic of one block of the streaming Gram: the products of new
//! rows with the rows before them (a rectangular product) and, usually,
//! with themselves (a triangle), added into the packed [`Triangle`] rows of
//! the new rows. When to run a block, and on which rows, is decided by
//! [`super::StreamingGram`].
//!
//! New rows come either straight from the host's memory, each piece copied
//! to the row store in the same pass while it is in cache, or from the
//! store itself (rows held back, ranked rows, merged groups). Each column
//! chunk is shifted per row ([`crate::chunk`]), rescaled by powers of two
//! where its values would underflow or overflow `f32` products
//! ([`crate::numeric::rescale_rows`]; every streamed method is unchanged by
//! scaling a row), multiplied in `f32` by faer, and added in `f64`.

use faer::linalg::matmul::matmul as rect_matmul;
use faer::linalg::matmul::triangular::BlockStructure;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::alloc::{at_least, square_len, try_with_capacity, try_zeroed_vec};
use crate::chunk::{default_chunk, fill_chunk, gram_of_rows, Shift};
use crate::error::{KernelError, Result};
use crate::numeric::{rescale_rows, shift_sum, Span};
use crate::source::RowSource;
use crate::store::FileAppend;
use crate::triangle::{lower_row, par_rows_mut};

/// The new rows of one block.
pub(crate) enum NewRows<'a> {
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
pub(crate) enum Copies<'a> {
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
/// One block's products: new rows `p..p + r` with the first `p` rows and,
/// if `triangle`, with themselves; added into `lower_new` (the packed
/// lower rows `p..p + r`) and, if given, the new rows' sums into `sums`
/// and their spans into `spans`.
pub(crate) struct Block<'a> {
    pub(crate) earlier: &'a dyn RowSource,
    pub(crate) p: usize,
    pub(crate) earlier_shifts: &'a [f32],
    pub(crate) new: NewRows<'a>,
    pub(crate) new_shifts: &'a [f32],
    pub(crate) triangle: bool,
    /// Column chunk width; `None`: [`default_chunk`] of all the rows.
    pub(crate) chunk: Option<usize>,
}

/// Start of packed lower row `p + i` relative to row `p`.
pub(crate) fn lower_offset(p: usize) -> impl Fn(usize) -> usize + Sync {
    move |i| lower_row(p + i) - lower_row(p)
}

impl Block<'_> {
    pub(crate) fn run(
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
            chunk,
        } = self;
        let r = new.len();
        let cw_max = chunk
            .unwrap_or_else(|| default_chunk(p + r, d))
            .clamp(1, d.max(1));
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
            square_len(r, "stream products")?
        } else {
            0
        };
        let tri = at_least(&mut bufs.tri, tri_len, "stream products")?;
        let mut new_sums: Vec<f64> = try_zeroed_vec(r, "stream row sums")?;
        let mut earlier_sums: Vec<f64> = try_zeroed_vec(p, "stream row sums")?;
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
            let unscale_new = rescale_rows(bn, cw, new_shifts, &chunk_new_spans)?;
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
                unscale_old = rescale_rows(bo, cw, earlier_shifts, &chunk_old_spans)?;
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
