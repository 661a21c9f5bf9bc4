//! `procrustes`: the orthogonal Procrustes similarity of the representations
//! behind two Gram matrices, from the matrices alone.
//!
//! For centred representations `X`, `Y` (rows = images) the best rotation
//! of `X` onto `Y` leaves `max_Q tr(Qᵀ Xᵀ Y) = ‖Xᵀ Y‖_*`, the nuclear norm;
//! normalised by `‖X‖_F ‖Y‖_F = sqrt(tr Kx · tr Ky)` it lies in `[0, 1]`
//! (1: one is a rotation of the other up to scale; `2 − 2·value` is the
//! Procrustes distance of the normalised representations). With
//! `K = X Xᵀ = F Fᵀ` (eigenvectors `F = U Λ^½`), `X = F Q` for an orthogonal
//! `Q`, so the singular values of `Xᵀ Y` are those of `Fxᵀ Fy`: the sum
//! of the square roots of the eigenvalues of `Kx Ky`.
//!
//! Matrices are double-centred first (idempotent on `layer_corr`'s gram).
//! With bootstrap weights the kernel of the resample is `W^½ Kc W^½` on the
//! distinct images, `Kc` centred with weighted means. Each eigen- and
//! singular value decomposition runs on one thread (faer, `Par::Seq`);
//! matrices and pairs run in parallel, so results do not depend on the
//! thread count. Cost: one `m³` eigendecomposition per matrix and one
//! `m x m` product and SVD per pair.

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
use faer::{Accum, Mat, Par};

use super::{map_indices, symmetric, Input, View};
use crate::error::{KernelError, Result};
use crate::SquareMatrix;

/// A centred matrix whose norm is below this fraction of the raw norm is
/// constant (see the centred methods).
const CONSTANT_RATIO: f64 = 1e-6;

/// `F` (columns: `sqrt(λ) u` for the positive eigenvalues) and `tr K`.
struct Factor {
    f: Mat<f64>,
    trace: f64,
}

fn factor(input: &Input, k: usize, view: &View) -> Result<Factor> {
    let (mat, n, map) = (input.mats[k], input.n, view.maps[k]);
    let m = map.len();
    let w: Vec<f64> = (0..m).map(|a| view.weights.get(a)).collect();
    let total: f64 = w.iter().sum();
    let at = |a: usize, b: usize| mat[map[a] as usize * n + map[b] as usize] as f64;
    let mut row = vec![0f64; m];
    let mut col = vec![0f64; m];
    let mut raw_sq = 0f64;
    for a in 0..m {
        for b in 0..m {
            let x = at(a, b);
            row[a] += w[b] * x;
            col[b] += w[a] * x;
            raw_sq += w[a] * w[b] * x * x;
        }
    }
    row.iter_mut().for_each(|r| *r /= total);
    col.iter_mut().for_each(|c| *c /= total);
    let grand = (0..m).map(|a| w[a] * row[a]).sum::<f64>() / total;
    let sw: Vec<f64> = w.iter().map(|x| x.sqrt()).collect();
    let b = Mat::<f64>::from_fn(m, m, |a, b| {
        // Symmetrised, so that rounding in an f32 input cannot matter.
        let x = 0.5 * (at(a, b) + at(b, a)) - 0.5 * (row[a] + col[a] + row[b] + col[b]) + grand;
        sw[a] * sw[b] * x
    });
    let frob_sq: f64 = (0..m)
        .flat_map(|a| (0..m).map(move |c| (a, c)))
        .map(|(a, c)| b[(a, c)] * b[(a, c)])
        .sum();
    let trace: f64 = (0..m).map(|a| b[(a, a)]).sum();
    if frob_sq <= CONSTANT_RATIO.powi(2) * raw_sq || trace <= 0.0 {
        return Err(KernelError::ConstantMatrix {
            index: k,
            method: input.method.name(),
        });
    }
    let mut s = Diag::<f64>::zeros(m);
    let mut u = Mat::<f64>::zeros(m, m);
    let scratch =
        self_adjoint_evd_scratch::<f64>(m, ComputeEigenvectors::Yes, Par::Seq, Default::default());
    self_adjoint_evd(
        b.as_ref(),
        s.as_mut(),
        Some(u.as_mut()),
        Par::Seq,
        MemStack::new(&mut MemBuffer::new(scratch)),
        Default::default(),
    )
    .map_err(|_| KernelError::ConstantMatrix {
        index: k,
        method: input.method.name(),
    })?;
    let keep: Vec<usize> = (0..m).filter(|&i| s[i] > 0.0).collect();
    let f = Mat::<f64>::from_fn(m, keep.len(), |a, c| u[(a, keep[c])] * s[keep[c]].sqrt());
    Ok(Factor { f, trace })
}

/// Sum of the singular values of `Fxᵀ Fy` over `sqrt(tr Kx tr Ky)`.
fn pair(x: &Factor, y: &Factor) -> Result<f64> {
    let (rx, ry) = (x.f.ncols(), y.f.ncols());
    if rx == 0 || ry == 0 {
        return Ok(0.0);
    }
    let mut c = Mat::<f64>::zeros(rx, ry);
    faer::linalg::matmul::matmul(
        c.as_mut(),
        Accum::Replace,
        x.f.transpose(),
        y.f.as_ref(),
        1.0,
        Par::Seq,
    );
    let mut s = Diag::<f64>::zeros(rx.min(ry));
    let scratch = svd_scratch::<f64>(
        rx,
        ry,
        ComputeSvdVectors::No,
        ComputeSvdVectors::No,
        Par::Seq,
        Default::default(),
    );
    svd(
        c.as_ref(),
        s.as_mut(),
        None,
        None,
        Par::Seq,
        MemStack::new(&mut MemBuffer::new(scratch)),
        Default::default(),
    )
    .map_err(|_| KernelError::BadShape {
        what: "procrustes: singular value decomposition did not converge",
        expected: rx.min(ry),
        got: 0,
    })?;
    let nuclear: f64 = (0..rx.min(ry)).map(|i| s[i].abs()).sum();
    Ok(nuclear / (x.trace * y.trace).sqrt())
}

pub(crate) fn similarity(input: &Input, view: &View, par: bool) -> Result<SquareMatrix<f64>> {
    let l = input.mats.len();
    let factors = map_indices(l, par, |k| factor(input, k, view))?;
    let pairs: Vec<(usize, usize)> = (0..l).flat_map(|i| (0..i).map(move |j| (i, j))).collect();
    let values = map_indices(pairs.len(), par, |p| {
        let (i, j) = pairs[p];
        pair(&factors[i], &factors[j])
    })?;
    let mut full = vec![0f64; l * l];
    for (&(i, j), v) in pairs.iter().zip(values) {
        full[i * l + j] = v;
    }
    symmetric(l, |i, j| full[i * l + j])
}
