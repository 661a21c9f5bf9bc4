//! The Gram matrix of rows at hand: for euclidean and gram, which centre
//! every column by its mean over all rows and so cannot start before the
//! last row is in (pearson, spearman and cosine shift each row by a value
//! of its own and take their products as rows arrive, in
//! [`crate::stream`]).
//!
//! The columns are walked in chunks ([`crate::chunk`]); each chunk's
//! products `B Bᵀ` are taken in `f32` by faer's triangular product (half
//! the flops of a full one) and added into the `f64` [`Triangle`]. One
//! chunk carries only a chunk's worth of rounding, and chunks are summed
//! in `f64`, so the result is within about 1e-6 of a float64 computation
//! at `f32` matrix-product speed. Memory beyond the rows is the `n x C`
//! chunk buffer, the `n x n` `f32` chunk products and the triangle.

use faer::linalg::matmul::triangular::BlockStructure;
use faer::{MatMut, MatRef, Par};

use crate::alloc::{square_len, try_with_capacity, try_zeroed_vec};
use crate::chunk::{fill_chunk, gram_of_rows, Shift};
use crate::error::{KernelError, Result};
use crate::numeric::Span;
use crate::source::{first_non_finite_in, RowSource};
use crate::triangle::{lower_row, par_rows_mut, Triangle};

/// `Σ_chunks B Bᵀ` of the rows of `rows` shifted by `shift`, walking
/// `chunk` columns at a time; rows in memory are read in place, rows
/// elsewhere (a spill file) a chunk of a row at a time.
///
/// Errors: a non-finite value ([`KernelError::NonFinite`], the first in
/// row-major order), or values whose products overflow `f32`
/// ([`KernelError::Overflow`]).
pub(crate) fn gram_of(rows: &dyn RowSource, shift: Shift<'_>, chunk: usize) -> Result<Triangle> {
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
    let mut tri = Triangle::zeroed(n)?;
    if n == 0 || d == 0 {
        return Ok(tri);
    }
    let chunk = chunk.clamp(1, d);
    let mut buf: Vec<f32> = try_zeroed_vec(n.saturating_mul(chunk), "gram chunk buffer")?;
    let mut colmean = match shift {
        Shift::ColumnMean => try_zeroed_vec(chunk, "column means")?,
        Shift::PerRow(_) => Vec::new(),
    };
    // Column-major upper triangle of one chunk's products: column i holds
    // (0..=i, i), which by symmetry is row i of the lower triangle.
    let mut products: Vec<f32> = try_zeroed_vec(square_len(n, "gram products")?, "gram products")?;
    let mut chunk_spans: Vec<Span> = try_with_capacity(n, "row spans")?;
    chunk_spans.resize(n, Span::EMPTY);
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
            &mut tri.row_sums,
            &mut colmean,
            &mut chunk_spans,
        )?;
        if let Some(row) = bad_row {
            return Err(first_non_finite_in(rows)?.unwrap_or(KernelError::Overflow { row }));
        }
        for (s, c) in tri.spans.iter_mut().zip(&chunk_spans) {
            *s = s.merge(*c);
        }
        gram_of_rows(
            MatMut::from_column_major_slice_mut(&mut products[..], n, n),
            BlockStructure::TriangularUpper,
            MatRef::from_row_major_slice(&b[..], n, cw),
            par,
        );
        let products = &products[..];
        par_rows_mut(&mut tri.lower, 0..n, &lower_row, &|i, row| {
            for (a, &v) in row.iter_mut().zip(&products[i * n..i * n + i + 1]) {
                *a += v as f64;
            }
        });
        c0 += cw;
    }
    tri.check_finite(0..n)?;
    Ok(tri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::RowSlice;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
    }

    fn gram(x: &[f32], n: usize, d: usize, shift: Shift<'_>, chunk: usize) -> Result<Triangle> {
        gram_of(&RowSlice::new(x, n, d)?, shift, chunk)
    }

    #[test]
    fn chunked_gram_matches_naive_f64() {
        for &(n, d, chunk) in &[(5, 7, 3), (17, 100, 64), (40, 33, 33), (3, 1000, 999)] {
            let x = random(n, d, n as u64 * 31 + d as u64);
            let shifts: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
            let g = gram(&x, n, d, Shift::PerRow(&shifts), chunk).unwrap();
            for i in 0..n {
                let si: f64 = (0..d).map(|k| (x[i * d + k] - shifts[i]) as f64).sum();
                assert!((g.row_sums[i] - si).abs() < 1e-9 * d as f64);
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
        let g = gram(&x, n, d, Shift::ColumnMean, 16).unwrap();
        // Centred columns: every column of B sums to ~0, so every row of
        // the centred Gram sums to ~0.
        for i in 0..n {
            let s: f64 = (0..n).map(|j| g.get(i, j)).sum();
            assert!(s.abs() < 1e-3, "row {i} sums to {s}");
        }
    }

    #[test]
    fn non_finite_is_reported_at_first_position() {
        let (n, d) = (6, 40);
        let mut x = random(n, d, 1);
        x[4 * d + 3] = f32::INFINITY;
        x[2 * d + 30] = f32::NAN;
        let zeros = [0f32; 6];
        for shift in [Shift::PerRow(&zeros), Shift::ColumnMean] {
            match gram(&x, n, d, shift, 8) {
                Err(KernelError::NonFinite { row, col, .. }) => assert_eq!((row, col), (2, 30)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn empty_inputs_do_not_panic() {
        let g = gram(&[], 0, 5, Shift::ColumnMean, 4).unwrap();
        assert_eq!(g.n(), 0);
        let g = gram(&[], 3, 0, Shift::ColumnMean, 4).unwrap();
        assert_eq!(g.lower, vec![0.0; 6]);
    }

    #[test]
    fn overflow_is_an_error() {
        let (n, d) = (3, 4);
        let mut x = vec![1.0f32; n * d];
        x[d + 1] = 3e20;
        match gram(&x, n, d, Shift::PerRow(&[0.0; 3]), 4) {
            Err(KernelError::Overflow { row }) => assert_eq!(row, 1),
            other => panic!("unexpected {other:?}"),
        }
    }
}
