//! A group's accumulator whose products can run behind the host's scan.
//!
//! DuckDB scans a table on one thread per row group and calls an aggregate
//! on that thread, a chunk at a time, freeing each chunk once the call
//! returns. A [`CorrAccumulator`] multiplies a chunk's rows during the
//! call, straight from the chunk, so while it multiplies the scan waits,
//! and while DuckDB scans the next chunk the cores that multiply wait.
//! When a chunk holds several groups (a `GROUP BY layer` over a stored
//! table, each chunk bringing each layer a few hundred rows), that
//! alternation costs a third of the query. [`PipelinedAccumulator`] can
//! instead copy a block into the group's store during the call and take
//! its products on a thread of its own after the call has returned,
//! while DuckDB scans on. The copy is the one the store makes anyway; what
//! is added is a second read of the block, from the store.
//!
//! One block's products run at a time in the whole process (they use
//! every core already), so the working buffers in use stay those of one
//! block, as without the pipeline. The next block of a group, the merge of
//! two groups and the end wait for the group's running products, and an
//! error found there (a non-finite value) is returned by that next call.

use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::corr::CorrAccumulator;
use crate::error::{KernelError, Result};
use crate::method::CorrMethod;
use crate::square::SquareMatrix;
use crate::store::SpillPolicy;
use crate::stream::BlockBuffers;

/// Held by the thread that takes a block's products, so that one block
/// runs at a time.
static ONE_BLOCK_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A block from a chunk that other groups share goes behind the scan when
/// it holds at least this many bytes of values; smaller blocks are not
/// worth a thread. A group that has a chunk to itself is always multiplied
/// during the call, straight from the host's memory: it has no next chunk
/// of its own to overlap with, and reading its rows back would cost more.
pub const BEHIND_MIN_BYTES: usize = 16 << 20;

/// What the products' thread hands back: the accumulator and how its
/// products went; `None` if the accumulator never reached the thread.
type Handed = Option<(CorrAccumulator, Result<()>)>;

/// A [`CorrAccumulator`] that is either at hand or taking a block's
/// products on its own thread.
#[derive(Debug)]
pub struct PipelinedAccumulator {
    /// At hand: `Some`; on its thread: `None`, with `running` set.
    acc: Option<CorrAccumulator>,
    running: Option<JoinHandle<Handed>>,
    d: usize,
    /// [`BEHIND_MIN_BYTES`], lower in tests.
    behind_min_bytes: usize,
}

impl PipelinedAccumulator {
    /// An empty accumulator for rows of `d` values.
    pub fn new(d: usize, method: CorrMethod) -> Self {
        PipelinedAccumulator {
            acc: Some(CorrAccumulator::new(d, method)),
            running: None,
            d,
            behind_min_bytes: BEHIND_MIN_BYTES,
        }
    }

    /// The same with another size from which blocks go behind, so that
    /// tests reach that path with small rows.
    #[cfg(test)]
    fn with_behind_min_bytes(mut self, bytes: usize) -> Self {
        self.behind_min_bytes = bytes;
        self
    }

    /// Values per row.
    pub fn d(&self) -> usize {
        self.d
    }

    /// The accumulator, once its running products (if any) are done.
    fn at_hand(&mut self) -> Result<&mut CorrAccumulator> {
        if let Some(thread) = self.running.take() {
            let handed = thread.join().map_err(|panic| KernelError::Background {
                reason: panic_message(&panic),
            })?;
            let (acc, products) = handed.ok_or_else(|| KernelError::Background {
                reason: "the accumulator never reached it".into(),
            })?;
            self.acc = Some(acc);
            products?;
        }
        self.acc.as_mut().ok_or_else(|| KernelError::Background {
            reason: "an earlier block's thread stopped".into(),
        })
    }

    /// Rows so far (waits for running products).
    pub fn n(&mut self) -> Result<usize> {
        Ok(self.at_hand()?.n())
    }

    /// Adds rows as [`CorrAccumulator::push_rows`]. `shared_chunk`: other
    /// groups have rows in the host's chunk these come from; then a block
    /// of [`BEHIND_MIN_BYTES`] or more has its products taken on a thread
    /// of its own after this call returns (the rows are copied into the
    /// store first), any other during the call.
    pub fn push_rows(
        &mut self,
        batch: &[&[f32]],
        policy: &SpillPolicy,
        bufs: &mut BlockBuffers,
        shared_chunk: bool,
    ) -> Result<()> {
        let bytes = batch.len().saturating_mul(self.d).saturating_mul(4);
        let behind = shared_chunk && bytes >= self.behind_min_bytes;
        let acc = self.at_hand()?;
        if !behind {
            return acc.push_rows(batch, policy, bufs);
        }
        acc.store_rows(batch, policy)?;
        let Some(mut acc) = self.acc.take() else {
            return Ok(());
        };
        // The accumulator goes to the thread and comes back through its
        // handle; if no thread can be started it is recovered from the
        // error and the products are taken here.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<CorrAccumulator>(1);
        let spawned = std::thread::Builder::new()
            .name("layercorr-products".into())
            .spawn(move || {
                let mut acc = receiver.recv().ok()?;
                let _one = ONE_BLOCK_AT_A_TIME
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let products = acc.settle_waiting(&mut BlockBuffers::default());
                Some((acc, products))
            });
        match spawned {
            Ok(thread) => match sender.send(acc) {
                Ok(()) => {
                    self.running = Some(thread);
                    Ok(())
                }
                Err(std::sync::mpsc::SendError(mut acc)) => {
                    let products = acc.settle_waiting(bufs);
                    self.acc = Some(acc);
                    products
                }
            },
            Err(_) => {
                let products = acc.settle_waiting(bufs);
                self.acc = Some(acc);
                products
            }
        }
    }

    /// Adds `other`'s rows, as [`CorrAccumulator::merge`].
    pub fn merge(&mut self, mut other: PipelinedAccumulator, policy: &SpillPolicy) -> Result<bool> {
        other.at_hand()?;
        let other = other.acc.take().ok_or_else(|| KernelError::Background {
            reason: "the merged group's thread stopped".into(),
        })?;
        self.at_hand()?.merge(other, policy)
    }

    /// The matrix, as [`CorrAccumulator::finish`].
    pub fn finish(mut self, order: &[usize]) -> Result<SquareMatrix<f32>> {
        self.at_hand()?;
        let acc = self.acc.take().ok_or_else(|| KernelError::Background {
            reason: "the group's thread stopped".into(),
        })?;
        acc.finish(order)
    }
}

/// The text of a panic's payload, when it has one.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "it panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corr::correlation_matrix;
    use crate::rows::RowMatrix;
    use rand::{Rng, SeedableRng};

    fn rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
    }

    /// Blocks pushed behind, in place and mixed, in several groups at once,
    /// give the matrix of all rows at once.
    #[test]
    fn blocks_behind_give_the_same_matrix() {
        let (n, d) = (23, 300);
        let policy = SpillPolicy::in_temp_dir(None);
        for method in [
            CorrMethod::Pearson,
            CorrMethod::Spearman,
            CorrMethod::Euclidean,
        ] {
            let data: Vec<Vec<f32>> = (0..3).map(|g| rows(n, d, g + 1)).collect();
            let mut groups: Vec<PipelinedAccumulator> = (0..3)
                .map(|_| PipelinedAccumulator::new(d, method).with_behind_min_bytes(0))
                .collect();
            let mut bufs = BlockBuffers::default();
            for (b, range) in [0..5, 5..6, 6..15, 15..23].into_iter().enumerate() {
                for (g, acc) in groups.iter_mut().enumerate() {
                    let batch: Vec<&[f32]> = range
                        .clone()
                        .map(|i| &data[g][i * d..(i + 1) * d])
                        .collect();
                    acc.push_rows(&batch, &policy, &mut bufs, (b + g) % 2 == 0)
                        .unwrap();
                }
            }
            let order: Vec<usize> = (0..n).collect();
            for (g, acc) in groups.into_iter().enumerate() {
                let got = acc.finish(&order).unwrap();
                let want =
                    correlation_matrix(RowMatrix::from_vec(data[g].clone(), n, d).unwrap(), method)
                        .unwrap();
                for (a, b) in got.as_slice().iter().zip(want.as_slice()) {
                    assert!((a - b).abs() < 1e-5, "{method:?} group {g}: {a} vs {b}");
                }
            }
        }
    }

    /// A non-finite value in a block taken behind is reported by the next
    /// call, naming its row.
    #[test]
    fn an_error_behind_comes_back_with_the_next_call() {
        let d = 50;
        let mut data = rows(6, d, 9);
        data[4 * d + 7] = f32::NAN;
        let policy = SpillPolicy::in_temp_dir(None);
        let mut acc = PipelinedAccumulator::new(d, CorrMethod::Pearson).with_behind_min_bytes(0);
        let batch: Vec<&[f32]> = data.chunks(d).collect();
        let mut bufs = BlockBuffers::default();
        acc.push_rows(&batch, &policy, &mut bufs, true).unwrap();
        match acc.n() {
            Err(KernelError::NonFinite { row, col, .. }) => assert_eq!((row, col), (4, 7)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
