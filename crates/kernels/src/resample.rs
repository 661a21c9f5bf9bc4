//! Resampling statistics over images: bootstrap intervals
//! (`rsa_bootstrap`, `layer_similarity_ci`) and permutation tests
//! (`rsa_permutation`) for every method of [`crate::compare`].
//!
//! Both reuse the comparison code through its views (see
//! [`crate::compare`]): a bootstrap resample draws `n` images with
//! replacement — the same draw for every matrix — and becomes the distinct
//! images drawn with their multiplicities; pairs of an image with its own
//! copy are left out wherever a method leaves the diagonal out (as
//! rsatoolbox's bootstrap does). A permutation relabels the images of the
//! second matrix (rows and columns together, Mantel's test). No resampled
//! matrix is ever built: each resample reads the input in place, one
//! resample per worker at a time, so memory stays at the input plus one
//! resample's working set per thread plus one number per resample and pair
//! (plus, for `cka_rbf` and `mutual_knn`, one precomputed `n x n` array
//! per matrix: the kernel, the neighbour order).
//!
//! Determinism: resample `r` draws from its own random stream, seeded from
//! `(seed, r)` (SplitMix64), and each resample is computed on one thread;
//! results are identical at any thread count.
//!
//! Intervals are percentile intervals at `level` (numpy's linear
//! interpolation between order statistics); `se` is the standard deviation
//! (n − 1) of the resampled values; the estimate is the value on all
//! images. Resamples on which a method is undefined (a resampled matrix is
//! constant) are left out. p-values count permuted values at least the
//! observed one: `(1 + #{perm ≥ observed}) / (1 + permutations)`
//! (one-sided: more similar than chance).

use rayon::prelude::*;

use crate::compare::{Input, Spare, View, Weights};
use crate::error::{KernelError, Result};
use crate::method::{CompareMethod, CorrMethod};
use crate::{try_zeroed, SquareMatrix};

/// Most resamples or permutations one call may ask for.
pub const MAX_RESAMPLES: usize = 100_000;

/// Default number of bootstrap resamples and of permutations.
pub const DEFAULT_RESAMPLES: usize = 1000;

/// Default seed: the same numbers every time unless a seed is given.
pub const DEFAULT_SEED: u64 = 0x5EED;

/// Default interval level.
pub const DEFAULT_LEVEL: f64 = 0.95;

/// How to bootstrap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapOptions {
    /// Number of resamples, 1 ..= [`MAX_RESAMPLES`].
    pub resamples: usize,
    /// Seed of the random draws.
    pub seed: u64,
    /// Interval level, strictly between 0 and 1.
    pub level: f64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
            level: DEFAULT_LEVEL,
        }
    }
}

/// Bootstrap results, each an `L x L` symmetric matrix (diagonal 1 for the
/// estimate and bounds, 0 for `se`).
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    /// The value on all images.
    pub estimate: SquareMatrix<f64>,
    /// Lower percentile bound.
    pub ci_low: SquareMatrix<f64>,
    /// Upper percentile bound.
    pub ci_high: SquareMatrix<f64>,
    /// Standard deviation of the resampled values.
    pub se: SquareMatrix<f64>,
}

/// A permutation test's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Permutation {
    /// The value on the matrices as given.
    pub estimate: f64,
    /// `(1 + #{permuted ≥ observed}) / (1 + permutations)`.
    pub p_value: f64,
}

/// Checks a resample or permutation count.
pub fn check_count(what: &'static str, name: &'static str, count: i64) -> Result<usize> {
    if count < 1 || count as u64 > MAX_RESAMPLES as u64 {
        return Err(KernelError::BadArgument {
            what,
            name,
            got: count.to_string(),
            valid: "between 1 and 100000",
        });
    }
    Ok(count as usize)
}

/// Checks an interval level.
pub fn check_level(what: &'static str, level: f64) -> Result<f64> {
    if !(level > 0.0 && level < 1.0) {
        return Err(KernelError::BadArgument {
            what,
            name: "level",
            got: level.to_string(),
            valid: "strictly between 0 and 1",
        });
    }
    Ok(level)
}

/// SplitMix64: small, fast, and good enough to draw indices.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64, stream: u64) -> SplitMix {
        // Hashed starting points: streams of different r do not overlap in
        // any practical length.
        let mut s = SplitMix(seed);
        let a = s.next();
        let mut t = SplitMix(stream ^ 0xD1B5_4A32_D192_ED03);
        SplitMix(a ^ t.next())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's method, unbiased).
    fn below(&mut self, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

/// Draw `r`: the distinct images drawn (ascending) and their counts.
fn draw(n: usize, seed: u64, r: usize) -> (Vec<u32>, Vec<f64>) {
    let mut rng = SplitMix::new(seed, r as u64);
    let mut counts = vec![0u32; n];
    for _ in 0..n {
        counts[rng.below(n as u64) as usize] += 1;
    }
    let ids: Vec<u32> = (0..n as u32).filter(|&i| counts[i as usize] > 0).collect();
    let w = ids.iter().map(|&i| counts[i as usize] as f64).collect();
    (ids, w)
}

/// Permutation `r` of `0..n` (Fisher–Yates).
fn permutation(n: usize, seed: u64, r: usize) -> Vec<u32> {
    let mut rng = SplitMix::new(seed, r as u64);
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// numpy's `percentile(v, 100 q)` (linear) of sorted `v`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The value of every strict-lower pair `(i, j)` (`i > j`, in the order
/// `(1,0), (2,0), (2,1), ...`) of the similarity on each of
/// `opts.resamples` bootstrap draws, row-major `resamples x pairs`; NaN
/// where a draw leaves a matrix without structure. `input` is prepared for
/// resampling first.
fn resampled_pairs(input: &mut Input, opts: BootstrapOptions) -> Result<Vec<f64>> {
    input.precompute()?;
    let (n, l) = (input.n, input.mats.len());
    let pairs = l * (l - 1) / 2;
    let mut rows: Vec<f64> = try_zeroed(
        opts.resamples.saturating_mul(pairs.max(1)),
        "bootstrap values",
    )?;
    let input = &*input;
    rows.par_chunks_mut(pairs.max(1))
        .enumerate()
        .try_for_each_init(Spare::new, |spare, (r, row)| {
            let (ids, w) = draw(n, opts.seed, r);
            let view = View {
                maps: vec![&ids[..]; l],
                weights: Weights::Counts(w),
            };
            match input.similarity_with(&view, false, spare) {
                Ok(s) => {
                    let mut p = 0;
                    for i in 0..l {
                        for j in 0..i {
                            row[p] = s.get(i, j);
                            p += 1;
                        }
                    }
                    Ok(())
                }
                Err(KernelError::ConstantMatrix { .. }) => {
                    row.fill(f64::NAN);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })?;
    Ok(rows)
}

/// Percentile interval and standard deviation of the defined values.
fn summarise(
    values: &mut Vec<f64>,
    level: f64,
    tried: usize,
    what: &'static str,
) -> Result<(f64, f64, f64)> {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return Err(KernelError::NoValidResample { what, tried });
    }
    values.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    let (lo, hi) = (quantile(values, alpha), quantile(values, 1.0 - alpha));
    let k = values.len() as f64;
    let mean = values.iter().sum::<f64>() / k;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (k - 1.0)).sqrt()
    } else {
        0.0
    };
    Ok((lo, hi, sd))
}

/// The value on all images through the identity view.
fn plain(input: &Input) -> Result<SquareMatrix<f64>> {
    let identity: Vec<u32> = (0..input.n as u32).collect();
    input.similarity(
        &View {
            maps: vec![&identity[..]; input.mats.len()],
            weights: Weights::Ones,
        },
        true,
    )
}

/// Bootstrap over images of the `L x L` comparison of `mats` (all
/// `n x n`, same keys) by `method`.
///
/// Resamples run in parallel, one per worker; each resample's own
/// arithmetic stays on its thread. For `cka_rbf` and `mutual_knn` one more
/// `n x n` array per matrix is computed first (the kernel, the neighbour
/// order), so resamples cost `O(m²)` reads (`O(m k)` for `mutual_knn`)
/// per matrix for `m` distinct images drawn; `procrustes` costs an
/// eigendecomposition per matrix and resample.
///
/// Errors: those of [`crate::compare::similarity_matrix_of`]; resamples or
/// level out of range ([`KernelError::BadArgument`]); no resample with a
/// defined value ([`KernelError::NoValidResample`]); the values of all
/// resamples would not fit in memory ([`KernelError::TooLarge`]).
pub fn bootstrap(
    mats: &[&[f32]],
    kinds: &[Option<CorrMethod>],
    n: usize,
    method: CompareMethod,
    opts: BootstrapOptions,
) -> Result<Bootstrap> {
    let what = "bootstrap";
    check_count(what, "resamples", opts.resamples as i64)?;
    check_level(what, opts.level)?;
    let mut input = Input::new(mats, kinds, n, method)?;
    let l = mats.len();
    let estimate = plain(&input)?;
    let pairs = l * (l - 1) / 2;
    let rows = resampled_pairs(&mut input, opts)?;
    let mut low = vec![1f64; l * l];
    let mut high = vec![1f64; l * l];
    let mut se = vec![0f64; l * l];
    let mut values = Vec::with_capacity(opts.resamples);
    let mut p = 0;
    for i in 0..l {
        for j in 0..i {
            values.clear();
            values.extend(rows.chunks_exact(pairs).map(|r| r[p]));
            let (lo, hi, sd) = summarise(&mut values, opts.level, opts.resamples, what)?;
            for (a, b) in [(i, j), (j, i)] {
                low[a * l + b] = lo;
                high[a * l + b] = hi;
                se[a * l + b] = sd;
            }
            p += 1;
        }
    }
    Ok(Bootstrap {
        estimate,
        ci_low: SquareMatrix::from_vec(l, low)?,
        ci_high: SquareMatrix::from_vec(l, high)?,
        se: SquareMatrix::from_vec(l, se)?,
    })
}

/// A paired bootstrap of a difference: its value on all images, the
/// percentile interval and the standard deviation over resamples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// `s(reference, a) − s(reference, b)` on all images.
    pub estimate: f64,
    /// Lower percentile bound.
    pub ci_low: f64,
    /// Upper percentile bound.
    pub ci_high: f64,
    /// Standard deviation of the resampled differences.
    pub se: f64,
}

/// Paired bootstrap of `s(reference, a) − s(reference, b)` for `mats =
/// [reference, a, b]` (all `n x n`, same keys): every resample draws one
/// set of images for all three matrices, so what the two similarities
/// share (the images, the reference) cancels in the difference. An interval
/// that excludes 0 says `a` and `b` differ in their similarity to the
/// reference beyond the variation over images.
///
/// Errors: those of [`bootstrap`].
pub fn bootstrap_difference(
    mats: [&[f32]; 3],
    kinds: [Option<CorrMethod>; 3],
    n: usize,
    method: CompareMethod,
    opts: BootstrapOptions,
) -> Result<Difference> {
    let what = "bootstrap";
    check_count(what, "resamples", opts.resamples as i64)?;
    check_level(what, opts.level)?;
    let mut input = Input::new(&mats, &kinds, n, method)?;
    let s = plain(&input)?;
    let estimate = s.get(1, 0) - s.get(2, 0);
    let rows = resampled_pairs(&mut input, opts)?;
    // Pairs in order (1,0), (2,0), (2,1).
    let mut values: Vec<f64> = rows.chunks_exact(3).map(|r| r[0] - r[1]).collect();
    let (ci_low, ci_high, se) = summarise(&mut values, opts.level, opts.resamples, what)?;
    Ok(Difference {
        estimate,
        ci_low,
        ci_high,
        se,
    })
}

/// Permutation test of the comparison of `a` and `b` (`n x n`, same keys)
/// by `method`: the images of `b` are relabelled `permutations` times.
///
/// Errors: those of [`crate::compare::similarity_matrix_of`];
/// permutations out of range ([`KernelError::BadArgument`]).
pub fn permutation_test(
    a: &[f32],
    b: &[f32],
    kinds: [Option<CorrMethod>; 2],
    n: usize,
    method: CompareMethod,
    permutations: usize,
    seed: u64,
) -> Result<Permutation> {
    check_count("permutation", "permutations", permutations as i64)?;
    let mats = [a, b];
    let mut input = Input::new(&mats, &kinds, n, method)?;
    let estimate = plain(&input)?.get(0, 1);
    input.precompute()?;
    // Compared against the observed value computed the way the permuted
    // ones are (cka_rbf: from the same stored kernel).
    let observed = if method == CompareMethod::CkaRbf {
        plain(&input)?.get(0, 1)
    } else {
        estimate
    };
    let identity: Vec<u32> = (0..n as u32).collect();
    let input = &input;
    let at_least = (0..permutations)
        .into_par_iter()
        .map(|r| {
            let p = permutation(n, seed, r);
            let v = input
                .similarity(
                    &View {
                        maps: vec![&identity[..], &p[..]],
                        weights: Weights::Ones,
                    },
                    false,
                )?
                .get(0, 1);
            Ok(usize::from(v >= observed))
        })
        .try_reduce(|| 0, |x, y| Ok(x + y))?;
    Ok(Permutation {
        estimate,
        p_value: (1 + at_least) as f64 / (1 + permutations) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_uniform() {
        let (a, wa) = draw(50, 7, 3);
        let (b, wb) = draw(50, 7, 3);
        assert_eq!((a.clone(), wa.clone()), (b, wb));
        assert_eq!(wa.iter().sum::<f64>(), 50.0);
        let (c, _) = draw(50, 7, 4);
        assert_ne!(a, c);
        let mut hist = [0usize; 5];
        let mut rng = SplitMix::new(1, 0);
        for _ in 0..50_000 {
            hist[rng.below(5) as usize] += 1;
        }
        assert!(
            hist.iter().all(|&h| (9_500..10_500).contains(&h)),
            "{hist:?}"
        );
        let mut p = permutation(20, 3, 9);
        p.sort_unstable();
        assert_eq!(p, (0..20).collect::<Vec<u32>>());
    }

    #[test]
    fn quantiles_match_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!((quantile(&v, 0.025) - 1.075).abs() < 1e-12);
        assert!((quantile(&v, 0.5) - 2.5).abs() < 1e-12);
    }

    /// Distance matrices of two feature sets sharing `mix` of a base.
    fn pair(n: usize, mix: f64, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut st = seed;
        let mut rnd = || {
            let mut s = SplitMix(st);
            st = s.next();
            (st >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let d = 6;
        let base: Vec<f64> = (0..n * d).map(|_| rnd()).collect();
        let mut mk = || -> Vec<f32> {
            let x: Vec<f64> = base.iter().map(|b| mix * b + (1.0 - mix) * rnd()).collect();
            let mut m = vec![0f32; n * n];
            for i in 0..n {
                for j in 0..n {
                    let s: f64 = (0..d).map(|k| (x[i * d + k] - x[j * d + k]).powi(2)).sum();
                    m[i * n + j] = s.sqrt() as f32;
                }
            }
            m
        };
        (mk(), mk())
    }

    #[test]
    fn bootstrap_is_deterministic_and_covers_the_estimate() {
        let n = 40;
        let (a, b) = pair(n, 0.6, 1);
        let opts = BootstrapOptions {
            resamples: 200,
            ..Default::default()
        };
        // -d² double-centres to twice the Gram matrix: valid procrustes input.
        let neg_sq = |m: &[f32]| m.iter().map(|d| -d * d).collect::<Vec<f32>>();
        let (ga, gb) = (neg_sq(&a), neg_sq(&b));
        for method in CompareMethod::ALL {
            let (a, b) = if method == CompareMethod::Procrustes {
                (&ga, &gb)
            } else {
                (&a, &b)
            };
            let kinds = [Some(CorrMethod::Euclidean); 2];
            let kinds = if method.accepts(CorrMethod::Euclidean).is_ok() {
                kinds
            } else {
                [None, None]
            };
            let run = |threads| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| bootstrap(&[a, b], &kinds, n, method, opts).unwrap())
            };
            let one = run(1);
            assert_eq!(one, run(2), "{method}");
            let (e, lo, hi) = (
                one.estimate.get(0, 1),
                one.ci_low.get(0, 1),
                one.ci_high.get(0, 1),
            );
            assert!(lo < hi && one.se.get(0, 1) > 0.0, "{method}: {lo} {hi}");
            assert!(
                lo <= e + 0.05 && e - 0.05 <= hi,
                "{method}: {e} not near [{lo}, {hi}]"
            );
            let other = bootstrap(
                &[a, b],
                &kinds,
                n,
                method,
                BootstrapOptions { seed: 9, ..opts },
            )
            .unwrap();
            assert_ne!(other.ci_low, one.ci_low, "{method}");
        }
    }

    #[test]
    fn permutation_p_values() {
        let n = 60;
        let (a, b) = pair(n, 0.7, 2);
        let kinds = [Some(CorrMethod::Euclidean); 2];
        let related = permutation_test(&a, &b, kinds, n, CompareMethod::Pearson, 199, 1).unwrap();
        assert!((related.p_value - 0.005).abs() < 1e-12, "{related:?}");
        let (_, c) = pair(n, 0.0, 3);
        let null = permutation_test(&a, &c, kinds, n, CompareMethod::Pearson, 199, 1).unwrap();
        assert!(null.p_value > 0.01, "{null:?}");
        let again = permutation_test(&a, &c, kinds, n, CompareMethod::Pearson, 199, 1).unwrap();
        assert_eq!(null, again);
    }

    #[test]
    fn argument_errors() {
        assert!(matches!(
            check_count("bootstrap", "resamples", 0),
            Err(KernelError::BadArgument { .. })
        ));
        assert!(check_count("bootstrap", "resamples", 100_001).is_err());
        assert!(check_count("bootstrap", "resamples", -3).is_err());
        assert_eq!(check_count("bootstrap", "resamples", 5).unwrap(), 5);
        for bad in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            let e = check_level("bootstrap", bad).unwrap_err().to_string();
            assert!(e.contains("level"), "{e}");
        }
        assert!(check_level("bootstrap", 0.9).is_ok());
    }

    /// Timing of 21 x 21 bootstraps at N = 500 on one thread, per method
    /// (`cargo test --release -p layercorr-kernels resample_timing -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn resample_timing() {
        let n = 500;
        let mats: Vec<Vec<f32>> = (0..21)
            .map(|k| pair(n, 0.9f64.powi(k), 10 + k as u64).0)
            .collect();
        let views: Vec<&[f32]> = mats.iter().map(|m| &m[..]).collect();
        let kinds = vec![Some(CorrMethod::Euclidean); 21];
        let opts = BootstrapOptions {
            resamples: 40,
            ..Default::default()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for method in [
            CompareMethod::Pearson,
            CompareMethod::Spearman,
            CompareMethod::Cka,
            CompareMethod::CkaDebiased,
            CompareMethod::CkaRbf,
            CompareMethod::MutualKnn,
        ] {
            let kinds = if method.accepts(CorrMethod::Euclidean).is_ok() {
                kinds.clone()
            } else {
                vec![None; 21]
            };
            let t = std::time::Instant::now();
            pool.install(|| bootstrap(&views, &kinds, n, method, opts).unwrap());
            let per = t.elapsed().as_secs_f64() / 40.0;
            eprintln!("{method}: {:.1} ms per resample on one thread", per * 1e3);
        }
    }
}
