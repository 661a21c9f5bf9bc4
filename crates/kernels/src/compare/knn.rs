//! `mutual_knn`: the mean overlap of each image's k nearest neighbours in
//! two matrices (Huh et al., "The platonic representation hypothesis":
//! `|knn_A(i) ∩ knn_B(i)| / k`, averaged over images).
//!
//! k is [`KNN_K`] (10), or all other images when there are fewer. An image
//! is never its own neighbour. Nearest means largest value in a similarity
//! matrix (pearson, spearman, cosine, gram) and smallest in a distance
//! matrix (euclidean); ties go to the image that comes first. With
//! bootstrap weights neighbours are distinct images other than the image
//! itself (a copy of itself is left out, like the diagonal), and the mean
//! over images counts each image as often as it was drawn.
//!
//! Resampling precomputes each image's other images sorted nearest first
//! ([`orders`], the same ordering: value, then image). A view whose images
//! are in increasing order (every bootstrap draw) then finds an image's k
//! nearest drawn images by walking that list until k drawn ones are met,
//! about `k / 0.63` steps, instead of selecting among all drawn images.
//! Other views (permutations) select directly, ties by view position.

use rayon::prelude::*;

use super::{map_indices, symmetric, Input, View, KNN_K};
use crate::error::{KernelError, Result};
use crate::{try_zeroed, SquareMatrix};

/// Per matrix, each image's other `n − 1` images nearest first (value,
/// then image index), `n (n − 1)` entries.
pub(crate) fn orders(input: &Input) -> Result<Vec<Vec<u32>>> {
    let n = input.n;
    input
        .mats
        .par_iter()
        .zip(input.smallest.par_iter())
        .map(|(mat, &smallest)| {
            let mut out: Vec<u32> = try_zeroed(n * (n - 1), "mutual_knn neighbour order")?;
            out.par_chunks_mut(n - 1).enumerate().for_each(|(i, dst)| {
                let row = &mat[i * n..(i + 1) * n];
                (0..n as u32)
                    .filter(|&j| j as usize != i)
                    .zip(dst.iter_mut())
                    .for_each(|(j, d)| *d = j);
                dst.sort_unstable_by(|&x, &y| {
                    let (vx, vy) = (row[x as usize], row[y as usize]);
                    let by_value = if smallest {
                        vx.total_cmp(&vy)
                    } else {
                        vy.total_cmp(&vx)
                    };
                    by_value.then(x.cmp(&y))
                });
            });
            Ok(out)
        })
        .collect()
}

/// [`neighbours`] of an ascending view from the precomputed order.
fn neighbours_walk(order: &[u32], n: usize, map: &[u32], k: usize) -> Vec<u32> {
    let m = map.len();
    let mut pos = vec![u32::MAX; n];
    map.iter()
        .enumerate()
        .for_each(|(a, &i)| pos[i as usize] = a as u32);
    let mut out = Vec::with_capacity(m * k);
    for &i in map {
        let start = out.len();
        let row = &order[i as usize * (n - 1)..(i as usize + 1) * (n - 1)];
        out.extend(
            row.iter()
                .map(|&j| pos[j as usize])
                .filter(|&p| p != u32::MAX)
                .take(k),
        );
        out[start..].sort_unstable();
    }
    out
}

/// Each view position's k nearest positions, sorted, `k` per row.
fn neighbours(input: &Input, smallest: bool, k_idx: usize, view: &View, k: usize) -> Vec<u32> {
    let (mat, n, map) = (input.mats[k_idx], input.n, view.maps[k_idx]);
    let m = map.len();
    let mut out = Vec::with_capacity(m * k);
    let mut cand: Vec<(f32, u32)> = Vec::with_capacity(m);
    for a in 0..m {
        let row = &mat[map[a] as usize * n..][..n];
        cand.clear();
        cand.extend(
            (0..m)
                .filter(|&b| b != a)
                .map(|b| (row[map[b] as usize], b as u32)),
        );
        let order = |x: &(f32, u32), y: &(f32, u32)| {
            let by_value = if smallest {
                x.0.total_cmp(&y.0)
            } else {
                y.0.total_cmp(&x.0)
            };
            by_value.then(x.1.cmp(&y.1))
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, order);
        }
        let mut nb: Vec<u32> = cand[..k].iter().map(|c| c.1).collect();
        nb.sort_unstable();
        out.extend_from_slice(&nb);
    }
    out
}

fn overlap(x: &[u32], y: &[u32]) -> usize {
    let (mut i, mut j, mut count) = (0, 0, 0);
    while i < x.len() && j < y.len() {
        match x[i].cmp(&y[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                count += 1;
                i += 1;
                j += 1;
            }
        }
    }
    count
}

pub(crate) fn similarity(
    input: &Input,
    smallest: &[bool],
    orders: &[Vec<u32>],
    view: &View,
    par: bool,
) -> Result<SquareMatrix<f64>> {
    let l = input.mats.len();
    let m = view.m();
    if m < 2 {
        // One distinct image: it has no neighbours.
        return Err(KernelError::ConstantMatrix {
            index: 0,
            method: input.method.name(),
        });
    }
    let k = KNN_K.min(input.n - 1).min(m.saturating_sub(1)).max(1);
    let lists = map_indices(l, par, |i| {
        let map = view.maps[i];
        Ok(match orders.get(i) {
            Some(order) if map.windows(2).all(|p| p[0] < p[1]) => {
                neighbours_walk(order, input.n, map, k)
            }
            _ => neighbours(input, smallest[i], i, view, k),
        })
    })?;
    let total = view.weights.total(m);
    let pairs: Vec<(usize, usize)> = (0..l).flat_map(|i| (0..i).map(move |j| (i, j))).collect();
    let values = map_indices(pairs.len(), par, |p| {
        let (i, j) = pairs[p];
        let sum: f64 = (0..m)
            .map(|a| {
                let o = overlap(&lists[i][a * k..(a + 1) * k], &lists[j][a * k..(a + 1) * k]);
                view.weights.get(a) * o as f64
            })
            .sum();
        Ok(sum / (k as f64 * total))
    })?;
    let mut full = vec![0f64; l * l];
    for (&(i, j), v) in pairs.iter().zip(values) {
        full[i * l + j] = v;
    }
    symmetric(l, |i, j| full[i * l + j])
}
