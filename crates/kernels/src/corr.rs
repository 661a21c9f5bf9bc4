//! First-order matrices: the `n x n` matrix of one layer over `n` inputs.
//!
//! This is the entry point behind `layer_corr`. All five methods reduce to
//! the chunked Gram kernel of [`crate::gram`] with a different shift and a
//! different map from the accumulated products to the result:
//!
//! | method    | rows          | shift                          | entry from `G`, row sums `s`            |
//! |-----------|---------------|--------------------------------|-----------------------------------------|
//! | pearson   | as given      | mean of the row's first chunk  | `(G_ij − s_i s_j/d) / √(var_i var_j)`    |
//! | spearman  | ranked        | `(d + 1) / 2` (the mean rank)  | as pearson                              |
//! | cosine    | as given      | none                           | `G_ij / √(G_ii G_jj)`                   |
//! | euclidean | as given      | per-column mean                | `√(G_ii + G_jj − 2 G_ij)`               |
//! | gram      | as given      | per-column mean                | `G_ij`                                  |
//!
//! The per-row shift makes the remaining mean of each row small, so the
//! correction `s_i s_j / d` cancels almost nothing even for rows of
//! 1000 ± 1. Euclidean distances between nearly identical rows would lose
//! most digits in `G_ii + G_jj − 2 G_ij`; pairs where that cancellation
//! exceeds a factor of 1000 are recomputed directly in `f64` from the rows.

use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::gram::{default_chunk, gram_lower_of, gram_lower_rescaled_of, sum_f64, Shift, Span};
use crate::method::CorrMethod;
use crate::rank::rank_rows;
use crate::rows::RowMatrix;
use crate::source::RowSource;
use crate::SquareMatrix;

/// Euclidean pairs with `d² < REFINE · (G_ii + G_jj)` are recomputed
/// directly: below it, the `f32` products would leave fewer than about
/// three correct digits of `d²`.
const EUCLIDEAN_REFINE: f64 = 1e-3;

/// Pearson and spearman rows whose variance from the products comes out
/// below this fraction of their shifted sum of squares lost most digits
/// to the cancellation `G_ii − s_i²/d` (a shift far from the row's mean
/// next to its spread); their variance is recomputed from the row in
/// `f64`. Ordinary rows are far above it.
const SPREAD_REFINE: f64 = 1e-5;

/// The `n x n` matrix of `method` between the rows of `rows`.
///
/// `rows` is consumed: spearman ranks it in place. Pearson, spearman and
/// cosine have a diagonal of exactly 1 and entries clamped to `[-1, 1]`;
/// euclidean has a diagonal of exactly 0; gram is the centred linear kernel
/// `Xc Xcᵀ` (`Xc`: each column minus its mean over the rows).
///
/// Errors (never panics on data): fewer than 2 rows
/// ([`KernelError::TooFewRows`]); no columns ([`KernelError::NoColumns`]);
/// a NaN or infinity ([`KernelError::NonFinite`], first in row-major order,
/// or the smallest such row for spearman); a constant row for pearson or
/// spearman or an all-zero row for cosine ([`KernelError::ConstantRow`],
/// smallest such row); values too large to square in `f32`
/// ([`KernelError::Overflow`]).
pub fn correlation_matrix(rows: RowMatrix, method: CorrMethod) -> Result<SquareMatrix<f32>> {
    correlation_matrix_with_chunk(rows, method, None)
}

/// [`correlation_matrix`] with an explicit column chunk width (`None`: the
/// default of [`crate::gram::default_chunk`]). The result does not depend on
/// the chunk beyond rounding; this exists for tests and benchmarks.
pub fn correlation_matrix_with_chunk(
    mut rows: RowMatrix,
    method: CorrMethod,
    chunk: Option<usize>,
) -> Result<SquareMatrix<f32>> {
    check_shape(rows.n(), rows.d(), method)?;
    if method == CorrMethod::Spearman {
        rank_rows(&mut rows)?;
    }
    correlation_matrix_of(&rows, method, chunk)
}

/// [`correlation_matrix`] of rows read through a [`RowSource`] (in memory
/// or a spill file), which is left as it is.
///
/// For [`CorrMethod::Spearman`] the rows must already be average ranks
/// (see [`crate::rank::rank_row_into`]): a source cannot be ranked in
/// place, so the caller ranks each row as it arrives.
pub fn correlation_matrix_of(
    rows: &dyn RowSource,
    method: CorrMethod,
    chunk: Option<usize>,
) -> Result<SquareMatrix<f32>> {
    let (n, d) = (rows.n(), rows.d());
    check_shape(n, d, method)?;
    let chunk = chunk.unwrap_or_else(|| default_chunk(n, d)).clamp(1, d);
    match method {
        CorrMethod::Pearson => {
            // Shift each row by the mean of its first chunk (computed in f64).
            let shifts = first_chunk_means(rows, chunk)?;
            let g = gram_lower_rescaled_of(rows, Shift::PerRow(&shifts), chunk)?;
            pearson_from_gram(g, d, method, rows)
        }
        CorrMethod::Spearman => {
            // Average ranks sum to d(d+1)/2 in every row: (d+1)/2 is the
            // exact mean, so the shifted ranks are exact half-integers.
            let mut shifts: Vec<f32> = crate::try_zeroed(n, "spearman shifts")?;
            shifts.fill(((d as f64 + 1.0) * 0.5) as f32);
            let g = gram_lower_rescaled_of(rows, Shift::PerRow(&shifts), chunk)?;
            pearson_from_gram(g, d, method, rows)
        }
        CorrMethod::Cosine => {
            let g = gram_lower_rescaled_of(rows, Shift::None, chunk)?;
            let diag = g.diagonal()?;
            let inv = inverse_spreads(&diag, &diag, g.spans(), method, rows)?;
            Ok(g.into_symmetric(|i, j, v| {
                if i == j {
                    1.0
                } else {
                    (v * inv[i] * inv[j]).clamp(-1.0, 1.0)
                }
            }))
        }
        CorrMethod::Euclidean => {
            let g = gram_lower_of(rows, Shift::ColumnMean, chunk)?;
            let diag = g.diagonal()?;
            let read_error = std::sync::Mutex::new(None);
            let m = g.into_symmetric(|i, j, v| {
                if i == j {
                    return 0.0;
                }
                let norms = diag[i] + diag[j];
                let d2 = norms - 2.0 * v;
                if d2 > EUCLIDEAN_REFINE * norms {
                    return d2.sqrt();
                }
                match sq_dist_rows(rows, i, j) {
                    Ok(x) => x.sqrt(),
                    Err(e) => {
                        *read_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        f64::NAN
                    }
                }
            });
            match read_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(e) => Err(e),
                None => Ok(m),
            }
        }
        CorrMethod::Gram => {
            let g = gram_lower_of(rows, Shift::ColumnMean, chunk)?;
            Ok(g.into_symmetric(|_, _, v| v))
        }
    }
}

/// At least two rows and one column, as every method needs.
pub(crate) fn check_shape(n: usize, d: usize, method: CorrMethod) -> Result<()> {
    if n < 2 {
        return Err(KernelError::TooFewRows {
            what: method.name(),
            n,
            min: 2,
        });
    }
    if d == 0 {
        return Err(KernelError::NoColumns {
            what: method.name(),
        });
    }
    Ok(())
}

/// Each row's mean over its first `chunk` values, the pearson shift.
fn first_chunk_means(rows: &dyn RowSource, chunk: usize) -> Result<Vec<f32>> {
    let mean = |r: &[f32]| (sum_f64(r) / chunk as f64) as f32;
    let mut out: Vec<f32> = crate::try_zeroed(rows.n(), "pearson shifts")?;
    if let Some(data) = rows.contiguous() {
        let d = rows.d();
        out.par_iter_mut()
            .zip(data.par_chunks(d))
            .for_each(|(o, r)| *o = mean(&r[..chunk]));
        return Ok(out);
    }
    out.par_iter_mut().enumerate().try_for_each_init(
        || vec![0f32; chunk],
        |buf, (i, o)| {
            rows.read(i, 0, buf)?;
            *o = mean(buf);
            Ok(())
        },
    )?;
    Ok(out)
}

/// `Σ (x_i − x_j)²` in `f64` between two rows of a source.
fn sq_dist_rows(rows: &dyn RowSource, i: usize, j: usize) -> Result<f64> {
    if let Some(data) = rows.contiguous() {
        let d = rows.d();
        return Ok(sq_dist_f64(
            &data[i * d..(i + 1) * d],
            &data[j * d..(j + 1) * d],
        ));
    }
    let mut a: Vec<f32> = crate::try_zeroed(rows.d(), "row buffer")?;
    let mut b: Vec<f32> = crate::try_zeroed(rows.d(), "row buffer")?;
    rows.read(i, 0, &mut a)?;
    rows.read(j, 0, &mut b)?;
    Ok(sq_dist_f64(&a, &b))
}

/// Pearson from shifted products: `cov_ij = G_ij − s_i s_j / d`.
fn pearson_from_gram(
    g: crate::gram::Gram,
    d: usize,
    method: CorrMethod,
    rows: &dyn RowSource,
) -> Result<SquareMatrix<f32>> {
    let sqrt_d = (d as f64).sqrt();
    let mut m: Vec<f64> = crate::try_zeroed(g.n(), "pearson row means")?;
    for (mi, s) in m.iter_mut().zip(g.row_sums()) {
        *mi = s / sqrt_d;
    }
    let mut var = g.diagonal()?;
    let diag = var.clone();
    for (v, mi) in var.iter_mut().zip(&m) {
        *v -= mi * mi;
    }
    let inv = inverse_spreads(&var, &diag, g.spans(), method, rows)?;
    Ok(g.into_symmetric(|i, j, v| {
        if i == j {
            1.0
        } else {
            ((v - m[i] * m[j]) * inv[i] * inv[j]).clamp(-1.0, 1.0)
        }
    }))
}

/// Per-row `1 / √spread`, where the spread is `d` times the variance
/// (pearson, spearman) or the squared norm (cosine), from the products:
/// `spread[i]`, and `diag[i]` the row's shifted sum of squares.
///
/// Whether a row is constant (pearson, spearman: all its values equal) or
/// zero (cosine: all its values 0) is decided exactly from its `span`, not
/// from the rounded spread, so a row that varies is never called constant
/// however small its values. The smallest such row is the error
/// [`KernelError::ConstantRow`]. A varying row whose spread from the
/// products is not clearly positive (cancellation, see
/// [`SPREAD_REFINE`]) gets its spread recomputed from `rows` in `f64`.
pub(crate) fn inverse_spreads(
    spread: &[f64],
    diag: &[f64],
    spans: &[Span],
    method: CorrMethod,
    rows: &dyn RowSource,
) -> Result<Vec<f64>> {
    let cosine = method == CorrMethod::Cosine;
    let degenerate = |s: &Span| if cosine { s.is_zero() } else { s.is_constant() };
    if let Some(row) = spans.iter().position(degenerate) {
        return Err(KernelError::ConstantRow {
            row,
            method: method.name(),
        });
    }
    let mut inv: Vec<f64> = crate::try_zeroed(spread.len(), "row scale factors")?;
    for (i, (o, (&v, &g))) in inv.iter_mut().zip(spread.iter().zip(diag)).enumerate() {
        let v = if v.is_finite() && v > SPREAD_REFINE * g {
            v
        } else {
            row_spread(rows, i, method)?
        };
        if !(v > 0.0 && v.is_finite()) {
            // Not reached for a varying row of finite values (its exact
            // spread is positive); kept as an error rather than a NaN.
            return Err(KernelError::ConstantRow {
                row: i,
                method: method.name(),
            });
        }
        *o = 1.0 / v.sqrt();
    }
    Ok(inv)
}

/// The spread of row `i` of `rows` computed directly in `f64`: `Σ (x − x̄)²`
/// with the exact mean (pearson, spearman) or `Σ x²` (cosine).
pub(crate) fn row_spread(rows: &dyn RowSource, i: usize, method: CorrMethod) -> Result<f64> {
    let d = rows.d();
    let owned;
    let row: &[f32] = match rows.contiguous() {
        Some(data) => &data[i * d..(i + 1) * d],
        None => {
            let mut buf: Vec<f32> = crate::try_zeroed(d, "row buffer")?;
            rows.read(i, 0, &mut buf)?;
            owned = buf;
            &owned
        }
    };
    let mean = if method == CorrMethod::Cosine {
        0.0
    } else {
        sum_f64(row) / d.max(1) as f64
    };
    Ok(row
        .iter()
        .map(|&x| {
            let t = x as f64 - mean;
            t * t
        })
        .sum())
}

/// `Σ (a − b)²` in `f64`, with independent lanes so it vectorises.
fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let mut ac = a.chunks_exact(8);
    let mut bc = b.chunks_exact(8);
    for (x, y) in (&mut ac).zip(&mut bc) {
        for k in 0..8 {
            let t = x[k] as f64 - y[k] as f64;
            acc[k] += t * t;
        }
    }
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(&x, &y)| {
            let t = x as f64 - y as f64;
            t * t
        })
        .sum();
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::reference_ranks;
    use rand::{Rng, SeedableRng};

    fn rng(seed: u64) -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(seed)
    }

    /// ReLU-like activations: many exact zeros, some spread, a per-row scale.
    fn activations(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut r = rng(seed);
        let mut v = Vec::with_capacity(n * d);
        for _ in 0..n {
            let scale = r.gen_range(0.5f32..3.0);
            for _ in 0..d {
                let x: f32 = r.gen_range(-1.0f32..2.0);
                v.push(if x > 0.0 { x * scale } else { 0.0 });
            }
        }
        v
    }

    fn row(x: &[f32], d: usize, i: usize) -> Vec<f64> {
        x[i * d..(i + 1) * d].iter().map(|&v| v as f64).collect()
    }

    fn naive_pearson(a: &[f64], b: &[f64]) -> f64 {
        let d = a.len() as f64;
        let ma = a.iter().sum::<f64>() / d;
        let mb = b.iter().sum::<f64>() / d;
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (x, y) in a.iter().zip(b) {
            sab += (x - ma) * (y - mb);
            saa += (x - ma) * (x - ma);
            sbb += (y - mb) * (y - mb);
        }
        sab / (saa * sbb).sqrt()
    }

    /// Float64 reference for every method.
    fn naive(x: &[f32], n: usize, d: usize, method: CorrMethod) -> Vec<f64> {
        let rows: Vec<Vec<f64>> = (0..n).map(|i| row(x, d, i)).collect();
        let colmean: Vec<f64> = (0..d)
            .map(|k| rows.iter().map(|r| r[k]).sum::<f64>() / n as f64)
            .collect();
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let (a, b) = (&rows[i], &rows[j]);
                out[i * n + j] = match method {
                    CorrMethod::Pearson => naive_pearson(a, b),
                    CorrMethod::Spearman => {
                        let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
                        naive_pearson(&reference_ranks(&to32(a)), &reference_ranks(&to32(b)))
                    }
                    CorrMethod::Cosine => {
                        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                        let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
                        let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
                        dot / (na * nb)
                    }
                    CorrMethod::Euclidean => a
                        .iter()
                        .zip(b)
                        .map(|(x, y)| (x - y) * (x - y))
                        .sum::<f64>()
                        .sqrt(),
                    CorrMethod::Gram => (0..d)
                        .map(|k| (a[k] - colmean[k]) * (b[k] - colmean[k]))
                        .sum(),
                };
            }
        }
        out
    }

    /// Max error, absolute for bounded methods and relative to the largest
    /// entry for euclidean and gram.
    fn max_err(got: &SquareMatrix<f32>, want: &[f64], method: CorrMethod) -> f64 {
        let scale = match method {
            CorrMethod::Euclidean | CorrMethod::Gram => {
                want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30)
            }
            _ => 1.0,
        };
        got.as_slice()
            .iter()
            .zip(want)
            .map(|(&g, &w)| (g as f64 - w).abs() / scale)
            .fold(0.0, f64::max)
    }

    fn check(x: &[f32], n: usize, d: usize, method: CorrMethod, chunk: Option<usize>, tol: f64) {
        let m = RowMatrix::from_vec(x.to_vec(), n, d).unwrap();
        let got = correlation_matrix_with_chunk(m, method, chunk).unwrap();
        assert_eq!(got.n(), n);
        let want = naive(x, n, d, method);
        let err = max_err(&got, &want, method);
        assert!(
            err <= tol,
            "{method} n={n} d={d} chunk={chunk:?}: max error {err:e}"
        );
        for i in 0..n {
            for j in 0..n {
                assert_eq!(got.get(i, j), got.get(j, i), "{method} not symmetric");
            }
            match method {
                CorrMethod::Pearson | CorrMethod::Spearman | CorrMethod::Cosine => {
                    assert_eq!(got.get(i, i), 1.0)
                }
                CorrMethod::Euclidean => assert_eq!(got.get(i, i), 0.0),
                CorrMethod::Gram => {}
            }
        }
    }

    #[test]
    fn every_method_matches_float64_reference() {
        // d not a multiple of the chunk, d smaller than n, one chunk, many.
        let shapes = [
            (2, 1, None),
            (3, 2, None),
            (7, 129, Some(32)),
            (25, 10, None),
            (16, 300, Some(64)),
            (33, 1000, Some(96)),
            (12, 5000, None),
        ];
        for method in CorrMethod::ALL {
            for &(n, d, chunk) in &shapes {
                if d == 1 && matches!(method, CorrMethod::Pearson | CorrMethod::Spearman) {
                    continue; // a single value has no variance
                }
                let mut x = activations(n, d, (n * 1000 + d) as u64);
                if d < 3 {
                    // Tiny rows: avoid constant (all-zero) rows.
                    let mut r = rng(n as u64);
                    x.iter_mut().for_each(|v| *v = r.gen_range(-1.0..1.0));
                }
                check(&x, n, d, method, chunk, 2e-6);
            }
        }
    }

    #[test]
    fn large_mean_rows_stay_accurate() {
        // Values 1000 + N(0, 1)-like noise, and rows sharing a common signal
        // so that correlations span a range; several chunks.
        let (n, d) = (24, 3000);
        let mut r = rng(11);
        let common: Vec<f32> = (0..d).map(|_| r.gen_range(-1.0f32..1.0)).collect();
        let mut x = Vec::with_capacity(n * d);
        for i in 0..n {
            let w = i as f32 / n as f32;
            let offset = if i % 3 == 0 {
                1000.0
            } else {
                -250.0 + i as f32
            };
            for c in &common {
                x.push(offset + w * c + (1.0 - w) * r.gen_range(-1.0f32..1.0));
            }
        }
        for method in [CorrMethod::Pearson, CorrMethod::Spearman] {
            check(&x, n, d, method, Some(512), 1e-5);
            check(&x, n, d, method, None, 1e-5);
        }
        for method in [CorrMethod::Cosine, CorrMethod::Euclidean, CorrMethod::Gram] {
            check(&x, n, d, method, Some(512), 1e-5);
        }
    }

    #[test]
    fn spearman_ties_match_average_rank_definition() {
        // Heavy ties: small integers, many zeros.
        let (n, d) = (9, 257);
        let mut r = rng(5);
        let x: Vec<f32> = (0..n * d)
            .map(|_| (r.gen_range(-3i32..5)).max(0) as f32)
            .collect();
        check(&x, n, d, CorrMethod::Spearman, Some(64), 1e-6);
        // A hand-checked pair: rankdata([1,2,2,3]) = [1,2.5,2.5,4],
        // rankdata([4,3,3,3]) = [4,2,2,2]; pearson of those = -0.8164966.
        let x = vec![1.0, 2.0, 2.0, 3.0, 4.0, 3.0, 3.0, 3.0];
        let m = correlation_matrix(RowMatrix::from_vec(x, 2, 4).unwrap(), CorrMethod::Spearman)
            .unwrap();
        assert!((m.get(0, 1) as f64 + (2.0f64 / 3.0).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn constant_row_errors_name_the_row() {
        let (n, d) = (6, 50);
        let mut x = activations(n, d, 2);
        for v in &mut x[4 * d..5 * d] {
            *v = 1234.5;
        }
        for v in &mut x[d..2 * d] {
            *v = 1.0 + (*v).abs();
        }
        for method in [CorrMethod::Pearson, CorrMethod::Spearman] {
            let err = correlation_matrix_with_chunk(
                RowMatrix::from_vec(x.clone(), n, d).unwrap(),
                method,
                Some(16),
            )
            .unwrap_err();
            assert_eq!(
                err,
                KernelError::ConstantRow {
                    row: 4,
                    method: method.name()
                }
            );
            assert_eq!(err.row(), Some(4));
        }
        // Constant but non-zero is fine for cosine; all-zero is not.
        assert!(correlation_matrix(
            RowMatrix::from_vec(x.clone(), n, d).unwrap(),
            CorrMethod::Cosine
        )
        .is_ok());
        for v in &mut x[2 * d..3 * d] {
            *v = 0.0;
        }
        let err = correlation_matrix(
            RowMatrix::from_vec(x.clone(), n, d).unwrap(),
            CorrMethod::Cosine,
        )
        .unwrap_err();
        assert_eq!(err.row(), Some(2));
        assert!(err.to_string().contains("zero norm"), "{err}");
        // Distances and kernels are defined for constant rows.
        for method in [CorrMethod::Euclidean, CorrMethod::Gram] {
            check(&x, n, d, method, Some(16), 1e-6);
        }
    }

    #[test]
    fn tiny_and_huge_rows_correlate_like_the_rows_themselves() {
        // Activations around 1e-38 underflow float32 products, around 1e30
        // they overflow them; correlations do not depend on the scale.
        let (n, d) = (8, 700);
        let x = activations(n, d, 21);
        for method in [
            CorrMethod::Pearson,
            CorrMethod::Spearman,
            CorrMethod::Cosine,
        ] {
            for chunk in [None, Some(128)] {
                let want = correlation_matrix_with_chunk(
                    RowMatrix::from_vec(x.clone(), n, d).unwrap(),
                    method,
                    chunk,
                )
                .unwrap();
                // Every row scaled, and rows of mixed scales in one group.
                for scales in [[1e-38f32; 2], [1e30; 2], [1e-38, 1e30]] {
                    let scaled: Vec<f32> = x
                        .chunks(d)
                        .enumerate()
                        .flat_map(|(i, r)| r.iter().map(move |v| v * scales[i % 2]))
                        .collect();
                    let got = correlation_matrix_with_chunk(
                        RowMatrix::from_vec(scaled, n, d).unwrap(),
                        method,
                        chunk,
                    )
                    .unwrap_or_else(|e| panic!("{method} {scales:?}: {e}"));
                    let err = want
                        .as_slice()
                        .iter()
                        .zip(got.as_slice())
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(err <= 1e-5, "{method} {scales:?} {chunk:?}: {err:e}");
                }
            }
        }
    }

    #[test]
    fn a_varying_row_is_never_called_constant() {
        // Two values one float apart, the smallest subnormals, and a large
        // offset with a one-ulp change: all vary, none is constant.
        let rows: [Vec<f32>; 3] = [
            vec![1.0, 1.0 + f32::EPSILON, 1.0, 1.0],
            vec![0.0, f32::from_bits(1), 0.0, f32::from_bits(2)],
            vec![1e6, 1e6, 1e6, 1e6 + 0.0625],
        ];
        for row in &rows {
            let mut x = activations(2, 4, 3);
            x.extend_from_slice(row);
            for method in [
                CorrMethod::Pearson,
                CorrMethod::Spearman,
                CorrMethod::Cosine,
            ] {
                let m = correlation_matrix(RowMatrix::from_vec(x.clone(), 3, 4).unwrap(), method)
                    .unwrap_or_else(|e| panic!("{method} {row:?}: {e}"));
                assert_eq!(m.get(2, 2), 1.0);
                assert!(m.as_slice().iter().all(|v| v.is_finite()));
            }
        }
        // Exactly constant rows still are errors, tiny or not.
        let mut x = activations(2, 4, 3);
        x.extend_from_slice(&[1e-40; 4]);
        let e = correlation_matrix(RowMatrix::from_vec(x, 3, 4).unwrap(), CorrMethod::Pearson)
            .unwrap_err();
        assert!(matches!(e, KernelError::ConstantRow { row: 2, .. }), "{e}");
    }

    #[test]
    fn bad_shapes_and_values_are_errors() {
        let one = RowMatrix::from_vec(vec![1.0, 2.0], 1, 2).unwrap();
        assert!(matches!(
            correlation_matrix(one, CorrMethod::Pearson),
            Err(KernelError::TooFewRows { n: 1, min: 2, .. })
        ));
        let empty = RowMatrix::from_vec(vec![], 3, 0).unwrap();
        assert!(matches!(
            correlation_matrix(empty, CorrMethod::Cosine),
            Err(KernelError::NoColumns { .. })
        ));
        let (n, d) = (5, 40);
        let mut x = activations(n, d, 4);
        x[3 * d + 33] = f32::NAN;
        for method in CorrMethod::ALL {
            let err = correlation_matrix_with_chunk(
                RowMatrix::from_vec(x.clone(), n, d).unwrap(),
                method,
                Some(8),
            )
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    KernelError::NonFinite {
                        row: 3,
                        col: 33,
                        ..
                    }
                ),
                "{method}: {err:?}"
            );
        }
    }

    #[test]
    fn spilled_rows_give_the_same_matrix_as_rows_in_memory() {
        use crate::spill::{RowStore, SpillPolicy};
        let (n, d) = (9, 37);
        let mut x = activations(n, d, 11);
        // a near duplicate, so euclidean takes its refine path through reads
        let mut near = x[2 * d..3 * d].to_vec();
        near[5] += 1e-3;
        x.extend_from_slice(&near);
        let n = n + 1;
        let policy = SpillPolicy::in_temp_dir(Some(0));
        for method in [
            CorrMethod::Pearson,
            CorrMethod::Spearman,
            CorrMethod::Cosine,
            CorrMethod::Euclidean,
            CorrMethod::Gram,
        ] {
            for chunk in [None, Some(8)] {
                let want = correlation_matrix_with_chunk(
                    RowMatrix::from_vec(x.clone(), n, d).unwrap(),
                    method,
                    chunk,
                )
                .unwrap();
                let mut store = RowStore::new(d);
                let mut ranked = vec![0f32; d];
                for r in x.chunks(d) {
                    let row = if method == CorrMethod::Spearman {
                        crate::rank::rank_row_into(r, &mut ranked).unwrap();
                        &ranked[..]
                    } else {
                        r
                    };
                    store.push_row(row, &policy).unwrap();
                }
                assert!(store.is_spilled());
                store.finish().unwrap();
                let got = correlation_matrix_of(store.source(), method, chunk).unwrap();
                let err = want
                    .as_slice()
                    .iter()
                    .zip(got.as_slice())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(err <= 1e-6, "{method:?} chunk {chunk:?}: {err}");
            }
        }
    }

    #[test]
    fn euclidean_of_near_duplicates_is_exact() {
        let (n, d) = (4, 4000);
        let mut x = activations(n, d, 8);
        x.extend_from_within(0..d); // row 4 = row 0
        let mut near = x[d..2 * d].to_vec();
        near[17] += 1e-3; // row 5 = row 1 with one tiny change
        let want = (near[17] as f64 - x[d + 17] as f64).abs();
        x.extend_from_slice(&near);
        let m = correlation_matrix(
            RowMatrix::from_vec(x, n + 2, d).unwrap(),
            CorrMethod::Euclidean,
        )
        .unwrap();
        assert_eq!(m.get(0, 4), 0.0);
        assert!(
            (m.get(1, 5) as f64 - want).abs() < 1e-9,
            "{} vs {want}",
            m.get(1, 5)
        );
    }

    #[test]
    fn chunk_width_does_not_change_result() {
        let (n, d) = (10, 777);
        let x = activations(n, d, 12);
        let a = correlation_matrix_with_chunk(
            RowMatrix::from_vec(x.clone(), n, d).unwrap(),
            CorrMethod::Pearson,
            Some(100),
        )
        .unwrap();
        let b =
            correlation_matrix(RowMatrix::from_vec(x, n, d).unwrap(), CorrMethod::Pearson).unwrap();
        for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
            assert!((u - v).abs() < 1e-6);
        }
    }

    /// Moderately sized check: several default-width chunks, realistic rows.
    #[test]
    fn moderate_size_pearson_and_spearman() {
        let (n, d) = (64, 40_000);
        let x = activations(n, d, 99);
        for method in [CorrMethod::Pearson, CorrMethod::Spearman] {
            let got =
                correlation_matrix(RowMatrix::from_vec(x.clone(), n, d).unwrap(), method).unwrap();
            // Reference for a subset of rows (the full naive is slow).
            let rows = [0usize, 1, 17, 40, 63];
            let mut err = 0f64;
            for &i in &rows {
                for &j in &rows {
                    let (a, b) = (row(&x, d, i), row(&x, d, j));
                    let want = match method {
                        CorrMethod::Pearson => naive_pearson(&a, &b),
                        _ => naive_pearson(
                            &reference_ranks(&x[i * d..(i + 1) * d]),
                            &reference_ranks(&x[j * d..(j + 1) * d]),
                        ),
                    };
                    err = err.max((got.get(i, j) as f64 - want).abs());
                }
            }
            assert!(err < 1e-6, "{method}: {err:e}");
        }
    }

    /// Timing at the design's reference size; run with `--ignored`.
    /// `LAYERCORR_N`, `LAYERCORR_D`, `LAYERCORR_CHUNK` and `LAYERCORR_METHOD`
    /// override the shape, chunk width and method.
    #[test]
    #[ignore]
    fn timing_pearson_2000_x_200704() {
        let env = |k: &str| std::env::var(k).ok();
        let num = |k: &str, default: usize| env(k).and_then(|v| v.parse().ok()).unwrap_or(default);
        let (n, d) = (num("LAYERCORR_N", 2000), num("LAYERCORR_D", 200_704));
        let chunk = env("LAYERCORR_CHUNK").and_then(|v| v.parse().ok());
        let method: CorrMethod = env("LAYERCORR_METHOD")
            .map(|m| m.parse().unwrap())
            .unwrap_or(CorrMethod::Pearson);
        // Cheap generator: ReLU of a uniform, about half zeros.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let x: Vec<f32> = (0..n * d)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0).max(0.0)
            })
            .collect();
        let m = RowMatrix::from_vec(x, n, d).unwrap();
        let (t, cpu) = (std::time::Instant::now(), cpu_seconds());
        let out = correlation_matrix_with_chunk(m, method, chunk).unwrap();
        eprintln!(
            "{method} n={n} d={d} chunk={chunk:?}: {:.3} s wall, {:.2} s cpu (r01 = {})",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - cpu,
            out.get(0, 1)
        );
    }

    /// User + system CPU time of this process (Linux), to judge speed on a
    /// shared machine; 0 elsewhere.
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // Fields after the command: state is index 0, utime 11, stime 12.
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (tick(11) + tick(12)) / 100.0
    }
}
