//! Small numeric helpers shared by the Gram kernels: sums in `f64`, value
//! spans, the copy-and-shift of a row piece, and the power-of-two rescaling
//! of rows too small or too large for `f32` products.
//!
//! The loops keep independent lanes (eight, sixteen in [`shift_sum`]) so
//! that the compiler vectorises them; they run over every value of every
//! row once per column chunk, so they are on the hot path next to the
//! matrix products.

use rayon::prelude::*;

use crate::alloc::try_zeroed_vec;
use crate::error::{KernelError, Result};

/// The smallest and largest value of a row, or of a piece of one: a row is
/// constant exactly when they are equal, all zero exactly when both are 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Smallest value (`+inf` for no values).
    pub lo: f32,
    /// Largest value (`-inf` for no values).
    pub hi: f32,
}

impl Span {
    /// The span of no values.
    pub const EMPTY: Span = Span {
        lo: f32::INFINITY,
        hi: f32::NEG_INFINITY,
    };

    /// The span of both pieces.
    pub fn merge(self, other: Span) -> Span {
        Span {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }

    /// Whether every value is the same (false for no values).
    pub fn is_constant(self) -> bool {
        self.lo == self.hi
    }

    /// Whether every value is zero (false for no values).
    pub fn is_zero(self) -> bool {
        self.lo == 0.0 && self.hi == 0.0
    }

    /// The largest `|x − s|` over the values, in `f64` (`-inf` for none).
    fn reach(self, s: f64) -> f64 {
        (self.hi as f64 - s).max(s - self.lo as f64)
    }
}

/// Sum of `f32` values in `f64`.
pub(crate) fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for k in 0..8 {
            acc[k] += c[k] as f64;
        }
    }
    let tail: f64 = it.remainder().iter().map(|&v| v as f64).sum();
    acc.iter().sum::<f64>() + tail
}

/// The span of `x`. Comparisons skip NaN, which the caller finds through
/// the row sum.
pub(crate) fn span_of(x: &[f32]) -> Span {
    let mut lo = [f32::INFINITY; 8];
    let mut hi = [f32::NEG_INFINITY; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for k in 0..8 {
            if c[k] < lo[k] {
                lo[k] = c[k];
            }
            if c[k] > hi[k] {
                hi[k] = c[k];
            }
        }
    }
    let mut span = Span::EMPTY;
    for k in 0..8 {
        span = span.merge(Span {
            lo: lo[k],
            hi: hi[k],
        });
    }
    for &v in it.remainder() {
        span = span.merge(Span { lo: v, hi: v });
    }
    span
}

/// `dst = src − s`, returns `Σ dst` in `f64`; `span` is set to `src`'s
/// span (of the values as given).
///
/// One pass over every value of every row, so it runs at the widest
/// vectors the CPU has: the same loop compiled for AVX-512 or AVX2 where
/// the CPU reports them at run time, the portable build otherwise. Each
/// lane adds its values in the same order in every build, so the results
/// are identical bit for bit.
pub(crate) fn shift_sum(src: &[f32], dst: &mut [f32], s: f32, span: &mut Span) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { shift_sum_avx512(src, dst, s, span) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { shift_sum_avx2(src, dst, s, span) };
        }
    }
    shift_sum_lanes(src, dst, s, span)
}

/// [`shift_sum_lanes`] compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn shift_sum_avx512(src: &[f32], dst: &mut [f32], s: f32, span: &mut Span) -> f64 {
    shift_sum_lanes(src, dst, s, span)
}

/// [`shift_sum_lanes`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn shift_sum_avx2(src: &[f32], dst: &mut [f32], s: f32, span: &mut Span) -> f64 {
    shift_sum_lanes(src, dst, s, span)
}

/// The portable body of [`shift_sum`], inlined into each build of it.
#[inline(always)]
fn shift_sum_lanes(src: &[f32], dst: &mut [f32], s: f32, span: &mut Span) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0f64; LANES];
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let mut sc = src.chunks_exact(LANES);
    let mut dc = dst.chunks_exact_mut(LANES);
    for (a, b) in (&mut sc).zip(&mut dc) {
        let a: &[f32; LANES] = a.try_into().expect("chunks_exact");
        let b: &mut [f32; LANES] = b.try_into().expect("chunks_exact");
        for k in 0..LANES {
            let x = a[k];
            // Selects rather than branches: one vector min and max.
            lo[k] = if x < lo[k] { x } else { lo[k] };
            hi[k] = if x > hi[k] { x } else { hi[k] };
            let v = x - s;
            b[k] = v;
            acc[k] += v as f64;
        }
    }
    let mut tail = 0f64;
    let mut out = Span::EMPTY;
    for (a, b) in sc.remainder().iter().zip(dc.into_remainder()) {
        out = out.merge(Span { lo: *a, hi: *a });
        let v = a - s;
        *b = v;
        tail += v as f64;
    }
    for k in 0..LANES {
        out = out.merge(Span {
            lo: lo[k],
            hi: hi[k],
        });
    }
    *span = out;
    acc.iter().sum::<f64>() + tail
}

/// `dst = src − means` (element-wise), returns `Σ dst` in `f64`; `span`
/// is set to `src`'s span.
pub(crate) fn shift_cols_sum(src: &[f32], dst: &mut [f32], means: &[f32], span: &mut Span) -> f64 {
    *span = span_of(src);
    let mut acc = [0f64; 8];
    let mut sc = src.chunks_exact(8);
    let mut dc = dst.chunks_exact_mut(8);
    let mut mc = means.chunks_exact(8);
    for ((a, b), m) in (&mut sc).zip(&mut dc).zip(&mut mc) {
        for k in 0..8 {
            let v = a[k] - m[k];
            b[k] = v;
            acc[k] += v as f64;
        }
    }
    let mut tail = 0f64;
    for ((a, b), m) in sc
        .remainder()
        .iter()
        .zip(dc.into_remainder())
        .zip(mc.remainder())
    {
        let v = a - m;
        *b = v;
        tail += v as f64;
    }
    acc.iter().sum::<f64>() + tail
}

/// `Σ (a − b)²` in `f64`.
pub(crate) fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let mut ac = a.chunks_exact(8);
    let mut bc = b.chunks_exact(8);
    for (x, y) in (&mut ac).zip(&mut bc) {
        for k in 0..8 {
            let t = x[k] as f64 - y[k] as f64;
            acc[k] += t * t;
        }
    }
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(&x, &y)| {
            let t = x as f64 - y as f64;
            t * t
        })
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// The first NaN or infinity of a row-major matrix of rows of `d`, as an
/// error naming its row and column.
pub(crate) fn first_non_finite(data: &[f32], d: usize) -> Option<KernelError> {
    let pos = data.iter().position(|x| !x.is_finite())?;
    Some(KernelError::NonFinite {
        row: pos / d.max(1),
        col: pos % d.max(1),
        value: data[pos],
    })
}

/// Rows whose largest shifted value lies in `[RESCALE_BELOW,
/// RESCALE_ABOVE]` are multiplied as they are: their `f32` products over a
/// chunk of at most 16384 columns stay far from overflow (2^78) and the
/// products of their larger values far from the subnormal range (2^-126).
const RESCALE_BELOW: f64 = 1.0 / (1u64 << 32) as f64;
const RESCALE_ABOVE: f64 = (1u64 << 32) as f64;

/// `2^k` as an `f64`, for `|k| < 1023`.
fn pow2(k: i32) -> f64 {
    f64::from_bits(((1023 + k) as u64) << 52)
}

/// Brings every row of the chunk buffer `b` (rows of `cw` values, already
/// shifted by `shifts`, with spans `spans` of the values as given) whose
/// largest shifted value is outside `[RESCALE_BELOW, RESCALE_ABOVE]` into
/// `[0.5, 1)` by an exact power of two. Returns, if any row was scaled,
/// each row's inverse factor (1 for rows left alone) to multiply the
/// chunk's products by; `None` for ordinary chunks, which are untouched.
///
/// Only for methods that do not change when a row is scaled (pearson,
/// spearman, cosine): powers of two are exact, so the products divided
/// back in `f64` are those of the rows as given.
pub(crate) fn rescale_rows(
    b: &mut [f32],
    cw: usize,
    shifts: &[f32],
    spans: &[Span],
) -> Result<Option<Vec<f64>>> {
    let exponent = |i: usize| {
        let m = spans[i].reach(shifts[i] as f64);
        // m = 0 (all values at the shift) and non-finite values (reported
        // elsewhere) are left alone.
        if !(m.is_finite() && m > 0.0) || (RESCALE_BELOW..=RESCALE_ABOVE).contains(&m) {
            return 0;
        }
        // m in [2^(e-1), 2^e): m is at least 2^-149 and below 2^129, a
        // normal f64, so its exponent bits give e directly.
        ((m.to_bits() >> 52) & 0x7ff) as i32 - 1022
    };
    if (0..spans.len()).all(|i| exponent(i) == 0) {
        return Ok(None);
    }
    let mut inverse: Vec<f64> = try_zeroed_vec(spans.len(), "chunk scale factors")?;
    b.par_chunks_mut(cw)
        .zip(inverse.par_iter_mut())
        .enumerate()
        .for_each(|(i, (row, inv))| {
            let e = exponent(i);
            *inv = pow2(e);
            if e != 0 {
                // The product is exactly representable in f32 (a power of
                // two times a value that fits), so this is exact.
                let c = pow2(-e);
                row.iter_mut().for_each(|v| *v = (*v as f64 * c) as f32);
            }
        });
    Ok(Some(inverse))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One build of [`shift_sum`] with its shift fixed.
    type ShiftSum = dyn Fn(&[f32], &mut [f32], &mut Span) -> f64;

    #[test]
    fn shift_sum_is_the_same_in_every_build_the_cpu_runs() {
        // Values of every magnitude and sign, ragged lengths (tails), so
        // that any reordering of the additions would show in the sum.
        for len in [0, 1, 7, 8, 9, 63, 1000, 4099] {
            let src: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 % 1013) as f32 - 506.5) * 10f32.powi((i % 9) as i32 - 4))
                .collect();
            let run = |f: &ShiftSum| {
                let mut dst = vec![0f32; len];
                let mut span = Span::EMPTY;
                let sum = f(&src, &mut dst, &mut span);
                (sum.to_bits(), dst, span)
            };
            let portable = run(&|a, b, sp| shift_sum_lanes(a, b, 0.37, sp));
            assert_eq!(run(&|a, b, sp| shift_sum(a, b, 0.37, sp)), portable);
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    let avx2 = run(&|a, b, sp| unsafe { shift_sum_avx2(a, b, 0.37, sp) });
                    assert_eq!(avx2, portable, "len {len}");
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    let avx512 = run(&|a, b, sp| unsafe { shift_sum_avx512(a, b, 0.37, sp) });
                    assert_eq!(avx512, portable, "len {len}");
                }
            }
            let plain: f64 = src.iter().map(|&x| (x - 0.37) as f64).sum();
            let got = f64::from_bits(portable.0);
            assert!(
                (got - plain).abs() <= 1e-9 * (1.0 + plain.abs()),
                "{got} vs {plain}"
            );
        }
    }

    #[test]
    fn sums_spans_and_shifts_match_plain_loops() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 3.0).collect();
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        assert!((sum_f64(&x) - want).abs() < 1e-12);
        let span = span_of(&x);
        let lo = x.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(span, Span { lo, hi });
        let mut dst = vec![0f32; x.len()];
        let mut s = Span::EMPTY;
        let sum = shift_sum(&x, &mut dst, 0.5, &mut s);
        assert_eq!(s, span);
        assert!((sum - (want - 0.5 * 37.0)).abs() < 1e-5);
        let means = vec![0.25f32; x.len()];
        let sum = shift_cols_sum(&x, &mut dst, &means, &mut s);
        assert!((sum - (want - 0.25 * 37.0)).abs() < 1e-5);
        let y: Vec<f32> = x.iter().map(|v| v + 1.0).collect();
        assert!((sq_dist_f64(&x, &y) - 37.0).abs() < 1e-4);
        assert!(Span { lo: 0.0, hi: 0.0 }.is_zero() && !Span::EMPTY.is_constant());
    }

    #[test]
    fn rescaling_is_exact_and_skips_ordinary_rows() {
        let mut b = vec![1.0f32, -0.5, 1e-38, 2e-38, 3.0, 1e30];
        let spans = [
            Span { lo: -0.5, hi: 1.0 },
            Span {
                lo: 1e-38,
                hi: 2e-38,
            },
            Span { lo: 3.0, hi: 1e30 },
        ];
        let shifts = [0.0f32; 3];
        let inv = rescale_rows(&mut b, 2, &shifts, &spans).unwrap().unwrap();
        assert_eq!(&b[..2], &[1.0, -0.5]);
        assert_eq!(inv[0], 1.0);
        for r in 1..3 {
            let m = b[2 * r].abs().max(b[2 * r + 1].abs());
            assert!((0.5..1.0).contains(&m), "{m}");
        }
        assert_eq!((b[3] as f64 * inv[1]) as f32, 2e-38);
        let mut plain = vec![1.0f32, 2.0];
        let spans = [Span { lo: 1.0, hi: 2.0 }];
        assert!(rescale_rows(&mut plain, 2, &[0.0], &spans)
            .unwrap()
            .is_none());
    }

    #[test]
    fn first_non_finite_names_row_and_column() {
        let x = [1.0, 2.0, 3.0, f32::NAN, 5.0, f32::INFINITY];
        match first_non_finite(&x, 2) {
            Some(KernelError::NonFinite { row: 1, col: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(first_non_finite(&[1.0], 1).is_none());
    }
}
