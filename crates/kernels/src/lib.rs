//! Numerical core of layercorr: correlation matrices of activation rows,
//! rank transforms, second-order comparison of matrices, and hierarchical
//! clustering order.
//!
//! This crate knows nothing of DuckDB, tract or SQL; the binding layer
//! collects activations into a [`rows::RowMatrix`], parses method names into
//! [`method::CorrMethod`] / [`method::CompareMethod`] once, calls one entry
//! point per SQL function, and maps [`error::KernelError`]'s row or matrix
//! index back to the user's key or layer name:
//!
//! | SQL function        | entry point                        |
//! |---------------------|------------------------------------|
//! | `layer_corr`        | [`corr::correlation_matrix`]       |
//! | `layer_similarity`  | [`compare::similarity_matrix`]     |
//! | `rsa`               | [`compare::compare_pair`]          |
//! | `corr_order`        | [`cluster::leaf_order`]            |
//!
//! Work is parallel on the global rayon pool (faer's matrix products run on
//! the same pool), so the kernels never start threads of their own and
//! never oversubscribe the machine.
#![deny(missing_docs)]

pub mod cluster;
pub mod compare;
pub mod corr;
pub mod error;
pub mod gram;
pub mod memory;
pub mod method;
pub mod rank;
pub mod resample;
pub mod rows;
pub mod source;
pub mod spill;
pub mod stream;

pub use error::{KernelError, Result};
pub use memory::{
    result_bytes, try_zeroed_vec, working_bytes, working_bytes_with_spill,
    DEFAULT_SPILL_LIMIT_BYTES,
};
pub use method::{CompareMethod, CorrMethod};
pub use rows::RowMatrix;
pub use source::RowSource;
pub use spill::{RowStore, SpillPolicy};
pub use stream::{BlockBuffers, CorrAccumulator, StreamingGram};

/// A full symmetric `n x n` matrix, row-major (both triangles stored, so
/// row `i` can be handed out as a slice).
#[derive(Debug, Clone, PartialEq)]
pub struct SquareMatrix<T> {
    n: usize,
    data: Vec<T>,
}

impl<T: Copy> SquareMatrix<T> {
    /// Wraps a row-major buffer of `n * n` values.
    pub fn from_vec(n: usize, data: Vec<T>) -> Result<Self> {
        let expected = memory::square_len(n, "square matrix")?;
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

/// A zero-filled vector of `len` values, or [`KernelError::TooLarge`]
/// instead of aborting the host process when memory is short.
pub(crate) fn try_zeroed<T: Clone + Default>(len: usize, what: &'static str) -> Result<Vec<T>> {
    memory::try_zeroed_vec(len, what)
}
