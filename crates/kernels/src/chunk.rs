//! Column chunks: the step before every matrix product of the Gram
//! kernels ([`crate::gram`] at hand, [`crate::stream`] as rows arrive).
//!
//! The products are taken a chunk of `C` columns at a time: each row's
//! chunk is copied, minus a shift, into one reused `f32` buffer, whose
//! products are then added into an `f64` accumulator. The shift removes
//! the large common part of the values (a per-row value for correlations,
//! each column's mean over the rows for distances and centred kernels,
//! which do not change under it), so the `f32` products keep their digits;
//! the row sums of the shifted values, accumulated in `f64` here, are what
//! is needed to centre them exactly afterwards. Each row's [`Span`] is
//! kept as well, for the exact test of a constant row.

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::error::Result;
use crate::numeric::{shift_cols_sum, shift_sum, Span};
use crate::source::RowSource;

/// Target size of the `n x C` chunk buffer, in bytes: large enough that
/// the per-chunk `n²` work is small next to the product, small enough to
/// stay near the caches (wider chunks measured slower).
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
    /// One value per row, the same for every chunk (pearson, spearman,
    /// cosine with 0). The products are then of `x_i − s_i`; the row sums
    /// give what is needed to centre them exactly.
    PerRow(&'a [f32]),
    /// Each chunk's per-column mean over the rows (euclidean, gram).
    /// Equivalent to centring every column by its mean, which leaves
    /// distances unchanged and is exactly the centring of a linear kernel.
    ColumnMean,
}

/// The column chunk width used when none is given: the widest multiple of
/// 1024 between 2048 and 16384 columns whose `n x C` buffer fits in
/// [`CHUNK_BUFFER_BYTES`], and never more than `d`. The streaming Gram
/// uses it with `n` the rows of both of its buffers.
pub fn default_chunk(n: usize, d: usize) -> usize {
    let by_memory = CHUNK_BUFFER_BYTES / (4 * n.max(1));
    let c = by_memory.clamp(MIN_CHUNK, MAX_CHUNK) / CHUNK_STEP * CHUNK_STEP;
    c.min(d).max(1)
}

/// Rows a band of the upper triangle must have, on average, before the
/// triangle is cut into bands: below it faer's own split costs less than
/// the bands' extra calls.
const MIN_BAND_ROWS: usize = 256;

/// `dst = B Bᵀ`, only the triangle `half` (`TriangularLower` or
/// `TriangularUpper`; the other is left as it was), by faer's triangular
/// product: half the flops of a full one. On several threads an upper
/// triangle of at least [`MIN_BAND_ROWS`] rows a thread is cut into
/// column bands of equal work, one a thread (see [`upper_gram_in_bands`]).
pub(crate) fn gram_of_rows(
    dst: MatMut<'_, f32>,
    half: BlockStructure,
    rows: MatRef<'_, f32>,
    par: Par,
) {
    let threads = par.degree();
    if half == BlockStructure::TriangularUpper
        && threads > 1
        && rows.nrows() >= MIN_BAND_ROWS * threads
    {
        upper_gram_in_bands(dst, rows, threads);
        return;
    }
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

/// The upper triangle of `dst = B Bᵀ` as `bands` column bands computed
/// side by side, each on one thread: band `[a, b)` is the rectangle of
/// rows `0..a` (a full product) and the triangle of rows `a..b`. Band
/// edges at `n·sqrt(k / bands)` give every band `n² / (2·bands)` products.
/// faer's own parallel triangular product kept 2 threads busy at 1.74
/// times one thread's rate (N = 2000, 4096 columns, AVX-512): its split
/// of a triangle is uneven; the bands run at 2 threads' worth.
fn upper_gram_in_bands(dst: MatMut<'_, f32>, rows: MatRef<'_, f32>, bands: usize) {
    let n = rows.nrows();
    let edges: Vec<usize> = (0..=bands)
        .map(|k| ((n as f64) * (k as f64 / bands as f64).sqrt()).round() as usize)
        .collect();
    let mut parts = Vec::with_capacity(bands);
    let mut rest = dst;
    for pair in edges.windows(2) {
        let (band, right) = rest.split_at_col_mut(pair[1] - pair[0]);
        parts.push((pair[0], band));
        rest = right;
    }
    parts.into_par_iter().for_each(|(a, mut band)| {
        let width = band.ncols();
        let own = rows.subrows(a, width);
        if a > 0 {
            faer::linalg::matmul::matmul(
                band.as_mut().subrows_mut(0, a),
                Accum::Replace,
                rows.subrows(0, a),
                own.transpose(),
                1.0f32,
                Par::Seq,
            );
        }
        matmul(
            band.subrows_mut(a, width),
            BlockStructure::TriangularUpper,
            Accum::Replace,
            own,
            BlockStructure::Rectangular,
            own.transpose(),
            BlockStructure::Rectangular,
            1.0f32,
            Par::Seq,
        );
    });
}

/// Columns `c0..c0 + cw` of the first `row_sums.len()` rows of
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

/// [`fill_chunk`] for rows held in one slice: copy columns `c0..c0 + cw` of every
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
                Shift::PerRow(s) => shift_sum(src, dst, s[i], span),
                Shift::ColumnMean => shift_cols_sum(src, dst, &colmean[..cw], span),
            };
            *sum += s;
            (!s.is_finite()).then_some(i)
        })
        .min()
}

/// [`fill_chunk`] for rows read through [`RowSource::read`] (a spill file). With a
/// per-row shift, each row's piece is read into a per-thread buffer
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The upper triangle of `B Bᵀ` in f64, row-major `n x n` (the lower
    /// part zero).
    fn upper_reference(b: &[f32], n: usize, cw: usize) -> Vec<f64> {
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in i..n {
                out[i * n + j] = (0..cw)
                    .map(|k| b[i * cw + k] as f64 * b[j * cw + k] as f64)
                    .sum();
            }
        }
        out
    }

    #[test]
    fn the_upper_triangle_is_the_same_in_bands_and_whole() {
        // 1,100 rows: bands on 2 and 3 threads (edges 0, 778, 1100 and
        // 0, 635, 898, 1100), one product on 5.
        let (n, cw) = (1100, 23);
        let b: Vec<f32> = (0..n * cw)
            .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
            .collect();
        let want = upper_reference(&b, n, cw);
        for threads in [1, 2, 3, 5] {
            let par = if threads == 1 {
                Par::Seq
            } else {
                Par::rayon(threads)
            };
            // NaN where nothing may be written, to catch a stray write.
            let mut got = vec![f32::NAN; n * n];
            gram_of_rows(
                MatMut::from_column_major_slice_mut(&mut got, n, n),
                BlockStructure::TriangularUpper,
                MatRef::from_row_major_slice(&b, n, cw),
                par,
            );
            // Column-major: column j holds rows 0..=j of the upper triangle.
            for j in 0..n {
                for i in 0..=j {
                    let (g, w) = (got[j * n + i] as f64, want[i * n + j]);
                    assert!(
                        (g - w).abs() < 1e-4,
                        "{threads} threads, ({i}, {j}): {g} vs {w}"
                    );
                }
                for i in j + 1..n {
                    assert!(
                        got[j * n + i].is_nan(),
                        "{threads} threads wrote ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn default_chunk_is_bounded() {
        assert_eq!(default_chunk(10, 100), 100);
        assert_eq!(default_chunk(10, 1_000_000), MAX_CHUNK);
        let c = default_chunk(100_000, 1_000_000);
        assert!((MIN_CHUNK..=MAX_CHUNK).contains(&c) && c.is_multiple_of(CHUNK_STEP));
        assert_eq!(default_chunk(2000, 200_704), 4096);
    }

    #[test]
    fn in_place_and_by_reads_fill_the_same_chunk() {
        struct ByReads<'a>(crate::source::RowSlice<'a>);
        impl RowSource for ByReads<'_> {
            fn n(&self) -> usize {
                self.0.n()
            }
            fn d(&self) -> usize {
                self.0.d()
            }
            fn read(&self, row: usize, c0: usize, dst: &mut [f32]) -> Result<()> {
                self.0.read(row, c0, dst)
            }
        }
        let (n, d, c0, cw) = (5, 23, 7, 9);
        let x: Vec<f32> = (0..n * d).map(|v| (v as f32 * 0.37).cos() + 3.0).collect();
        let rows = crate::source::RowSlice::new(&x, n, d).unwrap();
        let shifts: Vec<f32> = (0..n).map(|i| i as f32).collect();
        for shift in [Shift::PerRow(&shifts), Shift::ColumnMean] {
            let fill = |src: &dyn RowSource| {
                let (mut b, mut sums) = (vec![0f32; n * cw], vec![0f64; n]);
                let (mut means, mut spans) = (vec![0f32; cw], vec![Span::EMPTY; n]);
                let bad = fill_chunk(src, shift, c0, &mut b, &mut sums, &mut means, &mut spans);
                assert_eq!(bad.unwrap(), None);
                (b, sums, spans)
            };
            assert_eq!(fill(&rows), fill(&ByReads(rows)));
        }
    }
}
