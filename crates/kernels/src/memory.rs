//! How much memory a `layer_corr` group will need, so that the binding can
//! refuse a group before it allocates anything, by comparing what the
//! kernels will hold against the host's memory limit. The allocations
//! themselves are fallible ([`crate::alloc`]).

use crate::chunk::default_chunk;
use crate::method::CorrMethod;
use crate::store::file::{DIRECT_ALIGN, DIRECT_STAGING_BYTES, WRITE_BUFFER_BYTES};
use crate::stream::streams;

/// The row store's in-memory limit that [`working_bytes`] assumes: the
/// binding's default (`layercorr_spill_mb` = 256).
pub const DEFAULT_SPILL_LIMIT_BYTES: usize = 256 << 20;

/// Bookkeeping per row that [`working_bytes`] counts: shifts, row sums,
/// value spans, per-block sums, scale factors, row slices and the finish's
/// diagonal, centre, variance and inverse (under 128 bytes together).
const PER_ROW_BYTES: u64 = 128;

/// Bytes of the final `n x n` `f32` matrix ([`crate::SquareMatrix`]),
/// saturating at `u64::MAX`.
pub fn result_bytes(n: usize) -> u64 {
    (n as u64).saturating_mul(n as u64).saturating_mul(4)
}

/// [`working_bytes_with_spill`] with the binding's default spill limit,
/// [`DEFAULT_SPILL_LIMIT_BYTES`].
pub fn working_bytes(n: usize, d: usize, method: CorrMethod) -> u64 {
    working_bytes_with_spill(n, d, method, Some(DEFAULT_SPILL_LIMIT_BYTES))
}

/// Peak bytes that a [`crate::CorrAccumulator`] for `method` holds for a
/// group of `n` rows of `d` values, from the first row to the end of
/// [`crate::CorrAccumulator::finish`], when the row store keeps at most
/// `spill_limit` bytes of rows in memory (`None`: never spills). Saturating
/// arithmetic: never overflows, `u64::MAX` means "more than can exist".
///
/// Counted, at the phase where the most of them are alive together:
///
/// - the packed lower triangle of `f64` products, `4 n (n + 1)`;
/// - the row store: `min(4 n d, spill_limit)` twice over (a growing buffer
///   may hold up to twice its rows, and parallel aggregation merges two
///   partial stores of a group), one row more, and, once rows spill, the
///   spill file's write buffer and the aligned buffer of direct writes;
/// - the column-chunk buffers of the products, `4 m C` for `m` rows and the
///   chunk width `C` of [`default_chunk`] (at most `max(32 MiB, 8 KiB · n)`,
///   never more than the rows themselves);
/// - streaming methods (pearson, spearman, cosine): two chunk buffers (a
///   block's rows and the rows before it) and the `f32` products of a
///   block with the rows before it and with itself, at most `5 n²` (the
///   buffers are reused across blocks at their largest); at finish the `4 n²` result, the triangle, and
///   one row of scratch per thread for reordering; spearman's ranking
///   scratch, 20 bytes per value per thread (sort keys, and a row buffer
///   when the rows go to a spill file);
/// - euclidean and gram: at finish the store, the chunk buffers, the
///   triangle, the `4 n²` result, and two rows per thread for the exact
///   distances of near duplicates;
/// - [`PER_ROW_BYTES`] of bookkeeping per row.
///
/// Not counted: what the caller holds (keys, the host's own vectors, the
/// result once copied out, see [`result_bytes`]), the rayon pool's stacks,
/// and the page cache behind a spill file. Buffers that grow (triangle,
/// store) are counted at their full size once, not old and new copy
/// together: the allocator grows large blocks in place.
pub fn working_bytes_with_spill(
    n: usize,
    d: usize,
    method: CorrMethod,
    spill_limit: Option<usize>,
) -> u64 {
    working_parts(n, d, method, spill_limit).peak()
}

/// [`working_bytes_with_spill`] in the parts a host sees at different
/// times: what a group holds from one call of the host to the next, and
/// the buffers of its products, which live only during a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingParts {
    /// Held while rows arrive: the triangle, the row store (and, once it
    /// spills, the file's write buffer) and the bookkeeping.
    pub held_while_pushing: u64,
    /// The buffers of one push's products (the column-chunk buffers, the
    /// block's products, spearman's ranking scratch, the aligned buffer of
    /// direct writes): kept only during a call, and reused by every group
    /// of that call, so a host call needs them once, at its largest group.
    pub per_call: u64,
    /// Held at the finish (for euclidean and gram, everything: they take
    /// their products there).
    pub finish: u64,
}

impl WorkingParts {
    /// What the group holds between calls or at its finish.
    pub fn held(self) -> u64 {
        self.held_while_pushing.max(self.finish)
    }

    /// The group's peak with its own call's buffers,
    /// [`working_bytes_with_spill`].
    pub fn peak(self) -> u64 {
        self.held_while_pushing
            .saturating_add(self.per_call)
            .max(self.finish)
    }
}

/// The parts of [`working_bytes_with_spill`].
pub fn working_parts(
    n: usize,
    d: usize,
    method: CorrMethod,
    spill_limit: Option<usize>,
) -> WorkingParts {
    let (n64, d64) = (n as u64, d as u64);
    let threads = rayon::current_num_threads().max(1) as u64;
    let rows = n64.saturating_mul(d64).saturating_mul(4);
    let row = d64.saturating_mul(4);
    let (kept, spills) = match spill_limit {
        Some(limit) if rows > limit as u64 => (limit as u64, true),
        _ => (rows, false),
    };
    let mut store = kept.saturating_mul(2).saturating_add(row);
    let mut staging = 0;
    if spills {
        // Write buffer (a Vec that may hold twice its flush size), and the
        // O_DIRECT staging buffer of at least one padded row.
        let stride = row.div_ceil(DIRECT_ALIGN as u64) * DIRECT_ALIGN as u64;
        staging = (DIRECT_STAGING_BYTES as u64)
            .max(stride)
            .saturating_add(DIRECT_ALIGN as u64);
        store = store
            .saturating_add(2 * WRITE_BUFFER_BYTES as u64)
            .saturating_add(row);
    }
    let triangle = n64.saturating_mul(n64.saturating_add(1)).saturating_mul(4);
    let square = result_bytes(n);
    let chunk = (n as u64)
        .saturating_mul(default_chunk(n, d).max(1) as u64)
        .saturating_mul(4)
        .max(32 << 20)
        .min(rows);
    let per_row = n64.saturating_mul(PER_ROW_BYTES);
    let sum = |parts: &[u64]| parts.iter().fold(0u64, |a, &b| a.saturating_add(b));
    if streams(method) {
        let ranking = if method == CorrMethod::Spearman {
            d64.saturating_mul(20).saturating_mul(threads)
        } else {
            0
        };
        // Products of a block: its rows and the earlier rows in chunk
        // buffers, their f32 products with the earlier rows (`r p <= n²/4`)
        // and with themselves (`r² <= n²`). The buffers are kept across
        // the blocks of one host chunk, each at its largest, so the two
        // chunk buffers and the two product buffers may come from
        // different blocks.
        let products = square.saturating_add(square / 4);
        // Finish: the store is released before the result is allocated.
        let reorder = n64
            .saturating_mul(4)
            .saturating_mul(threads.saturating_add(1));
        WorkingParts {
            held_while_pushing: sum(&[triangle, store, per_row]),
            per_call: sum(&[chunk, chunk, products, ranking, staging]),
            finish: sum(&[triangle, square, per_row, reorder, n64]),
        }
    } else {
        let refine = row.saturating_mul(2).saturating_mul(threads);
        let at_finish = sum(&[store, staging, chunk, triangle, square, per_row, refine]);
        WorkingParts {
            held_while_pushing: at_finish,
            per_call: 0,
            finish: at_finish,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_add_up_to_the_peak_and_keep_the_call_buffers_apart() {
        let cases = [
            (100, 451_584, Some(256 << 20)),
            (100, 451_584, Some(0)),
            (2000, 200_704, None),
            (20_000, 8, Some(256 << 20)),
        ];
        for method in CorrMethod::ALL {
            for (n, d, spill) in cases {
                let parts = working_parts(n, d, method, spill);
                assert_eq!(parts.peak(), working_bytes_with_spill(n, d, method, spill));
                assert!(parts.held() <= parts.peak());
                if streams(method) {
                    let chunk = (32u64 << 20).min(n as u64 * d as u64 * 4);
                    assert!(parts.per_call >= 2 * chunk, "{method:?} {n} {d}: {parts:?}");
                } else {
                    assert_eq!(parts.per_call, 0);
                }
            }
        }
        // A group whose rows all go to the file holds a row or two and the
        // write buffer, not its 180 MB of rows.
        let spilled = working_parts(100, 451_584, CorrMethod::Pearson, Some(0));
        assert!(spilled.held() < 16 << 20, "{spilled:?}");
        let kept = working_parts(100, 451_584, CorrMethod::Pearson, None);
        assert!(kept.held() > 2 * 180_000_000, "{kept:?}");
    }

    #[test]
    fn sizes_saturate_instead_of_overflowing() {
        assert_eq!(result_bytes(3), 36);
        assert_eq!(result_bytes(usize::MAX), u64::MAX);
        for method in CorrMethod::ALL {
            assert_eq!(working_bytes(usize::MAX, usize::MAX, method), u64::MAX);
            assert_eq!(working_bytes(usize::MAX, 1, method), u64::MAX);
            assert!(working_bytes(0, 0, method) < 1 << 30);
        }
    }

    #[test]
    fn working_bytes_counts_the_square_buffers_and_the_store() {
        let (n, d) = (2000, 200_704);
        for method in CorrMethod::ALL {
            let w = working_bytes(n, d, method);
            // At least the triangle and the result, at most those plus
            // twice the store limit and a few hundred megabytes of buffers.
            let square = 4 * (n * (n + 1)) as u64 + result_bytes(n);
            assert!(w >= square, "{method}: {w}");
            assert!(
                w <= square + result_bytes(n) + (1 << 30),
                "{method}: {w} for {square}"
            );
            // Never spilling keeps every row: 1.6 GB more.
            let all = working_bytes_with_spill(n, d, method, None);
            assert!(all >= w + (n * d * 4) as u64, "{method}: {all} vs {w}");
        }
        // Grows with n: the binding can refuse a group as it grows.
        let small = working_bytes(100, 1000, CorrMethod::Pearson);
        let large = working_bytes(10_000, 1000, CorrMethod::Pearson);
        assert!(small < large && large >= 8 * 10_000 * 10_000);
    }
}
