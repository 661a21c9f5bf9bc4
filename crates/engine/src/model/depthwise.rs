//! A depthwise convolution for tract that runs each channel plane as a few
//! contiguous multiply-adds per kernel tap.
//!
//! Profiling EfficientNet-Lite0 under tract 0.23 put about a third of the
//! forward pass in tract's `DepthWise` op, mostly in its generic border
//! path. The arithmetic is small (a few tens of millions of multiply-adds
//! per image), so the cost is in the addressing and in the latency of the
//! multiply-add chains: this op scatters one channel plane into a zeroed
//! scratch split by stride phase in both directions, so that every tap
//! reads one contiguous run over the whole plane, and accumulates the plane
//! several registers at a time with fused multiply-adds, the accumulators
//! staying in registers over all taps (`crate::arch::accumulate_taps`,
//! with its portable fallback). It is written here because no crate
//! offers an NCHW depthwise kernel that plugs into tract.
//!
//! [`replace_depthwise`] swaps it in for every grouped `Conv` with one input
//! channel per group, NCHW (or batch-less CHW) f32 data, dilation 1 and a
//! concrete shape; all other convolutions stay tract's.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, ensure};
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::activation::Clamp;
use super::own_op::{Kernel, OwnOp};
use crate::arch::{accumulate_taps, copy_rows, LANES};

/// Shape and padding of one depthwise convolution, all concrete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Images per batch.
    pub batch: usize,
    /// Whether the tensors have the batch axis (NCHW) or not (CHW: tract
    /// drops it from a batch-1 model).
    pub batch_axis: bool,
    /// Channels (= groups).
    pub channels: usize,
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

impl Geometry {
    /// Rows of the padded plane that the windows read.
    fn padded_h(&self) -> usize {
        (self.out_h - 1) * self.stride_h + self.k_h
    }

    /// Columns of the padded plane that the windows read.
    fn padded_w(&self) -> usize {
        (self.out_w - 1) * self.stride_w + self.k_w
    }

    /// Length of one stride phase of a padded row.
    fn phase_len(&self) -> usize {
        self.padded_w().div_ceil(self.stride_w)
    }
}

/// The replacement op: NCHW f32 depthwise convolution with bias.
pub type PlaneDepthwise = OwnOp<Geometry>;

impl Kernel for Geometry {
    const NAME: &'static str = "LayercorrDepthwise";
    const INPUTS: (usize, usize) = (3, 3);

    fn output_shape(&self) -> TVec<usize> {
        let mut shape = tvec![self.channels, self.out_h, self.out_w];
        if self.batch_axis {
            shape.insert(0, self.batch);
        }
        shape
    }

    fn run(&self, inputs: &[&[f32]], clamp: Clamp, out: &mut [f32]) -> TractResult<()> {
        let g = self;
        let &[data, kernel, bias] = inputs else {
            bail!("depthwise expects data, kernel, bias");
        };
        let taps = g.k_h * g.k_w;
        let (in_plane, out_plane) = (g.in_h * g.in_w, g.out_h * g.out_w);
        ensure!(
            data.len() == g.batch * g.channels * in_plane
                && kernel.len() == g.channels * taps
                && (bias.len() == g.channels || bias.len() == 1)
                && out.len() == g.batch * g.channels * out_plane,
            "depthwise inputs do not match {g:?}"
        );
        let mut work = Workspace::new(g);
        // Every plane of the output is written (each starts from the bias).
        for (p, out) in out.chunks_exact_mut(out_plane).enumerate() {
            let c = p % g.channels;
            let b = if bias.len() == 1 { bias[0] } else { bias[c] };
            convolve_plane(
                g,
                &data[p * in_plane..(p + 1) * in_plane],
                &kernel[c * taps..(c + 1) * taps],
                b,
                clamp,
                &mut work,
                out,
            );
        }
        Ok(())
    }
}

/// Scratch layout: the padded plane split into `stride_h x stride_w` phases,
/// phase `(qy, qx)` holding padded rows qy, qy + s_h, … and columns qx,
/// qx + s_w, … With it, tap `(ky, kx)` of output `(oy, ox)` reads phase
/// `(ky % s_h, kx % s_w)` at row `oy + ky / s_h`, column `ox + kx / s_w`: on
/// the grid of output rows `phase_len` wide, every tap reads one contiguous
/// run that starts at a fixed offset, whatever the stride.
impl Geometry {
    /// Rows of one phase.
    fn phase_rows(&self) -> usize {
        self.padded_h().div_ceil(self.stride_h)
    }

    /// Values of one phase.
    fn phase_size(&self) -> usize {
        self.phase_rows() * self.phase_len()
    }

    /// Output values computed per plane: `out_h` rows of `phase_len`, the
    /// last `phase_len - out_w` of each row thrown away, rounded up to whole
    /// registers.
    fn grid_len(&self) -> usize {
        (self.out_h * self.phase_len()).next_multiple_of(LANES)
    }

    /// Scratch values: the phases, then zeros that the thrown-away columns
    /// and the last register may read past the end.
    fn scratch_len(&self) -> usize {
        self.stride_h * self.stride_w * self.phase_size() + self.phase_len() + LANES
    }
}

/// Offset in the scratch of each tap's first value, for grid position 0.
fn tap_offsets(g: &Geometry) -> Vec<usize> {
    let (len, size) = (g.phase_len(), g.phase_size());
    (0..g.k_h)
        .flat_map(|ky| {
            (0..g.k_w).map(move |kx| {
                let phase = (ky % g.stride_h) * g.stride_w + kx % g.stride_w;
                phase * size + (ky / g.stride_h) * len + kx / g.stride_w
            })
        })
        .collect()
}

/// Copies `plane` (in_h x in_w) into its place in the phases of `scratch`.
/// The padding positions are the same for every plane and are never
/// written, so they stay zero from the scratch's allocation.
fn scatter_into_phases(g: &Geometry, plane: &[f32], scratch: &mut [f32]) {
    let (len, size) = (g.phase_len(), g.phase_size());
    let rows = g.in_h.min(g.padded_h().saturating_sub(g.pad_top));
    let cols = g.in_w.min(g.padded_w().saturating_sub(g.pad_left));
    if g.stride_h == 1 && g.stride_w == 1 {
        // One phase: input row y goes to padded row y + pad_top.
        let start = g.pad_top * len + g.pad_left;
        copy_rows(plane, g.in_w, &mut scratch[start..], len, (rows, cols));
        return;
    }
    for y in 0..rows {
        let r = y + g.pad_top;
        let row_base = (r % g.stride_h) * g.stride_w * size + (r / g.stride_h) * len;
        let src = &plane[y * g.in_w..y * g.in_w + cols];
        match g.stride_w {
            1 => {
                let start = row_base + g.pad_left;
                scratch[start..start + cols].copy_from_slice(src);
            }
            2 => {
                // Even input columns go to the phase of pad_left's parity,
                // odd ones to the other, in one pass over column pairs.
                let (first, second) = (g.pad_left % 2, 1 - g.pad_left % 2);
                let a = row_base + first * size + g.pad_left / 2;
                let b = row_base + second * size + g.pad_left.div_ceil(2);
                let (lo, hi) = if first == 0 { (a, b) } else { (b, a) };
                let (low_phase, high_phase) = scratch.split_at_mut(hi);
                let (evens, odds) = if first == 0 {
                    (&mut low_phase[lo..], high_phase)
                } else {
                    (high_phase, &mut low_phase[lo..])
                };
                let pairs = src.chunks_exact(2);
                if let [last] = pairs.remainder() {
                    evens[cols / 2] = *last;
                }
                for ((e, o), pair) in evens.iter_mut().zip(odds.iter_mut()).zip(pairs) {
                    *e = pair[0];
                    *o = pair[1];
                }
            }
            s => {
                // Phase qx takes every s-th input column from the first whose
                // padded column falls in it.
                for qx in 0..s {
                    let first = (qx + s - g.pad_left % s) % s;
                    let start = row_base + qx * size + (first + g.pad_left) / s;
                    let taken = src.iter().skip(first).step_by(s);
                    for (d, v) in scratch[start..].iter_mut().zip(taken) {
                        *d = *v;
                    }
                }
            }
        }
    }
}

/// Buffers reused across the planes of one evaluation.
struct Workspace {
    /// [`tap_offsets`].
    offsets: Vec<usize>,
    /// The padded plane, split by stride phase.
    scratch: Vec<f32>,
    /// The output grid, `phase_len` values a row.
    grid: Vec<f32>,
}

impl Workspace {
    fn new(g: &Geometry) -> Workspace {
        Workspace {
            offsets: tap_offsets(g),
            scratch: vec![0.0; g.scratch_len()],
            grid: vec![0.0; g.grid_len()],
        }
    }
}

/// One channel: `out = clamp(bias + sum over taps of w * window)`.
fn convolve_plane(
    g: &Geometry,
    plane: &[f32],
    weights: &[f32],
    bias: f32,
    clamp: Clamp,
    work: &mut Workspace,
    out: &mut [f32],
) {
    let Workspace {
        offsets,
        scratch,
        grid,
    } = work;
    scatter_into_phases(g, plane, scratch);
    assert_eq!(out.len(), g.out_h * g.out_w);
    // Checks that every tap's run stays inside the scratch.
    let bounds = [clamp.lo(), clamp.hi()];
    accumulate_taps(offsets, weights, bias, bounds, scratch, grid);
    copy_rows(grid, g.phase_len(), out, g.out_w, (g.out_h, g.out_w));
}

/// The geometry of `conv` on an input of `shape` when this op can run it.
fn eligible(conv: &Conv, shape: &[usize]) -> Option<Geometry> {
    let spec = &conv.pool_spec;
    let channels = spec.input_channels;
    let plain = conv.q_params.is_none()
        && conv.kernel_fmt == KernelFormat::OIHW
        && spec.rank() == 2
        && conv.group == channels
        && spec.output_channels == channels
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
    if !plain || chw[0] != channels {
        return None;
    }
    let strides = spec.strides();
    let padding = spec.computed_padding(&chw[1..]);
    let geometry = Geometry {
        batch,
        batch_axis,
        channels,
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
    (geometry.out_h > 0 && geometry.out_w > 0 && geometry.stride_h > 0 && geometry.stride_w > 0)
        .then_some(geometry)
}

/// Replaces every eligible depthwise `Conv` of `model` by [`PlaneDepthwise`];
/// returns how many were replaced. Call it on a decluttered model, before
/// `into_optimized` turns convolutions into tract's own kernels.
pub fn replace_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        if node.inputs.len() != 3 {
            continue;
        }
        let fact = model.outlet_fact(node.inputs[0])?;
        if fact.datum_type != f32::datum_type() {
            continue;
        }
        let Some(shape) = fact.shape.as_concrete().map(<[usize]>::to_vec) else {
            continue;
        };
        let Some(geometry) = eligible(conv, &shape) else {
            continue;
        };
        let expected = model.outlet_fact(OutletId::new(id, 0))?.shape.as_concrete();
        if expected != Some(&geometry.output_shape()[..]) {
            continue;
        }
        model.nodes[id].op = Box::new(PlaneDepthwise::new(geometry));
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::values;
    use tract_onnx::tract_core::internal::EvalOp;

    /// Direct definition, one output value at a time.
    fn reference(g: &Geometry, data: &[f32], kernel: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; g.batch * g.channels * g.out_h * g.out_w];
        for b in 0..g.batch {
            for c in 0..g.channels {
                for oy in 0..g.out_h {
                    for ox in 0..g.out_w {
                        let mut acc = bias[c] as f64;
                        for ky in 0..g.k_h {
                            for kx in 0..g.k_w {
                                let y = (oy * g.stride_h + ky) as isize - g.pad_top as isize;
                                let x = (ox * g.stride_w + kx) as isize - g.pad_left as isize;
                                if y < 0 || x < 0 || y >= g.in_h as isize || x >= g.in_w as isize {
                                    continue;
                                }
                                let v = data[((b * g.channels + c) * g.in_h + y as usize) * g.in_w
                                    + x as usize];
                                acc += (kernel[c * g.k_h * g.k_w + ky * g.k_w + kx] * v) as f64;
                            }
                        }
                        out[((b * g.channels + c) * g.out_h + oy) * g.out_w + ox] = acc as f32;
                    }
                }
            }
        }
        out
    }

    fn check(g: Geometry) {
        check_clamped(g, Clamp::NONE);
        // A clamp that cuts the test data's outputs on both sides.
        check_clamped(g, Clamp::new(-0.75, 1.5));
    }

    fn check_clamped(g: Geometry, clamp: Clamp) {
        let data = values(g.batch * g.channels * g.in_h * g.in_w, 1);
        let kernel = values(g.channels * g.k_h * g.k_w, 2);
        let bias = values(g.channels, 3);
        let op = PlaneDepthwise { kernel: g, clamp };
        let shape: &[usize] = if g.batch_axis {
            &[g.batch, g.channels, g.in_h, g.in_w]
        } else {
            &[g.channels, g.in_h, g.in_w]
        };
        let inputs = tvec!(
            Tensor::from_shape(shape, &data).unwrap().into_tvalue(),
            Tensor::from_shape(&[g.channels, 1, g.k_h, g.k_w], &kernel)
                .unwrap()
                .into_tvalue(),
            Tensor::from_shape(&[g.channels], &bias)
                .unwrap()
                .into_tvalue(),
        );
        let got = op.eval_out_of_plan(inputs).unwrap().unwrap();
        assert_eq!(got[0].shape(), &g.output_shape()[..]);
        let view = got[0].try_as_plain_ram().unwrap();
        let got = view.as_slice::<f32>().unwrap();
        let want = reference(&g, &data, &kernel, &bias);
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let b = b.clamp(clamp.lo(), clamp.hi());
            assert!(
                (a - b).abs() < 1e-5,
                "{g:?} {clamp:?}: value {i}: {a} vs {b}"
            );
        }
    }

    fn geometry(size: usize, k: usize, stride: usize, pads: (usize, usize)) -> Geometry {
        let out = (size + pads.0 + pads.1 - k) / stride + 1;
        Geometry {
            batch: 2,
            batch_axis: true,
            channels: 3,
            in_h: size,
            in_w: size + 1,
            k_h: k,
            k_w: k,
            stride_h: stride,
            stride_w: stride,
            pad_top: pads.0,
            pad_left: pads.0,
            out_h: out,
            out_w: (size + 1 + pads.0 + pads.1 - k) / stride + 1,
        }
    }

    #[test]
    fn matches_the_definition_for_strides_kernels_and_paddings() {
        for (size, k, stride, pads) in [
            (9, 3, 1, (1, 1)),
            (9, 5, 1, (2, 2)),
            (10, 3, 2, (0, 1)),
            (11, 3, 2, (1, 1)),
            (12, 5, 2, (1, 2)),
            (7, 3, 1, (0, 0)),
            (8, 3, 3, (1, 1)),
            (7, 5, 1, (2, 2)),
            (14, 5, 2, (1, 2)),
            (30, 3, 1, (1, 1)),
            (57, 3, 2, (0, 1)),
        ] {
            check(geometry(size, k, stride, pads));
        }
    }

    #[test]
    fn a_batch_one_plane_without_batch_axis_works() {
        let mut g = geometry(10, 3, 2, (0, 1));
        g.batch = 1;
        g.batch_axis = false;
        check(g);
    }

    #[test]
    fn a_single_bias_value_is_broadcast() {
        let g = geometry(6, 3, 1, (1, 1));
        let data = values(g.batch * g.channels * g.in_h * g.in_w, 4);
        let kernel = values(g.channels * 9, 5);
        let op = PlaneDepthwise::new(g);
        let out = |bias: Tensor| {
            let inputs = tvec!(
                Tensor::from_shape(&[g.batch, g.channels, g.in_h, g.in_w], &data)
                    .unwrap()
                    .into_tvalue(),
                Tensor::from_shape(&[g.channels, 1, 3, 3], &kernel)
                    .unwrap()
                    .into_tvalue(),
                bias.into_tvalue(),
            );
            let got = op.eval_out_of_plan(inputs).unwrap().unwrap();
            let view = got[0].try_as_plain_ram().unwrap();
            view.as_slice::<f32>().unwrap().to_vec()
        };
        let one = out(Tensor::from_shape(&[1], &[0.25f32]).unwrap());
        let each = out(Tensor::from_shape(&[3], &[0.25f32; 3]).unwrap());
        assert_eq!(one, each);
    }
}
