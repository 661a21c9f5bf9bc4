//! Sums over inputs for feature-space statistics, behind `layer_cross`
//! and `activation_sum`: the count `n`, the column sums of two layers'
//! activations `X` (`n x d_a`) and `Y` (`n x d_b`) of the same inputs, and
//! their cross product `Xᵀ Y` (`d_a x d_b`), all accumulated in `f64`.
//!
//! Partial sums of disjoint sets of inputs add up ([`CrossSums::merge`]),
//! so a cluster sums shards and the driver finishes exact linear CKA
//! between layers: with `μ` the column means,
//! `Xcᵀ Yc = Xᵀ Y − n μ_x μ_yᵀ` and
//! `CKA = |Xcᵀ Yc|²_F / (|Xcᵀ Xc|_F |Ycᵀ Yc|_F)` (Kornblith et al.), the
//! same number as linear CKA on the centred `n x n` Gram matrices.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::error::{KernelError, Result};
use crate::try_zeroed;

/// Largest cross product, in entries, that [`CrossSums`] accepts:
/// `2^27` `f64` values (1 GiB). Past that the layers are too wide for the
/// feature-space route; pool them (`pool := 'avg'`) first.
pub const MAX_CROSS_ENTRIES: u64 = 1 << 27;

/// Rows of a batch gathered into `f64` before one product (bounds the
/// batch buffers at `BATCH_ROWS · (d_a + d_b)` values).
const BATCH_ROWS: usize = 256;

/// Bytes a [`CrossSums`] of `d_a x d_b` holds, batch buffers included.
/// Saturating.
pub fn cross_bytes(d_a: usize, d_b: usize) -> u64 {
    let (a, b) = (d_a as u64, d_b as u64);
    let sums = a.saturating_mul(b).saturating_add(a).saturating_add(b);
    let batch = (BATCH_ROWS as u64).saturating_mul(a.saturating_add(b));
    sums.saturating_add(batch).saturating_mul(8)
}

/// Running sums of two layers' rows (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct CrossSums {
    /// Inputs summed.
    pub n: u64,
    /// Columns of the first layer.
    pub d_a: usize,
    /// Columns of the second layer.
    pub d_b: usize,
    /// Column sums of the first layer.
    pub sum_a: Vec<f64>,
    /// Column sums of the second layer.
    pub sum_b: Vec<f64>,
    /// `Xᵀ Y`, row-major `d_a x d_b`.
    pub cross: Vec<f64>,
}

impl CrossSums {
    /// Empty sums for rows of `d_a` and `d_b` values. Refuses (as
    /// [`KernelError::Alloc`]'s sibling [`KernelError::BadShape`]) a cross
    /// product of more than [`MAX_CROSS_ENTRIES`] entries before allocating.
    pub fn new(d_a: usize, d_b: usize) -> Result<CrossSums> {
        let entries = (d_a as u64).saturating_mul(d_b as u64);
        if entries > MAX_CROSS_ENTRIES {
            return Err(KernelError::BadShape {
                what:
                    "layer_cross: d_a x d_b cross product (at most 2^27 entries; pool the layers)",
                expected: MAX_CROSS_ENTRIES as usize,
                got: usize::try_from(entries).unwrap_or(usize::MAX),
            });
        }
        Ok(CrossSums {
            n: 0,
            d_a,
            d_b,
            sum_a: try_zeroed(d_a, "layer_cross column sums")?,
            sum_b: try_zeroed(d_b, "layer_cross column sums")?,
            cross: try_zeroed(d_a * d_b, "layer_cross cross product")?,
        })
    }

    /// Adds the pairs `(a[k], b[k])`, one input each. Every `a[k]` must have
    /// `d_a` finite values and every `b[k]` `d_b` ([`KernelError::RowLength`],
    /// [`KernelError::NonFinite`], naming `k`).
    pub fn push(&mut self, a: &[&[f32]], b: &[&[f32]]) -> Result<()> {
        if a.len() != b.len() {
            return Err(KernelError::BadShape {
                what: "layer_cross pairs",
                expected: a.len(),
                got: b.len(),
            });
        }
        for (k, (ra, rb)) in a.iter().zip(b).enumerate() {
            for (row, d) in [(ra, self.d_a), (rb, self.d_b)] {
                if row.len() != d {
                    return Err(KernelError::RowLength {
                        row: k,
                        expected: d,
                        got: row.len(),
                    });
                }
                if let Some((col, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(KernelError::NonFinite { row: k, col, value });
                }
            }
        }
        let mut xa: Vec<f64> = try_zeroed(BATCH_ROWS.min(a.len()) * self.d_a, "layer_cross batch")?;
        let mut xb: Vec<f64> = try_zeroed(BATCH_ROWS.min(a.len()) * self.d_b, "layer_cross batch")?;
        for (ca, cb) in a.chunks(BATCH_ROWS).zip(b.chunks(BATCH_ROWS)) {
            let k = ca.len();
            for (i, (ra, rb)) in ca.iter().zip(cb).enumerate() {
                let (oa, ob) = (
                    &mut xa[i * self.d_a..(i + 1) * self.d_a],
                    &mut xb[i * self.d_b..(i + 1) * self.d_b],
                );
                for ((o, &v), s) in oa.iter_mut().zip(ra.iter()).zip(self.sum_a.iter_mut()) {
                    *o = v as f64;
                    *s += v as f64;
                }
                for ((o, &v), s) in ob.iter_mut().zip(rb.iter()).zip(self.sum_b.iter_mut()) {
                    *o = v as f64;
                    *s += v as f64;
                }
            }
            // cross (d_a x d_b row-major) += Aᵀ B; column-major that is the
            // d_b x d_a matrix Bᵀ A.
            matmul(
                MatMut::from_column_major_slice_mut(&mut self.cross, self.d_b, self.d_a),
                Accum::Add,
                MatRef::from_row_major_slice(&xb[..k * self.d_b], k, self.d_b).transpose(),
                MatRef::from_row_major_slice(&xa[..k * self.d_a], k, self.d_a),
                1.0f64,
                Par::rayon(0),
            );
            self.n += k as u64;
        }
        Ok(())
    }

    /// Adds `other`'s sums (disjoint inputs); both must have the same widths.
    pub fn merge(&mut self, other: &CrossSums) -> Result<()> {
        if (other.d_a, other.d_b) != (self.d_a, self.d_b) {
            return Err(KernelError::RowLength {
                row: 0,
                expected: self.d_a,
                got: other.d_a,
            });
        }
        self.n += other.n;
        let add = |x: &mut [f64], y: &[f64]| x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
        add(&mut self.sum_a, &other.sum_a);
        add(&mut self.sum_b, &other.sum_b);
        add(&mut self.cross, &other.cross);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
        // A small linear congruential generator: values in [-1, 2).
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                (0..d)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((s >> 33) as f64 / (1u64 << 31) as f64 * 3.0 - 1.0) as f32
                    })
                    .collect()
            })
            .collect()
    }

    fn refs(v: &[Vec<f32>]) -> Vec<&[f32]> {
        v.iter().map(|r| r.as_slice()).collect()
    }

    #[test]
    fn sums_and_cross_product_match_the_definition_and_merge() {
        let (n, da, db) = (600, 7, 5);
        let (x, y) = (rows(n, da, 1), rows(n, db, 2));
        let mut whole = CrossSums::new(da, db).unwrap();
        whole.push(&refs(&x), &refs(&y)).unwrap();
        let mut parts = CrossSums::new(da, db).unwrap();
        let mut second = CrossSums::new(da, db).unwrap();
        parts.push(&refs(&x[..100]), &refs(&y[..100])).unwrap();
        second.push(&refs(&x[100..]), &refs(&y[100..])).unwrap();
        parts.merge(&second).unwrap();
        assert_eq!(whole.n, n as u64);
        for i in 0..da {
            let s: f64 = x.iter().map(|r| r[i] as f64).sum();
            assert!((whole.sum_a[i] - s).abs() < 1e-9);
            for j in 0..db {
                let c: f64 = x
                    .iter()
                    .zip(&y)
                    .map(|(a, b)| a[i] as f64 * b[j] as f64)
                    .sum();
                assert!((whole.cross[i * db + j] - c).abs() < 1e-9, "{i} {j}");
                assert!((parts.cross[i * db + j] - c).abs() < 1e-9, "{i} {j}");
            }
        }
        assert_eq!(parts.n, whole.n);
    }

    #[test]
    fn bad_rows_and_huge_widths_are_refused() {
        let mut s = CrossSums::new(2, 3).unwrap();
        let err = s.push(&[&[1.0, 2.0]], &[&[1.0, 2.0]]).unwrap_err();
        assert_eq!(err.row(), Some(0));
        let err = s
            .push(&[&[1.0, f32::NAN]], &[&[1.0, 2.0, 3.0]])
            .unwrap_err();
        assert!(matches!(err, KernelError::NonFinite { .. }), "{err}");
        assert!(CrossSums::new(1 << 14, 1 << 14).is_err());
        assert!(cross_bytes(usize::MAX, usize::MAX) == u64::MAX);
    }
}
