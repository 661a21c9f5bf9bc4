//! Architecture-specific inner loops, chosen at run time, each beside a
//! portable version that every machine can run and that the tests compare
//! it with.
//!
//! Callers use the dispatching functions here and never name an
//! instruction set; `portable` is the definition, `x86` the AVX-512 and
//! AVX2+FMA versions, the widest the CPU reports used.

mod panels;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use panels::{pack_panels, panel_product, panels_len, panels_preferred};

/// f32 values of the widest vector register the kernels are blocked for
/// (AVX-512); callers size their buffers in whole multiples of it, which
/// every narrower version divides.
pub const LANES: usize = 16;

/// `grid[i] = clamp(bias + sum over taps t of weights[t] * scratch[offsets[t] + i])`
/// with `clamp(v) = min(max(v, lo), hi)` (NaN kept): one channel plane of a
/// depthwise convolution and its activation, the input laid out so that
/// every tap reads one contiguous run (see `model::depthwise`).
///
/// # Panics
/// When a tap's run would read past the end of `scratch`, when there are
/// fewer weights than offsets, or when `grid.len()` is not a multiple of
/// [`LANES`].
pub fn accumulate_taps(
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
    bounds: [f32; 2],
    scratch: &[f32],
    grid: &mut [f32],
) {
    let last_read = offsets.iter().max().copied().unwrap_or(0) + grid.len();
    assert!(
        last_read <= scratch.len()
            && weights.len() >= offsets.len()
            && grid.len().is_multiple_of(LANES),
        "accumulate_taps: {} taps over a grid of {} need {last_read} scratch values, have {}",
        offsets.len(),
        grid.len(),
        scratch.len()
    );
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the features were just detected, and the bounds the
        // kernels rely on were asserted above (LANES is a multiple of
        // both register widths).
        if x86::avx512_available() {
            unsafe { x86::accumulate_taps_avx512(offsets, weights, bias, bounds, scratch, grid) };
            return;
        }
        if x86::avx2_available() {
            unsafe { x86::accumulate_taps_avx2(offsets, weights, bias, bounds, scratch, grid) };
            return;
        }
    }
    portable::accumulate_taps(offsets, weights, bias, bounds, scratch, grid);
}

/// `v = min(max(v + add, lo), hi)` for every value (NaN kept): the bias
/// and activation of a convolution's output row.
pub fn add_and_clamp(values: &mut [f32], add: f32, bounds: [f32; 2]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the features were just detected; the loops index only
        // within `values`.
        if x86::avx512_available() {
            unsafe { x86::add_and_clamp_avx512(values, add, bounds) };
            return;
        }
        if x86::avx2_available() {
            unsafe { x86::add_and_clamp_avx2(values, add, bounds) };
            return;
        }
    }
    portable::add_and_clamp(values, add, bounds);
}

/// Copies `rows` rows of `width` values from `src` (rows `src_pitch`
/// apart) to `dst` (rows `dst_pitch` apart).
///
/// # Panics
/// When a row would lie past the end of either slice.
pub fn copy_rows(
    src: &[f32],
    src_pitch: usize,
    dst: &mut [f32],
    dst_pitch: usize,
    (rows, width): (usize, usize),
) {
    if rows == 0 || width == 0 {
        return;
    }
    let end = |pitch: usize| {
        (rows - 1)
            .checked_mul(pitch)
            .and_then(|s| s.checked_add(width))
    };
    assert!(
        end(src_pitch).is_some_and(|e| e <= src.len())
            && end(dst_pitch).is_some_and(|e| e <= dst.len()),
        "copy_rows: {rows} rows of {width} with pitches {src_pitch}/{dst_pitch} \
         do not fit {}/{} values",
        src.len(),
        dst.len()
    );
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the features were just detected and the rows checked above.
        if x86::avx512_available() {
            unsafe { x86::copy_rows_avx512(src, src_pitch, dst, dst_pitch, (rows, width)) };
            return;
        }
        if x86::avx2_available() {
            unsafe { x86::copy_rows_avx2(src, src_pitch, dst, dst_pitch, (rows, width)) };
            return;
        }
    }
    portable::copy_rows(src, src_pitch, dst, dst_pitch, (rows, width));
}

/// `dst[i] = src[2 * i]` for every `i` of `dst`: one row of a stride-2
/// convolution's window matrix (see `model::dense_conv`), which a plain
/// loop moves one value at a time.
///
/// # Panics
/// When `src` has fewer than `2 * dst.len() - 1` values.
pub fn take_every_other(src: &[f32], dst: &mut [f32]) {
    let needed = (2 * dst.len()).saturating_sub(1);
    assert!(
        src.len() >= needed,
        "take_every_other: {} values need {needed} to read, have {}",
        dst.len(),
        src.len()
    );
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the features were just detected and the reads checked above.
        if x86::avx512_available() {
            unsafe { x86::take_every_other_avx512(src, dst) };
            return;
        }
        if x86::avx2_available() {
            unsafe { x86::take_every_other_avx2(src, dst) };
            return;
        }
    }
    portable::take_every_other(src, dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::values;

    /// The definition, in f64, one grid value at a time.
    fn reference(
        offsets: &[usize],
        weights: &[f32],
        bias: f32,
        [lo, hi]: [f32; 2],
        scratch: &[f32],
        n: usize,
    ) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let sum: f64 = offsets
                    .iter()
                    .zip(weights)
                    .map(|(o, w)| *w as f64 * scratch[o + i] as f64)
                    .sum();
                ((bias as f64 + sum) as f32).clamp(lo, hi)
            })
            .collect()
    }

    /// A clamp that cuts values of the test data on both sides.
    const BOUNDS: [f32; 2] = [-0.5, 1.25];
    /// No clamp.
    const NO_BOUNDS: [f32; 2] = [f32::NEG_INFINITY, f32::INFINITY];

    /// Tap offsets, weights, scratch and grid length of one case.
    type Case = (Vec<usize>, Vec<f32>, Vec<f32>, usize);

    /// Grids of 1 to 20 whole `LANES` and of 1 to 41 half ones (every
    /// block size of the AVX-512 and AVX2 paths and their remainders), 9
    /// and 25 taps; `whole` keeps only the whole ones.
    fn cases_of(whole: bool) -> Vec<Case> {
        let mut out = Vec::new();
        let halves = [1, 2, 3, 4, 5, 7, 8, 9, 15, 17, 20, 31, 40, 41];
        let sizes = [1, 2, 3, 4, 5, 7, 8, 9, 15, 20]
            .into_iter()
            .map(|r| r * LANES)
            .chain(halves.into_iter().map(|r| r * LANES / 2))
            .filter(|n| !whole || n % LANES == 0);
        for n in sizes {
            for taps in [9usize, 25] {
                let offsets: Vec<usize> = (0..taps).map(|t| (t * 7) % 31).collect();
                let scratch = values(n + 31, taps as u32);
                let weights = values(taps, 3);
                out.push((offsets, weights, scratch, n));
            }
        }
        out
    }

    /// Grid lengths that [`accumulate_taps`] accepts.
    fn cases() -> Vec<Case> {
        cases_of(true)
    }

    #[test]
    fn the_portable_version_matches_the_definition() {
        for (offsets, weights, scratch, n) in cases_of(false) {
            let mut grid = vec![f32::NAN; n];
            portable::accumulate_taps(&offsets, &weights, 0.5, BOUNDS, &scratch, &mut grid);
            let want = reference(&offsets, &weights, 0.5, BOUNDS, &scratch, n);
            for (i, (a, b)) in grid.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-5, "grid {n}, value {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn the_dispatched_version_matches_the_portable_one() {
        for (offsets, weights, scratch, n) in cases() {
            for bounds in [NO_BOUNDS, BOUNDS] {
                let mut fast = vec![f32::NAN; n];
                let mut plain = vec![f32::NAN; n];
                accumulate_taps(&offsets, &weights, -0.25, bounds, &scratch, &mut fast);
                portable::accumulate_taps(&offsets, &weights, -0.25, bounds, &scratch, &mut plain);
                for (i, (a, b)) in fast.iter().zip(&plain).enumerate() {
                    assert!((a - b).abs() < 1e-5, "grid {n}, value {i}: {a} vs {b}");
                }
            }
        }
    }

    /// Each x86 version the CPU has against the portable one, on every
    /// grid length it accepts, whatever version the dispatch picks.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn each_x86_version_matches_the_portable_one() {
        type Kernel = unsafe fn(&[usize], &[f32], f32, [f32; 2], &[f32], &mut [f32]);
        let versions: [(bool, usize, Kernel); 2] = [
            (x86::avx2_available(), 8, x86::accumulate_taps_avx2),
            (x86::avx512_available(), 16, x86::accumulate_taps_avx512),
        ];
        for (available, width, kernel) in versions {
            if !available {
                continue;
            }
            for (offsets, weights, scratch, n) in cases_of(false) {
                if n % width != 0 {
                    continue;
                }
                let mut fast = vec![f32::NAN; n];
                let mut plain = vec![f32::NAN; n];
                // SAFETY: the feature was detected; offsets + n stay inside
                // the scratch (cases_of) and n is a multiple of the width.
                unsafe { kernel(&offsets, &weights, 0.75, BOUNDS, &scratch, &mut fast) };
                portable::accumulate_taps(&offsets, &weights, 0.75, BOUNDS, &scratch, &mut plain);
                for (i, (a, b)) in fast.iter().zip(&plain).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "width {width}, grid {n}, value {i}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn add_and_clamp_matches_the_definition_on_every_path() {
        let values = values(1000, 11);
        let want: Vec<f32> = values.iter().map(|v| (v + 0.25).clamp(-0.5, 1.0)).collect();
        let mut got = values.clone();
        add_and_clamp(&mut got, 0.25, [-0.5, 1.0]);
        assert_eq!(got, want);
        #[cfg(target_arch = "x86_64")]
        {
            type Kernel = unsafe fn(&mut [f32], f32, [f32; 2]);
            let versions: [(bool, Kernel); 2] = [
                (x86::avx2_available(), x86::add_and_clamp_avx2),
                (x86::avx512_available(), x86::add_and_clamp_avx512),
            ];
            for (available, kernel) in versions {
                if available {
                    let mut got = values.clone();
                    // SAFETY: the feature was detected.
                    unsafe { kernel(&mut got, 0.25, [-0.5, 1.0]) };
                    assert_eq!(got, want);
                }
            }
        }
        let mut nan = [f32::NAN, 3.0];
        add_and_clamp(&mut nan, 0.0, [f32::NEG_INFINITY, 1.0]);
        assert!(nan[0].is_nan() && nan[1] == 1.0);
    }

    #[test]
    fn copy_rows_copies_exactly_the_rows_on_every_path() {
        let src = values(40 * 37, 5);
        for (rows, width, src_pitch, dst_pitch) in [
            (7, 7, 7, 11),
            (5, 16, 37, 16),
            (3, 33, 37, 40),
            (1, 1, 1, 1),
            (4, 2, 3, 5),
            (4, 3, 9, 3),
            (2, 4, 4, 6),
            (6, 5, 8, 5),
            (3, 8, 8, 9),
            (3, 9, 11, 9),
            (40, 0, 37, 5),
        ] {
            let mut want = vec![-9.0; dst_pitch * rows + 3];
            for r in 0..rows {
                for c in 0..width {
                    want[r * dst_pitch + c] = src[r * src_pitch + c];
                }
            }
            let mut got = vec![-9.0; want.len()];
            copy_rows(&src, src_pitch, &mut got, dst_pitch, (rows, width));
            assert_eq!(got, want, "{rows}x{width}");
            let mut plain = vec![-9.0; want.len()];
            portable::copy_rows(&src, src_pitch, &mut plain, dst_pitch, (rows, width));
            assert_eq!(plain, want, "{rows}x{width}");
            #[cfg(target_arch = "x86_64")]
            for (available, version) in [
                (x86::avx2_available(), x86::copy_rows_avx2 as CopyRows),
                (x86::avx512_available(), x86::copy_rows_avx512),
            ] {
                if available {
                    let mut fast = vec![-9.0; want.len()];
                    // SAFETY: the feature was detected; the rows lie inside
                    // both slices (as the dispatched call checked).
                    unsafe { version(&src, src_pitch, &mut fast, dst_pitch, (rows, width)) };
                    assert_eq!(fast, want, "{rows}x{width}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    type CopyRows = unsafe fn(&[f32], usize, &mut [f32], usize, (usize, usize));

    #[test]
    fn take_every_other_takes_the_even_positions_on_every_path() {
        let src = values(200, 6);
        for (len, from) in [
            (0usize, 0usize),
            (1, 0),
            (15, 1),
            (16, 0),
            (17, 3),
            (50, 1),
            (100, 0),
        ] {
            let src = &src[from..from + (2 * len).saturating_sub(1)];
            let want: Vec<f32> = src.iter().step_by(2).copied().collect();
            let mut got = vec![-9.0; len];
            take_every_other(src, &mut got);
            assert_eq!(got, want, "{len} values");
            let mut plain = vec![-9.0; len];
            portable::take_every_other(src, &mut plain);
            assert_eq!(plain, want, "{len} values");
            #[cfg(target_arch = "x86_64")]
            for (available, version) in [
                (
                    x86::avx2_available(),
                    x86::take_every_other_avx2 as TakeEveryOther,
                ),
                (x86::avx512_available(), x86::take_every_other_avx512),
            ] {
                if available {
                    let mut fast = vec![-9.0; len];
                    // SAFETY: the feature was detected; src holds 2 len - 1 values.
                    unsafe { version(src, &mut fast) };
                    assert_eq!(fast, want, "{len} values");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    type TakeEveryOther = unsafe fn(&[f32], &mut [f32]);

    #[test]
    #[should_panic(expected = "take_every_other")]
    fn taking_past_the_source_is_refused() {
        take_every_other(&[0.0; 4], &mut [0.0; 3]);
    }

    #[test]
    #[should_panic(expected = "copy_rows")]
    fn a_row_past_the_end_is_refused() {
        copy_rows(&[0.0; 10], 5, &mut [0.0; 10], 4, (3, 2));
    }

    #[test]
    #[should_panic(expected = "accumulate_taps")]
    fn a_read_past_the_scratch_is_refused() {
        let mut grid = vec![0.0; LANES];
        accumulate_taps(&[4], &[1.0], 0.0, NO_BOUNDS, &[0.0; LANES], &mut grid);
    }
}
