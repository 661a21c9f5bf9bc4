//! AVX-512 and AVX2 + FMA versions of the kernels in `arch`.

/// f32 values of one AVX2 register.
const YMM_LANES: usize = 8;
/// f32 values of one AVX-512 register.
const ZMM_LANES: usize = 16;

/// Whether this CPU runs the AVX2 + FMA functions of this module.
pub fn avx2_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether this CPU runs the AVX-512 functions of this module.
pub fn avx512_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Writes a driver of [`super::accumulate_taps`] over a block function of
/// `V` registers of `$lanes` values: the grid goes in blocks of 8, 4, 2 and
/// 1 registers, each keeping its accumulators in registers over all taps,
/// so the fused multiply-adds of a tap are independent and the loads, not
/// their latency, set the pace; the clamp is applied before the store.
macro_rules! tap_driver {
    ($(#[$doc:meta])* $name:ident, $block:ident, $lanes:expr, $feature:literal) => {
        $(#[$doc])*
        #[target_feature(enable = $feature)]
        pub unsafe fn $name(
            offsets: &[usize],
            weights: &[f32],
            bias: f32,
            bounds: [f32; 2],
            scratch: &[f32],
            grid: &mut [f32],
        ) {
            let n = grid.len();
            let (src, dst) = (scratch.as_ptr(), grid.as_mut_ptr());
            let mut i = 0;
            while i + 8 * $lanes <= n {
                $block::<8>(src.add(i), dst.add(i), offsets, weights, bias, bounds);
                i += 8 * $lanes;
            }
            if i + 4 * $lanes <= n {
                $block::<4>(src.add(i), dst.add(i), offsets, weights, bias, bounds);
                i += 4 * $lanes;
            }
            if i + 2 * $lanes <= n {
                $block::<2>(src.add(i), dst.add(i), offsets, weights, bias, bounds);
                i += 2 * $lanes;
            }
            if i < n {
                $block::<1>(src.add(i), dst.add(i), offsets, weights, bias, bounds);
            }
        }
    };
}

tap_driver!(
    /// See [`super::accumulate_taps`], on AVX2 registers.
    ///
    /// # Safety
    /// [`avx2_available`] must be true; every `offset + grid.len()` must lie
    /// inside `scratch`, there must be a weight per offset, and `grid.len()`
    /// must be a multiple of 8.
    accumulate_taps_avx2,
    block_avx2,
    YMM_LANES,
    "avx2,fma"
);

tap_driver!(
    /// See [`super::accumulate_taps`], on AVX-512 registers: half the loads
    /// and multiply-adds of AVX2 per tap.
    ///
    /// # Safety
    /// [`avx512_available`] must be true; every `offset + grid.len()` must
    /// lie inside `scratch`, there must be a weight per offset, and
    /// `grid.len()` must be a multiple of 16.
    accumulate_taps_avx512,
    block_avx512,
    ZMM_LANES,
    "avx512f"
);

/// `V` AVX2 registers of the grid from `dst` on, reading from `src` on.
///
/// # Safety
/// As [`accumulate_taps_avx2`], for the `V * 8` values at `src + offset`
/// and `dst`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block_avx2<const V: usize>(
    src: *const f32,
    dst: *mut f32,
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
    [lo, hi]: [f32; 2],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(bias); V];
    for (offset, w) in offsets.iter().zip(weights) {
        let w = _mm256_set1_ps(*w);
        let p = src.add(*offset);
        for (v, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(p.add(v * YMM_LANES)), *a);
        }
    }
    // max(lo, a) and min(hi, ·) return `a` when it is NaN (the second
    // operand), as the portable version does.
    let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    for (v, a) in acc.iter().enumerate() {
        let a = _mm256_min_ps(hi, _mm256_max_ps(lo, *a));
        _mm256_storeu_ps(dst.add(v * YMM_LANES), a);
    }
}

/// `V` AVX-512 registers of the grid from `dst` on, reading from `src` on.
///
/// # Safety
/// As [`accumulate_taps_avx512`], for the `V * 16` values at
/// `src + offset` and `dst`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_avx512<const V: usize>(
    src: *const f32,
    dst: *mut f32,
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
    [lo, hi]: [f32; 2],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(bias); V];
    for (offset, w) in offsets.iter().zip(weights) {
        let w = _mm512_set1_ps(*w);
        let p = src.add(*offset);
        for (v, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(p.add(v * ZMM_LANES)), *a);
        }
    }
    // max(lo, a) and min(hi, ·) return `a` when it is NaN (the second
    // operand), as the portable version does.
    let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    for (v, a) in acc.iter().enumerate() {
        let a = _mm512_min_ps(hi, _mm512_max_ps(lo, *a));
        _mm512_storeu_ps(dst.add(v * ZMM_LANES), a);
    }
}

/// See [`super::add_and_clamp`]: the portable loop compiled for AVX-512.
///
/// # Safety
/// [`avx512_available`] must be true.
#[target_feature(enable = "avx512f")]
pub unsafe fn add_and_clamp_avx512(values: &mut [f32], add: f32, bounds: [f32; 2]) {
    super::portable::add_and_clamp(values, add, bounds);
}

/// See [`super::add_and_clamp`]: the portable loop compiled for AVX2.
///
/// # Safety
/// [`avx2_available`] must be true.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn add_and_clamp_avx2(values: &mut [f32], add: f32, bounds: [f32; 2]) {
    super::portable::add_and_clamp(values, add, bounds);
}

/// See [`super::copy_rows`]: whole registers, then one masked load and
/// store for the rest of each row, where a call to `memcpy` per row would
/// cost more than the copy for the short rows of small maps. The whole
/// registers go through a mask too, one the compiler cannot see is full:
/// with plain loads and stores it turns the loop into that very `memcpy`
/// call (3.8% of a forward pass on an Intel Xeon).
///
/// # Safety
/// [`avx512_available`] must be true; every row must lie inside `src` and
/// `dst` (`(rows - 1) * pitch + width <= len` for both).
#[target_feature(enable = "avx512f")]
pub unsafe fn copy_rows_avx512(
    src: &[f32],
    src_pitch: usize,
    dst: &mut [f32],
    dst_pitch: usize,
    (rows, width): (usize, usize),
) {
    use std::arch::x86_64::*;
    let whole = width / ZMM_LANES * ZMM_LANES;
    let tail: __mmask16 = (1u32 << (width - whole)).wrapping_sub(1) as __mmask16;
    let full: __mmask16 = std::hint::black_box(0xffff);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for r in 0..rows {
        let (s, d) = (s.add(r * src_pitch), d.add(r * dst_pitch));
        let mut i = 0;
        while i < whole {
            _mm512_mask_storeu_ps(d.add(i), full, _mm512_maskz_loadu_ps(full, s.add(i)));
            i += ZMM_LANES;
        }
        if tail != 0 {
            _mm512_mask_storeu_ps(
                d.add(whole),
                tail,
                _mm512_maskz_loadu_ps(tail, s.add(whole)),
            );
        }
    }
}

/// See [`super::take_every_other`]: 16 values from two registers of the
/// source at a time (one two-source permute), the rest one by one.
///
/// # Safety
/// [`avx512_available`] must be true, and `src.len() >= 2 * dst.len() - 1`.
#[target_feature(enable = "avx512f")]
pub unsafe fn take_every_other_avx512(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let mut i = 0;
    // Whole blocks read src[2i .. 2i + 32], inside `src` while 2i + 32 <= len.
    while i + ZMM_LANES <= dst.len() && 2 * i + 2 * ZMM_LANES <= src.len() {
        let low = _mm512_loadu_ps(s.add(2 * i));
        let high = _mm512_loadu_ps(s.add(2 * i + ZMM_LANES));
        _mm512_storeu_ps(d.add(i), _mm512_permutex2var_ps(low, evens, high));
        i += ZMM_LANES;
    }
    for j in i..dst.len() {
        *d.add(j) = *s.add(2 * j);
    }
}

/// See [`super::copy_rows`]: whole 8-value registers, then the last
/// register of the row again, overlapping (rows shorter than a register go
/// as two overlapping 4- or 2-value moves). AVX's masked store would do the
/// tail in one instruction, but it is microcoded and slow on AMD's cores
/// before Zen 4; a call to `memcpy` per row would cost more than the copy
/// for the short rows of small maps.
///
/// # Safety
/// [`avx2_available`] must be true; every row must lie inside `src` and
/// `dst` (`(rows - 1) * pitch + width <= len` for both).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn copy_rows_avx2(
    src: &[f32],
    src_pitch: usize,
    dst: &mut [f32],
    dst_pitch: usize,
    (rows, width): (usize, usize),
) {
    use std::arch::x86_64::*;
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for r in 0..rows {
        let (s, d) = (s.add(r * src_pitch), d.add(r * dst_pitch));
        match width {
            0 => {}
            1 => *d = *s,
            2..=3 => {
                let (head, last) = (s.cast::<u64>(), s.add(width - 2).cast::<u64>());
                let (a, b) = (head.read_unaligned(), last.read_unaligned());
                d.cast::<u64>().write_unaligned(a);
                d.add(width - 2).cast::<u64>().write_unaligned(b);
            }
            4..=7 => {
                let (a, b) = (_mm_loadu_ps(s), _mm_loadu_ps(s.add(width - 4)));
                _mm_storeu_ps(d, a);
                _mm_storeu_ps(d.add(width - 4), b);
            }
            _ => {
                let mut i = 0;
                while i + YMM_LANES <= width {
                    _mm256_storeu_ps(d.add(i), _mm256_loadu_ps(s.add(i)));
                    i += YMM_LANES;
                }
                if i < width {
                    let last = width - YMM_LANES;
                    _mm256_storeu_ps(d.add(last), _mm256_loadu_ps(s.add(last)));
                }
            }
        }
    }
}

/// See [`super::take_every_other`]: 8 values from two registers of the
/// source at a time (the even positions of each 128-bit half, then the
/// 64-bit pairs put in order), the rest one by one.
///
/// # Safety
/// [`avx2_available`] must be true, and `src.len() >= 2 * dst.len() - 1`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn take_every_other_avx2(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let mut i = 0;
    // Whole blocks read src[2i .. 2i + 16], inside `src` while 2i + 16 <= len.
    while i + YMM_LANES <= dst.len() && 2 * i + 2 * YMM_LANES <= src.len() {
        let low = _mm256_loadu_ps(s.add(2 * i));
        let high = _mm256_loadu_ps(s.add(2 * i + YMM_LANES));
        // [s0 s2 s8 s10 | s4 s6 s12 s14], then pairs (0, 2, 1, 3).
        let evens = _mm256_shuffle_ps::<0b10_00_10_00>(low, high);
        let ordered = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(evens));
        _mm256_storeu_ps(d.add(i), _mm256_castpd_ps(ordered));
        i += YMM_LANES;
    }
    for j in i..dst.len() {
        *d.add(j) = *s.add(2 * j);
    }
}
