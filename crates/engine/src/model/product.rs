//! The matrix product behind layercorr's dense convolutions, on the calling
//! thread: faer's GEMM (AVX-512 or AVX2 kernels chosen at run time, a
//! portable one otherwise) on row-major weights, or, where AVX2 or AVX-512
//! is available, `arch::panel_product` on weights packed once per plan (see
//! [`WeightLayout`]).
//!
//! A convolution over NCHW data is `out[O x S] = W[O x K] · X[K x S]` with
//! the positions S as the long axis. tract 0.23 runs these products with
//! kernels blocked along O (80 x 2, 32 x 5 output tiles), which on the large
//! early maps of mobile networks (K of 16 to 32, S of 12,544) write each
//! output row a few values at a time and reach 6–15 GMAC/s; faer's product
//! of the same row-major operands runs them at 35–70 GMAC/s on one core.
//! Images already run in parallel, so the product stays on one thread.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use tract_onnx::prelude::{Tensor, TractResult};
use tract_onnx::tract_core::internal::ensure;

use super::activation::Clamp;
use crate::arch::{add_and_clamp, pack_panels, panel_product, panels_len, panels_preferred};

/// The bias added to every output row: one value per row, or one for all.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bias<'a> {
    /// No bias.
    None,
    /// `values[0]` for every row when `values.len() == 1`, else
    /// `values[row]`.
    PerRow(&'a [f32]),
}

/// The bias of output row (or channel) `row`: `values[0]` for every row
/// when there is one value, else `values[row]`.
pub(super) fn bias_of_row(values: &[f32], row: usize) -> f32 {
    values[if values.len() == 1 { 0 } else { row }]
}

/// Why a product's operands do not fit together (a bug of the caller's
/// shape bookkeeping, reported as a tract error).
#[derive(Debug, thiserror::Error)]
#[error("product of {rows}x{depth} by {depth}x{cols}: {what} has {got} values")]
pub(super) struct ShapeMismatch {
    rows: usize,
    depth: usize,
    cols: usize,
    what: &'static str,
    got: usize,
}

/// Output values per column block: the product is taken a block of
/// columns at a time so that the bias and clamp pass finds the block still
/// in cache (a whole early-layer output is several megabytes).
const BLOCK_VALUES: usize = 32 << 10;

/// Columns per block for `rows` output rows: a multiple of 16 (one AVX-512
/// register), at least 64.
fn block_cols(rows: usize) -> usize {
    (BLOCK_VALUES / rows.max(1)).max(64).next_multiple_of(16)
}

/// How a product's weight matrix is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightLayout {
    /// Row-major `rows x depth`, multiplied by faer.
    RowMajor,
    /// Packed by [`pack_panels`] when the plan was built, multiplied by
    /// [`panel_product`] with the bias and clamp applied before the store
    /// (see `arch::panels`).
    Panels,
}

impl WeightLayout {
    /// The faster layout for constant weights on this CPU: panels where
    /// [`panels_preferred`] says so.
    pub fn preferred() -> WeightLayout {
        if panels_preferred() {
            WeightLayout::Panels
        } else {
            WeightLayout::RowMajor
        }
    }

    /// `weights` (row-major `rows x depth`) in this layout.
    pub fn arrange(self, weights: &[f32], rows: usize, depth: usize) -> Vec<f32> {
        match self {
            WeightLayout::RowMajor => weights.to_vec(),
            WeightLayout::Panels => pack_panels(weights, rows, depth),
        }
    }

    /// The constant `weights` (row-major `rows x depth` values of any
    /// shape) in this layout, as a one-dimensional tensor.
    pub fn arrange_tensor(
        self,
        weights: &Tensor,
        rows: usize,
        depth: usize,
    ) -> TractResult<Tensor> {
        let view = weights.try_as_plain_ram()?;
        let values = view.as_slice::<f32>()?;
        ensure!(
            values.len() == rows * depth,
            "weights of {} values for a {rows}x{depth} product",
            values.len()
        );
        let arranged = self.arrange(values, rows, depth);
        Tensor::from_shape(&[arranged.len()], &arranged)
    }

    /// Values of a `rows x depth` matrix in this layout.
    fn len(self, rows: usize, depth: usize) -> usize {
        match self {
            WeightLayout::RowMajor => rows * depth,
            WeightLayout::Panels => panels_len(rows, depth),
        }
    }
}

/// `out = clamp(weights · input + bias)`: `weights` is `rows x depth` in
/// `layout`, `input` row-major `depth x cols`, `out` row-major `rows x
/// cols`.
pub(super) fn multiply(
    (weights, layout): (&[f32], WeightLayout),
    input: &[f32],
    bias: Bias<'_>,
    clamp: Clamp,
    (rows, depth, cols): (usize, usize, usize),
    out: &mut [f32],
) -> Result<(), ShapeMismatch> {
    let mismatch = |what, got| ShapeMismatch {
        rows,
        depth,
        cols,
        what,
        got,
    };
    if weights.len() != layout.len(rows, depth) {
        return Err(mismatch("the weight matrix", weights.len()));
    }
    if input.len() != depth * cols {
        return Err(mismatch("the input", input.len()));
    }
    if out.len() != rows * cols {
        return Err(mismatch("the output", out.len()));
    }
    let bias = match bias {
        Bias::None => None,
        Bias::PerRow(values) if values.len() == 1 || values.len() == rows => Some(values),
        Bias::PerRow(values) => return Err(mismatch("the bias", values.len())),
    };
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    match layout {
        WeightLayout::Panels => {
            let per_row: Vec<f32> = (0..rows)
                .map(|row| bias.map_or(0.0, |b| bias_of_row(b, row)))
                .collect();
            let epilogue = (&per_row[..], clamp.bounds());
            panel_product(weights, input, (rows, depth, cols), epilogue, out);
        }
        WeightLayout::RowMajor => {
            let a = MatRef::from_row_major_slice(weights, rows, depth);
            let block = block_cols(rows);
            for first in (0..cols).step_by(block) {
                let width = block.min(cols - first);
                {
                    let b = MatRef::from_row_major_slice(input, depth, cols).subcols(first, width);
                    let c =
                        MatMut::from_row_major_slice_mut(out, rows, cols).subcols_mut(first, width);
                    matmul(c, Accum::Replace, a, b, 1.0f32, Par::Seq);
                }
                if bias.is_none() && clamp.is_none() {
                    continue;
                }
                // The bias and clamp while the block is still in cache.
                for (row, out_row) in out.chunks_exact_mut(cols).enumerate() {
                    let add = bias.map_or(0.0, |b| bias_of_row(b, row));
                    add_and_clamp(&mut out_row[first..first + width], add, clamp.bounds());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::values;

    /// The definition in f64, one output value at a time.
    fn reference(
        w: &[f32],
        x: &[f32],
        bias: &[f32],
        clamp: Clamp,
        (m, k, n): (usize, usize, usize),
    ) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let b = if bias.is_empty() {
                    0.0
                } else {
                    bias[if bias.len() == 1 { 0 } else { i }] as f64
                };
                let dot: f64 = (0..k)
                    .map(|p| w[i * k + p] as f64 * x[p * n + j] as f64)
                    .sum();
                out[i * n + j] = ((b + dot) as f32).max(clamp.lo()).min(clamp.hi());
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_with_and_without_bias() {
        let relu6 = Clamp::new(0.0, 6.0);
        for (m, k, n) in [
            (96, 16, 300),
            (7, 27, 113),
            (1, 1, 1),
            (33, 200, 49),
            (3, 5, 20_000),
        ] {
            let w = values(m * k, 1);
            let x = values(k * n, 2);
            for (bias, clamp) in [
                (vec![], Clamp::NONE),
                (vec![0.5], relu6),
                (values(m, 3), Clamp::NONE),
                (values(m, 4), relu6),
            ] {
                let b = if bias.is_empty() {
                    Bias::None
                } else {
                    Bias::PerRow(&bias)
                };
                let want = reference(&w, &x, &bias, clamp, (m, k, n));
                for layout in [WeightLayout::RowMajor, WeightLayout::Panels] {
                    let mut out = vec![f32::NAN; m * n];
                    let arranged = layout.arrange(&w, m, k);
                    multiply((&arranged, layout), &x, b, clamp, (m, k, n), &mut out).unwrap();
                    for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "{layout:?} {m}x{k}x{n} value {i}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_operands_are_refused() {
        let mut out = vec![0.0; 6];
        let none = Clamp::NONE;
        let row_major = WeightLayout::RowMajor;
        let err = multiply(
            (&[0.0; 5], row_major),
            &[0.0; 9],
            Bias::None,
            none,
            (2, 3, 3),
            &mut out,
        )
        .unwrap_err();
        assert!(err.to_string().contains("weight matrix has 5"), "{err}");
        let bias = Bias::PerRow(&[1.0; 3]);
        let err = multiply(
            (&[0.0; 6], row_major),
            &[0.0; 9],
            bias,
            none,
            (2, 3, 3),
            &mut out,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bias has 3"), "{err}");
    }
}
