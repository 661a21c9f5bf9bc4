//! The centred-vector methods: pearson, spearman, cka, cka_debiased and
//! cka_rbf. Each matrix, read through a [`View`], becomes one centred
//! vector `z`; the result is `⟨z_i, z_j⟩ / (|z_i| |z_j|)`.
//!
//! * pearson: strict upper triangle minus its mean;
//! * spearman: average-tie ranks of the strict upper triangle minus the
//!   mean rank (kept as twice the rank, exact);
//! * cka: `H M H`, `M_ab − rowmean_a − colmean_b + mean`;
//! * cka_debiased: the U-centred matrix of Kornblith et al.'s
//!   `center_gram(unbiased=True)`: zero diagonal, then
//!   `M_ab − μ_a − μ_b` off the diagonal with
//!   `μ = colsum / (n − 2) − Σ colsum / (2 (n − 1)(n − 2))`; the cosine of
//!   two such matrices is debiased CKA (unbiased HSIC, Song et al. 2012).
//!   U-centring removes any `u 1ᵀ + 1 vᵀ`, so an uncentred `X Xᵀ` gives the
//!   same value as `layer_corr(..., 'gram')`;
//! * cka_rbf: cka of `exp(−d² / (2 σ²))` with `σ² = RBF_SIGMA_FRAC² ·
//!   median(d²)` over the full distance matrix of all images (the bandwidth
//!   stays that of the full sample in resamples).
//!
//! With weights (bootstrap multiplicities) a pair `(a, b)` counts
//! `w_a w_b` times: means are weighted and `z_ab` carries `sqrt(w_a w_b)`,
//! which is the vector of the resampled matrix with the pairs of an image
//! with its own copy left out where the diagonal is left out.
//!
//! The `L x L` Gram of the vectors is accumulated over chunks of `C`
//! entries: each chunk fills an `L x C` block and adds its product into an
//! accumulator. Chunks are cut into [`GROUPS`] fixed groups summed in order,
//! so the result does not depend on the thread count.

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

mod base;

pub(crate) use base::Base;

use super::{symmetric, Input, View};
use crate::error::{KernelError, Result};
use crate::method::CompareMethod;
use crate::SquareMatrix;

/// Entries of the `L x C` block filled per chunk (8 bytes each).
const BLOCK_ENTRIES: usize = 1 << 17;

/// Fixed number of chunk groups (parallel units whose sums are added in
/// order).
const GROUPS: usize = 16;

/// A centred matrix whose norm is below this fraction of the raw matrix
/// norm is rounding noise, i.e. the matrix is constant (or of the form
/// `u 1ᵀ + 1 vᵀ`) and has no structure to compare.
const CONSTANT_RATIO: f64 = 1e-6;

/// Whether `map` is strictly increasing.
fn is_ascending(map: &[u32]) -> bool {
    map.windows(2).all(|p| p[0] < p[1])
}

/// What one view of one matrix needs to produce its centred vector.
enum Prep {
    /// pearson: weighted mean of the upper triangle.
    Mean(f64),
    /// spearman: twice the weighted average rank per class (`None`: the
    /// full sample's), and the centre (twice the mean rank).
    Ranks {
        remap: Option<Vec<u32>>,
        centre: f64,
    },
    /// cka, cka_rbf: weighted row and column means, grand mean, `Σ w w x²`.
    Centre {
        row: Vec<f64>,
        col: Vec<f64>,
        grand: f64,
        raw_sq: f64,
    },
    /// cka_debiased: `μ`, and `Σ w w x²` off the diagonal.
    UCentre { mu: Vec<f64>, raw_sq: f64 },
}

/// One matrix read through a view.
struct Reader<'a> {
    /// The matrix, or for cka_rbf its precomputed kernel.
    m: &'a [f32],
    n: usize,
    map: &'a [u32],
    /// cka_rbf on distances: the kernel's `1 / (2 σ²)`, applied on reading.
    rbf: Option<f64>,
    /// The map is strictly increasing (the plain view, bootstrap draws):
    /// positions `a < b` are images `i < j`, so a row of the upper triangle
    /// is a slice of the matrix.
    ascending: bool,
}

impl Reader<'_> {
    /// Row of the image at position `a` (all `n` columns).
    #[inline]
    fn row(&self, a: usize) -> &[f32] {
        let i = self.map[a] as usize;
        &self.m[i * self.n..(i + 1) * self.n]
    }

    /// A stored value as the method reads it.
    #[inline]
    fn value(&self, x: f32) -> f64 {
        let x = x as f64;
        match self.rbf {
            Some(s) => (-x * x * s).exp(),
            None => x,
        }
    }

    /// Upper-triangle entry of the images at positions `(a, b)`, and its
    /// index in the row-major upper triangle.
    #[inline]
    fn upper(&self, a: usize, b: usize) -> (f64, usize) {
        let (i, j) = (self.map[a] as usize, self.map[b] as usize);
        let (i, j) = if i < j { (i, j) } else { (j, i) };
        let t = i * self.n - i * (i + 1) / 2 + (j - i - 1);
        (self.m[i * self.n + j] as f64, t)
    }

    /// For an ascending map: the position in the row-major upper triangle
    /// of `(i, i + 1)`, `i` the image at position `a`, so that `(i, j)` is
    /// at `start + j - i - 1`.
    #[inline]
    fn upper_start(&self, a: usize) -> usize {
        let i = self.map[a] as usize;
        i * self.n - i * (i + 1) / 2
    }
}

/// Spare buffers for spearman's per-class ranks, reused from one resample
/// to the next on a thread (each is `n (n − 1) / 2` values: allocating and
/// faulting them in anew per resample cost more than the counting).
pub(crate) type Spare = Vec<Vec<u32>>;

/// A zeroed buffer of `len` values, from `spare` when it has one.
fn zeroed(spare: &mut Spare, len: usize) -> Vec<u32> {
    match spare.pop() {
        Some(mut v) => {
            v.clear();
            v.resize(len, 0);
            v
        }
        None => vec![0u32; len],
    }
}

fn prepare(r: &Reader, base: &Base, method: CompareMethod, w: &[f64], spare: &mut Spare) -> Prep {
    let m = r.map.len();
    let total: f64 = w.iter().sum();
    let map = r.map;
    match method {
        CompareMethod::Pearson => {
            let (mut sum, mut wsum) = (0f64, 0f64);
            for a in 0..m {
                let wa = w[a];
                let mut row = 0f64;
                let mut rw = 0f64;
                if r.ascending {
                    let mrow = r.row(a);
                    for (&wb, &j) in w[a + 1..].iter().zip(&map[a + 1..]) {
                        row += wb * mrow[j as usize] as f64;
                        rw += wb;
                    }
                } else {
                    for (b, &wb) in w.iter().enumerate().skip(a + 1) {
                        row += wb * r.upper(a, b).0;
                        rw += wb;
                    }
                }
                sum += wa * row;
                wsum += wa * rw;
            }
            Prep::Mean(sum / wsum)
        }
        CompareMethod::Spearman => {
            if w.iter().all(|&x| x == 1.0) && m == r.n {
                let upper = m * (m - 1) / 2;
                return Prep::Ranks {
                    remap: None,
                    centre: upper as f64 + 1.0,
                };
            }
            // Integer arithmetic: weights are draw counts, and every sum
            // below is at most twice the number of pairs of all images,
            // which Base::new checked fits in u32.
            let wu: Vec<u32> = w.iter().map(|&x| x as u32).collect();
            let mut cnt = zeroed(spare, base.class_twice.len());
            let mut pairs = 0u64;
            for a in 0..m {
                let wa = wu[a];
                let mut row = 0u64;
                if r.ascending {
                    let i = map[a] as usize;
                    let cls = &base.class[r.upper_start(a)..];
                    for (&wb, &j) in wu[a + 1..].iter().zip(&map[a + 1..]) {
                        let c = wa * wb;
                        cnt[cls[j as usize - i - 1] as usize] += c;
                        row += c as u64;
                    }
                } else {
                    for (b, &wb) in wu.iter().enumerate().skip(a + 1) {
                        let c = wa * wb;
                        cnt[base.class[r.upper(a, b).1] as usize] += c;
                        row += c as u64;
                    }
                }
                pairs += row;
            }
            let mut less = 0u32;
            for c in cnt.iter_mut() {
                let k = *c;
                *c = 2 * less + k + 1;
                less += k;
            }
            Prep::Ranks {
                remap: Some(cnt),
                centre: pairs as f64 + 1.0,
            }
        }
        CompareMethod::Cka | CompareMethod::CkaRbf => {
            let mut row = vec![0f64; m];
            let mut col = vec![0f64; m];
            let mut raw_sq = 0f64;
            for (a, ra) in row.iter_mut().enumerate() {
                let wa = w[a];
                let mrow = r.row(a);
                let mut rs = 0f64;
                let mut sq = 0f64;
                for ((c, &wb), &j) in col.iter_mut().zip(w).zip(map) {
                    let x = r.value(mrow[j as usize]);
                    rs += wb * x;
                    sq += wb * x * x;
                    *c += wa * x;
                }
                *ra = rs / total;
                raw_sq += wa * sq;
            }
            col.iter_mut().for_each(|c| *c /= total);
            let grand = row.iter().zip(w).map(|(v, wa)| wa * v).sum::<f64>() / total;
            Prep::Centre {
                row,
                col,
                grand,
                raw_sq,
            }
        }
        CompareMethod::CkaDebiased => {
            let mut mu = vec![0f64; m];
            let mut raw_sq = 0f64;
            for (a, s) in mu.iter_mut().enumerate() {
                let mrow = r.row(a);
                let mut rs = 0f64;
                let mut sq = 0f64;
                for (b, (&wb, &j)) in w.iter().zip(map).enumerate() {
                    if b == a {
                        continue;
                    }
                    let x = r.value(mrow[j as usize]);
                    rs += wb * x;
                    sq += wb * x * x;
                }
                *s = rs;
                raw_sq += w[a] * sq;
            }
            let all: f64 = mu.iter().zip(w).map(|(s, wa)| wa * s).sum();
            let shift = all / (2.0 * (total - 1.0) * (total - 2.0));
            mu.iter_mut().for_each(|s| *s = *s / (total - 2.0) - shift);
            Prep::UCentre { mu, raw_sq }
        }
        CompareMethod::Procrustes | CompareMethod::MutualKnn => {
            unreachable!("not a centred-vector method")
        }
    }
}

impl Prep {
    fn is_upper(&self) -> bool {
        matches!(self, Prep::Mean(_) | Prep::Ranks { .. })
    }
}

/// Row and column of upper-triangle element `t` (row-major order of `i < j`).
pub(crate) fn locate_upper(t: usize, n: usize) -> (usize, usize) {
    // Elements before row i: off(i) = i*n - i*(i+1)/2.
    let off = |i: usize| i * n - i * (i + 1) / 2;
    let (mut lo, mut hi) = (0usize, n - 1); // off(lo) <= t < off(hi)
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if off(mid) <= t {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo, lo + 1 + (t - off(lo)))
}

/// Writes centred elements `t0 .. t0 + out.len()` of one matrix into `out`.
/// Each method has its own inner loop, reading a row slice where the map
/// is ascending.
fn fill(r: &Reader, base: &Base, p: &Prep, sw: &[f64], t0: usize, out: &mut [f64]) {
    let m = r.map.len();
    let map = r.map;
    let mut o = 0;
    if p.is_upper() {
        let (mut a, mut b) = locate_upper(t0, m);
        while o < out.len() {
            let take = (m - b).min(out.len() - o);
            let sa = sw[a];
            let dst = &mut out[o..o + take];
            let (sws, js) = (&sw[b..b + take], &map[b..b + take]);
            match p {
                Prep::Mean(mean) if r.ascending => {
                    let mrow = r.row(a);
                    for ((z, &s), &j) in dst.iter_mut().zip(sws).zip(js) {
                        *z = sa * s * (mrow[j as usize] as f64 - mean);
                    }
                }
                Prep::Mean(mean) => {
                    for (k, (z, &s)) in dst.iter_mut().zip(sws).enumerate() {
                        *z = sa * s * (r.upper(a, b + k).0 - mean);
                    }
                }
                Prep::Ranks { remap, centre } => {
                    let twice = |c: u32| match remap {
                        Some(rm) => rm[c as usize] as f64,
                        None => base.class_twice[c as usize] as f64,
                    };
                    if r.ascending {
                        let i = map[a] as usize;
                        let cls = &base.class[r.upper_start(a)..];
                        for ((z, &s), &j) in dst.iter_mut().zip(sws).zip(js) {
                            *z = sa * s * (twice(cls[j as usize - i - 1]) - centre);
                        }
                    } else {
                        for (k, (z, &s)) in dst.iter_mut().zip(sws).enumerate() {
                            let t = r.upper(a, b + k).1;
                            *z = sa * s * (twice(base.class[t]) - centre);
                        }
                    }
                }
                _ => unreachable!(),
            }
            o += take;
            a += 1;
            b = a + 1;
        }
        return;
    }
    let (mut a, mut b) = (t0 / m, t0 % m);
    while o < out.len() {
        let take = (m - b).min(out.len() - o);
        let sa = sw[a];
        let mrow = r.row(a);
        let dst = &mut out[o..o + take];
        let cols = b..b + take;
        let (sws, js) = (&sw[cols.clone()], &map[cols.clone()]);
        match p {
            Prep::Centre {
                row, col, grand, ..
            } => {
                let ra = grand - row[a];
                for (((z, &s), &j), &cb) in dst.iter_mut().zip(sws).zip(js).zip(&col[cols]) {
                    *z = sa * s * (r.value(mrow[j as usize]) - cb + ra);
                }
            }
            Prep::UCentre { mu, .. } => {
                let ma = mu[a];
                for (k, (((z, &s), &j), &mb)) in
                    dst.iter_mut().zip(sws).zip(js).zip(&mu[cols]).enumerate()
                {
                    *z = if b + k == a {
                        0.0
                    } else {
                        sa * s * (r.value(mrow[j as usize]) - ma - mb)
                    };
                }
            }
            _ => unreachable!(),
        }
        o += take;
        a += 1;
        b = 0;
    }
}

/// The `L x L` matrix of a centred-vector method on one view.
pub(crate) fn similarity(
    input: &Input,
    bases: &[Base],
    view: &View,
    par: bool,
    spare: &mut Spare,
) -> Result<SquareMatrix<f64>> {
    let method = input.method;
    let m = view.m();
    let l = input.mats.len();
    let w: Vec<f64> = (0..m).map(|a| view.weights.get(a)).collect();
    let sw: Vec<f64> = w.iter().map(|x| x.sqrt()).collect();
    let readers: Vec<Reader> = input
        .mats
        .iter()
        .zip(&view.maps)
        .zip(bases)
        .map(|((mat, map), base)| match &base.kernel {
            Some(kernel) => Reader {
                m: kernel,
                n: input.n,
                map,
                rbf: None,
                ascending: is_ascending(map),
            },
            None => Reader {
                m: mat,
                n: input.n,
                map,
                rbf: (method == CompareMethod::CkaRbf).then_some(base.rbf_scale),
                ascending: is_ascending(map),
            },
        })
        .collect();
    let preps: Vec<Prep> = if par {
        super::map_indices(l, par, |k| {
            Ok(prepare(
                &readers[k],
                &bases[k],
                method,
                &w,
                &mut Spare::new(),
            ))
        })?
    } else {
        (0..l)
            .map(|k| prepare(&readers[k], &bases[k], method, &w, spare))
            .collect()
    };
    let total = match method {
        CompareMethod::Pearson | CompareMethod::Spearman => m * (m - 1) / 2,
        _ => m * m,
    };
    let g = gram(&readers, bases, &preps, &sw, total, par);

    let diag: Vec<f64> = (0..l).map(|k| g[k + k * l]).collect();
    for (index, (&gkk, p)) in diag.iter().zip(&preps).enumerate() {
        let constant = match p {
            Prep::Centre { raw_sq, .. } | Prep::UCentre { raw_sq, .. } => {
                gkk <= CONSTANT_RATIO.powi(2) * raw_sq
            }
            _ => gkk <= 0.0,
        };
        if constant {
            return Err(KernelError::ConstantMatrix {
                index,
                method: method.name(),
            });
        }
    }
    let inv: Vec<f64> = diag.iter().map(|v| 1.0 / v.sqrt()).collect();
    let result = symmetric(l, |i, j| g[i + j * l] * inv[i] * inv[j]);
    for p in preps {
        if let Prep::Ranks { remap: Some(v), .. } = p {
            spare.push(v);
        }
    }
    result
}

/// `Z Zᵀ` (lower triangle, column-major `L x L`) of the centred vectors of
/// `total` entries each.
fn gram(
    readers: &[Reader],
    bases: &[Base],
    preps: &[Prep],
    sw: &[f64],
    total: usize,
    par: bool,
) -> Vec<f64> {
    let l = readers.len();
    let cw = (BLOCK_ENTRIES / l).clamp(256, 65536).min(total.max(1));
    let chunks = total.div_ceil(cw);
    let groups = GROUPS.min(chunks).max(1);
    let per = chunks.div_ceil(groups);
    let run = |z: &mut Vec<f64>, g: usize| -> Vec<f64> {
        let mut acc = vec![0f64; l * l];
        for c in g * per..((g + 1) * per).min(chunks) {
            let t0 = c * cw;
            let t1 = (t0 + cw).min(total);
            let w = t1 - t0;
            for (k, zk) in z[..l * w].chunks_exact_mut(w).enumerate() {
                fill(&readers[k], &bases[k], &preps[k], sw, t0, zk);
            }
            let zr = MatRef::from_row_major_slice(&z[..l * w], l, w);
            matmul(
                MatMut::from_column_major_slice_mut(&mut acc[..], l, l),
                BlockStructure::TriangularLower,
                Accum::Add,
                zr,
                BlockStructure::Rectangular,
                zr.transpose(),
                BlockStructure::Rectangular,
                1.0f64,
                Par::Seq,
            );
        }
        acc
    };
    let parts: Vec<Vec<f64>> = if par {
        (0..groups)
            .into_par_iter()
            .map_init(|| vec![0f64; l * cw], |z, g| run(z, g))
            .collect()
    } else {
        let mut z = vec![0f64; l * cw];
        (0..groups).map(|g| run(&mut z, g)).collect()
    };
    let mut out = vec![0f64; l * l];
    for p in parts {
        out.iter_mut().zip(&p).for_each(|(x, y)| *x += y);
    }
    out
}
