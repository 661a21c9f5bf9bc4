//! Tests of the comparison methods against direct formulas.

use super::centred::locate_upper;
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

/// Random features, `n x d` row-major, `mix` of a shared base.
fn features(n: usize, d: usize, seed: u64, base: u64, mix: f64) -> Vec<f64> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let mut b = rand::rngs::StdRng::seed_from_u64(base);
    (0..n * d)
        .map(|_| mix * b.gen_range(-1.0..1.0) + (1.0 - mix) * r.gen_range(-1.0..1.0))
        .collect()
}

fn centre_cols(x: &[f64], n: usize, d: usize) -> Vec<f64> {
    let mut c = x.to_vec();
    for j in 0..d {
        let mean = (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64;
        (0..n).for_each(|i| c[i * d + j] -= mean);
    }
    c
}

fn gram_of(x: &[f64], n: usize, d: usize) -> Vec<f32> {
    let mut g = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] = (0..d).map(|k| x[i * d + k] * x[j * d + k]).sum::<f64>() as f32;
        }
    }
    g
}

fn dist_of(x: &[f64], n: usize, d: usize) -> Vec<f32> {
    let mut g = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            let s: f64 = (0..d).map(|k| (x[i * d + k] - x[j * d + k]).powi(2)).sum();
            g[i * n + j] = s.sqrt() as f32;
        }
    }
    g
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

fn double_centred(m: &[f64], n: usize) -> Vec<f64> {
    // H M H with H = I - 11ᵀ/n, by explicit products.
    let h = |i: usize, j: usize| (i == j) as u8 as f64 - 1.0 / n as f64;
    let mut hm = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            hm[i * n + j] = (0..n).map(|k| h(i, k) * m[k * n + j]).sum();
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

/// Kornblith et al.'s `center_gram(gram, unbiased=True)`.
fn u_centred(m: &[f64], n: usize) -> Vec<f64> {
    let mut g = m.to_vec();
    (0..n).for_each(|i| g[i * n + i] = 0.0);
    let mut means: Vec<f64> = (0..n)
        .map(|j| (0..n).map(|i| g[i * n + j]).sum::<f64>() / (n as f64 - 2.0))
        .collect();
    let s = means.iter().sum::<f64>() / (2.0 * (n as f64 - 1.0));
    means.iter_mut().for_each(|v| *v -= s);
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] -= means[i] + means[j];
        }
    }
    (0..n).for_each(|i| g[i * n + i] = 0.0);
    g
}

fn cosine(x: &[f64], y: &[f64]) -> f64 {
    let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(p, q)| p * q).sum::<f64>();
    dot(x, y) / (dot(x, x) * dot(y, y)).sqrt()
}

fn f64s(m: &[f32]) -> Vec<f64> {
    m.iter().map(|&x| x as f64).collect()
}

fn naive(a: &[f32], b: &[f32], n: usize, method: CompareMethod) -> f64 {
    match method {
        CompareMethod::Pearson => pearson64(&f64s(&upper(a, n)), &f64s(&upper(b, n))),
        CompareMethod::Spearman => pearson64(
            &reference_ranks(&upper(a, n)),
            &reference_ranks(&upper(b, n)),
        ),
        CompareMethod::Cka => cosine(&double_centred(&f64s(a), n), &double_centred(&f64s(b), n)),
        CompareMethod::CkaDebiased => cosine(&u_centred(&f64s(a), n), &u_centred(&f64s(b), n)),
        CompareMethod::CkaRbf => {
            let rbf = |m: &[f32]| {
                let mut sq: Vec<f64> = m.iter().map(|&d| d as f64 * d as f64).collect();
                let mut s = sq.clone();
                s.sort_by(f64::total_cmp);
                let med = (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0; // even n*n
                sq.iter_mut().for_each(|v| *v = (-*v / (2.0 * med)).exp());
                sq
            };
            cosine(&double_centred(&rbf(a), n), &double_centred(&rbf(b), n))
        }
        CompareMethod::MutualKnn => {
            let k = KNN_K.min(n - 1);
            let knn = |m: &[f32], i: usize| {
                let mut idx: Vec<usize> = (0..n).filter(|&j| j != i).collect();
                idx.sort_by(|&x, &y| m[i * n + y].total_cmp(&m[i * n + x]).then(x.cmp(&y)));
                idx.truncate(k);
                idx
            };
            let total: usize = (0..n)
                .map(|i| {
                    let (x, y) = (knn(a, i), knn(b, i));
                    x.iter().filter(|j| y.contains(j)).count()
                })
                .sum();
            total as f64 / (k * n) as f64
        }
        CompareMethod::Procrustes => unreachable!("tested from features"),
    }
}

#[test]
fn pair_matches_naive_formulas() {
    for &n in &[4usize, 17, 60] {
        let a = sym(n, n as u64);
        // b correlated with a, plus ties (rounded values) for spearman.
        let noise = sym(n, 1000 + n as u64);
        let b: Vec<f32> = a
            .iter()
            .zip(&noise)
            .map(|(x, e)| ((0.7 * x + 0.3 * e) * 8.0).round() / 8.0)
            .collect();
        for method in [
            CompareMethod::Pearson,
            CompareMethod::Spearman,
            CompareMethod::Cka,
            CompareMethod::CkaDebiased,
            CompareMethod::MutualKnn,
        ] {
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
fn rbf_matches_kornblith() {
    let (n, d) = (30, 8);
    let x = features(n, d, 1, 9, 0.5);
    let y = features(n, d, 2, 9, 0.5);
    let (a, b) = (dist_of(&x, n, d), dist_of(&y, n, d));
    let got = compare_pair(&a, &b, n, CompareMethod::CkaRbf).unwrap();
    let want = naive(&a, &b, n, CompareMethod::CkaRbf);
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    assert!(got > 0.3 && got < 1.0);
}

#[test]
fn debiased_ignores_centring_and_is_near_zero_for_independent_features() {
    let (n, d) = (40, 300);
    let x = features(n, d, 3, 5, 0.0);
    let y = features(n, d, 4, 5, 0.0);
    let raw = (gram_of(&x, n, d), gram_of(&y, n, d));
    let cen = (
        gram_of(&centre_cols(&x, n, d), n, d),
        gram_of(&centre_cols(&y, n, d), n, d),
    );
    let m = CompareMethod::CkaDebiased;
    let r = compare_pair(&raw.0, &raw.1, n, m).unwrap();
    let c = compare_pair(&cen.0, &cen.1, n, m).unwrap();
    assert!((r - c).abs() < 1e-5, "{r} vs {c}");
    // The known bias: linear CKA of independent wide features is far from 0.
    let biased = compare_pair(&cen.0, &cen.1, n, CompareMethod::Cka).unwrap();
    assert!(biased > 0.5, "{biased}");
    assert!(c.abs() < 0.1, "{c}");
}

/// Nuclear norm of `Xcᵀ Yc` over `|Xc| |Yc|`, by SVD of the features.
fn procrustes_features(x: &[f64], y: &[f64], n: usize, d: usize) -> f64 {
    let (xc, yc) = (centre_cols(x, n, d), centre_cols(y, n, d));
    let m = faer::Mat::<f64>::from_fn(d, d, |i, j| {
        (0..n).map(|k| xc[k * d + i] * yc[k * d + j]).sum()
    });
    let nuc: f64 = m.singular_values().unwrap().iter().sum();
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    nuc / (norm(&xc) * norm(&yc))
}

#[test]
fn procrustes_matches_svd_of_features() {
    for &(n, d) in &[(20usize, 5usize), (15, 40)] {
        let x = features(n, d, 11, 12, 0.6);
        let y = features(n, d, 13, 12, 0.6);
        let (a, b) = (
            gram_of(&centre_cols(&x, n, d), n, d),
            gram_of(&centre_cols(&y, n, d), n, d),
        );
        let got = compare_pair(&a, &b, n, CompareMethod::Procrustes).unwrap();
        let want = procrustes_features(&x, &y, n, d);
        assert!((got - want).abs() < 1e-5, "n={n} d={d}: {got} vs {want}");
        // A rotation of the same representation scores 1.
        assert!((compare_pair(&a, &a, n, CompareMethod::Procrustes).unwrap() - 1.0).abs() < 1e-6);
    }
}

#[test]
fn self_and_negated() {
    let n = 12;
    let a = sym(n, 1);
    let neg: Vec<f32> = a.iter().map(|x| -x).collect();
    let scaled: Vec<f32> = a.iter().map(|x| 3.0 * x + 5.0).collect();
    for method in [
        CompareMethod::Pearson,
        CompareMethod::Spearman,
        CompareMethod::Cka,
        CompareMethod::CkaDebiased,
        CompareMethod::MutualKnn,
    ] {
        assert!((compare_pair(&a, &a, n, method).unwrap() - 1.0).abs() < 1e-12);
        assert!((compare_pair(&a, &scaled, n, method).unwrap() - 1.0).abs() < 1e-12);
    }
    assert!((compare_pair(&a, &neg, n, CompareMethod::Pearson).unwrap() + 1.0).abs() < 1e-12);
    assert!((compare_pair(&a, &neg, n, CompareMethod::Spearman).unwrap() + 1.0).abs() < 1e-12);
}

/// Six layers' features mixing a shared base with growing noise: gram and
/// euclidean matrices.
fn layers(n: usize, d: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let feats: Vec<Vec<f64>> = (0..6)
        .map(|k| features(n, d, 200 + k, 77, 1.0 - k as f64 / 6.0))
        .collect();
    let grams = feats
        .iter()
        .map(|x| gram_of(&centre_cols(x, n, d), n, d))
        .collect();
    let dists = feats.iter().map(|x| dist_of(x, n, d)).collect();
    (grams, dists)
}

#[test]
fn similarity_matrix_is_pairwise_compare() {
    let n = 40;
    let (grams, dists) = layers(n, 12);
    for method in CompareMethod::ALL {
        let mats = if method == CompareMethod::CkaRbf {
            &dists
        } else {
            &grams
        };
        let refs: Vec<&[f32]> = mats.iter().map(|m| &m[..]).collect();
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
        assert!(s.get(0, 1) > s.get(0, 5), "{method}");
    }
}

#[test]
fn chunked_path_matches_naive() {
    // More elements than one chunk for L = 4.
    let n = 400;
    let mats: Vec<Vec<f32>> = (0..3).map(|k| sym(n, 50 + k)).collect();
    let mixed: Vec<f32> = mats[0]
        .iter()
        .zip(&mats[1])
        .map(|(a, b)| a + 0.5 * b)
        .collect();
    let refs: Vec<&[f32]> = vec![&mats[0], &mats[1], &mats[2], &mixed];
    for method in [
        CompareMethod::Pearson,
        CompareMethod::Spearman,
        CompareMethod::Cka,
    ] {
        let s = similarity_matrix(&refs, n, method).unwrap();
        let want = naive(refs[0], refs[3], n, method);
        assert!((s.get(0, 3) - want).abs() < 1e-10, "{method}");
    }
}

#[test]
fn same_numbers_at_any_thread_count() {
    let n = 300;
    let mats: Vec<Vec<f32>> = (0..3).map(|k| sym(n, 70 + k)).collect();
    let refs: Vec<&[f32]> = mats.iter().map(|m| &m[..]).collect();
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| similarity_matrix(&refs, n, CompareMethod::Cka).unwrap())
    };
    assert_eq!(run(1), run(3));
}

/// The matrix of a bootstrap resample built explicitly, with the pairs of
/// an image with its own copy marked (`None`).
fn resampled(m: &[f32], n: usize, idx: &[usize]) -> Vec<Option<f64>> {
    let k = idx.len();
    let mut out = vec![None; k * k];
    for p in 0..k {
        for q in 0..k {
            if p == q || idx[p] != idx[q] {
                out[p * k + q] = Some(m[idx[p] * n + idx[q]] as f64);
            }
        }
    }
    out
}

#[test]
fn weighted_views_equal_explicit_resamples() {
    let n = 25;
    let a = sym(n, 5);
    let b: Vec<f32> = a.iter().zip(sym(n, 6)).map(|(x, y)| x + 0.6 * y).collect();
    let mut r = rand::rngs::StdRng::seed_from_u64(3);
    let idx: Vec<usize> = (0..n).map(|_| r.gen_range(0..n)).collect();
    let mut counts = vec![0f64; n];
    idx.iter().for_each(|&i| counts[i] += 1.0);
    let ids: Vec<u32> = (0..n as u32)
        .filter(|&i| counts[i as usize] > 0.0)
        .collect();
    let w: Vec<f64> = ids.iter().map(|&i| counts[i as usize]).collect();
    let (ra, rb) = (resampled(&a, n, &idx), resampled(&b, n, &idx));
    let k = idx.len();
    let mats = [&a[..], &b[..]];
    for method in [
        CompareMethod::Pearson,
        CompareMethod::Spearman,
        CompareMethod::Cka,
        CompareMethod::CkaDebiased,
    ] {
        let input = Input::new(&mats, &[None, None], n, method).unwrap();
        let view = View {
            maps: vec![&ids[..], &ids[..]],
            weights: Weights::Counts(w.clone()),
        };
        let got = input.similarity(&view, false).unwrap().get(0, 1);
        let want = match method {
            CompareMethod::Pearson | CompareMethod::Spearman => {
                // Upper-triangle pairs of distinct images only.
                let pick = |m: &[Option<f64>]| -> Vec<f64> {
                    (0..k)
                        .flat_map(|p| (p + 1..k).map(move |q| (p, q)))
                        .filter_map(|(p, q)| m[p * k + q])
                        .collect()
                };
                let (x, y) = (pick(&ra), pick(&rb));
                if method == CompareMethod::Pearson {
                    pearson64(&x, &y)
                } else {
                    let f = |v: &[f64]| {
                        reference_ranks(&v.iter().map(|&t| t as f32).collect::<Vec<_>>())
                    };
                    pearson64(&f(&x), &f(&y))
                }
            }
            CompareMethod::Cka => {
                // The kernel of the resampled images, duplicates included.
                let full = |m: &[f32]| -> Vec<f64> {
                    idx.iter()
                        .flat_map(|&i| idx.iter().map(move |&j| m[i * n + j] as f64))
                        .collect()
                };
                cosine(&double_centred(&full(&a), k), &double_centred(&full(&b), k))
            }
            _ => {
                // U-centring with the copies' pairs left out like the diagonal.
                let uc = |m: &[Option<f64>]| -> Vec<f64> {
                    let g: Vec<f64> = (0..k * k)
                        .map(|t| {
                            if t / k == t % k {
                                0.0
                            } else {
                                m[t].unwrap_or(0.0)
                            }
                        })
                        .collect();
                    let mut u = u_centred(&g, k);
                    (0..k * k)
                        .filter(|&t| m[t].is_none())
                        .for_each(|t| u[t] = 0.0);
                    u
                };
                cosine(&uc(&ra), &uc(&rb))
            }
        };
        assert!((got - want).abs() < 1e-10, "{method}: {got} vs {want}");
    }
}

#[test]
fn wrong_kind_is_a_named_error() {
    let n = 6;
    let a = sym(n, 1);
    let err = similarity_matrix_of(
        &[&a, &a],
        &[Some(CorrMethod::Gram), Some(CorrMethod::Pearson)],
        n,
        CompareMethod::Procrustes,
    )
    .unwrap_err();
    assert_eq!(err.matrix_index(), Some(1));
    let msg = err.to_string();
    assert!(
        msg.contains("procrustes") && msg.contains("'pearson'") && msg.contains("gram"),
        "{msg}"
    );
    let err = similarity_matrix_of(&[&a], &[Some(CorrMethod::Gram)], n, CompareMethod::CkaRbf)
        .unwrap_err()
        .to_string();
    assert!(err.contains("euclidean"), "{err}");
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
    for method in [
        CompareMethod::Cka,
        CompareMethod::CkaDebiased,
        CompareMethod::Procrustes,
    ] {
        let err = compare_pair(&k, &a, n, method).unwrap_err();
        assert_eq!(err.matrix_index(), Some(0), "{method}");
    }

    assert!(matches!(
        compare_pair(&a[..4], &b[..4], 2, CompareMethod::Pearson),
        Err(KernelError::TooFewRows { min: 3, .. })
    ));
    assert!(matches!(
        compare_pair(&a[..9], &b[..9], 3, CompareMethod::CkaDebiased),
        Err(KernelError::TooFewRows { min: 4, .. })
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

#[test]
fn precomputed_resampling_paths_match_direct_ones() {
    // mutual_knn's walk over the stored neighbour order and cka_rbf's stored
    // kernel against the direct computation on the same weighted views.
    let (n, d) = (40, 6);
    let x = features(n, d, 1, 9, 0.5);
    let y = features(n, d, 2, 9, 0.5);
    let (dx, dy) = (dist_of(&x, n, d), dist_of(&y, n, d));
    let mut r = rand::rngs::StdRng::seed_from_u64(4);
    for method in [CompareMethod::MutualKnn, CompareMethod::CkaRbf] {
        let kinds = [Some(CorrMethod::Euclidean); 2];
        let mats = [&dx[..], &dy[..]];
        let direct = Input::new(&mats, &kinds, n, method).unwrap();
        let mut stored = Input::new(&mats, &kinds, n, method).unwrap();
        stored.precompute().unwrap();
        for _ in 0..20 {
            let mut counts = vec![0f64; n];
            (0..n).for_each(|_| counts[r.gen_range(0..n)] += 1.0);
            let ids: Vec<u32> = (0..n as u32)
                .filter(|&i| counts[i as usize] > 0.0)
                .collect();
            let w: Vec<f64> = ids.iter().map(|&i| counts[i as usize]).collect();
            let view = View {
                maps: vec![&ids[..], &ids[..]],
                weights: Weights::Counts(w),
            };
            let a = direct.similarity(&view, false).unwrap().get(0, 1);
            let b = stored.similarity(&view, false).unwrap().get(0, 1);
            let tol = if method == CompareMethod::MutualKnn {
                0.0
            } else {
                1e-6
            };
            assert!((a - b).abs() <= tol, "{method}: {a} vs {b}");
        }
    }
}
