//! [`SquareMatrix`], the `n x n` result of the first-order kernels and the
//! input and output of the second-order ones.

use crate::alloc::square_len;
use crate::error::{KernelError, Result};

/// A full symmetric `n x n` matrix, row-major (both triangles stored, so
/// row `i` can be handed out as a slice).
#[derive(Debug, Clone, PartialEq)]
pub struct SquareMatrix<T> {
    pub(crate) n: usize,
    pub(crate) data: Vec<T>,
}

impl<T: Copy> SquareMatrix<T> {
    /// Wraps a row-major buffer of `n * n` values.
    pub fn from_vec(n: usize, data: Vec<T>) -> Result<Self> {
        let expected = square_len(n, "square matrix")?;
        if data.len() != expected {
            return Err(KernelError::BadShape {
                what: "square matrix",
                expected,
                got: data.len(),
            });
        }
        Ok(SquareMatrix { n, data })
    }

    /// Number of rows (= columns).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Entry `[i][j]`. Panics if out of range (an index bug, not a data error).
    pub fn get(&self, i: usize, j: usize) -> T {
        assert!(i < self.n && j < self.n, "index out of range");
        self.data[i * self.n + j]
    }

    /// Row `i` as a slice. Panics if out of range.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    /// All entries, row-major.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The row-major buffer.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
}
