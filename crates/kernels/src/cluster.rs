//! Hierarchical-clustering leaf order of a correlation matrix.
//!
//! `corr_order` reorders a matrix's keys so that similar inputs sit next to
//! each other in a heatmap, exactly as the usual Python recipe
//! `leaves_list(linkage(squareform(1 - r), 'average'))` does, so figures
//! made with layercorr and with scipy agree. The distance is `1 − r` taken
//! from the strict upper triangle (in `f64`); the clustering is kodama's
//! average linkage (the same nearest-neighbour-chain algorithm and stable
//! sort of merges by height as scipy); the leaf order is scipy's
//! `leaves_list`: a pre-order walk from the root visiting, at every merge,
//! the cluster with the smaller id first. Only exact ties between distances
//! can make the order differ from scipy's.

use kodama::{linkage as kodama_linkage, Method};

use crate::error::{KernelError, Result};

/// One merge of the dendrogram, like a row of scipy's linkage matrix `Z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    /// The cluster with the smaller id (`< n`: an observation; `n + k`: the
    /// cluster made by merge `k`).
    pub left: usize,
    /// The cluster with the larger id.
    pub right: usize,
    /// Average-linkage distance between the two clusters.
    pub height: f64,
    /// Observations in the merged cluster.
    pub size: usize,
}

/// Average-linkage merges of the `n x n` row-major similarity matrix
/// `matrix` (distance `1 − r`), sorted by height, as scipy's `linkage`
/// returns them.
///
/// Errors: `n == 0` ([`KernelError::TooFewRows`]); a length other than
/// `n * n` ([`KernelError::BadShape`]); a NaN or infinity in the strict
/// upper triangle ([`KernelError::NonFinite`] with its row and column).
pub fn linkage(matrix: &[f32], n: usize) -> Result<Vec<Merge>> {
    if n == 0 {
        return Err(KernelError::TooFewRows {
            what: "leaf_order",
            n,
            min: 1,
        });
    }
    let nn = n.saturating_mul(n);
    if matrix.len() != nn {
        return Err(KernelError::BadShape {
            what: "leaf_order matrix",
            expected: nn,
            got: matrix.len(),
        });
    }
    let mut condensed: Vec<f64> = Vec::new();
    condensed
        .try_reserve_exact(n * (n - 1) / 2)
        .map_err(|_| KernelError::TooLarge {
            what: "leaf_order distances",
            bytes: (n as u64 * (n as u64 - 1) / 2).saturating_mul(8),
        })?;
    for i in 0..n {
        for (j, &r) in matrix[i * n..(i + 1) * n].iter().enumerate().skip(i + 1) {
            if !r.is_finite() {
                return Err(KernelError::NonFinite {
                    row: i,
                    col: j,
                    value: r,
                });
            }
            condensed.push(1.0 - r as f64);
        }
    }
    let dendrogram = kodama_linkage(&mut condensed, n, Method::Average);
    Ok(dendrogram
        .steps()
        .iter()
        .map(|s| Merge {
            left: s.cluster1.min(s.cluster2),
            right: s.cluster1.max(s.cluster2),
            height: s.dissimilarity,
            size: s.size,
        })
        .collect())
}

/// The merge heights of [`linkage`] (scipy's `Z[:, 2]`).
pub fn linkage_heights(matrix: &[f32], n: usize) -> Result<Vec<f64>> {
    Ok(linkage(matrix, n)?.iter().map(|m| m.height).collect())
}

/// The observations in dendrogram leaf order (a permutation of `0..n`), as
/// scipy's `leaves_list(linkage(1 - r, 'average'))`.
///
/// Errors: as [`linkage`].
pub fn leaf_order(matrix: &[f32], n: usize) -> Result<Vec<usize>> {
    let merges = linkage(matrix, n)?;
    Ok(leaves(&merges, n))
}

/// Pre-order leaves of a dendrogram of `n` observations, smaller id first.
pub fn leaves(merges: &[Merge], n: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(n);
    if n == 0 {
        return order;
    }
    let mut stack = vec![2 * n - 2];
    while let Some(node) = stack.pop() {
        match node.checked_sub(n).and_then(|k| merges.get(k)) {
            Some(m) => {
                stack.push(m.right);
                stack.push(m.left);
            }
            None => order.push(node),
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixture made with scipy 1.17.1 / numpy 2.4.6: a 12 x 12 correlation
    // matrix (float32) of noisy rows around three prototypes, and
    // `Z = linkage(squareform(1 - r.astype(float64)), 'average')`.
    const R: [f32; 144] = [
        1.0,
        -0.024322698,
        -0.12521811,
        0.16566095,
        0.11638575,
        -0.007561981,
        0.16097245,
        -0.1183131,
        -0.17628968,
        0.08050676,
        -0.2173323,
        0.18836921,
        -0.024322698,
        1.0,
        0.07549464,
        0.0584128,
        0.2387689,
        0.010219417,
        -0.28238687,
        0.6809357,
        0.12125178,
        0.24482562,
        0.47114256,
        0.009246543,
        -0.12521811,
        0.07549464,
        1.0,
        -0.11494696,
        -0.06966564,
        0.35188988,
        0.25607246,
        -0.053392757,
        0.19917288,
        0.23690496,
        -0.022288553,
        -0.05384013,
        0.16566095,
        0.0584128,
        -0.11494696,
        1.0,
        0.31200123,
        0.17211269,
        0.23803842,
        0.08311053,
        -0.2202989,
        0.2614816,
        0.3708093,
        -0.28659672,
        0.11638575,
        0.2387689,
        -0.06966564,
        0.31200123,
        1.0,
        -0.13151027,
        0.029587045,
        0.4295834,
        -0.06666606,
        0.14199403,
        0.18898462,
        -0.17446929,
        -0.007561981,
        0.010219417,
        0.35188988,
        0.17211269,
        -0.13151027,
        1.0,
        0.27259004,
        -0.052269924,
        -0.009866535,
        0.14143644,
        0.056626216,
        -0.0043643713,
        0.16097245,
        -0.28238687,
        0.25607246,
        0.23803842,
        0.029587045,
        0.27259004,
        1.0,
        -0.19566871,
        0.18256763,
        0.16851929,
        -0.03734434,
        -0.38259628,
        -0.1183131,
        0.6809357,
        -0.053392757,
        0.08311053,
        0.4295834,
        -0.052269924,
        -0.19566871,
        1.0,
        0.106133595,
        -0.0039027578,
        0.31005165,
        -0.18941675,
        -0.17628968,
        0.12125178,
        0.19917288,
        -0.2202989,
        -0.06666606,
        -0.009866535,
        0.18256763,
        0.106133595,
        1.0,
        0.1376921,
        0.09636378,
        0.08139268,
        0.08050676,
        0.24482562,
        0.23690496,
        0.2614816,
        0.14199403,
        0.14143644,
        0.16851929,
        -0.0039027578,
        0.1376921,
        1.0,
        0.10016837,
        -0.14318317,
        -0.2173323,
        0.47114256,
        -0.022288553,
        0.3708093,
        0.18898462,
        0.056626216,
        -0.03734434,
        0.31005165,
        0.09636378,
        0.10016837,
        1.0,
        -0.1750532,
        0.18836921,
        0.009246543,
        -0.05384013,
        -0.28659672,
        -0.17446929,
        -0.0043643713,
        -0.38259628,
        -0.18941675,
        0.08139268,
        -0.14318317,
        -0.1750532,
        1.0,
    ];
    const LEAVES: [usize; 12] = [0, 11, 10, 1, 7, 3, 4, 8, 9, 6, 2, 5];
    const CHILDREN: [(usize, usize); 11] = [
        (1, 7),
        (10, 12),
        (2, 5),
        (3, 4),
        (6, 14),
        (13, 15),
        (0, 11),
        (9, 16),
        (8, 19),
        (17, 20),
        (18, 21),
    ];
    const HEIGHTS: [f64; 11] = [
        0.31906431913375854,
        0.6094028949737549,
        0.6481101214885712,
        0.6879987716674805,
        0.7356687486171722,
        0.7717217424263556,
        0.8116307854652405,
        0.8177131017049154,
        0.8726084826048464,
        0.9838417815882712,
        1.073219632427208,
    ];

    #[test]
    fn matches_scipy_linkage_and_leaves_list() {
        let merges = linkage(&R, 12).unwrap();
        let children: Vec<(usize, usize)> = merges.iter().map(|m| (m.left, m.right)).collect();
        assert_eq!(children, CHILDREN);
        for (h, want) in linkage_heights(&R, 12).unwrap().iter().zip(HEIGHTS) {
            assert!((h - want).abs() < 1e-12, "{h} vs {want}");
        }
        assert_eq!(leaf_order(&R, 12).unwrap(), LEAVES);
    }

    #[test]
    fn groups_two_obvious_clusters() {
        // Keys 0, 2, 4, 6 alike; 1, 3, 5 alike; little across.
        let n = 7;
        let mut m = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                m[i * n + j] = if i == j {
                    1.0
                } else if i % 2 == j % 2 {
                    0.9 - 0.01 * (i + j) as f32
                } else {
                    -0.1 + 0.001 * (i * j) as f32
                };
            }
        }
        let order = leaf_order(&m, n).unwrap();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        let parity: Vec<usize> = order.iter().map(|k| k % 2).collect();
        let changes = parity.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(changes, 1, "order {order:?} splits a cluster");
    }

    #[test]
    fn small_and_bad_inputs() {
        assert_eq!(leaf_order(&[1.0], 1).unwrap(), vec![0]);
        assert_eq!(leaf_order(&[1.0, 0.5, 0.5, 1.0], 2).unwrap(), vec![0, 1]);
        assert!(leaf_order(&[], 0).is_err());
        assert!(leaf_order(&[1.0, 0.5, 0.5], 2).is_err());
        let mut m = vec![1.0f32; 9];
        m[5] = f32::NAN; // [1][2]
        assert!(matches!(
            leaf_order(&m, 3),
            Err(KernelError::NonFinite { row: 1, col: 2, .. })
        ));
        // NaN below the diagonal is not read.
        let mut m = vec![0.5f32; 9];
        m[7] = f32::NAN; // [2][1]
        assert!(leaf_order(&m, 3).is_ok());
    }
}
