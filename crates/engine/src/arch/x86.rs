//! AVX2 + FMA versions of the kernels in `arch`.

use super::LANES;

/// Whether this CPU runs the functions of this module.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// See [`super::accumulate_taps`]. The grid goes in blocks of 8, 4, 2 and
/// 1 registers: each block keeps its accumulators in registers over all
/// taps, so the fused multiply-adds of a tap are independent and the
/// loads, not their latency, set the pace.
///
/// # Safety
/// [`available`] must be true; every `offset + grid.len()` must lie inside
/// `scratch`, there must be a weight per offset, and `grid.len()` must be a
/// multiple of [`LANES`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn accumulate_taps(
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
    scratch: &[f32],
    grid: &mut [f32],
) {
    let n = grid.len();
    let (src, dst) = (scratch.as_ptr(), grid.as_mut_ptr());
    let mut i = 0;
    while i + 8 * LANES <= n {
        block::<8>(src.add(i), dst.add(i), offsets, weights, bias);
        i += 8 * LANES;
    }
    if i + 4 * LANES <= n {
        block::<4>(src.add(i), dst.add(i), offsets, weights, bias);
        i += 4 * LANES;
    }
    if i + 2 * LANES <= n {
        block::<2>(src.add(i), dst.add(i), offsets, weights, bias);
        i += 2 * LANES;
    }
    if i < n {
        block::<1>(src.add(i), dst.add(i), offsets, weights, bias);
    }
}

/// `V` registers of the grid from `dst` on, reading from `src` on.
///
/// # Safety
/// As [`accumulate_taps`], for the `V * LANES` values at `src + offset`
/// and `dst`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block<const V: usize>(
    src: *const f32,
    dst: *mut f32,
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(bias); V];
    for (offset, w) in offsets.iter().zip(weights) {
        let w = _mm256_set1_ps(*w);
        let p = src.add(*offset);
        for (v, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(p.add(v * LANES)), *a);
        }
    }
    for (v, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(dst.add(v * LANES), *a);
    }
}
