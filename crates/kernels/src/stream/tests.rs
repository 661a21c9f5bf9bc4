//! Tests of the streaming Gram: blocks of any size, held back, merged,
//! reordered, and rows of extreme magnitude.

use super::*;
use crate::rank::rank_row_into;
use rand::{Rng, SeedableRng};

fn policy(limit: Option<usize>) -> SpillPolicy {
    SpillPolicy::in_temp_dir(limit)
}

/// Activation-like rows: a shared pattern, noise, a large offset on
/// some rows (to test the shift), ReLU zeros.
fn rows(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pattern: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    (0..n)
        .map(|i| {
            let offset = if i % 3 == 0 { 500.0 } else { 0.0 };
            pattern
                .iter()
                .map(|&s| {
                    let v: f32 = 0.6 * s + 0.8 * rng.gen_range(-1.0f32..1.0);
                    offset + v.max(-0.2)
                })
                .collect()
        })
        .collect()
}

/// Every row's average ranks.
fn ranks(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|r| {
            let mut out = vec![0f32; r.len()];
            rank_row_into(r, &mut out).unwrap();
            out
        })
        .collect()
}

fn pearson64(a: &[f32], b: &[f32]) -> f64 {
    let d = a.len() as f64;
    let ma = a.iter().map(|&x| x as f64).sum::<f64>() / d;
    let mb = b.iter().map(|&x| x as f64).sum::<f64>() / d;
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

fn cosine64(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum();
    dot / (na * nb).sqrt()
}

fn check(m: &SquareMatrix<f32>, data: &[Vec<f32>], order: &[usize], f: fn(&[f32], &[f32]) -> f64) {
    let n = data.len();
    assert_eq!(m.n(), n);
    for a in 0..n {
        for b in 0..n {
            let want = if a == b {
                1.0
            } else {
                f(&data[order[a]], &data[order[b]])
            };
            let got = m.get(a, b) as f64;
            assert!((got - want).abs() < 1e-5, "({a},{b}): {got} vs {want}");
        }
    }
}

/// A `method` accumulator fed `data` in blocks of `sizes` (repeated),
/// rows past `limit` bytes spilled.
fn streamed(
    method: CorrMethod,
    data: &[Vec<f32>],
    sizes: &[usize],
    limit: Option<usize>,
) -> StreamingGram {
    let mut g = StreamingGram::new(data[0].len(), method);
    let mut at = 0;
    for &s in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + s).min(data.len());
        let batch: Vec<&[f32]> = data[at..end].iter().map(Vec::as_slice).collect();
        g.push_rows(&batch, &policy(limit), &mut BlockBuffers::default())
            .unwrap();
        at = end;
    }
    g
}

#[test]
fn blocks_of_any_size_give_pearson_of_the_whole() {
    let d = 5000; // more than one column chunk at the smallest width
    let data = rows(300, d, 1);
    let ident: Vec<usize> = (0..data.len()).collect();
    for sizes in [vec![300], vec![1], vec![7, 130, 2], vec![150, 20, 200]] {
        for limit in [None, Some(1 << 20)] {
            let g = streamed(CorrMethod::Pearson, &data, &sizes, limit);
            assert_eq!(g.is_spilled(), limit.is_some());
            check(&g.finish(&ident).unwrap(), &data, &ident, pearson64);
        }
    }
}

#[test]
fn rows_held_back_settle_and_later_blocks_use_them() {
    // A few rows per chunk (nn_activations feeding layer_corr): they
    // settle at MIN_SETTLE_ROWS, then at half the rows before them; a
    // block straight from the host after a settle reads the settled
    // rows back.
    let d = 1000;
    let data = rows(700, d, 11);
    let ident: Vec<usize> = (0..data.len()).collect();
    for sizes in [vec![8], vec![300, 8, 400]] {
        for limit in [None, Some(1 << 20)] {
            let g = streamed(CorrMethod::Pearson, &data, &sizes, limit);
            check(&g.finish(&ident).unwrap(), &data, &ident, pearson64);
        }
    }
}

#[test]
fn merged_partial_groups_give_the_whole_in_the_right_order() {
    let d = 700;
    let data = rows(260, d, 2);
    for (limit_a, limit_b) in [
        (None, None),
        (None, Some(1)),
        (Some(1), None),
        (Some(1), Some(1)),
    ] {
        let mut a = streamed(CorrMethod::Pearson, &data[..100], &[40, 60], limit_a);
        let b = streamed(CorrMethod::Pearson, &data[100..], &[5, 155], limit_b);
        let keeps = a.merge(b, &policy(None)).unwrap();
        let arrival: Vec<Vec<f32>> = if keeps {
            data.clone()
        } else {
            data[100..].iter().chain(&data[..100]).cloned().collect()
        };
        let ident: Vec<usize> = (0..arrival.len()).collect();
        check(&a.finish(&ident).unwrap(), &arrival, &ident, pearson64);
    }
}

#[test]
fn order_permutes_rows_and_columns() {
    let d = 300;
    let data = rows(40, d, 3);
    let mut order: Vec<usize> = (0..40).collect();
    order.reverse();
    order.swap(3, 17);
    let g = streamed(CorrMethod::Pearson, &data, &[40], None);
    check(&g.finish(&order).unwrap(), &data, &order, pearson64);
}

#[test]
fn cosine_and_spearman_match_their_definitions() {
    let d = 400;
    let data = rows(30, d, 4);
    let ident: Vec<usize> = (0..30).collect();
    let g = streamed(CorrMethod::Cosine, &data, &[11], None);
    check(&g.finish(&ident).unwrap(), &data, &ident, cosine64);

    // Spearman is pearson of the average ranks, whichever way the rows
    // come: multiplied at once, held back, or spilled.
    let ranked = ranks(&data);
    for (sizes, limit) in [(vec![30], None), (vec![7], None), (vec![11], Some(1))] {
        let g = streamed(CorrMethod::Spearman, &data, &sizes, limit);
        check(&g.finish(&ident).unwrap(), &ranked, &ident, pearson64);
    }
}

#[test]
fn bad_rows_are_errors_naming_their_arrival_row() {
    let d = 50;
    // 300 rows: one block past MIN_DIRECT_ROWS, multiplied on arrival.
    let mut data = rows(300, d, 5);
    data[150] = vec![2.5; d];
    let ident: Vec<usize> = (0..300).collect();
    let g = streamed(CorrMethod::Pearson, &data, &[130, 170], None);
    let e = g.finish(&ident).unwrap_err();
    assert!(
        matches!(e, KernelError::ConstantRow { row: 150, .. }),
        "{e}"
    );

    data[150][7] = f32::NAN;
    let mut g = StreamingGram::new(d, CorrMethod::Pearson);
    let batch: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
    let e = g
        .push_rows(&batch, &policy(None), &mut BlockBuffers::default())
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::NonFinite {
                row: 150,
                col: 7,
                ..
            }
        ),
        "{e}"
    );

    let mut g = StreamingGram::new(d, CorrMethod::Pearson);
    let short = [1.0f32; 3];
    let e = g
        .push_rows(
            &[&data[0], &short],
            &policy(None),
            &mut BlockBuffers::default(),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::RowLength {
                row: 1,
                expected: 50,
                got: 3
            }
        ),
        "{e}"
    );
}

#[test]
fn tiny_and_huge_rows_stream_like_the_rows_themselves() {
    let d = 600;
    let data = rows(300, d, 9);
    let ident: Vec<usize> = (0..data.len()).collect();
    for method in [
        CorrMethod::Pearson,
        CorrMethod::Cosine,
        CorrMethod::Spearman,
    ] {
        let want = streamed(method, &data, &[300], None)
            .finish(&ident)
            .unwrap();
        for scale in [1e-38f32, 1e30] {
            // Every third row scaled: mixed magnitudes in one block;
            // blocks direct, held back and settled.
            let scaled: Vec<Vec<f32>> = data
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let s = if i % 3 == 0 { 1.0 } else { scale };
                    r.iter().map(|v| v * s).collect()
                })
                .collect();
            for sizes in [vec![300], vec![7, 130, 2]] {
                let got = streamed(method, &scaled, &sizes, None)
                    .finish(&ident)
                    .unwrap_or_else(|e| panic!("{method} {scale}: {e}"));
                if method == CorrMethod::Spearman && scale < 1.0 {
                    // Near 1e-38 float32 keeps few digits, so distinct
                    // values can tie and the ranks themselves change:
                    // compare with the definition on these ranks.
                    check(&got, &ranks(&scaled), &ident, pearson64);
                    continue;
                }
                let err = want
                    .as_slice()
                    .iter()
                    .zip(got.as_slice())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(err <= 1e-5, "{method} {scale} {sizes:?}: {err:e}");
            }
        }
    }
}
