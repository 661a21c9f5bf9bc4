//! Every method against a float64 reference, through the accumulator.

use super::*;
use crate::rank::reference_ranks;
use crate::stream::BlockBuffers;
use rand::{Rng, SeedableRng};

/// [`correlation_matrix`] with the column chunk width `chunk`.
fn with_chunk(
    rows: RowMatrix,
    method: CorrMethod,
    chunk: Option<usize>,
) -> Result<SquareMatrix<f32>> {
    let (n, d) = (rows.n(), rows.d());
    check_shape(n, d, method)?;
    let mut acc = CorrAccumulator::new(d, method).with_chunk(chunk);
    acc.push_matrix(rows, &policy(None), &mut BlockBuffers::default())?;
    acc.finish(&(0..n).collect::<Vec<_>>())
}

fn policy(limit: Option<usize>) -> SpillPolicy {
    SpillPolicy::in_temp_dir(limit)
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// ReLU-like activations: many exact zeros, some spread, a per-row scale.
fn activations(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    let mut v = Vec::with_capacity(n * d);
    for _ in 0..n {
        let scale = r.gen_range(0.5f32..3.0);
        for _ in 0..d {
            let x: f32 = r.gen_range(-1.0f32..2.0);
            v.push(if x > 0.0 { x * scale } else { 0.0 });
        }
    }
    v
}

fn row(x: &[f32], d: usize, i: usize) -> Vec<f64> {
    x[i * d..(i + 1) * d].iter().map(|&v| v as f64).collect()
}

fn naive_pearson(a: &[f64], b: &[f64]) -> f64 {
    let d = a.len() as f64;
    let ma = a.iter().sum::<f64>() / d;
    let mb = b.iter().sum::<f64>() / d;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Float64 reference for every method.
fn naive(x: &[f32], n: usize, d: usize, method: CorrMethod) -> Vec<f64> {
    let rows: Vec<Vec<f64>> = (0..n).map(|i| row(x, d, i)).collect();
    let colmean: Vec<f64> = (0..d)
        .map(|k| rows.iter().map(|r| r[k]).sum::<f64>() / n as f64)
        .collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let (a, b) = (&rows[i], &rows[j]);
            out[i * n + j] = match method {
                CorrMethod::Pearson => naive_pearson(a, b),
                CorrMethod::Spearman => {
                    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
                    naive_pearson(&reference_ranks(&to32(a)), &reference_ranks(&to32(b)))
                }
                CorrMethod::Cosine => {
                    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
                    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
                    dot / (na * nb)
                }
                CorrMethod::Euclidean => a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f64>()
                    .sqrt(),
                CorrMethod::Gram => (0..d)
                    .map(|k| (a[k] - colmean[k]) * (b[k] - colmean[k]))
                    .sum(),
            };
        }
    }
    out
}

/// Max error, absolute for bounded methods and relative to the largest
/// entry for euclidean and gram.
fn max_err(got: &SquareMatrix<f32>, want: &[f64], method: CorrMethod) -> f64 {
    let scale = match method {
        CorrMethod::Euclidean | CorrMethod::Gram => {
            want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30)
        }
        _ => 1.0,
    };
    got.as_slice()
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / scale)
        .fold(0.0, f64::max)
}

fn check(x: &[f32], n: usize, d: usize, method: CorrMethod, chunk: Option<usize>, tol: f64) {
    let m = RowMatrix::from_vec(x.to_vec(), n, d).unwrap();
    let got = with_chunk(m, method, chunk).unwrap();
    assert_eq!(got.n(), n);
    let want = naive(x, n, d, method);
    let err = max_err(&got, &want, method);
    assert!(
        err <= tol,
        "{method} n={n} d={d} chunk={chunk:?}: max error {err:e}"
    );
    for i in 0..n {
        for j in 0..n {
            assert_eq!(got.get(i, j), got.get(j, i), "{method} not symmetric");
        }
        match method {
            CorrMethod::Pearson | CorrMethod::Spearman | CorrMethod::Cosine => {
                assert_eq!(got.get(i, i), 1.0)
            }
            CorrMethod::Euclidean => assert_eq!(got.get(i, i), 0.0),
            CorrMethod::Gram => {}
        }
    }
}

#[test]
fn every_method_matches_float64_reference() {
    // d not a multiple of the chunk, d smaller than n, one chunk, many.
    let shapes = [
        (2, 1, None),
        (3, 2, None),
        (7, 129, Some(32)),
        (25, 10, None),
        (16, 300, Some(64)),
        (33, 1000, Some(96)),
        (12, 5000, None),
    ];
    for method in CorrMethod::ALL {
        for &(n, d, chunk) in &shapes {
            if d == 1 && matches!(method, CorrMethod::Pearson | CorrMethod::Spearman) {
                continue; // a single value has no variance
            }
            let mut x = activations(n, d, (n * 1000 + d) as u64);
            if d < 3 {
                // Tiny rows: avoid constant (all-zero) rows.
                let mut r = rng(n as u64);
                x.iter_mut().for_each(|v| *v = r.gen_range(-1.0..1.0));
            }
            check(&x, n, d, method, chunk, 2e-6);
        }
    }
}

#[test]
fn large_mean_rows_stay_accurate() {
    // Values 1000 + N(0, 1)-like noise, and rows sharing a common signal
    // so that correlations span a range; several chunks.
    let (n, d) = (24, 3000);
    let mut r = rng(11);
    let common: Vec<f32> = (0..d).map(|_| r.gen_range(-1.0f32..1.0)).collect();
    let mut x = Vec::with_capacity(n * d);
    for i in 0..n {
        let w = i as f32 / n as f32;
        let offset = if i % 3 == 0 {
            1000.0
        } else {
            -250.0 + i as f32
        };
        for c in &common {
            x.push(offset + w * c + (1.0 - w) * r.gen_range(-1.0f32..1.0));
        }
    }
    for method in [CorrMethod::Pearson, CorrMethod::Spearman] {
        check(&x, n, d, method, Some(512), 1e-5);
        check(&x, n, d, method, None, 1e-5);
    }
    for method in [CorrMethod::Cosine, CorrMethod::Euclidean, CorrMethod::Gram] {
        check(&x, n, d, method, Some(512), 1e-5);
    }
}

#[test]
fn spearman_ties_match_average_rank_definition() {
    // Heavy ties: small integers, many zeros.
    let (n, d) = (9, 257);
    let mut r = rng(5);
    let x: Vec<f32> = (0..n * d)
        .map(|_| (r.gen_range(-3i32..5)).max(0) as f32)
        .collect();
    check(&x, n, d, CorrMethod::Spearman, Some(64), 1e-6);
    // A hand-checked pair: rankdata([1,2,2,3]) = [1,2.5,2.5,4],
    // rankdata([4,3,3,3]) = [4,2,2,2]; pearson of those = -0.8164966.
    let x = vec![1.0, 2.0, 2.0, 3.0, 4.0, 3.0, 3.0, 3.0];
    let m =
        correlation_matrix(RowMatrix::from_vec(x, 2, 4).unwrap(), CorrMethod::Spearman).unwrap();
    assert!((m.get(0, 1) as f64 + (2.0f64 / 3.0).sqrt()).abs() < 1e-6);
}

#[test]
fn constant_row_errors_name_the_row() {
    let (n, d) = (6, 50);
    let mut x = activations(n, d, 2);
    for v in &mut x[4 * d..5 * d] {
        *v = 1234.5;
    }
    for v in &mut x[d..2 * d] {
        *v = 1.0 + (*v).abs();
    }
    for method in [CorrMethod::Pearson, CorrMethod::Spearman] {
        let err = with_chunk(
            RowMatrix::from_vec(x.clone(), n, d).unwrap(),
            method,
            Some(16),
        )
        .unwrap_err();
        assert_eq!(
            err,
            KernelError::ConstantRow {
                row: 4,
                method: method.name()
            }
        );
        assert_eq!(err.row(), Some(4));
    }
    // Constant but non-zero is fine for cosine; all-zero is not.
    assert!(correlation_matrix(
        RowMatrix::from_vec(x.clone(), n, d).unwrap(),
        CorrMethod::Cosine
    )
    .is_ok());
    for v in &mut x[2 * d..3 * d] {
        *v = 0.0;
    }
    let err = correlation_matrix(
        RowMatrix::from_vec(x.clone(), n, d).unwrap(),
        CorrMethod::Cosine,
    )
    .unwrap_err();
    assert_eq!(err.row(), Some(2));
    assert!(err.to_string().contains("zero norm"), "{err}");
    // Distances and kernels are defined for constant rows.
    for method in [CorrMethod::Euclidean, CorrMethod::Gram] {
        check(&x, n, d, method, Some(16), 1e-6);
    }
}

#[test]
fn tiny_and_huge_rows_correlate_like_the_rows_themselves() {
    // Activations around 1e-38 underflow float32 products, around 1e30
    // they overflow them; correlations do not depend on the scale.
    let (n, d) = (8, 700);
    let x = activations(n, d, 21);
    for method in [
        CorrMethod::Pearson,
        CorrMethod::Spearman,
        CorrMethod::Cosine,
    ] {
        for chunk in [None, Some(128)] {
            let want =
                with_chunk(RowMatrix::from_vec(x.clone(), n, d).unwrap(), method, chunk).unwrap();
            // Every row scaled, and rows of mixed scales in one group.
            for scales in [[1e-38f32; 2], [1e30; 2], [1e-38, 1e30]] {
                let scaled: Vec<f32> = x
                    .chunks(d)
                    .enumerate()
                    .flat_map(|(i, r)| r.iter().map(move |v| v * scales[i % 2]))
                    .collect();
                let got = with_chunk(RowMatrix::from_vec(scaled, n, d).unwrap(), method, chunk)
                    .unwrap_or_else(|e| panic!("{method} {scales:?}: {e}"));
                let err = want
                    .as_slice()
                    .iter()
                    .zip(got.as_slice())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(err <= 1e-5, "{method} {scales:?} {chunk:?}: {err:e}");
            }
        }
    }
}

#[test]
fn a_varying_row_is_never_called_constant() {
    // Two values one float apart, the smallest subnormals, and a large
    // offset with a one-ulp change: all vary, none is constant.
    let rows: [Vec<f32>; 3] = [
        vec![1.0, 1.0 + f32::EPSILON, 1.0, 1.0],
        vec![0.0, f32::from_bits(1), 0.0, f32::from_bits(2)],
        vec![1e6, 1e6, 1e6, 1e6 + 0.0625],
    ];
    for row in &rows {
        let mut x = activations(2, 4, 3);
        x.extend_from_slice(row);
        for method in [
            CorrMethod::Pearson,
            CorrMethod::Spearman,
            CorrMethod::Cosine,
        ] {
            let m = correlation_matrix(RowMatrix::from_vec(x.clone(), 3, 4).unwrap(), method)
                .unwrap_or_else(|e| panic!("{method} {row:?}: {e}"));
            assert_eq!(m.get(2, 2), 1.0);
            assert!(m.as_slice().iter().all(|v| v.is_finite()));
        }
    }
    // Exactly constant rows still are errors, tiny or not.
    let mut x = activations(2, 4, 3);
    x.extend_from_slice(&[1e-40; 4]);
    let e =
        correlation_matrix(RowMatrix::from_vec(x, 3, 4).unwrap(), CorrMethod::Pearson).unwrap_err();
    assert!(matches!(e, KernelError::ConstantRow { row: 2, .. }), "{e}");
}

#[test]
fn bad_shapes_and_values_are_errors() {
    let one = RowMatrix::from_vec(vec![1.0, 2.0], 1, 2).unwrap();
    assert!(matches!(
        correlation_matrix(one, CorrMethod::Pearson),
        Err(KernelError::TooFewRows { n: 1, min: 2, .. })
    ));
    let empty = RowMatrix::from_vec(vec![], 3, 0).unwrap();
    assert!(matches!(
        correlation_matrix(empty, CorrMethod::Cosine),
        Err(KernelError::NoColumns { .. })
    ));
    let (n, d) = (5, 40);
    let mut x = activations(n, d, 4);
    x[3 * d + 33] = f32::NAN;
    for method in CorrMethod::ALL {
        let err = with_chunk(
            RowMatrix::from_vec(x.clone(), n, d).unwrap(),
            method,
            Some(8),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                KernelError::NonFinite {
                    row: 3,
                    col: 33,
                    ..
                }
            ),
            "{method}: {err:?}"
        );
    }
}

#[test]
fn pushed_rows_spilled_or_not_give_the_matrix_of_the_rows() {
    // The SQL path: rows pushed from the host's memory in blocks (held
    // back, settled, direct), kept in memory or in a spill file, in a
    // given order; against correlation_matrix of the same rows.
    let (n, d) = (300, 37);
    let mut x = activations(n, d, 11);
    // a near duplicate, so euclidean takes its refine path through reads
    let mut near = x[2 * d..3 * d].to_vec();
    near[5] += 1e-3;
    x[7 * d..8 * d].copy_from_slice(&near);
    let mut order: Vec<usize> = (0..n).rev().collect();
    order.swap(0, 150);
    for method in CorrMethod::ALL {
        let want =
            correlation_matrix(RowMatrix::from_vec(x.clone(), n, d).unwrap(), method).unwrap();
        for (sizes, limit) in [(vec![300], None), (vec![5, 140], Some(0)), (vec![1], None)] {
            let mut acc = CorrAccumulator::new(d, method);
            let rows: Vec<&[f32]> = x.chunks(d).collect();
            let mut at = 0;
            for &s in sizes.iter().cycle() {
                if at >= n {
                    break;
                }
                let end = (at + s).min(n);
                acc.push_rows(&rows[at..end], &policy(limit), &mut BlockBuffers::default())
                    .unwrap();
                at = end;
            }
            assert_eq!(acc.is_spilled(), limit.is_some(), "{method}");
            let got = acc.finish(&order).unwrap();
            let err = (0..n * n)
                .map(|k| (got.get(k / n, k % n) - want.get(order[k / n], order[k % n])).abs())
                .fold(0f32, f32::max);
            let scale = want.as_slice().iter().fold(1f32, |m, v| m.max(v.abs()));
            assert!(err <= 1e-5 * scale, "{method} {sizes:?} {limit:?}: {err}");
        }
    }
}

#[test]
fn an_empty_activation_is_an_error_naming_its_row() {
    for method in CorrMethod::ALL {
        let mut acc = CorrAccumulator::new(0, method);
        let empty: &[f32] = &[];
        let e = acc
            .push_rows(&[empty, empty], &policy(None), &mut BlockBuffers::default())
            .unwrap_err();
        assert_eq!(e, KernelError::EmptyRow { row: 0 });
        assert_eq!(e.row(), Some(0));
        assert!(e.to_string().contains("empty activation"), "{e}");
        // After rows of values, an empty one is named by its row.
        let mut acc = CorrAccumulator::new(3, method);
        let full: &[f32] = &[1.0, 2.0, 4.0];
        let e = acc
            .push_rows(
                &[full, full, empty],
                &policy(None),
                &mut BlockBuffers::default(),
            )
            .unwrap_err();
        assert_eq!(e, KernelError::EmptyRow { row: 2 }, "{method}");
    }
}

#[test]
fn errors_name_arrival_rows() {
    let (n, d) = (10, 20);
    let mut x = activations(n, d, 6);
    x[2 * d + 3] = f32::INFINITY;
    let mut order: Vec<usize> = (0..n).collect();
    order.reverse();
    for method in CorrMethod::ALL {
        let mut acc = CorrAccumulator::new(d, method);
        let batch: Vec<&[f32]> = x.chunks(d).collect();
        let e = acc
            .push_rows(&batch, &policy(None), &mut BlockBuffers::default())
            .and_then(|()| acc.finish(&order))
            .unwrap_err();
        assert!(
            matches!(e, KernelError::NonFinite { row: 2, col: 3, .. }),
            "{method}: {e}"
        );
    }
    // A spearman row that cannot be ranked is named the same way.
    let mut acc = CorrAccumulator::new(d, CorrMethod::Spearman);
    let batch: Vec<&[f32]> = x.chunks(d).collect();
    let e = acc
        .push_rows(&batch[..1], &policy(None), &mut BlockBuffers::default())
        .and_then(|()| acc.push_rows(&batch[1..], &policy(None), &mut BlockBuffers::default()))
        .unwrap_err();
    assert!(
        matches!(e, KernelError::NonFinite { row: 2, col: 3, .. }),
        "{e}"
    );
}

#[test]
fn euclidean_of_near_duplicates_is_exact() {
    let (n, d) = (4, 4000);
    let mut x = activations(n, d, 8);
    x.extend_from_within(0..d); // row 4 = row 0
    let mut near = x[d..2 * d].to_vec();
    near[17] += 1e-3; // row 5 = row 1 with one tiny change
    let want = (near[17] as f64 - x[d + 17] as f64).abs();
    x.extend_from_slice(&near);
    let m = correlation_matrix(
        RowMatrix::from_vec(x, n + 2, d).unwrap(),
        CorrMethod::Euclidean,
    )
    .unwrap();
    assert_eq!(m.get(0, 4), 0.0);
    assert!(
        (m.get(1, 5) as f64 - want).abs() < 1e-9,
        "{} vs {want}",
        m.get(1, 5)
    );
}

#[test]
fn chunk_width_does_not_change_result() {
    let (n, d) = (10, 777);
    let x = activations(n, d, 12);
    let a = with_chunk(
        RowMatrix::from_vec(x.clone(), n, d).unwrap(),
        CorrMethod::Pearson,
        Some(100),
    )
    .unwrap();
    let b = correlation_matrix(RowMatrix::from_vec(x, n, d).unwrap(), CorrMethod::Pearson).unwrap();
    for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
        assert!((u - v).abs() < 1e-6);
    }
}

/// Moderately sized check: several default-width chunks, realistic rows.
#[test]
fn moderate_size_pearson_and_spearman() {
    let (n, d) = (64, 40_000);
    let x = activations(n, d, 99);
    for method in [CorrMethod::Pearson, CorrMethod::Spearman] {
        let got =
            correlation_matrix(RowMatrix::from_vec(x.clone(), n, d).unwrap(), method).unwrap();
        // Reference for a subset of rows (the full naive is slow).
        let rows = [0usize, 1, 17, 40, 63];
        let mut err = 0f64;
        for &i in &rows {
            for &j in &rows {
                let (a, b) = (row(&x, d, i), row(&x, d, j));
                let want = match method {
                    CorrMethod::Pearson => naive_pearson(&a, &b),
                    _ => naive_pearson(
                        &reference_ranks(&x[i * d..(i + 1) * d]),
                        &reference_ranks(&x[j * d..(j + 1) * d]),
                    ),
                };
                err = err.max((got.get(i, j) as f64 - want).abs());
            }
        }
        assert!(err < 1e-6, "{method}: {err:e}");
    }
}
