//! Ungrouped convolutions with a window larger than one value, or a stride,
//! or padding (a network's stem, downsampling 1x1s) as an explicit im2col
//! and one faer product per image.
//!
//! tract runs these through a lazy im2col that packs the windows inside its
//! matrix kernel; on EfficientNet-Lite0's stem (3x3, stride 2, 3 to 32
//! channels over 112 x 112 positions) that came to 6 GMAC/s. Writing the
//! `C·kh·kw x S` window matrix once (1.4 MB there) and multiplying it with
//! [`super::product::multiply`] is several times faster.
//!
//! [`replace_dense_convs`] swaps [`DenseConv`] in for every `Conv` with one
//! group, NCHW (or batch-less CHW) f32 data, dilation 1, a concrete shape and
//! a window matrix of at most [`MAX_WINDOW_MATRIX`] bytes.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, ensure};
use tract_onnx::tract_core::ops::TypedOp;

use super::activation::Clamp;
use super::conv_shape::{replace_convs, ConvShape};
use super::own_op::{Kernel, OwnOp};
use super::product::{multiply, Bias, WeightLayout};
use crate::arch::take_every_other;

/// Largest window matrix (per image) this op builds; larger convolutions
/// stay with tract's lazy im2col, which never materialises it.
pub const MAX_WINDOW_MATRIX: usize = 64 << 20;

/// An ungrouped convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dense(pub ConvShape);

impl std::ops::Deref for Dense {
    type Target = ConvShape;

    fn deref(&self) -> &ConvShape {
        &self.0
    }
}

impl Dense {
    /// Rows of the window matrix: one per (input channel, tap).
    fn depth(&self) -> usize {
        self.in_channels * self.k_h * self.k_w
    }

    /// Output positions per image.
    fn positions(&self) -> usize {
        self.out_h * self.out_w
    }
}

/// The replacement op: NCHW f32 convolution with bias, one group.
pub type DenseConv = OwnOp<Dense>;

impl Kernel for Dense {
    const NAME: &'static str = "LayercorrDenseConv";
    const INPUTS: (usize, usize) = (3, 3);

    fn output_shape(&self) -> TVec<usize> {
        self.0.output_shape()
    }

    fn run(&self, inputs: &[&[f32]], clamp: Clamp, out: &mut [f32]) -> TractResult<()> {
        let g = self;
        let &[data, kernel, bias] = inputs else {
            bail!("convolution expects data, kernel, bias");
        };
        let in_image = g.in_channels * g.in_h * g.in_w;
        let out_image = g.out_channels * g.positions();
        ensure!(
            data.len() == g.batch * in_image && out.len() == g.batch * out_image,
            "convolution input has {} values, expected {g:?}",
            data.len()
        );
        let mut windows = vec![0.0f32; g.depth() * g.positions()];
        // `multiply` writes every value of each image's output.
        for (image, out) in data
            .chunks_exact(in_image.max(1))
            .zip(out.chunks_exact_mut(out_image.max(1)))
        {
            fill_windows(g, image, &mut windows);
            let sizes = (g.out_channels, g.depth(), g.positions());
            multiply(
                (kernel, WeightLayout::RowMajor),
                &windows,
                Bias::PerRow(bias),
                clamp,
                sizes,
                out,
            )?;
        }
        Ok(())
    }
}

/// The window matrix of one image: row `(c, ky, kx)` (the kernel's OIHW
/// order), column `(oy, ox)`, holding the input value that tap reads for
/// that output position, zero in the padding.
fn fill_windows(g: &Dense, image: &[f32], windows: &mut [f32]) {
    let positions = g.positions();
    let mut rows = windows.chunks_exact_mut(positions.max(1));
    for c in 0..g.in_channels {
        let plane = &image[c * g.in_h * g.in_w..(c + 1) * g.in_h * g.in_w];
        for ky in 0..g.k_h {
            for kx in 0..g.k_w {
                let Some(row) = rows.next() else {
                    return;
                };
                fill_window_row(g, plane, ky, kx, row);
            }
        }
    }
}

/// One row of the window matrix: tap `(ky, kx)` over every output position.
fn fill_window_row(g: &Dense, plane: &[f32], ky: usize, kx: usize, row: &mut [f32]) {
    // Output columns whose input column lies inside the plane:
    // ox * stride + kx - pad_left in [0, in_w).
    let first_ox = g.pad_left.saturating_sub(kx).div_ceil(g.stride_w);
    let end_ox = (g.in_w + g.pad_left)
        .checked_sub(kx)
        .map_or(0, |span| span.div_ceil(g.stride_w))
        .min(g.out_w);
    for (oy, out) in row.chunks_exact_mut(g.out_w).enumerate() {
        let y = (oy * g.stride_h + ky).checked_sub(g.pad_top);
        let Some(y) = y.filter(|y| *y < g.in_h) else {
            out.fill(0.0);
            continue;
        };
        if first_ox >= end_ox {
            out.fill(0.0);
            continue;
        }
        out[..first_ox].fill(0.0);
        out[end_ox..].fill(0.0);
        let x0 = first_ox * g.stride_w + kx - g.pad_left;
        let src = &plane[y * g.in_w..(y + 1) * g.in_w];
        let dst = &mut out[first_ox..end_ox];
        if g.stride_w == 1 {
            dst.copy_from_slice(&src[x0..x0 + dst.len()]);
        } else if g.stride_w == 2 {
            take_every_other(&src[x0..], dst);
        } else {
            for (d, s) in dst.iter_mut().zip(src[x0..].iter().step_by(g.stride_w)) {
                *d = *s;
            }
        }
    }
}

/// Replaces every ungrouped `Conv` of `model` (see
/// [`super::conv_shape::replace_convs`]) whose window matrix takes at most
/// [`MAX_WINDOW_MATRIX`] bytes by [`DenseConv`]; returns how many were
/// replaced.
pub fn replace_dense_convs(model: &mut TypedModel) -> TractResult<usize> {
    replace_convs(model, |s| {
        let dense = Dense(s);
        let window_bytes = dense
            .depth()
            .checked_mul(dense.positions())
            .and_then(|n| n.checked_mul(size_of::<f32>()));
        let fits = window_bytes.is_some_and(|b| b <= MAX_WINDOW_MATRIX);
        (s.groups == 1 && fits).then(|| Box::new(DenseConv::new(dense)) as Box<dyn TypedOp>)
    })
}

#[cfg(test)]
mod tests;
