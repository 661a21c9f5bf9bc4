//! Chunked lower-triangular Gram matrix with `f64` accumulation.
//!
//! Every first-order method (pearson, spearman, cosine, euclidean, gram) is
//! a function of the products `x_i · x_j` of shifted rows, so they share one
//! kernel. Computing `X Xᵀ` directly in `f32` is fast but loses digits when
//! rows have a large mean (activations of 1000 ± 1 leave nothing of the
//! ±1 after the cancellation `Σx² − (Σx)²/d`), and computing it in `f64` is
//! twice as slow and needs a converted copy of the whole input. Instead the
//! columns are walked in chunks of `C`:
//!
//! 1. each row's chunk is copied, minus a shift, into one reused `n x C`
//!    `f32` buffer (the shift removes the large common part: a per-row value
//!    for correlations, the per-column mean over the rows for distances and
//!    centred kernels, which are invariant to it); the row sums of the
//!    shifted values are accumulated in `f64`;
//! 2. the chunk's Gram `B Bᵀ` is computed in `f32`, lower triangle only, by
//!    faer's triangular matrix product (the fastest path on this hardware,
//!    half the flops of a full product);
//! 3. it is added into an `f64` lower-triangular accumulator, stored
//!    packed (`n(n+1)/2` values).
//!
//! For the correlations (pearson, spearman, cosine), which do not change
//! when a row is multiplied by a constant, a row whose chunk is so small
//! (activations around 1e-38) or so large (1e30) that its `f32` products
//! would underflow or overflow is first multiplied by a power of two that
//! brings its largest shifted value into `[0.5, 1)`; the chunk's products
//! are divided by the same factors as they are added in `f64`. Powers of
//! two are exact, so the accumulated products are those of the rows as
//! given, and rows of ordinary magnitude are left as they are. Each row's
//! smallest and largest value ([`Span`]) is kept as well, for the exact
//! test of a constant row.
//!
//! The `f32` products of one chunk carry only a chunk's worth of rounding,
//! and chunks are summed in `f64`, so the result is within about 1e-6 of a
//! float64 computation while running at `f32` matrix-product speed. Memory
//! beyond the input is `n·C·4 + 8·n²` bytes (the `f32` chunk Gram is reused
//! as the output buffer by [`Gram::into_symmetric`]).

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::source::{first_non_finite_in, RowSlice, RowSource};
use crate::{try_zeroed, SquareMatrix};

/// Target size of the `n x C` chunk buffer, in bytes. Smaller than one
/// might guess: at N = 2000 on this AVX2 host, 4096-column chunks (32 MiB)
/// ran the whole product about 5% faster at D = 200704, and up to 15%
/// faster at D = 50176, than 16384-column ones (128 MiB), in alternating
/// runs of `corr_timing`; the per-chunk `n²` work is still small next to
/// the product.
const CHUNK_BUFFER_BYTES: usize = 32 << 20;
/// Bounds of the chunk width: wide enough that the per-chunk `n²` work is
/// negligible next to the `n²·C` product, narrow enough to stay in memory.
const MIN_CHUNK: usize = 2048;
const MAX_CHUNK: usize = 16384;
/// Chunk widths are a multiple of this many columns (4 KiB of `f32`).
const CHUNK_STEP: usize = 1024;

/// What is subtracted from every chunk before its products are taken.
#[derive(Debug, Clone, Copy)]
pub enum Shift<'a> {
    /// Nothing (cosine).
    None,
    /// One value per row, the same for every chunk (pearson, spearman). The
    /// products are then of `x_i − s_i`; [`Gram::row_sums`] gives what is
    /// needed to centre them exactly.
    PerRow(&'a [f32]),
    /// Each chunk's per-column mean over the rows (euclidean, gram).
    /// Equivalent to centring every column by its mean, which leaves
    /// distances unchanged and is exactly the centring of a linear kernel.
    ColumnMean,
}

/// The smallest and largest value of a row, or of a piece of one: a row is
/// constant exactly when they are equal, all zero exactly when both are 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Smallest value (`+inf` for no values).
    pub lo: f32,
    /// Largest value (`-inf` for no values).
    pub hi: f32,
}

impl Span {
    /// The span of no values.
    pub const EMPTY: Span = Span {
        lo: f32::INFINITY,
        hi: f32::NEG_INFINITY,
    };

    /// The span of both pieces.
    pub fn merge(self, other: Span) -> Span {
        Span {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }

    /// Whether every value is the same (false for no values).
    pub fn is_constant(self) -> bool {
        self.lo == self.hi
    }

    /// Whether every value is zero (false for no values).
    pub fn is_zero(self) -> bool {
        self.lo == 0.0 && self.hi == 0.0
    }

    /// The largest `|x − s|` over the values, in `f64` (`-inf` for none).
    fn reach(self, s: f64) -> f64 {
        (self.hi as f64 - s).max(s - self.lo as f64)
    }
}

/// Chunks whose largest shifted value lies in `[RESCALE_BELOW,
/// RESCALE_ABOVE]` are multiplied as they are: their `f32` products over
/// a chunk of at most 16384 columns stay far from overflow (2^78) and the
/// products of their larger values far from the subnormal range (2^-126).
const RESCALE_BELOW: f64 = 1.0 / (1u64 << 32) as f64;
const RESCALE_ABOVE: f64 = (1u64 << 32) as f64;

/// `2^k` as an `f64`, for `|k| < 1023`.
fn pow2(k: i32) -> f64 {
    f64::from_bits(((1023 + k) as u64) << 52)
}

/// Brings every row of the chunk buffer `b` (rows of `cw` values, shifted
/// by `shift`, with raw spans `spans`) whose largest shifted value is
/// outside `[RESCALE_BELOW, RESCALE_ABOVE]` into `[0.5, 1)` by an exact
/// power of two. Returns, if any row was scaled, each row's inverse factor
/// (1 for rows left alone) to divide the chunk's products by; `None` for
/// ordinary chunks, which are left untouched.
pub(crate) fn rescale_rows(
    b: &mut [f32],
    cw: usize,
    shift: Shift<'_>,
    spans: &[Span],
) -> Result<Option<Vec<f64>>> {
    let shift_of = |i: usize| match shift {
        Shift::PerRow(s) => s[i] as f64,
        _ => 0.0,
    };
    let exponent = |i: usize| {
        let m = spans[i].reach(shift_of(i));
        // m = 0 (all values at the shift) and non-finite values (reported
        // elsewhere) are left alone.
        if !(m.is_finite() && m > 0.0) || (RESCALE_BELOW..=RESCALE_ABOVE).contains(&m) {
            return 0;
        }
        // m in [2^(e-1), 2^e): m is at least 2^-149 and below 2^129, a
        // normal f64, so its exponent bits give e directly.
        ((m.to_bits() >> 52) & 0x7ff) as i32 - 1022
    };
    if matches!(shift, Shift::ColumnMean) || (0..spans.len()).all(|i| exponent(i) == 0) {
        return Ok(None);
    }
    let mut inverse: Vec<f64> = crate::try_zeroed(spans.len(), "chunk scale factors")?;
    b.par_chunks_mut(cw)
        .zip(inverse.par_iter_mut())
        .enumerate()
        .for_each(|(i, (row, inv))| {
            let e = exponent(i);
            *inv = pow2(e);
            if e != 0 {
                // The product is exactly representable in f32 (a power of
                // two times a value that fits), so this is exact.
                let c = pow2(-e);
                row.iter_mut().for_each(|v| *v = (*v as f64 * c) as f32);
            }
        });
    Ok(Some(inverse))
}

/// The column chunk width used when none is given: the widest multiple of
/// 1024 between 2048 and 16384 columns whose `n x C` buffer fits in
/// [`CHUNK_BUFFER_BYTES`], and never more than `d`. The streaming Gram uses
/// it too, with `n` the rows of both of its buffers.
pub fn default_chunk(n: usize, d: usize) -> usize {
    let by_memory = CHUNK_BUFFER_BYTES / (4 * n.max(1));
    let c = by_memory.clamp(MIN_CHUNK, MAX_CHUNK) / CHUNK_STEP * CHUNK_STEP;
    c.min(d).max(1)
}

/// The accumulated `Σ_chunks B Bᵀ` of `n` shifted rows, in `f64`.
#[derive(Debug, Clone)]
pub struct Gram {
    n: usize,
    /// Upper triangle, packed row by row: entry `(i, j)`, `j >= i`, at
    /// `packed_row(n, i) + j - i` (row `i` of the upper triangle is column
    /// `i` of the lower one, so this is also the packed lower triangle,
    /// column-major). Half the memory of a full `n x n` `f64` matrix.
    g: Vec<f64>,
    /// Per-row sums of the shifted values.
    row_sums: Vec<f64>,
    /// Per-row smallest and largest value (as given, before any shift).
    spans: Vec<Span>,
    /// `n * n` `f32` scratch for the chunk products, reused for the output.
    scratch: Vec<f32>,
}

impl Gram {
    /// Number of rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Entry `(i, j)` of the symmetric accumulated Gram matrix.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        let (a, b) = if i <= j { (i, j) } else { (j, i) };
        self.g[packed_row(self.n, a) + b - a]
    }

    /// The diagonal `Σ (x_i − shift)²`.
    pub fn diagonal(&self) -> Result<Vec<f64>> {
        let mut out = crate::memory::try_with_capacity(self.n, "gram diagonal")?;
        out.extend((0..self.n).map(|i| self.g[packed_row(self.n, i)]));
        Ok(out)
    }

    /// Per-row sums of the shifted values `Σ (x_i − shift)`.
    pub fn row_sums(&self) -> &[f64] {
        &self.row_sums
    }

    /// Per-row smallest and largest value, as given (before any shift).
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Maps every entry `(i, j)` with `i <= j` through `f(i, j, g_ij)` (in
    /// parallel, in `f64`) and returns the full symmetric matrix in `f32`.
    /// `f` is called once per unordered pair, diagonal included.
    pub fn into_symmetric<F>(self, f: F) -> SquareMatrix<f32>
    where
        F: Fn(usize, usize, f64) -> f64 + Sync,
    {
        let Gram {
            n,
            mut g,
            scratch: mut out,
            ..
        } = self;
        if n == 0 {
            return SquareMatrix { n, data: out };
        }
        par_rows_mut(&mut g, 0..n, &|i| packed_row(n, i), &|i, row| {
            for (k, v) in row.iter_mut().enumerate() {
                *v = f(i, i + k, *v);
            }
        });
        // Mirror into the full f32 matrix by blocks of rows: the upper part
        // of a row is contiguous in `g`; the lower part of a block of rows
        // is, column by column, a contiguous piece of an earlier row of `g`.
        const BR: usize = 32;
        let g = &g;
        out.par_chunks_mut(BR * n).enumerate().for_each(|(b, blk)| {
            let i0 = b * BR;
            let i1 = i0 + blk.len() / n;
            for (r, orow) in blk.chunks_mut(n).enumerate() {
                let i = i0 + r;
                let start = packed_row(n, i);
                for (o, &v) in orow[i..].iter_mut().zip(&g[start..start + n - i]) {
                    *o = v as f32;
                }
            }
            for j in 0..i1 {
                let lo = i0.max(j + 1);
                if lo >= i1 {
                    continue;
                }
                let col = packed_row(n, j) - j;
                for (k, &v) in g[col + lo..col + i1].iter().enumerate() {
                    blk[(lo - i0 + k) * n + j] = v as f32;
                }
            }
        });
        SquareMatrix { n, data: out }
    }
}

/// Offset of row `i` of a packed upper triangle of order `n` (rows of
/// lengths `n`, `n − 1`, …).
fn packed_row(n: usize, i: usize) -> usize {
    i * n - i * i.saturating_sub(1) / 2
}

/// Calls `f(i, row_i)` for rows `rows` of a buffer of rows of varying
/// length stored one after the other (row `i` at `offset(i)..offset(i +
/// 1)`, `buf` starting at `offset(rows.start)`), in parallel, by halving
/// the range: no list of row slices is allocated.
pub(crate) fn par_rows_mut<O, F>(buf: &mut [f64], rows: std::ops::Range<usize>, offset: &O, f: &F)
where
    O: Fn(usize) -> usize + Sync,
    F: Fn(usize, &mut [f64]) + Sync,
{
    let (a, b) = (rows.start, rows.end);
    if b - a <= 8 {
        let mut rest = buf;
        for i in a..b {
            let (row, tail) = rest.split_at_mut(offset(i + 1) - offset(i));
            f(i, row);
            rest = tail;
        }
        return;
    }
    let mid = a + (b - a) / 2;
    let (left, right) = buf.split_at_mut(offset(mid) - offset(a));
    rayon::join(
        || par_rows_mut(left, a..mid, offset, f),
        || par_rows_mut(right, mid..b, offset, f),
    );
}

/// Computes `Σ_chunks B Bᵀ` (lower triangle, `f64`) of the `n x d` row-major
/// `data` shifted by `shift`, walking `chunk` columns at a time.
///
/// Errors: a non-finite input value ([`KernelError::NonFinite`] with the
/// first such row and column in row-major order), or values whose products
/// overflow `f32` ([`KernelError::Overflow`]).
pub fn gram_lower(
    data: &[f32],
    n: usize,
    d: usize,
    shift: Shift<'_>,
    chunk: usize,
) -> Result<Gram> {
    gram_lower_of(&RowSlice::new(data, n, d)?, shift, chunk)
}

/// [`gram_lower`] over any [`RowSource`]: rows in memory are read in place,
/// rows elsewhere (a spill file) one chunk of one row at a time.
pub fn gram_lower_of(rows: &dyn RowSource, shift: Shift<'_>, chunk: usize) -> Result<Gram> {
    gram_lower_impl(rows, shift, chunk, false)
}

/// [`gram_lower_of`] for methods that do not change when a row is scaled
/// (pearson, spearman, cosine): rows too small or too large for `f32`
/// products are scaled by a power of two for each chunk's product and
/// the product divided back in `f64` (see the module documentation), so
/// the entries are those of the rows as given, never an overflow.
/// [`Shift::ColumnMean`] is not scaled.
pub fn gram_lower_rescaled_of(
    rows: &dyn RowSource,
    shift: Shift<'_>,
    chunk: usize,
) -> Result<Gram> {
    gram_lower_impl(rows, shift, chunk, true)
}

fn gram_lower_impl(
    rows: &dyn RowSource,
    shift: Shift<'_>,
    chunk: usize,
    rescale: bool,
) -> Result<Gram> {
    let (n, d) = (rows.n(), rows.d());
    if let Shift::PerRow(s) = shift {
        if s.len() != n {
            return Err(KernelError::BadShape {
                what: "gram row shifts",
                expected: n,
                got: s.len(),
            });
        }
    }
    if n == 0 {
        return Ok(Gram {
            n,
            g: Vec::new(),
            row_sums: Vec::new(),
            spans: Vec::new(),
            scratch: Vec::new(),
        });
    }
    let chunk = chunk.clamp(1, d.max(1));
    let nn = crate::memory::square_len(n, "gram output")?;
    let mut buf: Vec<f32> = try_zeroed(n.saturating_mul(chunk.min(d)), "gram chunk buffer")?;
    let mut colmean = match shift {
        Shift::ColumnMean => vec![0f32; chunk],
        _ => Vec::new(),
    };
    let packed = n
        .checked_add(1)
        .and_then(|m| m.checked_mul(n))
        .map(|m| m / 2);
    let mut g: Vec<f64> = try_zeroed(packed.unwrap_or(usize::MAX), "gram accumulator")?;
    let mut scratch: Vec<f32> = try_zeroed(nn, "gram output")?;
    let mut row_sums: Vec<f64> = try_zeroed(n, "gram row sums")?;
    let mut spans: Vec<Span> = crate::memory::try_with_capacity(n, "gram row spans")?;
    spans.resize(n, Span::EMPTY);
    let mut chunk_spans = spans.clone();
    let par = Par::rayon(0);

    let mut c0 = 0;
    while c0 < d {
        let cw = chunk.min(d - c0);
        let b = &mut buf[..n * cw];
        let bad_row = fill_chunk(
            rows,
            shift,
            c0,
            b,
            &mut row_sums,
            &mut colmean,
            &mut chunk_spans,
        )?;
        if let Some(row) = bad_row {
            return Err(first_non_finite_in(rows)?.unwrap_or(KernelError::Overflow { row }));
        }
        for (s, c) in spans.iter_mut().zip(&chunk_spans) {
            *s = s.merge(*c);
        }
        let unscale = if rescale {
            rescale_rows(b, cw, shift, &chunk_spans)?
        } else {
            None
        };

        let lhs = MatRef::from_row_major_slice(&b[..], n, cw);
        let dst = MatMut::from_column_major_slice_mut(&mut scratch[..], n, n);
        gram_of_rows(dst, BlockStructure::TriangularLower, lhs, par);
        // Column j of the column-major lower triangle holds rows j..n.
        let scratch = &scratch[..];
        let unscale = unscale.as_deref();
        par_rows_mut(&mut g, 0..n, &|j| packed_row(n, j), &|j, gc| {
            let sc = &scratch[j * n + j..(j + 1) * n];
            match unscale {
                None => {
                    for (a, &v) in gc.iter_mut().zip(sc) {
                        *a += v as f64;
                    }
                }
                Some(inv) => {
                    for ((a, &v), &ik) in gc.iter_mut().zip(sc).zip(&inv[j..]) {
                        *a += v as f64 * (inv[j] * ik);
                    }
                }
            }
        });
        c0 += cw;
    }
    drop(buf);
    if let Some(row) = (0..n).find(|&i| !g[packed_row(n, i)].is_finite()) {
        return Err(KernelError::Overflow { row });
    }
    Ok(Gram {
        n,
        g,
        row_sums,
        spans,
        scratch,
    })
}

/// `dst = B Bᵀ`, only the triangle `half` (`TriangularLower` or
/// `TriangularUpper`; the other is left as it was), by faer's triangular
/// product: half the flops of a full one.
pub(crate) fn gram_of_rows(
    dst: MatMut<'_, f32>,
    half: BlockStructure,
    rows: MatRef<'_, f32>,
    par: Par,
) {
    matmul(
        dst,
        half,
        Accum::Replace,
        rows,
        BlockStructure::Rectangular,
        rows.transpose(),
        BlockStructure::Rectangular,
        1.0f32,
        par,
    );
}

/// Step 1: columns `c0..c0 + cw` of the first `row_sums.len()` rows of
/// `rows`, minus the shift, into `b` (`cw = b.len() / row_sums.len()`),
/// adding the row sums; read in place when the rows are one slice.
/// Writes each row's span of the chunk's values (as given) into `spans`.
/// Returns the smallest row whose sum is not finite.
pub(crate) fn fill_chunk(
    rows: &dyn RowSource,
    shift: Shift<'_>,
    c0: usize,
    b: &mut [f32],
    row_sums: &mut [f64],
    colmean: &mut [f32],
    spans: &mut [Span],
) -> Result<Option<usize>> {
    match rows.contiguous() {
        Some(data) => Ok(fill_chunk_in_place(
            data,
            rows.d(),
            shift,
            c0,
            b,
            row_sums,
            colmean,
            spans,
        )),
        None => fill_chunk_by_reads(rows, shift, c0, b, row_sums, colmean, spans),
    }
}

/// Step 1 for rows held in one slice: copy columns `c0..c0 + cw` of every
/// row into `b` minus the shift, adding the row sums; one fused pass.
/// Returns the smallest row whose sum is not finite.
#[allow(clippy::too_many_arguments)]
fn fill_chunk_in_place(
    data: &[f32],
    d: usize,
    shift: Shift<'_>,
    c0: usize,
    b: &mut [f32],
    row_sums: &mut [f64],
    colmean: &mut [f32],
    spans: &mut [Span],
) -> Option<usize> {
    let n = row_sums.len();
    let cw = b.len() / n;
    if let Shift::ColumnMean = shift {
        column_means(data, n, d, c0, &mut colmean[..cw]);
    }
    let colmean = &colmean[..];
    b.par_chunks_mut(cw)
        .zip(row_sums.par_iter_mut())
        .zip(spans.par_iter_mut())
        .enumerate()
        .with_min_len(4)
        .filter_map(|(i, ((dst, sum), span))| {
            let src = &data[i * d + c0..i * d + c0 + cw];
            let s = match shift {
                Shift::None => copy_sum(src, dst, span),
                Shift::PerRow(s) => shift_sum(src, dst, s[i], span),
                Shift::ColumnMean => shift_cols_sum(src, dst, &colmean[..cw], span),
            };
            *sum += s;
            (!s.is_finite()).then_some(i)
        })
        .min()
}

/// Step 1 for rows read through [`RowSource::read`] (a spill file). With a
/// per-row or no shift, each row's piece is read into a per-thread buffer
/// and shifted into `b` in one pass, as in [`fill_chunk_in_place`]. Column
/// means need every row first, so for them all pieces are read into `b`,
/// the means taken from `b`, and each row shifted in place.
fn fill_chunk_by_reads(
    rows: &dyn RowSource,
    shift: Shift<'_>,
    c0: usize,
    b: &mut [f32],
    row_sums: &mut [f64],
    colmean: &mut [f32],
    spans: &mut [Span],
) -> Result<Option<usize>> {
    let n = row_sums.len();
    let cw = b.len() / n;
    if let Shift::ColumnMean = shift {
        b.par_chunks_mut(cw)
            .enumerate()
            .with_min_len(4)
            .try_for_each(|(i, dst)| rows.read(i, c0, dst))?;
        column_means(b, n, cw, 0, &mut colmean[..cw]);
    }
    let colmean = &colmean[..];
    let bad_rows = b
        .par_chunks_mut(cw)
        .zip(row_sums.par_iter_mut())
        .zip(spans.par_iter_mut())
        .enumerate()
        .with_min_len(4)
        .map_init(Vec::new, |src: &mut Vec<f32>, (i, ((dst, sum), span))| {
            src.resize(cw, 0.0);
            let s = match shift {
                Shift::ColumnMean => {
                    src.copy_from_slice(dst);
                    shift_cols_sum(src, dst, &colmean[..cw], span)
                }
                Shift::None => {
                    rows.read(i, c0, src)?;
                    copy_sum(src, dst, span)
                }
                Shift::PerRow(s) => {
                    rows.read(i, c0, src)?;
                    shift_sum(src, dst, s[i], span)
                }
            };
            *sum += s;
            Ok((!s.is_finite()).then_some(i))
        })
        .collect::<Result<Vec<Option<usize>>>>()?;
    Ok(bad_rows.into_iter().flatten().min())
}

/// The first non-finite value of a row-major matrix, as an error.
pub(crate) fn first_non_finite(data: &[f32], d: usize) -> Option<KernelError> {
    let pos = data.iter().position(|x| !x.is_finite())?;
    Some(KernelError::NonFinite {
        row: pos / d,
        col: pos % d,
        value: data[pos],
    })
}

/// Per-column means (over the `n` rows) of columns `c0..c0 + out.len()`.
fn column_means(data: &[f32], n: usize, d: usize, c0: usize, out: &mut [f32]) {
    const CB: usize = 256;
    out.par_chunks_mut(CB).enumerate().for_each(|(b, o)| {
        let k0 = c0 + b * CB;
        let w = o.len();
        let mut acc = [0f64; CB];
        for i in 0..n {
            let src = &data[i * d + k0..i * d + k0 + w];
            for (a, &x) in acc.iter_mut().zip(src) {
                *a += x as f64;
            }
        }
        for (o, a) in o.iter_mut().zip(acc) {
            *o = (a / n as f64) as f32;
        }
    });
}

/// Sum of `f32` values in `f64`, with independent lanes so it vectorises.
pub(crate) fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for k in 0..8 {
            acc[k] += c[k] as f64;
        }
    }
    let tail: f64 = it.remainder().iter().map(|&v| v as f64).sum();
    acc.iter().sum::<f64>() + tail
}

/// The span of `x`, with independent lanes so it vectorises. Comparisons
/// skip NaN, which the caller finds through the row sum.
fn span_of(x: &[f32]) -> Span {
    let mut lo = [f32::INFINITY; 8];
    let mut hi = [f32::NEG_INFINITY; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for k in 0..8 {
            if c[k] < lo[k] {
                lo[k] = c[k];
            }
            if c[k] > hi[k] {
                hi[k] = c[k];
            }
        }
    }
    let mut span = Span::EMPTY;
    for k in 0..8 {
        span = span.merge(Span {
            lo: lo[k],
            hi: hi[k],
        });
    }
    for &v in it.remainder() {
        span = span.merge(Span { lo: v, hi: v });
    }
    span
}

/// `dst = src`, returns `Σ src` in `f64`; `span` is set to `src`'s span.
fn copy_sum(src: &[f32], dst: &mut [f32], span: &mut Span) -> f64 {
    dst.copy_from_slice(src);
    *span = span_of(src);
    sum_f64(dst)
}

/// `dst = src − s`, returns `Σ dst` in `f64`; `span` is set to `src`'s
/// span (of the values as given).
pub(crate) fn shift_sum(src: &[f32], dst: &mut [f32], s: f32, span: &mut Span) -> f64 {
    let mut acc = [0f64; 8];
    let mut lo = [f32::INFINITY; 8];
    let mut hi = [f32::NEG_INFINITY; 8];
    let mut sc = src.chunks_exact(8);
    let mut dc = dst.chunks_exact_mut(8);
    for (a, b) in (&mut sc).zip(&mut dc) {
        for k in 0..8 {
            let x = a[k];
            if x < lo[k] {
                lo[k] = x;
            }
            if x > hi[k] {
                hi[k] = x;
            }
            let v = x - s;
            b[k] = v;
            acc[k] += v as f64;
        }
    }
    let mut tail = 0f64;
    let mut out = Span::EMPTY;
    for (a, b) in sc.remainder().iter().zip(dc.into_remainder()) {
        out = out.merge(Span { lo: *a, hi: *a });
        let v = a - s;
        *b = v;
        tail += v as f64;
    }
    for k in 0..8 {
        out = out.merge(Span {
            lo: lo[k],
            hi: hi[k],
        });
    }
    *span = out;
    acc.iter().sum::<f64>() + tail
}

/// `dst = src − means` (element-wise), returns `Σ dst` in `f64`; `span`
/// is set to `src`'s span.
fn shift_cols_sum(src: &[f32], dst: &mut [f32], means: &[f32], span: &mut Span) -> f64 {
    *span = span_of(src);
    let mut acc = [0f64; 8];
    let mut sc = src.chunks_exact(8);
    let mut dc = dst.chunks_exact_mut(8);
    let mut mc = means.chunks_exact(8);
    for ((a, b), m) in (&mut sc).zip(&mut dc).zip(&mut mc) {
        for k in 0..8 {
            let v = a[k] - m[k];
            b[k] = v;
            acc[k] += v as f64;
        }
    }
    let mut tail = 0f64;
    for ((a, b), m) in sc
        .remainder()
        .iter()
        .zip(dc.into_remainder())
        .zip(mc.remainder())
    {
        let v = a - m;
        *b = v;
        tail += v as f64;
    }
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
    }

    #[test]
    fn chunked_gram_matches_naive_f64() {
        for &(n, d, chunk) in &[(5, 7, 3), (17, 100, 64), (40, 33, 33), (3, 1000, 999)] {
            let x = random(n, d, n as u64 * 31 + d as u64);
            let shifts: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
            let g = gram_lower(&x, n, d, Shift::PerRow(&shifts), chunk).unwrap();
            for i in 0..n {
                let si: f64 = (0..d).map(|k| (x[i * d + k] - shifts[i]) as f64).sum();
                assert!((g.row_sums()[i] - si).abs() < 1e-9 * d as f64);
                for j in 0..n {
                    let prods: Vec<f64> = (0..d)
                        .map(|k| {
                            (x[i * d + k] - shifts[i]) as f64 * (x[j * d + k] - shifts[j]) as f64
                        })
                        .collect();
                    let want: f64 = prods.iter().sum();
                    // f32 products: error relative to the sum of magnitudes.
                    let scale: f64 = prods.iter().map(|p| p.abs()).sum();
                    assert!(
                        (g.get(i, j) - want).abs() <= 1e-6 * scale,
                        "n={n} d={d} ({i},{j}) {} vs {want}",
                        g.get(i, j)
                    );
                }
            }
        }
    }

    #[test]
    fn column_mean_shift_centres_columns() {
        let (n, d) = (9, 50);
        let x: Vec<f32> = random(n, d, 5).iter().map(|v| v + 100.0).collect();
        let g = gram_lower(&x, n, d, Shift::ColumnMean, 16).unwrap();
        // Centred columns: every column of B sums to ~0, so every row of
        // the centred Gram sums to ~0.
        for i in 0..n {
            let s: f64 = (0..n).map(|j| g.get(i, j)).sum();
            assert!(s.abs() < 1e-3, "row {i} sums to {s}");
        }
    }

    #[test]
    fn into_symmetric_mirrors() {
        let (n, d) = (70, 5);
        let x = random(n, d, 9);
        let g = gram_lower(&x, n, d, Shift::None, 5).unwrap();
        let want: Vec<f64> = (0..n * n).map(|k| g.get(k / n, k % n)).collect();
        let m = g.into_symmetric(|_, _, v| v);
        for i in 0..n {
            for j in 0..n {
                assert_eq!(m.get(i, j), want[i * n + j] as f32);
                assert_eq!(m.get(i, j), m.get(j, i));
            }
        }
    }

    #[test]
    fn non_finite_is_reported_at_first_position() {
        let (n, d) = (6, 40);
        let mut x = random(n, d, 1);
        x[4 * d + 3] = f32::INFINITY;
        x[2 * d + 30] = f32::NAN;
        for shift in [Shift::None, Shift::ColumnMean] {
            match gram_lower(&x, n, d, shift, 8) {
                Err(KernelError::NonFinite { row, col, .. }) => assert_eq!((row, col), (2, 30)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn empty_inputs_do_not_panic() {
        let g = gram_lower(&[], 0, 5, Shift::ColumnMean, 4).unwrap();
        assert_eq!(g.into_symmetric(|_, _, v| v).n(), 0);
        let g = gram_lower(&[], 3, 0, Shift::None, 4).unwrap();
        assert_eq!(g.into_symmetric(|_, _, v| v).as_slice(), &[0.0; 9]);
    }

    #[test]
    fn overflow_is_an_error() {
        let (n, d) = (3, 4);
        let mut x = vec![1.0f32; n * d];
        x[d + 1] = 3e20;
        match gram_lower(&x, n, d, Shift::None, 4) {
            Err(KernelError::Overflow { row }) => assert_eq!(row, 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn impossible_allocation_is_an_error_not_an_abort() {
        // n² f64 for n = 2^31 is 32 EiB: refused, reported, no abort.
        let n = 1usize << 31;
        let err = crate::try_zeroed::<f64>(n.saturating_mul(n), "test").unwrap_err();
        assert!(matches!(err, KernelError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn default_chunk_is_bounded() {
        assert_eq!(default_chunk(10, 100), 100);
        assert_eq!(default_chunk(10, 1_000_000), MAX_CHUNK);
        let c = default_chunk(100_000, 1_000_000);
        assert!((MIN_CHUNK..=MAX_CHUNK).contains(&c) && c.is_multiple_of(CHUNK_STEP));
        assert_eq!(default_chunk(2000, 200_704), 4096);
    }
}
