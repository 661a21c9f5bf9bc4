//! One block of a layer's `n x n` matrix: the entries between a set of
//! row inputs `I` and a set of column inputs `J`, behind
//! `layer_corr_block`, so that a cluster computes the matrix as
//! independent blocks `G_IJ` and never holds all `n` rows in one place.
//!
//! Pearson, spearman and cosine prepare each row on its own (shift,
//! ranks, scale), so an entry depends on its two rows only: the block is
//! taken from the accumulator of `layer_corr` itself
//! ([`crate::corr::correlation_matrix`]) over the block's distinct inputs,
//! the same per-row preparation (ranking included) and the same `f32`
//! faer products added in `f64`, so its entries are `layer_corr`'s, also
//! where `f32` products round (wide layers: a few 1e-6 from the exact
//! value). The price: an off-diagonal block multiplies `I ∪ J` with itself,
//! twice the products of `I x J`.
//!
//! Euclidean and gram depend on column means in `layer_corr`; here every
//! row is shifted by a given centre and the block is one `f64` product
//! `A Bᵀ` (faer):
//!
//! | method    | row preparation                                   | entry |
//! |-----------|---------------------------------------------------|-------|
//! | euclidean | minus the centre (any common shift; for accuracy) | `sqrt(|a|² + |b|² − 2 a·b)` |
//! | gram      | minus the centre: the column means over all `n` inputs | `a·b` |
//!
//! Gram needs the column means of the whole layer, which the caller passes
//! as the centre (one pass over the data first, e.g. `activation_sum`).
//! The same input on both sides (a diagonal block) gets an exact 1
//! (correlations) or 0 (euclidean) on its entry, as `layer_corr`'s
//! diagonal.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::corr::correlation_matrix;
use crate::error::{KernelError, Result};
use crate::memory::working_bytes_with_spill;
use crate::method::CorrMethod;
use crate::rank::rank_row_into;
use crate::rows::RowMatrix;
use crate::try_zeroed;

/// Bookkeeping bytes per row of a block (indices, norms, keys' pointers).
const PER_ROW_BYTES: u64 = 64;

/// Whether `method`'s block comes from the accumulator over the block's
/// distinct inputs (see the module documentation).
fn via_accumulator(method: CorrMethod) -> bool {
    matches!(
        method,
        CorrMethod::Pearson | CorrMethod::Spearman | CorrMethod::Cosine
    )
}

/// Peak bytes of [`block_matrix`] for `distinct` input rows of `d` values
/// kept by the caller as `f32`, of which `rows` go to the row side and
/// `cols` to the column side: the kept rows and their copy, then for
/// pearson, spearman and cosine the accumulator's working memory for the
/// distinct rows ([`working_bytes_with_spill`], never spilling) and for
/// euclidean and gram the two prepared `f64` sides and the `f64` product;
/// and the `f32` result. Saturating.
pub fn block_bytes(method: CorrMethod, distinct: usize, rows: usize, cols: usize, d: usize) -> u64 {
    let (m, r, c, d64) = (distinct as u64, rows as u64, cols as u64, d as u64);
    let kept = m.saturating_mul(d64).saturating_mul(8);
    let work = if via_accumulator(method) {
        working_bytes_with_spill(distinct, d, method, None)
    } else {
        let prepared = r.saturating_add(c).saturating_mul(d64).saturating_mul(8);
        prepared.saturating_add(r.saturating_mul(c).saturating_mul(8))
    };
    let result = r.saturating_mul(c).saturating_mul(4);
    let per_row = m
        .saturating_add(r)
        .saturating_add(c)
        .saturating_mul(PER_ROW_BYTES);
    [kept, work, result, per_row]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b))
}

/// The block between the rows `rows[row_idx[k]]` (block rows) and
/// `rows[col_idx[k]]` (block columns), `method`'s entries, row-major
/// `row_idx.len() x col_idx.len()` in `f32`.
///
/// `rows` holds `m` distinct inputs of `d` values each (row-major); an
/// input on both sides is listed in both index lists, and the entry of an
/// input with itself is exactly 1 (pearson, spearman, cosine) or 0
/// (euclidean). `center` (`d` values) is subtracted from every row for
/// gram and euclidean; `None` uses the mean of the `m` inputs, which is
/// `layer_corr`'s centre when they are the whole layer.
///
/// Errors name the distinct row (index into `rows`): a NaN or infinity
/// ([`KernelError::NonFinite`]), a constant row for pearson/spearman or a
/// zero row for cosine ([`KernelError::ConstantRow`]); a centre of another
/// length or an index past `m` is [`KernelError::BadShape`]; no columns is
/// [`KernelError::NoColumns`].
pub fn block_matrix(
    rows: &[f32],
    d: usize,
    row_idx: &[usize],
    col_idx: &[usize],
    method: CorrMethod,
    center: Option<&[f64]>,
) -> Result<Vec<f32>> {
    if d == 0 {
        return Err(KernelError::NoColumns {
            what: method.name(),
        });
    }
    if !rows.len().is_multiple_of(d) {
        return Err(KernelError::BadShape {
            what: "block rows",
            expected: rows.len() / d * d,
            got: rows.len(),
        });
    }
    let m = rows.len() / d;
    if let Some(&bad) = row_idx.iter().chain(col_idx).find(|&&i| i >= m) {
        return Err(KernelError::BadShape {
            what: "block row index",
            expected: m,
            got: bad,
        });
    }
    if let Some((i, (col, &value))) = rows.chunks(d).enumerate().find_map(|(i, r)| {
        r.iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .map(|c| (i, c))
    }) {
        return Err(KernelError::NonFinite { row: i, col, value });
    }
    if via_accumulator(method) && m >= 2 {
        return accumulator_block(rows, m, d, row_idx, col_idx, method);
    }
    let shift: Option<Vec<f64>> = match method {
        CorrMethod::Gram | CorrMethod::Euclidean => Some(match center {
            Some(c) if c.len() != d => {
                return Err(KernelError::BadShape {
                    what: "block centre",
                    expected: d,
                    got: c.len(),
                })
            }
            Some(c) => c.to_vec(),
            None => column_means(rows, d, m)?,
        }),
        _ => None,
    };
    // Each distinct row prepared once.
    let mut prepared: Vec<f64> = try_zeroed(m.saturating_mul(d), "block rows (f64)")?;
    let bad = prepared
        .par_chunks_mut(d)
        .enumerate()
        .map_init(
            || vec![0f32; d],
            |ranks, (i, out)| {
                prepare_row(
                    &rows[i * d..(i + 1) * d],
                    out,
                    method,
                    shift.as_deref(),
                    ranks,
                )
                .err()
                .map(|e| e.with_row(i))
            },
        )
        .filter_map(|e| e)
        .min_by_key(|e| e.row());
    if let Some(e) = bad {
        return Err(e);
    }
    let gather = |idx: &[usize], what: &'static str| -> Result<Vec<f64>> {
        let mut out: Vec<f64> = try_zeroed(idx.len().saturating_mul(d), what)?;
        out.par_chunks_mut(d)
            .zip(idx.par_iter())
            .for_each(|(o, &i)| o.copy_from_slice(&prepared[i * d..(i + 1) * d]));
        Ok(out)
    };
    let (r, c) = (row_idx.len(), col_idx.len());
    let a = gather(row_idx, "block row side")?;
    let b = gather(col_idx, "block column side")?;
    let mut product: Vec<f64> = try_zeroed(r.saturating_mul(c), "block product")?;
    if r > 0 && c > 0 {
        // product (r x c, row-major) = A Bᵀ; as column-major that is the
        // c x r matrix B Aᵀ.
        matmul(
            MatMut::from_column_major_slice_mut(&mut product, c, r),
            Accum::Replace,
            MatRef::from_row_major_slice(&b, c, d),
            MatRef::from_row_major_slice(&a, r, d).transpose(),
            1.0f64,
            Par::rayon(0),
        );
    }
    let sq = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>();
    let (na, nb): (Vec<f64>, Vec<f64>) = if method == CorrMethod::Euclidean {
        (a.chunks(d).map(sq).collect(), b.chunks(d).map(sq).collect())
    } else {
        (Vec::new(), Vec::new())
    };
    let mut out: Vec<f32> = try_zeroed(r.saturating_mul(c), "block result")?;
    out.par_chunks_mut(c.max(1))
        .enumerate()
        .for_each(|(i, row)| {
            for (j, o) in row.iter_mut().enumerate() {
                let p = product[i * c + j];
                let same = row_idx[i] == col_idx[j];
                *o = match method {
                    CorrMethod::Pearson | CorrMethod::Spearman | CorrMethod::Cosine => {
                        if same {
                            1.0
                        } else {
                            p.clamp(-1.0, 1.0) as f32
                        }
                    }
                    CorrMethod::Euclidean => {
                        if same {
                            0.0
                        } else {
                            (na[i] + nb[j] - 2.0 * p).max(0.0).sqrt() as f32
                        }
                    }
                    CorrMethod::Gram => p as f32,
                };
            }
        });
    Ok(out)
}

/// The block out of `layer_corr`'s matrix of the `m` distinct rows.
fn accumulator_block(
    rows: &[f32],
    m: usize,
    d: usize,
    row_idx: &[usize],
    col_idx: &[usize],
    method: CorrMethod,
) -> Result<Vec<f32>> {
    let mut copy: Vec<f32> = try_zeroed(rows.len(), "block rows")?;
    copy.copy_from_slice(rows);
    let whole = correlation_matrix(RowMatrix::from_vec(copy, m, d)?, method)?;
    let c = col_idx.len();
    let mut out: Vec<f32> = try_zeroed(row_idx.len().saturating_mul(c), "block result")?;
    for (a, &i) in row_idx.iter().enumerate() {
        for (b, &j) in col_idx.iter().enumerate() {
            out[a * c + b] = whole.get(i, j);
        }
    }
    Ok(out)
}

/// Column means of `m` rows of `d` values, in `f64`.
fn column_means(rows: &[f32], d: usize, m: usize) -> Result<Vec<f64>> {
    let mut sum: Vec<f64> = try_zeroed(d, "block centre")?;
    for r in rows.chunks(d) {
        for (s, &v) in sum.iter_mut().zip(r) {
            *s += v as f64;
        }
    }
    let m = m.max(1) as f64;
    sum.iter_mut().for_each(|s| *s /= m);
    Ok(sum)
}

/// One row ready for the product (see the module table); errors carry
/// row 0 (the caller renames it).
fn prepare_row(
    x: &[f32],
    out: &mut [f64],
    method: CorrMethod,
    shift: Option<&[f64]>,
    ranks: &mut [f32],
) -> Result<()> {
    let constant = || KernelError::ConstantRow {
        row: 0,
        method: method.name(),
    };
    match method {
        CorrMethod::Pearson | CorrMethod::Spearman => {
            let src: &[f32] = if method == CorrMethod::Spearman {
                rank_row_into(x, ranks)?;
                &*ranks
            } else {
                x
            };
            // Variance judged exactly: constant only if all values are equal.
            if src.iter().all(|&v| v == src[0]) {
                return Err(constant());
            }
            let mean = src.iter().map(|&v| v as f64).sum::<f64>() / src.len() as f64;
            for (o, &v) in out.iter_mut().zip(src) {
                *o = v as f64 - mean;
            }
            normalise(out).ok_or_else(constant)
        }
        CorrMethod::Cosine => {
            if x.iter().all(|&v| v == 0.0) {
                return Err(constant());
            }
            for (o, &v) in out.iter_mut().zip(x) {
                *o = v as f64;
            }
            normalise(out).ok_or_else(constant)
        }
        CorrMethod::Gram | CorrMethod::Euclidean => {
            let c = shift.unwrap_or(&[]);
            for (k, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                *o = v as f64 - c.get(k).copied().unwrap_or(0.0);
            }
            Ok(())
        }
    }
}

/// Divides `v` by its norm, scaling first so that tiny and huge rows
/// neither underflow nor overflow; `None` for a zero vector.
fn normalise(v: &mut [f64]) -> Option<()> {
    let big = v.iter().fold(0f64, |m, x| m.max(x.abs()));
    if big == 0.0 || !big.is_finite() {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= big);
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(())
}

#[cfg(test)]
mod tests;
