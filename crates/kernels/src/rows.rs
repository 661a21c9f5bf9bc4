//! Activation rows in one contiguous buffer.
//!
//! An aggregate collects one activation vector per key; the kernels want
//! them as an `n x d` row-major `f32` matrix. Keeping them in a single
//! `Vec<f32>` from the start (instead of `Vec<Vec<f32>>`) means the
//! correlation kernel can read, rank or shift them in place without a second
//! multi-gigabyte copy: touching a fresh buffer of that size costs seconds of
//! page faults on its own. Row length is checked on every push, so a ragged
//! input is reported with the offending row's index, not discovered later.

use crate::error::{KernelError, Result};

/// Errors unless `order` is a permutation of `0..n`.
pub(crate) fn check_permutation(order: &[usize], n: usize) -> Result<()> {
    if order.len() != n {
        return Err(KernelError::BadShape {
            what: "row permutation",
            expected: n,
            got: order.len(),
        });
    }
    let mut seen: Vec<bool> = crate::alloc::try_zeroed_vec(n, "row permutation check")?;
    for &o in order {
        if o >= n || std::mem::replace(&mut seen[o], true) {
            return Err(KernelError::BadShape {
                what: "row permutation (not a permutation of 0..n)",
                expected: n,
                got: o,
            });
        }
    }
    Ok(())
}

/// Errors unless `row` has `d` values; `n` (rows stored so far) names it.
pub(crate) fn check_row_length(row: &[f32], n: usize, d: usize) -> Result<()> {
    if row.len() != d {
        return Err(KernelError::RowLength {
            row: n,
            expected: d,
            got: row.len(),
        });
    }
    Ok(())
}

/// `n` rows of `d` `f32` values, row-major and contiguous.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowMatrix {
    data: Vec<f32>,
    n: usize,
    d: usize,
}

impl RowMatrix {
    /// An empty matrix whose rows will have `d` values.
    pub fn new(d: usize) -> Self {
        RowMatrix {
            data: Vec::new(),
            n: 0,
            d,
        }
    }

    /// An empty matrix with room for `rows` rows of `d` values.
    pub fn with_capacity(d: usize, rows: usize) -> Self {
        // Capacity is only a hint: if it cannot be had now, pushes grow
        // the buffer (fallibly) later.
        let mut data = Vec::new();
        let _ = data.try_reserve_exact(d.saturating_mul(rows));
        RowMatrix { data, n: 0, d }
    }

    /// Wraps a row-major buffer of `n * d` values.
    pub fn from_vec(data: Vec<f32>, n: usize, d: usize) -> Result<Self> {
        let expected = n.checked_mul(d).ok_or(KernelError::BadShape {
            what: "row matrix",
            expected: usize::MAX,
            got: data.len(),
        })?;
        if data.len() != expected {
            return Err(KernelError::BadShape {
                what: "row matrix",
                expected,
                got: data.len(),
            });
        }
        Ok(RowMatrix { data, n, d })
    }

    /// Appends a row; it must have exactly `d` values.
    pub fn push_row(&mut self, row: &[f32]) -> Result<()> {
        check_row_length(row, self.n, self.d)?;
        self.reserve_values(row.len())?;
        self.data.extend_from_slice(row);
        self.n += 1;
        Ok(())
    }

    /// Appends `r` rows of zeros and returns them, to be filled in place.
    pub fn extend_zeroed(&mut self, r: usize) -> Result<&mut [f32]> {
        let len = r.saturating_mul(self.d);
        self.reserve_values(len)?;
        let start = self.data.len();
        self.data.resize(start + len, 0.0);
        self.n += r;
        Ok(&mut self.data[start..])
    }

    /// Appends all rows of `other` (for merging aggregate states).
    pub fn append(&mut self, other: &RowMatrix) -> Result<()> {
        if other.n == 0 {
            return Ok(());
        }
        if other.d != self.d {
            return Err(KernelError::RowLength {
                row: self.n,
                expected: self.d,
                got: other.d,
            });
        }
        self.reserve_values(other.data.len())?;
        self.data.extend_from_slice(&other.data);
        self.n += other.n;
        Ok(())
    }

    /// Room for `extra` more values (amortised growth, as `Vec` does), or
    /// [`KernelError::TooLarge`] instead of an abort.
    fn reserve_values(&mut self, extra: usize) -> Result<()> {
        self.data
            .try_reserve(extra)
            .map_err(|_| KernelError::TooLarge {
                what: "row store",
                bytes: (self.data.len() as u64)
                    .saturating_add(extra as u64)
                    .saturating_mul(4),
            })
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of values per row.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Row `i`. Panics if `i >= n` (an index bug, not a data error).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// Row `i`, mutable. Panics if `i >= n`.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.d..(i + 1) * self.d]
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// All values, row-major, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The underlying buffer, row-major.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Reorders the rows in place so that new row `k` is old row `order[k]`
    /// (e.g. to sort rows by key). Uses one row of scratch space.
    ///
    /// `order` must be a permutation of `0..n`; otherwise an error is
    /// returned and the matrix is left unchanged.
    pub fn permute_rows(&mut self, order: &[usize]) -> Result<()> {
        let n = self.n;
        check_permutation(order, n)?;
        let d = self.d;
        if d == 0 {
            return Ok(());
        }
        // Follow each cycle: position k receives old row order[k].
        let mut done: Vec<bool> = crate::alloc::try_zeroed_vec(n, "row permutation")?;
        let mut tmp = vec![0f32; d];
        for start in 0..n {
            if done[start] || order[start] == start {
                done[start] = true;
                continue;
            }
            tmp.copy_from_slice(self.row(start));
            let mut k = start;
            loop {
                done[k] = true;
                let src = order[k];
                if src == start {
                    self.row_mut(k).copy_from_slice(&tmp);
                    break;
                }
                self.data.copy_within(src * d..(src + 1) * d, k * d);
                k = src;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_read_rows() {
        let mut m = RowMatrix::with_capacity(3, 2);
        m.push_row(&[1.0, 2.0, 3.0]).unwrap();
        m.push_row(&[4.0, 5.0, 6.0]).unwrap();
        assert_eq!((m.n(), m.d()), (2, 3));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
        assert_eq!(m.as_slice().len(), 6);
    }

    #[test]
    fn push_wrong_length_names_row() {
        let mut m = RowMatrix::new(3);
        m.push_row(&[1.0, 2.0, 3.0]).unwrap();
        let err = m.push_row(&[1.0, 2.0]).unwrap_err();
        assert_eq!(
            err,
            KernelError::RowLength {
                row: 1,
                expected: 3,
                got: 2
            }
        );
        assert_eq!(err.row(), Some(1));
        assert_eq!(m.n(), 1);
    }

    #[test]
    fn from_vec_checks_length() {
        assert!(RowMatrix::from_vec(vec![0.0; 6], 2, 3).is_ok());
        assert!(RowMatrix::from_vec(vec![0.0; 5], 2, 3).is_err());
    }

    #[test]
    fn append_merges_states() {
        let mut a = RowMatrix::from_vec(vec![1.0, 2.0], 1, 2).unwrap();
        let b = RowMatrix::from_vec(vec![3.0, 4.0, 5.0, 6.0], 2, 2).unwrap();
        a.append(&b).unwrap();
        assert_eq!(a.n(), 3);
        assert_eq!(a.row(2), &[5.0, 6.0]);
        assert!(a
            .append(&RowMatrix::from_vec(vec![1.0; 3], 1, 3).unwrap())
            .is_err());
    }

    #[test]
    fn permute_rows_follows_cycles() {
        let n = 7;
        let d = 3;
        let data: Vec<f32> = (0..n * d).map(|v| v as f32).collect();
        let mut m = RowMatrix::from_vec(data.clone(), n, d).unwrap();
        let order = [3, 0, 6, 1, 4, 2, 5];
        m.permute_rows(&order).unwrap();
        for (k, &o) in order.iter().enumerate() {
            assert_eq!(m.row(k), &data[o * d..(o + 1) * d]);
        }
        assert!(m.permute_rows(&[0, 0, 1, 2, 3, 4, 5]).is_err());
        assert!(m.permute_rows(&[0, 1]).is_err());
    }
}
