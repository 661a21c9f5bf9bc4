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
//! a window matrix of at most [`MAX_WINDOW_MATRIX`] bytes; all other
//! convolutions stay tract's.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, ensure};
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::activation::Clamp;
use super::own_op::{Kernel, OwnOp};
use super::product::{multiply, Bias};

/// Largest window matrix (per image) this op builds; larger convolutions
/// stay with tract's lazy im2col, which never materialises it.
pub const MAX_WINDOW_MATRIX: usize = 64 << 20;

/// Shape and padding of one convolution, all concrete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DenseGeometry {
    /// Images per batch.
    pub batch: usize,
    /// Whether the tensors have the batch axis (NCHW) or not (CHW).
    pub batch_axis: bool,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Input plane height.
    pub in_h: usize,
    /// Input plane width.
    pub in_w: usize,
    /// Kernel height.
    pub k_h: usize,
    /// Kernel width.
    pub k_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero rows added above the input.
    pub pad_top: usize,
    /// Zero columns added left of the input.
    pub pad_left: usize,
    /// Output plane height.
    pub out_h: usize,
    /// Output plane width.
    pub out_w: usize,
}

impl DenseGeometry {
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
pub type DenseConv = OwnOp<DenseGeometry>;

impl Kernel for DenseGeometry {
    const NAME: &'static str = "LayercorrDenseConv";
    const INPUTS: (usize, usize) = (3, 3);

    fn output_shape(&self) -> TVec<usize> {
        let mut shape = tvec![self.out_channels, self.out_h, self.out_w];
        if self.batch_axis {
            shape.insert(0, self.batch);
        }
        shape
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
            multiply(kernel, &windows, Bias::PerRow(bias), clamp, sizes, out)?;
        }
        Ok(())
    }
}

/// The window matrix of one image: row `(c, ky, kx)` (the kernel's OIHW
/// order), column `(oy, ox)`, holding the input value that tap reads for
/// that output position, zero in the padding.
fn fill_windows(g: &DenseGeometry, image: &[f32], windows: &mut [f32]) {
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
fn fill_window_row(g: &DenseGeometry, plane: &[f32], ky: usize, kx: usize, row: &mut [f32]) {
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
        } else {
            for (d, s) in dst.iter_mut().zip(src[x0..].iter().step_by(g.stride_w)) {
                *d = *s;
            }
        }
    }
}

/// The geometry of `conv` on an input of `shape` when this op can run it.
fn eligible(conv: &Conv, shape: &[usize]) -> Option<DenseGeometry> {
    let spec = &conv.pool_spec;
    let plain = conv.q_params.is_none()
        && conv.kernel_fmt == KernelFormat::OIHW
        && spec.rank() == 2
        && conv.group == 1
        && spec.dilations().iter().all(|d| *d == 1);
    let batch_axis = match (spec.data_format, shape.len()) {
        (DataFormat::NCHW, 4) => true,
        (DataFormat::CHW, 3) => false,
        _ => return None,
    };
    let (batch, chw) = if batch_axis {
        (shape[0], &shape[1..])
    } else {
        (1, shape)
    };
    if !plain || chw[0] != spec.input_channels {
        return None;
    }
    let strides = spec.strides();
    let padding = spec.computed_padding(&chw[1..]);
    let geometry = DenseGeometry {
        batch,
        batch_axis,
        in_channels: spec.input_channels,
        out_channels: spec.output_channels,
        in_h: chw[1],
        in_w: chw[2],
        k_h: spec.kernel_shape[0],
        k_w: spec.kernel_shape[1],
        stride_h: strides[0],
        stride_w: strides[1],
        pad_top: padding[0].pad_before,
        pad_left: padding[1].pad_before,
        out_h: padding[0].convoluted,
        out_w: padding[1].convoluted,
    };
    let window_bytes = geometry
        .depth()
        .checked_mul(geometry.positions())?
        .checked_mul(size_of::<f32>())?;
    (geometry.out_h > 0
        && geometry.out_w > 0
        && geometry.stride_h > 0
        && geometry.stride_w > 0
        && window_bytes <= MAX_WINDOW_MATRIX)
        .then_some(geometry)
}

/// Replaces every eligible ungrouped `Conv` of `model` by [`DenseConv`];
/// returns how many were replaced. Call it on a decluttered model, before
/// `into_optimized` turns convolutions into tract's own kernels.
pub fn replace_dense_convs(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        if node.inputs.len() != 3 {
            continue;
        }
        let facts = node
            .inputs
            .iter()
            .map(|i| model.outlet_fact(*i))
            .collect::<TractResult<Vec<_>>>()?;
        if facts.iter().any(|f| f.datum_type != f32::datum_type()) {
            continue;
        }
        let Some(shape) = facts[0].shape.as_concrete().map(<[usize]>::to_vec) else {
            continue;
        };
        let Some(geometry) = eligible(conv, &shape) else {
            continue;
        };
        let kernel_len = geometry.out_channels * geometry.depth();
        let bias_len = facts[2].shape.as_concrete().map(|s| s.iter().product());
        let expected = model.outlet_fact(OutletId::new(id, 0))?.shape.as_concrete();
        if expected != Some(&geometry.output_shape()[..])
            || facts[1].shape.as_concrete().map(|s| s.iter().product()) != Some(kernel_len)
            || !matches!(bias_len, Some(1)) && bias_len != Some(geometry.out_channels)
        {
            continue;
        }
        model.nodes[id].op = Box::new(DenseConv::new(geometry));
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests;
