//! Benchmarks of each kernel at the sizes the design document measures
//! peers at: first-order matrices (pearson, spearman) through the
//! accumulator `layer_corr` uses, given every row at once and given
//! borrowed rows as from a DuckDB chunk; the second-order L x L matrix; and
//! the clustering order.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use layercorr_kernels::cluster::leaf_order;
use layercorr_kernels::compare::similarity_matrix;
use layercorr_kernels::corr::correlation_matrix;
use layercorr_kernels::{
    BlockBuffers, CompareMethod, CorrAccumulator, CorrMethod, RowMatrix, SpillPolicy,
};
use rand::{Rng, SeedableRng};

/// ReLU-like activations: about half exact zeros.
fn activations(n: usize, d: usize, seed: u64) -> RowMatrix {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data: Vec<f32> = (0..n * d)
        .map(|_| rng.gen_range(-1.0f32..1.0).max(0.0))
        .collect();
    RowMatrix::from_vec(data, n, d).expect("shape")
}

fn first_order(c: &mut Criterion) {
    let mut group = c.benchmark_group("correlation_matrix");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(1));
    let d = 50_176;
    for (n, method) in [
        (500, CorrMethod::Pearson),
        (2000, CorrMethod::Pearson),
        (500, CorrMethod::Spearman),
    ] {
        let rows = activations(n, d, n as u64);
        group.bench_function(format!("{method}/n={n}/d={d}"), |b| {
            // The kernel consumes its rows; cloning them is not timed.
            b.iter_batched(
                || rows.clone(),
                |r| correlation_matrix(r, method).expect("valid input"),
                BatchSize::PerIteration,
            )
        });
    }
    // Borrowed rows pushed in blocks of one DuckDB chunk's worth, copied
    // into the row store as the aggregate does.
    let (n, method) = (500, CorrMethod::Pearson);
    let rows = activations(n, d, n as u64);
    group.bench_function(format!("{method}/pushed/n={n}/d={d}"), |b| {
        b.iter(|| {
            let mut acc = CorrAccumulator::new(d, method);
            let batch: Vec<&[f32]> = (0..n).map(|i| rows.row(i)).collect();
            acc.push_rows(
                &batch,
                &SpillPolicy::in_temp_dir(None),
                &mut BlockBuffers::default(),
            )
            .expect("valid input");
            acc.finish(&(0..n).collect::<Vec<_>>())
                .expect("valid input")
        })
    });
    group.finish();
}

/// `count` correlation matrices of `n` keys, related to each other.
fn layer_matrices(n: usize, count: usize) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let base: Vec<f32> = (0..n * n).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    (0..count)
        .map(|k| {
            let w = k as f32 / count as f32;
            let mut m: Vec<f32> = base
                .iter()
                .map(|&x| (1.0 - w) * x + w * rng.gen_range(-1.0f32..1.0))
                .collect();
            for i in 0..n {
                for j in 0..i {
                    m[i * n + j] = m[j * n + i];
                }
                m[i * n + i] = 1.0;
            }
            m
        })
        .collect()
}

fn second_order(c: &mut Criterion) {
    let mut group = c.benchmark_group("similarity_matrix");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let (n, l) = (1000, 20);
    let mats = layer_matrices(n, l);
    let refs: Vec<&[f32]> = mats.iter().map(|m| &m[..]).collect();
    for method in CompareMethod::ALL {
        group.bench_function(format!("{method}/n={n}/L={l}"), |b| {
            b.iter(|| similarity_matrix(&refs, n, method).expect("valid input"))
        });
    }
    group.finish();
}

fn clustering(c: &mut Criterion) {
    let mut group = c.benchmark_group("leaf_order");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let n = 1000;
    let rows = activations(n, 2000, 9);
    let r = correlation_matrix(rows, CorrMethod::Pearson).expect("valid input");
    group.bench_function(format!("n={n}"), |b| {
        b.iter(|| leaf_order(r.as_slice(), n).expect("valid input"))
    });
    group.finish();
}

criterion_group!(benches, first_order, second_order, clustering);
criterion_main!(benches);
