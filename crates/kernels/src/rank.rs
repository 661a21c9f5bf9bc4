//! Average-tie ranks, as `scipy.stats.rankdata(method="average")` gives.
//!
//! Spearman correlation is Pearson correlation of ranks, so the streaming
//! accumulator ranks each row on its way into its store and then takes the
//! Pearson products; the second-order comparison ranks upper triangles the
//! same way. Ranking is a
//! sort per row: each value becomes a 64-bit key (order-preserving bits of
//! the `f32` in the high half, the column index in the low half) sorted by
//! an LSD radix sort on the high half, three passes of 11 bits, with passes
//! skipped when every key falls in one bucket (common for the sign and
//! exponent bits of activations). Rows are ranked in parallel, each thread
//! with its own scratch buffers. Ties (equal values; `-0.0` equals `0.0`)
//! share the mean of their ranks.
//!
//! Ranks are computed as *twice* the average rank, an integer (`a + b` for
//! a tie group occupying ranks `a..=b`), so they are exact; written back as
//! `f32` they are exact while the row has fewer than 2^23 values.

use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::rows::RowMatrix;

/// Below this length a comparison sort beats the radix sort's histograms.
const RADIX_MIN_LEN: usize = 512;

/// Replaces every row of `rows` by its average-tie ranks (1-based), in
/// place, in parallel across rows.
///
/// Errors: [`KernelError::NonFinite`] naming the smallest row (and its first
/// column) holding a NaN or infinity; rows are left as they were where the
/// error was found. [`KernelError::BadShape`] if a row has 2^32 or more
/// values.
pub fn rank_rows(rows: &mut RowMatrix) -> Result<()> {
    let d = rows.d();
    if rows.n() == 0 || d == 0 {
        return Ok(());
    }
    check_len(d)?;
    let bad = rows
        .as_mut_slice()
        .par_chunks_mut(d)
        .enumerate()
        .map_init(
            || (Vec::<u64>::new(), Vec::<u64>::new()),
            |(keys, tmp), (i, row)| {
                if let Err((col, value)) = fill_keys(row, keys) {
                    return Some(KernelError::NonFinite { row: i, col, value });
                }
                sort_keys(keys, tmp);
                for_each_rank(keys, |idx, twice| row[idx] = twice as f32 * 0.5);
                None
            },
        )
        .filter_map(|e| e)
        .min_by_key(|e| e.row());
    match bad {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Average-tie ranks (1-based) of one row written into `out` as `f32`
/// (exact: ranks are half-integers), for callers that rank rows as they
/// arrive, e.g. before writing them to a spill file.
///
/// Errors: [`KernelError::NonFinite`] with `row` 0 and the first bad
/// column; [`KernelError::BadShape`] if `out` has another length or there
/// are 2^32 or more values.
pub fn rank_row_into(values: &[f32], out: &mut [f32]) -> Result<()> {
    if out.len() != values.len() {
        return Err(KernelError::BadShape {
            what: "rank output",
            expected: values.len(),
            got: out.len(),
        });
    }
    check_len(values.len())?;
    let (mut keys, mut tmp) = (Vec::new(), Vec::new());
    if let Err((col, value)) = fill_keys(values, &mut keys) {
        return Err(KernelError::NonFinite { row: 0, col, value });
    }
    sort_keys(&mut keys, &mut tmp);
    for_each_rank(&keys, |idx, twice| out[idx] = twice as f32 * 0.5);
    Ok(())
}

/// Scratch buffers of [`rank_into`], one set per thread.
#[derive(Debug, Default)]
pub(crate) struct RankScratch {
    keys: Vec<u64>,
    tmp: Vec<u64>,
}

/// Average-tie ranks of `values` into `out` (same length; the caller checks
/// it and [`check_len`]), or the first non-finite value's index and value.
pub(crate) fn rank_into(
    values: &[f32],
    out: &mut [f32],
    scratch: &mut RankScratch,
) -> std::result::Result<(), (usize, f32)> {
    twice_ranks(values, &mut scratch.keys, &mut scratch.tmp, |idx, twice| {
        out[idx] = twice as f32 * 0.5
    })
}

/// Average-tie ranks (1-based) of `values`, in `f64`.
///
/// Errors: [`KernelError::NonFinite`] with `row` 0 and the first bad index;
/// [`KernelError::BadShape`] for 2^32 or more values.
pub fn average_ranks(values: &[f32]) -> Result<Vec<f64>> {
    check_len(values.len())?;
    let mut out = vec![0f64; values.len()];
    twice_ranks(values, &mut Vec::new(), &mut Vec::new(), |idx, twice| {
        out[idx] = twice as f64 * 0.5
    })
    .map_err(|(col, value)| KernelError::NonFinite { row: 0, col, value })?;
    Ok(out)
}

/// Calls `emit(index, 2 * rank)` for every value, where `rank` is the
/// 1-based average-tie rank, using `keys` and `tmp` as scratch. Returns the
/// first non-finite value's index and value instead, having emitted nothing.
/// The caller checks the length with [`check_len`].
pub(crate) fn twice_ranks<F: FnMut(usize, u64)>(
    values: &[f32],
    keys: &mut Vec<u64>,
    tmp: &mut Vec<u64>,
    emit: F,
) -> std::result::Result<(), (usize, f32)> {
    debug_assert!(check_len(values.len()).is_ok());
    fill_keys(values, keys)?;
    sort_keys(keys, tmp);
    for_each_rank(keys, emit);
    Ok(())
}

/// Rows longer than this cannot carry their column index in 32 bits.
pub(crate) fn check_len(len: usize) -> Result<()> {
    if len > u32::MAX as usize {
        return Err(KernelError::BadShape {
            what: "ranked vector (at most 2^32 - 1 values)",
            expected: u32::MAX as usize,
            got: len,
        });
    }
    Ok(())
}

/// Order-preserving map of a finite `f32` to `u32` (`-0.0` maps like `0.0`).
#[inline]
fn key32(x: f32) -> u32 {
    let b = (x + 0.0).to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

fn fill_keys(values: &[f32], keys: &mut Vec<u64>) -> std::result::Result<(), (usize, f32)> {
    keys.clear();
    keys.reserve(values.len());
    for (i, &x) in values.iter().enumerate() {
        if !x.is_finite() {
            return Err((i, x));
        }
        keys.push(((key32(x) as u64) << 32) | i as u64);
    }
    Ok(())
}

/// Sorts keys by their high 32 bits (the low bits' order is irrelevant).
fn sort_keys(keys: &mut Vec<u64>, tmp: &mut Vec<u64>) {
    if keys.len() < RADIX_MIN_LEN {
        keys.sort_unstable();
        return;
    }
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    const MASK: u64 = (BUCKETS - 1) as u64;
    let mut hist = vec![[0usize; BUCKETS]; 3];
    for &k in keys.iter() {
        let h = k >> 32;
        hist[0][(h & MASK) as usize] += 1;
        hist[1][((h >> BITS) & MASK) as usize] += 1;
        hist[2][((h >> (2 * BITS)) & MASK) as usize] += 1;
    }
    tmp.clear();
    tmp.resize(keys.len(), 0);
    for (pass, h) in hist.iter_mut().enumerate() {
        if h.contains(&keys.len()) {
            continue;
        }
        let shift = 32 + BITS * pass as u32;
        let mut sum = 0;
        for c in h.iter_mut() {
            let t = *c;
            *c = sum;
            sum += t;
        }
        for &k in keys.iter() {
            let b = ((k >> shift) & MASK) as usize;
            tmp[h[b]] = k;
            h[b] += 1;
        }
        std::mem::swap(keys, tmp);
    }
}

/// Walks sorted keys and emits `(index, 2 * average rank)` per element.
#[inline]
fn for_each_rank<F: FnMut(usize, u64)>(keys: &[u64], mut emit: F) {
    let len = keys.len();
    let mut a = 0;
    while a < len {
        let v = keys[a] >> 32;
        let mut b = a + 1;
        while b < len && keys[b] >> 32 == v {
            b += 1;
        }
        // Ranks a+1 ..= b share (a + 1 + b) / 2.
        let twice = (a + 1 + b) as u64;
        for &k in &keys[a..b] {
            emit((k & 0xffff_ffff) as usize, twice);
        }
        a = b;
    }
}

/// Reference ranks for tests, independent of the radix path: argsort by
/// `total_cmp` (after mapping `-0.0` to `0.0`), then average tie groups.
#[cfg(test)]
pub(crate) fn reference_ranks(v: &[f32]) -> Vec<f64> {
    let vals: Vec<f64> = v.iter().map(|&x| x as f64 + 0.0).collect();
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| vals[a].total_cmp(&vals[b]));
    let mut out = vec![0.0; v.len()];
    let mut a = 0;
    while a < idx.len() {
        let mut b = a + 1;
        while b < idx.len() && vals[idx[b]] == vals[idx[a]] {
            b += 1;
        }
        for &k in &idx[a..b] {
            out[k] = (a + 1 + b) as f64 / 2.0;
        }
        a = b;
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn rank_row_into_matches_the_reference_and_rank_rows() {
        let v = [3.0f32, -1.0, 3.0, 0.5, 3.0, -1.0, 7.25];
        let mut out = [0f32; 7];
        rank_row_into(&v, &mut out).unwrap();
        let reference: Vec<f32> = reference_ranks(&v).iter().map(|&r| r as f32).collect();
        assert_eq!(out.to_vec(), reference);
        let mut m = RowMatrix::from_vec(v.to_vec(), 1, 7).unwrap();
        rank_rows(&mut m).unwrap();
        assert_eq!(m.as_slice(), &out[..]);
        let mut bad = [0f32; 2];
        assert!(rank_row_into(&[1.0, f32::NAN], &mut bad).is_err());
        assert!(rank_row_into(&[1.0], &mut bad).is_err());
    }
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Average ranks by the definition: 1 + #smaller + (#equal - 1) / 2.
    fn naive_ranks(v: &[f32]) -> Vec<f64> {
        v.iter()
            .map(|&x| {
                let less = v.iter().filter(|&&y| y < x).count() as f64;
                let eq = v.iter().filter(|&&y| y == x).count() as f64;
                1.0 + less + (eq - 1.0) / 2.0
            })
            .collect()
    }

    #[test]
    fn ties_get_average_rank_like_scipy() {
        // scipy.stats.rankdata([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5])
        let v = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0];
        let want = [4.5, 1.5, 6.0, 1.5, 8.0, 11.0, 3.0, 10.0, 8.0, 4.5, 8.0];
        assert_eq!(average_ranks(&v).unwrap(), want);
    }

    #[test]
    fn negative_zero_ties_with_zero_and_negatives_order() {
        let v = [0.0, -0.0, -1.5, f32::MIN_POSITIVE, -f32::MAX, f32::MAX];
        assert_eq!(average_ranks(&v).unwrap(), [3.5, 3.5, 2.0, 5.0, 1.0, 6.0]);
    }

    #[test]
    fn radix_path_matches_definition() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for &len in &[RADIX_MIN_LEN, 3000] {
            // Few distinct values (many ties), like ReLU outputs, plus spread.
            let v: Vec<f32> = (0..len)
                .map(|_| {
                    if rng.gen_bool(0.4) {
                        0.0
                    } else if rng.gen_bool(0.3) {
                        rng.gen_range(-3i32..3) as f32
                    } else {
                        rng.gen_range(-1e3f32..1e3)
                    }
                })
                .collect();
            assert_eq!(average_ranks(&v).unwrap(), naive_ranks(&v));
            assert_eq!(reference_ranks(&v), naive_ranks(&v));
        }
    }

    #[test]
    fn rank_rows_in_place_and_reports_smallest_bad_row() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (n, d) = (20, 700);
        let data: Vec<f32> = (0..n * d).map(|_| rng.gen_range(0..50) as f32).collect();
        let mut m = RowMatrix::from_vec(data.clone(), n, d).unwrap();
        rank_rows(&mut m).unwrap();
        for i in 0..n {
            let want = naive_ranks(&data[i * d..(i + 1) * d]);
            let got: Vec<f64> = m.row(i).iter().map(|&v| v as f64).collect();
            assert_eq!(got, want, "row {i}");
        }

        let mut bad = data.clone();
        bad[13 * d + 5] = f32::NAN;
        bad[7 * d + 600] = f32::NEG_INFINITY;
        let mut m = RowMatrix::from_vec(bad, n, d).unwrap();
        match rank_rows(&mut m) {
            Err(KernelError::NonFinite { row, col, .. }) => assert_eq!((row, col), (7, 600)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
