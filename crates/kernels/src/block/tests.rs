//! Blocks against the whole matrix of the accumulator (`layer_corr`'s
//! kernel) and against a float64 reference of the definitions.

use super::*;
use crate::corr::correlation_matrix;
use crate::rows::RowMatrix;

/// ReLU-like rows with a per-row scale (a small generator, no extra crates).
fn activations(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(7);
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut v = Vec::with_capacity(n * d);
    for _ in 0..n {
        let scale = 0.5 + 2.5 * next();
        for _ in 0..d {
            let x = next() * 3.0 - 1.0;
            v.push(if x > 0.0 { (x * scale) as f32 } else { 0.0 });
        }
    }
    v
}

fn column_means_f64(x: &[f32], n: usize, d: usize) -> Vec<f64> {
    (0..d)
        .map(|k| (0..n).map(|i| x[i * d + k] as f64).sum::<f64>() / n as f64)
        .collect()
}

#[test]
fn every_block_equals_the_whole_matrix() {
    let (n, d) = (23, 150);
    let x = activations(n, d, 3);
    let center = column_means_f64(&x, n, d);
    // Row set I = 0..9, column set J = 6..23 (overlapping: 6..9 on both).
    let row_idx: Vec<usize> = (0..9).collect();
    let col_idx: Vec<usize> = (6..n).collect();
    for method in CorrMethod::ALL {
        let whole =
            correlation_matrix(RowMatrix::from_vec(x.clone(), n, d).unwrap(), method).unwrap();
        let got = block_matrix(&x, d, &row_idx, &col_idx, method, Some(&center)).unwrap();
        let scale = match method {
            CorrMethod::Gram | CorrMethod::Euclidean => whole
                .as_slice()
                .iter()
                .fold(0f64, |m, v| m.max(v.abs() as f64)),
            _ => 1.0,
        };
        for (a, &i) in row_idx.iter().enumerate() {
            for (b, &j) in col_idx.iter().enumerate() {
                let (g, w) = (got[a * col_idx.len() + b] as f64, whole.get(i, j) as f64);
                assert!(
                    (g - w).abs() <= 2e-6 * scale,
                    "{method} ({i}, {j}): block {g} whole {w}"
                );
                if i == j && method != CorrMethod::Gram {
                    assert_eq!(g, w, "{method} diagonal");
                }
            }
        }
    }
}

#[test]
fn gram_without_centre_on_all_rows_is_layer_corr() {
    let (n, d) = (9, 40);
    let x = activations(n, d, 5);
    let all: Vec<usize> = (0..n).collect();
    let whole = correlation_matrix(
        RowMatrix::from_vec(x.clone(), n, d).unwrap(),
        CorrMethod::Gram,
    )
    .unwrap();
    let got = block_matrix(&x, d, &all, &all, CorrMethod::Gram, None).unwrap();
    let scale = whole.as_slice().iter().fold(0f32, |m, v| m.max(v.abs()));
    for (g, w) in got.iter().zip(whole.as_slice()) {
        assert!((g - w).abs() <= 2e-6 * scale, "{g} {w}");
    }
}

#[test]
fn bad_rows_are_named() {
    let d = 4;
    let mut x = activations(3, d, 9);
    x[d..2 * d].iter_mut().for_each(|v| *v = 2.5);
    let err = block_matrix(&x, d, &[0], &[1, 2], CorrMethod::Pearson, None).unwrap_err();
    assert_eq!(err.row(), Some(1), "{err}");
    x[2 * d + 1] = f32::NAN;
    let err = block_matrix(&x, d, &[0], &[1, 2], CorrMethod::Cosine, None).unwrap_err();
    assert!(
        matches!(err, KernelError::NonFinite { row: 2, col: 1, .. }),
        "{err}"
    );
    assert!(block_matrix(&x, d, &[0], &[5], CorrMethod::Cosine, None).is_err());
    let err = block_matrix(
        &x[..2 * d],
        d,
        &[0],
        &[1],
        CorrMethod::Gram,
        Some(&[0.0; 3]),
    )
    .unwrap_err();
    assert!(matches!(err, KernelError::BadShape { .. }), "{err}");
    for method in CorrMethod::ALL {
        assert!(block_bytes(method, usize::MAX, 1, usize::MAX, 2) == u64::MAX);
    }
}

#[test]
fn correlation_blocks_are_layer_corr_entries_exactly() {
    // Wide rows with a large mean, where f32 products round: the block of
    // a subset of inputs has the whole matrix's entries, bit for bit.
    let (n, d) = (14, 20_000);
    let x: Vec<f32> = activations(n, d, 11).iter().map(|v| v + 2.0).collect();
    let (rows, cols): (Vec<usize>, Vec<usize>) = ((1..5).collect(), (9..13).collect());
    let union: Vec<usize> = rows.iter().chain(&cols).copied().collect();
    let sub: Vec<f32> = union
        .iter()
        .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
        .collect();
    let (ri, ci): (Vec<usize>, Vec<usize>) = ((0..4).collect(), (4..8).collect());
    for method in [
        CorrMethod::Pearson,
        CorrMethod::Spearman,
        CorrMethod::Cosine,
    ] {
        let whole =
            correlation_matrix(RowMatrix::from_vec(x.clone(), n, d).unwrap(), method).unwrap();
        let got = block_matrix(&sub, d, &ri, &ci, method, None).unwrap();
        for (a, &i) in rows.iter().enumerate() {
            for (b, &j) in cols.iter().enumerate() {
                assert_eq!(got[a * 4 + b], whole.get(i, j), "{method} ({i}, {j})");
            }
        }
    }
}
