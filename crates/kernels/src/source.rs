//! Where the Gram kernels read their rows from.
//!
//! The kernels walk the columns in chunks and copy each row's chunk into
//! one buffer before the matrix product, so they never need the rows as one
//! contiguous matrix: only "columns `c0..c0 + w` of row `i`". That is
//! [`RowSource`]. A [`RowMatrix`] in memory is one source (and says it is
//! contiguous, so the copy and the shift are fused into one pass); a spill
//! file of [`crate::store`] is another, which is what lets an aggregate
//! keep gigabytes of activations out of its own memory.

use crate::error::{KernelError, Result};
use crate::numeric::first_non_finite;
use crate::rows::RowMatrix;

/// `n` rows of `d` values that can be read a piece at a time, from any
/// thread.
pub trait RowSource: Sync {
    /// Number of rows.
    fn n(&self) -> usize;
    /// Values per row.
    fn d(&self) -> usize;
    /// The rows as one row-major slice, when they are held that way: lets
    /// the kernel read them in place.
    fn contiguous(&self) -> Option<&[f32]> {
        None
    }
    /// Copies columns `c0..c0 + dst.len()` of row `row` into `dst`.
    fn read(&self, row: usize, c0: usize, dst: &mut [f32]) -> Result<()>;
}

impl RowSource for RowMatrix {
    fn n(&self) -> usize {
        RowMatrix::n(self)
    }

    fn d(&self) -> usize {
        RowMatrix::d(self)
    }

    fn contiguous(&self) -> Option<&[f32]> {
        Some(self.as_slice())
    }

    fn read(&self, row: usize, c0: usize, dst: &mut [f32]) -> Result<()> {
        let src = self
            .row(row)
            .get(c0..c0 + dst.len())
            .ok_or(KernelError::BadShape {
                what: "row read",
                expected: RowMatrix::d(self),
                got: c0 + dst.len(),
            })?;
        dst.copy_from_slice(src);
        Ok(())
    }
}

/// A borrowed `n x d` row-major slice as a source (tests, benchmarks, and
/// callers that already hold a flat buffer).
#[derive(Debug, Clone, Copy)]
pub struct RowSlice<'a> {
    data: &'a [f32],
    n: usize,
    d: usize,
}

impl<'a> RowSlice<'a> {
    /// `data` as `n` rows of `d`; errors if the length is not `n * d`.
    pub fn new(data: &'a [f32], n: usize, d: usize) -> Result<Self> {
        if data.len() != n.saturating_mul(d) {
            return Err(KernelError::BadShape {
                what: "gram input",
                expected: n.saturating_mul(d),
                got: data.len(),
            });
        }
        Ok(RowSlice { data, n, d })
    }
}

impl RowSource for RowSlice<'_> {
    fn n(&self) -> usize {
        self.n
    }

    fn d(&self) -> usize {
        self.d
    }

    fn contiguous(&self) -> Option<&[f32]> {
        Some(self.data)
    }

    fn read(&self, row: usize, c0: usize, dst: &mut [f32]) -> Result<()> {
        let start = row * self.d + c0;
        dst.copy_from_slice(&self.data[start..start + dst.len()]);
        Ok(())
    }
}

/// Rows `start..start + n` of `inner`, as a source of their own (the rows
/// of a store that still wait for their products).
pub struct RowRange<'a> {
    inner: &'a dyn RowSource,
    start: usize,
    n: usize,
}

impl<'a> RowRange<'a> {
    /// The view; an error if the range passes the end of `inner`.
    pub fn new(inner: &'a dyn RowSource, start: usize, n: usize) -> Result<Self> {
        if start.saturating_add(n) > inner.n() {
            return Err(KernelError::BadShape {
                what: "row range",
                expected: inner.n(),
                got: start.saturating_add(n),
            });
        }
        Ok(RowRange { inner, start, n })
    }
}

impl RowSource for RowRange<'_> {
    fn n(&self) -> usize {
        self.n
    }

    fn d(&self) -> usize {
        self.inner.d()
    }

    fn contiguous(&self) -> Option<&[f32]> {
        let d = self.inner.d();
        self.inner
            .contiguous()
            .map(|data| &data[self.start * d..(self.start + self.n) * d])
    }

    fn read(&self, row: usize, c0: usize, dst: &mut [f32]) -> Result<()> {
        if row >= self.n {
            return Err(KernelError::BadShape {
                what: "row range read",
                expected: self.n,
                got: row,
            });
        }
        self.inner.read(self.start + row, c0, dst)
    }
}

/// The first NaN or infinity of a source in row-major order, as an error
/// (the slow path taken only once a chunk's sums showed there is one).
pub(crate) fn first_non_finite_in(rows: &dyn RowSource) -> Result<Option<KernelError>> {
    if let Some(data) = rows.contiguous() {
        return Ok(first_non_finite(data, rows.d()));
    }
    let mut buf = vec![0f32; rows.d()];
    for row in 0..rows.n() {
        rows.read(row, 0, &mut buf)?;
        if let Some(col) = buf.iter().position(|x| !x.is_finite()) {
            return Ok(Some(KernelError::NonFinite {
                row,
                col,
                value: buf[col],
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_range_reads_its_rows_in_place_and_by_reads() {
        let m = RowMatrix::from_vec((0..12).map(|x| x as f32).collect(), 4, 3).unwrap();
        let r = RowRange::new(&m, 1, 2).unwrap();
        assert_eq!(r.contiguous().unwrap(), &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let mut dst = [0f32; 2];
        r.read(1, 1, &mut dst).unwrap();
        assert_eq!(dst, [7.0, 8.0]);
        assert!(r.read(2, 0, &mut dst).is_err());
        assert!(RowRange::new(&m, 3, 2).is_err());
    }

    #[test]
    fn finds_the_first_non_finite_value_through_reads() {
        let mut v = vec![1f32; 12];
        v[7] = f32::NAN;
        v[10] = f32::INFINITY;
        let m = RowMatrix::from_vec(v, 3, 4).unwrap();
        let r = RowRange::new(&m, 0, 3).unwrap();
        assert!(first_non_finite_in(&r).unwrap().is_some());
        // Through reads, not in place.
        struct ByReads<'a>(&'a RowMatrix);
        impl RowSource for ByReads<'_> {
            fn n(&self) -> usize {
                self.0.n()
            }
            fn d(&self) -> usize {
                self.0.d()
            }
            fn read(&self, row: usize, c0: usize, dst: &mut [f32]) -> Result<()> {
                RowSource::read(self.0, row, c0, dst)
            }
        }
        match first_non_finite_in(&ByReads(&m)).unwrap() {
            Some(KernelError::NonFinite { row: 1, col: 3, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
