//! The packed triangle of products, and how it becomes the `n x n` matrix.
//!
//! Both Gram kernels ([`crate::gram`] for rows at hand, [`crate::stream`]
//! for rows as they arrive) accumulate the same [`Triangle`]: the products
//! `G_ij` of shifted rows as a packed lower triangle of `f64`, stored row
//! by row (so it grows by appending rows), with each row's sum of shifted
//! values and its [`Span`]. This module is the one place that knows what
//! each method makes of it ([`Triangle::map_entries`]), how the triangle is
//! mirrored into a full `f32` matrix and how rows and columns are put into
//! the caller's order ([`Triangle::into_matrix`]):
//!
//! | method    | entry from `G`, row sums `s`, `m = s / √d`           | diagonal |
//! |-----------|------------------------------------------------------|----------|
//! | pearson   | `(G_ij − m_i m_j) / √(var_i var_j)`, `var = G_ii − m²` | 1        |
//! | spearman  | as pearson (the rows are ranks)                      | 1        |
//! | cosine    | `G_ij / √(G_ii G_jj)`                                | 1        |
//! | euclidean | `√(G_ii + G_jj − 2 G_ij)` (columns centred)          | 0        |
//! | gram      | `G_ij` (columns centred)                             | as is    |
//!
//! Where the products lost digits to cancellation, the rows are read again
//! in `f64`: the variance of a row whose shift was far from its mean next
//! to its spread, and the distance between nearly identical rows.

use std::sync::Mutex;

use rayon::prelude::*;

use crate::alloc::{square_len, try_zeroed_vec};
use crate::error::{KernelError, Result};
use crate::method::CorrMethod;
use crate::numeric::{sq_dist_f64, sum_f64, Span};
use crate::rows::{check_permutation, RowMatrix};
use crate::source::RowSource;
use crate::square::SquareMatrix;

/// Euclidean pairs with `d² < EUCLIDEAN_REFINE · (G_ii + G_jj)` are
/// recomputed directly: below it, the `f32` products would leave fewer
/// than about three correct digits of `d²`.
const EUCLIDEAN_REFINE: f64 = 1e-3;

/// Pearson and spearman rows whose variance from the products comes out
/// below this fraction of their shifted sum of squares lost most digits
/// to the cancellation `G_ii − m_i²`; their variance is recomputed from the
/// row in `f64`. Ordinary rows are far above it.
const SPREAD_REFINE: f64 = 1e-5;

/// Offset of row `i` in a packed lower triangle stored row by row.
pub(crate) fn lower_row(i: usize) -> usize {
    i * (i + 1) / 2
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

/// Products of `n` shifted rows (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Triangle {
    /// Packed lower triangle, row by row: `(i, j)`, `j <= i`, at
    /// `lower_row(i) + j`.
    pub(crate) lower: Vec<f64>,
    /// Sum of each row's shifted values.
    pub(crate) row_sums: Vec<f64>,
    /// Smallest and largest value of each row, as given.
    pub(crate) spans: Vec<Span>,
}

impl Triangle {
    /// A zero triangle of `n` rows.
    pub(crate) fn zeroed(n: usize) -> Result<Self> {
        let mut t = Triangle::default();
        t.grow(n)?;
        Ok(t)
    }

    /// Rows.
    pub(crate) fn n(&self) -> usize {
        self.row_sums.len()
    }

    /// Entry `(i, j)` of the symmetric matrix.
    #[cfg(test)]
    pub(crate) fn get(&self, i: usize, j: usize) -> f64 {
        let (a, b) = if j <= i { (i, j) } else { (j, i) };
        self.lower[lower_row(a) + b]
    }

    /// Grows to `rows` rows with zero products (fallibly: an error, not an
    /// abort, if the triangle cannot exist or be allocated).
    pub(crate) fn grow(&mut self, rows: usize) -> Result<()> {
        let len = rows
            .checked_add(1)
            .and_then(|m| m.checked_mul(rows))
            .map(|m| m / 2)
            .ok_or(KernelError::TooLarge {
                what: "product triangle",
                bytes: u64::MAX,
            })?;
        let extra = len.saturating_sub(self.lower.len());
        self.lower
            .try_reserve_exact(extra)
            .map_err(|_| KernelError::TooLarge {
                what: "product triangle",
                bytes: (len as u64).saturating_mul(8),
            })?;
        let extra_rows = rows.saturating_sub(self.row_sums.len());
        let fail = |_| KernelError::TooLarge {
            what: "row sums",
            bytes: (rows as u64).saturating_mul(16),
        };
        self.row_sums.try_reserve_exact(extra_rows).map_err(fail)?;
        self.spans.try_reserve_exact(extra_rows).map_err(fail)?;
        self.lower.resize(len, 0.0);
        self.row_sums.resize(rows, 0.0);
        self.spans.resize(rows, Span::EMPTY);
        Ok(())
    }

    /// The diagonal `G_ii`.
    pub(crate) fn diagonal(&self) -> Result<Vec<f64>> {
        let mut out: Vec<f64> = try_zeroed_vec(self.n(), "diagonal")?;
        for (i, g) in out.iter_mut().enumerate() {
            *g = self.lower[lower_row(i) + i];
        }
        Ok(out)
    }

    /// [`KernelError::Overflow`] for the first of rows `rows` whose squared
    /// sum is not finite.
    pub(crate) fn check_finite(&self, rows: std::ops::Range<usize>) -> Result<()> {
        match rows
            .into_iter()
            .find(|&i| !self.lower[lower_row(i) + i].is_finite())
        {
            Some(row) => Err(KernelError::Overflow { row }),
            None => Ok(()),
        }
    }

    /// Replaces every product by `method`'s entry (see the module table),
    /// reading `rows` (the same rows, in the same order) where the products
    /// lost digits. Errors name the row: [`KernelError::ConstantRow`] for a
    /// constant row (pearson, spearman) or a zero row (cosine).
    pub(crate) fn map_entries(
        &mut self,
        method: CorrMethod,
        d: usize,
        rows: &dyn RowSource,
    ) -> Result<()> {
        let n = self.n();
        if rows.n() != n {
            return Err(KernelError::BadShape {
                what: "rows behind the products",
                expected: n,
                got: rows.n(),
            });
        }
        let diag = self.diagonal()?;
        match method {
            CorrMethod::Pearson | CorrMethod::Spearman | CorrMethod::Cosine => {
                let mut centre: Vec<f64> = try_zeroed_vec(n, "row means")?;
                if method != CorrMethod::Cosine {
                    let sqrt_d = (d as f64).sqrt();
                    for (c, s) in centre.iter_mut().zip(&self.row_sums) {
                        *c = s / sqrt_d;
                    }
                }
                let mut var: Vec<f64> = try_zeroed_vec(n, "variances")?;
                for ((v, g), c) in var.iter_mut().zip(&diag).zip(&centre) {
                    *v = g - c * c;
                }
                let inv = inverse_spreads(&var, &diag, &self.spans, method, rows)?;
                drop((diag, var));
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
                Ok(())
            }
            CorrMethod::Euclidean => {
                let read_error = Mutex::new(None);
                let diag = &diag;
                par_rows_mut(&mut self.lower, 0..n, &lower_row, &|i, row| {
                    for (j, g) in row.iter_mut().enumerate() {
                        if i == j {
                            *g = 0.0;
                            continue;
                        }
                        let norms = diag[i] + diag[j];
                        let d2 = norms - 2.0 * *g;
                        *g = if d2 > EUCLIDEAN_REFINE * norms {
                            d2.sqrt()
                        } else {
                            match sq_dist_rows(rows, i, j) {
                                Ok(x) => x.sqrt(),
                                Err(e) => {
                                    *read_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                    f64::NAN
                                }
                            }
                        };
                    }
                });
                match read_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            CorrMethod::Gram => Ok(()),
        }
    }

    /// The full symmetric `f32` matrix, rows and columns in the order
    /// `order` (new row `k` is row `order[k]` of the triangle).
    pub(crate) fn into_matrix(self, order: &[usize]) -> Result<SquareMatrix<f32>> {
        let n = self.n();
        check_permutation(order, n)?;
        let mut out: Vec<f32> =
            try_zeroed_vec(square_len(n, "correlation matrix")?, "correlation matrix")?;
        mirror_lower(&self.lower, n, &mut out);
        drop(self);
        let mut m = SquareMatrix { n, data: out };
        if order.iter().enumerate().any(|(k, &o)| k != o) {
            permute_square(&mut m, order)?;
        }
        Ok(m)
    }
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

/// The full symmetric `n x n` matrix of a packed lower triangle (row by
/// row), by blocks of rows: a row's lower part is contiguous in `lower`;
/// its upper part is, for a block of rows, a contiguous piece of each
/// later row.
fn mirror_lower(lower: &[f64], n: usize, out: &mut [f32]) {
    const BR: usize = 32;
    if n == 0 {
        return;
    }
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
        || try_zeroed_vec::<f32>(n, "row reorder buffer"),
        |tmp, row| {
            let tmp = tmp.as_mut().map_err(|e| e.clone())?;
            for (t, &o) in tmp.iter_mut().zip(order) {
                *t = row[o];
            }
            row.copy_from_slice(tmp);
            Ok::<(), KernelError>(())
        },
    )?;
    let mut rows = RowMatrix::from_vec(std::mem::take(&mut m.data), n, n)?;
    rows.permute_rows(order)?;
    m.data = rows.into_vec();
    Ok(())
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
/// products is not clearly positive (cancellation, see [`SPREAD_REFINE`])
/// gets its spread recomputed from `rows` in `f64`.
fn inverse_spreads(
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
    let mut inv: Vec<f64> = try_zeroed_vec(spread.len(), "row scale factors")?;
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

/// Row `i` of `rows`, in place if the rows are one slice, else read into
/// `buf`.
fn row_of<'a>(rows: &'a dyn RowSource, i: usize, buf: &'a mut Vec<f32>) -> Result<&'a [f32]> {
    let d = rows.d();
    if let Some(data) = rows.contiguous() {
        return Ok(&data[i * d..(i + 1) * d]);
    }
    *buf = try_zeroed_vec(d, "row buffer")?;
    rows.read(i, 0, buf)?;
    Ok(buf)
}

/// The spread of row `i` of `rows` computed directly in `f64`: `Σ (x − x̄)²`
/// with the exact mean (pearson, spearman) or `Σ x²` (cosine).
fn row_spread(rows: &dyn RowSource, i: usize, method: CorrMethod) -> Result<f64> {
    let mut buf = Vec::new();
    let row = row_of(rows, i, &mut buf)?;
    let mean = if method == CorrMethod::Cosine {
        0.0
    } else {
        sum_f64(row) / row.len().max(1) as f64
    };
    Ok(row
        .iter()
        .map(|&x| {
            let t = x as f64 - mean;
            t * t
        })
        .sum())
}

/// `Σ (x_i − x_j)²` in `f64` between two rows of a source.
fn sq_dist_rows(rows: &dyn RowSource, i: usize, j: usize) -> Result<f64> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    Ok(sq_dist_f64(
        row_of(rows, i, &mut a)?,
        row_of(rows, j, &mut b)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_and_permutes() {
        let n = 70;
        let mut t = Triangle::zeroed(n).unwrap();
        for i in 0..n {
            for j in 0..=i {
                t.lower[lower_row(i) + j] = (i * 1000 + j) as f64;
            }
        }
        let want: Vec<f64> = (0..n * n).map(|k| t.get(k / n, k % n)).collect();
        let mut order: Vec<usize> = (0..n).rev().collect();
        order.swap(3, 40);
        let m = Triangle {
            lower: t.lower.clone(),
            row_sums: t.row_sums.clone(),
            spans: t.spans.clone(),
        }
        .into_matrix(&(0..n).collect::<Vec<_>>())
        .unwrap();
        let p = t.into_matrix(&order).unwrap();
        for i in 0..n {
            for j in 0..n {
                assert_eq!(m.get(i, j), want[i * n + j] as f32);
                assert_eq!(p.get(i, j), m.get(order[i], order[j]));
            }
        }
    }

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        let mut t = Triangle::default();
        // n (n + 1) / 2 overflows usize: an error, not a wrapped size.
        let e = t.grow(usize::MAX / 2).unwrap_err();
        assert!(matches!(e, KernelError::TooLarge { .. }), "{e}");
        // A triangle of 2^31 rows (16 EiB) cannot be allocated.
        let e = t.grow(1 << 31).unwrap_err();
        assert!(e.to_string().starts_with("cannot allocate "), "{e}");
        let t = Triangle::zeroed(3).unwrap();
        assert!(t.into_matrix(&[0, 0, 1]).is_err());
    }
}
