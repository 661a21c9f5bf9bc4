//! What the centred-vector methods compute once per matrix, shared by all
//! its views (the full sample and every resample): spearman's tie classes
//! and their ranks, cka_rbf's bandwidth and, for resampling, its kernel.

use crate::error::{KernelError, Result};
use crate::method::CompareMethod;
use crate::rank::{check_len, twice_ranks};
use crate::try_zeroed;

use super::super::RBF_SIGMA_FRAC;

/// What every view of one matrix shares.
pub(crate) struct Base {
    /// spearman: dense tie class of each upper-triangle entry (row-major
    /// `i < j`), classes in increasing value.
    pub(super) class: Vec<u32>,
    /// spearman: twice the average rank of each class over all images.
    pub(super) class_twice: Vec<u32>,
    /// cka_rbf: `1 / (2 σ²)`.
    pub(super) rbf_scale: f64,
    /// cka_rbf when resampling: the kernel `exp(−d² / (2 σ²))` computed
    /// once (as `f32`), so that resamples read it instead of taking an
    /// exponential per entry.
    pub(super) kernel: Option<Vec<f32>>,
}

impl Base {
    pub(crate) fn new(m: &[f32], n: usize, method: CompareMethod, index: usize) -> Result<Base> {
        let mut base = Base {
            class: Vec::new(),
            class_twice: Vec::new(),
            rbf_scale: 0.0,
            kernel: None,
        };
        match method {
            CompareMethod::Spearman => {
                let upper = n * (n - 1) / 2;
                // Twice-ranks (up to 2 upper + 1, also of weighted views) are u32.
                check_len(upper.saturating_mul(2).saturating_add(2))?;
                let mut vals = Vec::with_capacity(upper);
                (0..n).for_each(|i| vals.extend_from_slice(&m[i * n + i + 1..(i + 1) * n]));
                let mut twice = try_zeroed::<u32>(upper, "spearman ranks")?;
                let (mut keys, mut tmp) = (Vec::new(), Vec::new());
                // Values were checked finite and the length fits in u32.
                let _ = twice_ranks(&vals, &mut keys, &mut tmp, |i, t| twice[i] = t as u32);
                drop(vals);
                // Twice-ranks are at most 2 * upper: mark, then number them.
                let mut dense = try_zeroed::<u32>(2 * upper + 2, "spearman ranks")?;
                twice.iter().for_each(|&t| dense[t as usize] = 1);
                let mut next = 0u32;
                for (t, d) in dense.iter_mut().enumerate() {
                    if *d != 0 {
                        *d = next;
                        base.class_twice.push(t as u32);
                        next += 1;
                    }
                }
                twice.iter_mut().for_each(|t| *t = dense[*t as usize]);
                base.class = twice;
            }
            CompareMethod::CkaRbf => {
                let mut sq: Vec<f64> = try_zeroed(m.len(), "cka_rbf distances")?;
                sq.iter_mut()
                    .zip(m)
                    .for_each(|(s, &d)| *s = d as f64 * d as f64);
                let median = median(&mut sq);
                if median <= 0.0 {
                    return Err(KernelError::ConstantMatrix {
                        index,
                        method: method.name(),
                    });
                }
                base.rbf_scale = 1.0 / (2.0 * RBF_SIGMA_FRAC * RBF_SIGMA_FRAC * median);
            }
            _ => {}
        }
        Ok(base)
    }
}

impl Base {
    /// Computes the cka_rbf kernel of `m` once, for resampling (no-op for
    /// the other methods).
    pub(crate) fn precompute(&mut self, m: &[f32], method: CompareMethod) -> Result<()> {
        if method != CompareMethod::CkaRbf || self.kernel.is_some() {
            return Ok(());
        }
        let mut k: Vec<f32> = try_zeroed(m.len(), "cka_rbf kernel")?;
        let s = self.rbf_scale;
        k.iter_mut().zip(m).for_each(|(k, &d)| {
            let d = d as f64;
            *k = (-d * d * s).exp() as f32;
        });
        self.kernel = Some(k);
        Ok(())
    }
}

/// numpy's median (mean of the two middle values for an even count).
fn median(v: &mut [f64]) -> f64 {
    let len = v.len();
    let mid = len / 2;
    let (_, &mut hi, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    if len % 2 == 1 {
        return hi;
    }
    let lo = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}
