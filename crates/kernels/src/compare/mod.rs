//! Second-order comparison: how alike two (or L) similarity matrices are.
//!
//! This is the entry point behind `rsa` ([`compare_pair`]) and
//! `layer_similarity` ([`similarity_matrix`]). Each `n x n` matrix is turned
//! once into a centred vector:
//!
//! * pearson: the strict upper triangle (`i < j`, row by row) minus its mean;
//! * spearman: the average-tie ranks of the strict upper triangle minus the
//!   mean rank (ranks kept as exact integers, twice the rank);
//! * cka: the full double-centred matrix `H M H`
//!   (`M_ij − rowmean_i − colmean_j + mean`), i.e. linear CKA when the
//!   matrices are kernels such as `layer_corr(..., 'gram')`.
//!
//! and the `L x L` result is the cosine between those vectors, from one Gram
//! matrix `Z Zᵀ` in `f64`. The vectors are never stored whole (for
//! `L = 100` and `n = 2000` that would be 1.6 GB): the element range is cut
//! into chunks; each worker fills a small `L x C` block of centred values
//! and adds its product into its own `L x L` accumulator. The step is
//! memory-bound, so the input is read twice (statistics, then products) and
//! nothing else of size `L·n²` exists, except the ranks for spearman (4
//! bytes per compared entry). Comparing a pair is the same computation with
//! `L = 2`, so `rsa` and `layer_similarity` agree.

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::gram::sum_f64;
use crate::method::CompareMethod;
use crate::rank::{check_len, twice_ranks};
use crate::{try_zeroed, SquareMatrix};

/// Entries of the `L x C` block filled per chunk (8 bytes each).
const BLOCK_ENTRIES: usize = 1 << 17;

/// CKA: a double-centred matrix whose norm is below this fraction of the
/// raw matrix norm is rounding noise, i.e. the matrix is constant (or of the
/// form `u 1ᵀ + 1 vᵀ`) and has no structure to compare.
const CKA_CONSTANT_RATIO: f64 = 1e-6;

/// The comparison of two `n x n` row-major matrices by `method`.
///
/// Pearson and spearman use the strict upper triangles; cka the full
/// matrices. Equal to entry `[0][1]` of [`similarity_matrix`] on `[a, b]`.
///
/// Errors: see [`similarity_matrix`]; the matrix index is 0 for `a` and 1
/// for `b`.
pub fn compare_pair(a: &[f32], b: &[f32], n: usize, method: CompareMethod) -> Result<f64> {
    Ok(similarity_matrix(&[a, b], n, method)?.get(0, 1))
}

/// The `L x L` matrix of `method` between `L` matrices of `n x n` values
/// each (row-major). The diagonal is exactly 1 and the result symmetric.
///
/// Errors: no matrices ([`KernelError::NoMatrices`]); `n` below 3 for
/// pearson and spearman or below 2 for cka ([`KernelError::TooFewRows`]);
/// a matrix whose length is not `n * n` ([`KernelError::MatrixLength`]); a
/// NaN or infinity anywhere in a matrix ([`KernelError::NonFiniteMatrix`]);
/// a matrix with nothing to compare: constant upper triangle, or a
/// double-centred matrix of zero norm ([`KernelError::ConstantMatrix`]). The
/// smallest matrix index is reported.
pub fn similarity_matrix(
    mats: &[&[f32]],
    n: usize,
    method: CompareMethod,
) -> Result<SquareMatrix<f64>> {
    let what = method.name();
    let l = mats.len();
    if l == 0 {
        return Err(KernelError::NoMatrices { what });
    }
    let min = match method {
        CompareMethod::Pearson | CompareMethod::Spearman => 3,
        CompareMethod::Cka => 2,
    };
    if n < min {
        return Err(KernelError::TooFewRows { what, n, min });
    }
    let nn = n.saturating_mul(n);
    if let Some((index, m)) = mats.iter().enumerate().find(|(_, m)| m.len() != nn) {
        return Err(KernelError::MatrixLength {
            index,
            n,
            expected: nn,
            got: m.len(),
        });
    }
    let bad = mats
        .par_iter()
        .enumerate()
        .filter_map(|(index, m)| {
            let pos = m.iter().position(|x| !x.is_finite())?;
            Some(KernelError::NonFiniteMatrix {
                index,
                row: pos / n,
                col: pos % n,
                value: m[pos],
            })
        })
        .min_by_key(|e| e.matrix_index());
    if let Some(e) = bad {
        return Err(e);
    }

    let upper = n * (n - 1) / 2;
    let total = match method {
        CompareMethod::Pearson | CompareMethod::Spearman => upper,
        CompareMethod::Cka => nn,
    };
    if method == CompareMethod::Spearman {
        check_len(upper)?;
    }
    let prepared: Vec<Prepared> = mats
        .par_iter()
        .map_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(vals, keys, tmp), m| prepare(m, n, method, vals, keys, tmp),
        )
        .collect::<Result<_>>()?;

    let g = centred_gram(mats, &prepared, n, total);

    // Constant check and normalisation.
    let diag: Vec<f64> = (0..l).map(|k| g[k + k * l]).collect();
    for (index, (&gkk, p)) in diag.iter().zip(&prepared).enumerate() {
        let constant = match p {
            Prepared::Centre { raw_sq, .. } => gkk <= CKA_CONSTANT_RATIO.powi(2) * raw_sq,
            _ => gkk <= 0.0,
        };
        if constant {
            return Err(KernelError::ConstantMatrix {
                index,
                method: what,
            });
        }
    }
    let inv: Vec<f64> = diag.iter().map(|v| 1.0 / v.sqrt()).collect();
    let mut out = vec![0f64; l * l];
    for i in 0..l {
        out[i * l + i] = 1.0;
        for j in 0..i {
            let r = (g[i + j * l] * inv[i] * inv[j]).clamp(-1.0, 1.0);
            out[i * l + j] = r;
            out[j * l + i] = r;
        }
    }
    SquareMatrix::from_vec(l, out)
}

/// What pass 1 learns about one matrix: enough to produce its centred
/// vector piece by piece in pass 2.
enum Prepared {
    /// Pearson: the mean of the upper triangle.
    Mean(f64),
    /// Spearman: twice the average rank of each upper-triangle entry, and
    /// twice the mean rank (`m + 1`).
    Ranks { twice: Vec<u32>, centre: f64 },
    /// CKA: row means, column means, grand mean, and `Σ M²` (for the
    /// constant check).
    Centre {
        row: Vec<f64>,
        col: Vec<f64>,
        grand: f64,
        raw_sq: f64,
    },
}

fn prepare(
    m: &[f32],
    n: usize,
    method: CompareMethod,
    vals: &mut Vec<f32>,
    keys: &mut Vec<u64>,
    tmp: &mut Vec<u64>,
) -> Result<Prepared> {
    let upper_rows = || (0..n).map(move |i| &m[i * n + i + 1..(i + 1) * n]);
    match method {
        CompareMethod::Pearson => {
            let count = n * (n - 1) / 2;
            let sum: f64 = upper_rows().map(sum_f64).sum();
            Ok(Prepared::Mean(sum / count as f64))
        }
        CompareMethod::Spearman => {
            vals.clear();
            upper_rows().for_each(|r| vals.extend_from_slice(r));
            let mut twice = try_zeroed::<u32>(vals.len(), "spearman ranks")?;
            // Values were checked finite and the length fits in u32, so
            // this cannot fail; an error here would leave ranks at 0 and
            // the matrix reported constant rather than a panic.
            let _ = twice_ranks(vals, keys, tmp, |i, t| twice[i] = t as u32);
            let centre = vals.len() as f64 + 1.0;
            Ok(Prepared::Ranks { twice, centre })
        }
        CompareMethod::Cka => {
            let mut row = vec![0f64; n];
            let mut col = vec![0f64; n];
            let mut raw_sq = 0f64;
            for (i, r) in m.chunks_exact(n).enumerate() {
                row[i] = sum_f64(r) / n as f64;
                for (c, &x) in col.iter_mut().zip(r) {
                    let x = x as f64;
                    *c += x;
                    raw_sq += x * x;
                }
            }
            col.iter_mut().for_each(|c| *c /= n as f64);
            let grand = row.iter().sum::<f64>() / n as f64;
            Ok(Prepared::Centre {
                row,
                col,
                grand,
                raw_sq,
            })
        }
    }
}

/// `Z Zᵀ` (lower triangle, column-major `L x L`) of the centred vectors,
/// accumulated over chunks of `total` elements in parallel.
fn centred_gram(mats: &[&[f32]], prepared: &[Prepared], n: usize, total: usize) -> Vec<f64> {
    let l = mats.len();
    let cw = (BLOCK_ENTRIES / l).clamp(256, 65536).min(total.max(1));
    let chunks = total.div_ceil(cw);
    (0..chunks)
        .into_par_iter()
        .fold(
            || (vec![0f64; l * cw], vec![0f64; l * l]),
            |(mut z, mut acc), c| {
                let t0 = c * cw;
                let t1 = (t0 + cw).min(total);
                let w = t1 - t0;
                for (k, zk) in z[..l * w].chunks_exact_mut(w).enumerate() {
                    fill_centred(mats[k], &prepared[k], n, t0, zk);
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
                (z, acc)
            },
        )
        .map(|(_, acc)| acc)
        .reduce(
            || vec![0f64; l * l],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// Row and column of upper-triangle element `t` (row-major order of `i < j`).
fn locate_upper(t: usize, n: usize) -> (usize, usize) {
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
fn fill_centred(m: &[f32], p: &Prepared, n: usize, t0: usize, out: &mut [f64]) {
    match p {
        Prepared::Mean(mean) => {
            let (mut i, mut j) = locate_upper(t0, n);
            let mut o = 0;
            while o < out.len() {
                let take = (n - j).min(out.len() - o);
                for (z, &x) in out[o..o + take]
                    .iter_mut()
                    .zip(&m[i * n + j..i * n + j + take])
                {
                    *z = x as f64 - mean;
                }
                o += take;
                i += 1;
                j = i + 1;
            }
        }
        Prepared::Ranks { twice, centre } => {
            for (z, &r) in out.iter_mut().zip(&twice[t0..]) {
                *z = r as f64 - centre;
            }
        }
        Prepared::Centre {
            row, col, grand, ..
        } => {
            let (mut i, mut j) = (t0 / n, t0 % n);
            let mut o = 0;
            while o < out.len() {
                let take = (n - j).min(out.len() - o);
                let ri = grand - row[i];
                for ((z, &x), &cj) in out[o..o + take]
                    .iter_mut()
                    .zip(&m[i * n + j..i * n + j + take])
                    .zip(&col[j..j + take])
                {
                    *z = x as f64 - cj + ri;
                }
                o += take;
                i += 1;
                j = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::reference_ranks;
    use rand::{Rng, SeedableRng};

    /// A random symmetric correlation-like matrix with unit diagonal.
    fn sym(n: usize, seed: u64) -> Vec<f32> {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let mut m = vec![0f32; n * n];
        for i in 0..n {
            m[i * n + i] = 1.0;
            for j in 0..i {
                let v = r.gen_range(-1.0f32..1.0);
                m[i * n + j] = v;
                m[j * n + i] = v;
            }
        }
        m
    }

    fn upper(m: &[f32], n: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j])
            .collect()
    }

    fn pearson64(a: &[f64], b: &[f64]) -> f64 {
        let k = a.len() as f64;
        let ma = a.iter().sum::<f64>() / k;
        let mb = b.iter().sum::<f64>() / k;
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (x, y) in a.iter().zip(b) {
            ab += (x - ma) * (y - mb);
            aa += (x - ma) * (x - ma);
            bb += (y - mb) * (y - mb);
        }
        ab / (aa * bb).sqrt()
    }

    fn double_centred(m: &[f32], n: usize) -> Vec<f64> {
        // H M H with H = I - 11ᵀ/n, by explicit products.
        let h = |i: usize, j: usize| (i == j) as u8 as f64 - 1.0 / n as f64;
        let mut hm = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                hm[i * n + j] = (0..n).map(|k| h(i, k) * m[k * n + j] as f64).sum();
            }
        }
        let mut out = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                out[i * n + j] = (0..n).map(|k| hm[i * n + k] * h(k, j)).sum();
            }
        }
        out
    }

    fn naive(a: &[f32], b: &[f32], n: usize, method: CompareMethod) -> f64 {
        match method {
            CompareMethod::Pearson => {
                let f = |v: Vec<f32>| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
                pearson64(&f(upper(a, n)), &f(upper(b, n)))
            }
            CompareMethod::Spearman => pearson64(
                &reference_ranks(&upper(a, n)),
                &reference_ranks(&upper(b, n)),
            ),
            CompareMethod::Cka => {
                let (x, y) = (double_centred(a, n), double_centred(b, n));
                let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(p, q)| p * q).sum::<f64>();
                dot(&x, &y) / (dot(&x, &x) * dot(&y, &y)).sqrt()
            }
        }
    }

    #[test]
    fn pair_matches_naive_formulas() {
        for &n in &[3usize, 4, 17, 60] {
            let a = sym(n, n as u64);
            // b correlated with a, plus ties (rounded values) for spearman.
            let noise = sym(n, 1000 + n as u64);
            let b: Vec<f32> = a
                .iter()
                .zip(&noise)
                .map(|(x, e)| ((0.7 * x + 0.3 * e) * 8.0).round() / 8.0)
                .collect();
            for method in CompareMethod::ALL {
                let got = compare_pair(&a, &b, n, method).unwrap();
                let want = naive(&a, &b, n, method);
                assert!(
                    (got - want).abs() < 1e-12,
                    "{method} n={n}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn self_and_negated() {
        let n = 12;
        let a = sym(n, 1);
        let neg: Vec<f32> = a.iter().map(|x| -x).collect();
        let scaled: Vec<f32> = a.iter().map(|x| 3.0 * x + 5.0).collect();
        for method in CompareMethod::ALL {
            assert!((compare_pair(&a, &a, n, method).unwrap() - 1.0).abs() < 1e-12);
            assert!((compare_pair(&a, &scaled, n, method).unwrap() - 1.0).abs() < 1e-12);
        }
        assert!((compare_pair(&a, &neg, n, CompareMethod::Pearson).unwrap() + 1.0).abs() < 1e-12);
        assert!((compare_pair(&a, &neg, n, CompareMethod::Spearman).unwrap() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn similarity_matrix_is_pairwise_compare() {
        let n = 40;
        let base = sym(n, 77);
        let mats: Vec<Vec<f32>> = (0..6)
            .map(|k| {
                let e = sym(n, 200 + k);
                let w = k as f32 / 6.0;
                base.iter()
                    .zip(&e)
                    .map(|(x, y)| (1.0 - w) * x + w * y)
                    .collect()
            })
            .collect();
        let refs: Vec<&[f32]> = mats.iter().map(|m| &m[..]).collect();
        for method in CompareMethod::ALL {
            let s = similarity_matrix(&refs, n, method).unwrap();
            assert_eq!(s.n(), 6);
            for i in 0..6 {
                assert_eq!(s.get(i, i), 1.0);
                for j in 0..6 {
                    assert_eq!(s.get(i, j), s.get(j, i));
                    let p = compare_pair(refs[i], refs[j], n, method).unwrap();
                    assert!((s.get(i, j) - p).abs() < 1e-12, "{method} ({i},{j})");
                }
            }
            // Structure decays with mixing weight.
            assert!(s.get(0, 1) > s.get(0, 5));
        }
    }

    #[test]
    fn chunked_path_matches_naive() {
        // More elements than one chunk for L = 3.
        let n = 400;
        let mats: Vec<Vec<f32>> = (0..3).map(|k| sym(n, 50 + k)).collect();
        let mixed: Vec<f32> = mats[0]
            .iter()
            .zip(&mats[1])
            .map(|(a, b)| a + 0.5 * b)
            .collect();
        let refs: Vec<&[f32]> = vec![&mats[0], &mats[1], &mats[2], &mixed];
        for method in CompareMethod::ALL {
            let s = similarity_matrix(&refs, n, method).unwrap();
            let want = naive(refs[0], refs[3], n, method);
            assert!((s.get(0, 3) - want).abs() < 1e-10, "{method}");
        }
    }

    #[test]
    fn errors_name_the_matrix() {
        let n = 5;
        let a = sym(n, 1);
        let b = sym(n, 2);
        assert!(matches!(
            similarity_matrix(&[], n, CompareMethod::Pearson),
            Err(KernelError::NoMatrices { .. })
        ));
        let short = vec![0f32; 24];
        let err = similarity_matrix(&[&a, &b, &short], n, CompareMethod::Cka).unwrap_err();
        assert_eq!(err.matrix_index(), Some(2));

        let mut nan = b.clone();
        nan[3 * n + 1] = f32::NAN;
        let err = compare_pair(&a, &nan, n, CompareMethod::Spearman).unwrap_err();
        assert!(matches!(
            err,
            KernelError::NonFiniteMatrix {
                index: 1,
                row: 3,
                col: 1,
                ..
            }
        ));

        // Constant upper triangle (diagonal differs: still constant).
        let mut c = vec![0.5f32; n * n];
        (0..n).for_each(|i| c[i * n + i] = 1.0);
        for method in [CompareMethod::Pearson, CompareMethod::Spearman] {
            let err = similarity_matrix(&[&a, &b, &c], n, method).unwrap_err();
            assert_eq!(
                err,
                KernelError::ConstantMatrix {
                    index: 2,
                    method: method.name()
                }
            );
        }
        // For CKA a constant matrix double-centres to zero.
        let k = vec![2.5f32; n * n];
        let err = compare_pair(&k, &a, n, CompareMethod::Cka).unwrap_err();
        assert_eq!(err.matrix_index(), Some(0));

        assert!(matches!(
            compare_pair(&a[..4], &b[..4], 2, CompareMethod::Pearson),
            Err(KernelError::TooFewRows { min: 3, .. })
        ));
    }

    #[test]
    fn locate_upper_walks_the_triangle() {
        let n = 9;
        let mut t = 0;
        for i in 0..n {
            for j in i + 1..n {
                assert_eq!(locate_upper(t, n), (i, j));
                t += 1;
            }
        }
    }
}
