//! First-order matrices: the `n x n` matrix of one layer over `n` inputs,
//! behind `layer_corr`.
//!
//! [`CorrAccumulator`] is the one path: the SQL aggregate pushes each
//! chunk's rows into it and finishes it once per group, and
//! [`correlation_matrix`] is the same accumulator with every row pushed at
//! once. It owns what each method means:
//!
//! | method    | rows pushed | products                                | entry |
//! |-----------|-------------|-----------------------------------------|-------|
//! | pearson   | as given    | as they arrive, each row shifted by the mean of its first values | correlation |
//! | spearman  | ranked on the way in (average ties) | as pearson, shifted by the mean rank | correlation of ranks |
//! | cosine    | as given    | as they arrive, unshifted               | `x·y / (|x| |y|)` |
//! | euclidean | kept        | at the end, columns centred             | distance |
//! | gram      | kept        | at the end, columns centred             | centred linear kernel |
//!
//! The first three go through [`crate::stream::StreamingGram`]; the last
//! two need every row before their column means exist, so their rows are
//! kept ([`crate::store`]) and multiplied by [`crate::gram`] at the end.
//! Both end in the same [`crate::triangle`] finish.

use crate::chunk::{default_chunk, Shift};
use crate::error::{KernelError, Result};
use crate::gram::gram_of;
use crate::method::CorrMethod;
use crate::rows::{check_permutation, RowMatrix};
use crate::square::SquareMatrix;
use crate::store::{RowStore, SpillPolicy};
use crate::stream::{check_not_empty, streams, BlockBuffers, StreamingGram};
use crate::triangle::check_shape;

/// The `n x n` matrix of `method` between the rows of `rows`: a
/// [`CorrAccumulator`] given every row at once (taking `rows` as its row
/// store, so nothing is copied), then finished in row order.
///
/// Pearson, spearman and cosine have a diagonal of exactly 1 and entries
/// clamped to `[-1, 1]`; euclidean has a diagonal of exactly 0; gram is
/// the centred linear kernel `Xc Xcᵀ` (`Xc`: each column minus its mean
/// over the rows).
///
/// Errors (never panics on data): fewer than 2 rows
/// ([`KernelError::TooFewRows`]); no columns ([`KernelError::NoColumns`]);
/// a NaN or infinity ([`KernelError::NonFinite`], naming its row and
/// column); a constant row for pearson or spearman or an all-zero row for
/// cosine ([`KernelError::ConstantRow`], smallest such row); values too
/// large to square in `f32` for euclidean and gram
/// ([`KernelError::Overflow`]).
pub fn correlation_matrix(rows: RowMatrix, method: CorrMethod) -> Result<SquareMatrix<f32>> {
    let (n, d) = (rows.n(), rows.d());
    check_shape(n, d, method)?;
    let mut acc = CorrAccumulator::new(d, method);
    acc.push_matrix(
        rows,
        &SpillPolicy::in_temp_dir(None),
        &mut BlockBuffers::default(),
    )?;
    acc.finish(&(0..n).collect::<Vec<_>>())
}

/// A group's rows on their way to one matrix (see the module
/// documentation): products accumulated as rows arrive for the methods
/// that [`streams`], rows kept until the end for the others. Rows are
/// numbered in arrival order, and errors name those numbers.
#[derive(Debug)]
pub struct CorrAccumulator {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// Pearson, spearman, cosine.
    Streaming(StreamingGram),
    /// Euclidean, gram: every row, multiplied at the end.
    Rows {
        store: RowStore,
        method: CorrMethod,
        /// Column chunk width (tests); `None`: the default.
        chunk: Option<usize>,
    },
}

impl CorrAccumulator {
    /// An empty accumulator for rows of `d` values.
    pub fn new(d: usize, method: CorrMethod) -> Self {
        let inner = if streams(method) {
            Inner::Streaming(StreamingGram::new(d, method))
        } else {
            Inner::Rows {
                store: RowStore::new(d),
                method,
                chunk: None,
            }
        };
        CorrAccumulator { inner }
    }

    /// The same with a fixed column chunk width, so that tests reach many
    /// chunks with few values (the result does not depend on it beyond
    /// rounding).
    #[cfg(test)]
    pub(crate) fn with_chunk(self, chunk: Option<usize>) -> Self {
        let inner = match self.inner {
            Inner::Streaming(s) => Inner::Streaming(s.with_chunk(chunk)),
            Inner::Rows { store, method, .. } => Inner::Rows {
                store,
                method,
                chunk,
            },
        };
        CorrAccumulator { inner }
    }

    /// Values per row.
    pub fn d(&self) -> usize {
        match &self.inner {
            Inner::Streaming(s) => s.d(),
            Inner::Rows { store, .. } => store.d(),
        }
    }

    /// Rows so far.
    pub fn n(&self) -> usize {
        match &self.inner {
            Inner::Streaming(s) => s.n(),
            Inner::Rows { store, .. } => store.n(),
        }
    }

    /// Whether the kept rows are in a spill file.
    pub fn is_spilled(&self) -> bool {
        match &self.inner {
            Inner::Streaming(s) => s.is_spilled(),
            Inner::Rows { store, .. } => store.is_spilled(),
        }
    }

    /// Adds rows as the host hands them over (raw activations; spearman
    /// ranks them here), in arrival order. `bufs` are working buffers that
    /// the caller may reuse across calls.
    ///
    /// Errors name the row in arrival order: an empty row
    /// ([`KernelError::EmptyRow`]), one of another length
    /// ([`KernelError::RowLength`]), a NaN or infinity where it is found on
    /// the way in ([`KernelError::NonFinite`]).
    pub fn push_rows(
        &mut self,
        batch: &[&[f32]],
        policy: &SpillPolicy,
        bufs: &mut BlockBuffers,
    ) -> Result<()> {
        check_not_empty(batch, self.n())?;
        match &mut self.inner {
            Inner::Streaming(s) => s.push_rows(batch, policy, bufs),
            Inner::Rows { store, .. } => {
                for row in batch {
                    store.push_row(row, policy)?;
                }
                Ok(())
            }
        }
    }

    /// Adds rows as [`CorrAccumulator::push_rows`] does, but only copies
    /// them into the group's store: their products wait for
    /// [`CorrAccumulator::settle_waiting`], which needs nothing of the
    /// caller's and can run on another thread.
    pub fn store_rows(&mut self, batch: &[&[f32]], policy: &SpillPolicy) -> Result<()> {
        check_not_empty(batch, self.n())?;
        match &mut self.inner {
            Inner::Streaming(s) => s.store_rows(batch, policy),
            Inner::Rows { store, .. } => {
                for row in batch {
                    store.push_row(row, policy)?;
                }
                Ok(())
            }
        }
    }

    /// Takes the products of the rows that [`CorrAccumulator::store_rows`]
    /// left waiting (euclidean and gram: nothing, they multiply at the end).
    pub fn settle_waiting(&mut self, bufs: &mut BlockBuffers) -> Result<()> {
        match &mut self.inner {
            Inner::Streaming(s) => s.settle_waiting(bufs),
            Inner::Rows { .. } => Ok(()),
        }
    }

    /// [`CorrAccumulator::push_rows`] for rows the caller owns: into an
    /// empty accumulator the matrix moves in as the row store, without a
    /// copy (and is never spilled).
    pub fn push_matrix(
        &mut self,
        rows: RowMatrix,
        policy: &SpillPolicy,
        bufs: &mut BlockBuffers,
    ) -> Result<()> {
        match &mut self.inner {
            Inner::Streaming(s) => s.push_matrix(rows, policy, bufs),
            Inner::Rows { store, .. }
                if store.n() == 0 && rows.d() == store.d() && rows.d() > 0 =>
            {
                *store = RowStore::Memory(rows);
                Ok(())
            }
            Inner::Rows { .. } => {
                let batch: Vec<&[f32]> = (0..rows.n()).map(|i| rows.row(i)).collect();
                self.push_rows(&batch, policy, bufs)
            }
        }
    }

    /// Adds `other`'s rows (parallel aggregation's combine); returns
    /// whether they now come after this one's (true) or before them
    /// (false). Both must be for the same method.
    pub fn merge(&mut self, other: CorrAccumulator, policy: &SpillPolicy) -> Result<bool> {
        match (&mut self.inner, other.inner) {
            (Inner::Streaming(a), Inner::Streaming(b)) => a.merge(b, policy),
            (Inner::Rows { store: a, .. }, Inner::Rows { store: b, .. }) => {
                // `append` rejects rows of another length.
                let keeps = a.append_keeps_order(&b);
                a.append(b, policy)?;
                Ok(keeps)
            }
            _ => Err(KernelError::BadShape {
                what: "merge of accumulators of different methods",
                expected: 0,
                got: 1,
            }),
        }
    }

    /// The matrix, rows and columns in the order `order` (new row `k` is
    /// arrival row `order[k]`). Errors name arrival rows: besides those of
    /// [`CorrAccumulator::push_rows`], fewer than 2 rows, a constant
    /// (pearson, spearman) or all-zero (cosine) row, values too large.
    pub fn finish(self, order: &[usize]) -> Result<SquareMatrix<f32>> {
        match self.inner {
            Inner::Streaming(s) => s.finish(order),
            Inner::Rows {
                mut store,
                method,
                chunk,
            } => {
                let (n, d) = (store.n(), store.d());
                check_shape(n, d, method)?;
                check_permutation(order, n)?;
                store.finish()?;
                let rows = store.source();
                let chunk = chunk.unwrap_or_else(|| default_chunk(n, d));
                let mut tri = gram_of(rows, Shift::ColumnMean, chunk)?;
                tri.map_entries(method, d, rows)?;
                store.release();
                tri.into_matrix(order)
            }
        }
    }
}

#[cfg(test)]
mod tests;
