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
use tract_onnx::tract_core::ops::TypedOp;

use super::activation::Clamp;
use super::conv_shape::{replace_convs, ConvShape};
use super::own_op::{Kernel, OwnOp};
use super::product::bias_of_row;
use crate::arch::{accumulate_taps, copy_rows, LANES};

/// A depthwise convolution: as many groups as input channels, one
/// output channel per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Depthwise(pub ConvShape);

impl std::ops::Deref for Depthwise {
    type Target = ConvShape;

    fn deref(&self) -> &ConvShape {
        &self.0
    }
}

impl Depthwise {
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
pub type PlaneDepthwise = OwnOp<Depthwise>;

impl Kernel for Depthwise {
    const NAME: &'static str = "LayercorrDepthwise";
    const INPUTS: (usize, usize) = (3, 3);

    fn output_shape(&self) -> TVec<usize> {
        self.0.output_shape()
    }

    fn run(&self, inputs: &[&[f32]], clamp: Clamp, out: &mut [f32]) -> TractResult<()> {
        let g = self;
        let &[data, kernel, bias] = inputs else {
            bail!("depthwise expects data, kernel, bias");
        };
        let taps = g.k_h * g.k_w;
        let (in_plane, out_plane) = (g.in_h * g.in_w, g.out_h * g.out_w);
        ensure!(
            data.len() == g.batch * g.in_channels * in_plane
                && kernel.len() == g.in_channels * taps
                && (bias.len() == g.in_channels || bias.len() == 1)
                && out.len() == g.batch * g.in_channels * out_plane,
            "depthwise inputs do not match {g:?}"
        );
        let mut work = Workspace::new(g);
        // Every plane of the output is written (each starts from the bias).
        for (p, out) in out.chunks_exact_mut(out_plane).enumerate() {
            let c = p % g.in_channels;
            let b = bias_of_row(bias, c);
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
impl Depthwise {
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
fn tap_offsets(g: &Depthwise) -> Vec<usize> {
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
fn scatter_into_phases(g: &Depthwise, plane: &[f32], scratch: &mut [f32]) {
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
    fn new(g: &Depthwise) -> Workspace {
        Workspace {
            offsets: tap_offsets(g),
            scratch: vec![0.0; g.scratch_len()],
            grid: vec![0.0; g.grid_len()],
        }
    }
}

/// One channel: `out = clamp(bias + sum over taps of w * window)`.
fn convolve_plane(
    g: &Depthwise,
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
    accumulate_taps(offsets, weights, bias, clamp.bounds(), scratch, grid);
    copy_rows(grid, g.phase_len(), out, g.out_w, (g.out_h, g.out_w));
}

/// Replaces every depthwise `Conv` of `model` (see
/// [`super::conv_shape::replace_convs`]) by [`PlaneDepthwise`]; returns how
/// many were replaced.
pub fn replace_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    replace_convs(model, |s| {
        let depthwise = s.groups == s.in_channels && s.out_channels == s.in_channels;
        depthwise.then(|| Box::new(PlaneDepthwise::new(Depthwise(s))) as Box<dyn TypedOp>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::{reference_conv, values};
    use tract_onnx::tract_core::internal::EvalOp;

    fn check(g: Depthwise) {
        check_clamped(g, Clamp::NONE);
        // A clamp that cuts the test data's outputs on both sides.
        check_clamped(g, Clamp::new(-0.75, 1.5));
    }

    fn check_clamped(g: Depthwise, clamp: Clamp) {
        let data = values(g.batch * g.in_channels * g.in_h * g.in_w, 1);
        let kernel = values(g.in_channels * g.k_h * g.k_w, 2);
        let bias = values(g.in_channels, 3);
        let op = PlaneDepthwise { kernel: g, clamp };
        let shape: &[usize] = if g.batch_axis {
            &[g.batch, g.in_channels, g.in_h, g.in_w]
        } else {
            &[g.in_channels, g.in_h, g.in_w]
        };
        let inputs = tvec!(
            Tensor::from_shape(shape, &data).unwrap().into_tvalue(),
            Tensor::from_shape(&[g.in_channels, 1, g.k_h, g.k_w], &kernel)
                .unwrap()
                .into_tvalue(),
            Tensor::from_shape(&[g.in_channels], &bias)
                .unwrap()
                .into_tvalue(),
        );
        let got = op.eval_out_of_plan(inputs).unwrap().unwrap();
        assert_eq!(got[0].shape(), &g.output_shape()[..]);
        let view = got[0].try_as_plain_ram().unwrap();
        let got = view.as_slice::<f32>().unwrap();
        let want = reference_conv(&g, &data, &kernel, &bias);
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let b = b.clamp(clamp.lo(), clamp.hi());
            assert!(
                (a - b).abs() < 1e-5,
                "{g:?} {clamp:?}: value {i}: {a} vs {b}"
            );
        }
    }

    fn geometry(size: usize, k: usize, stride: usize, pads: (usize, usize)) -> Depthwise {
        let out = (size + pads.0 + pads.1 - k) / stride + 1;
        Depthwise(ConvShape {
            batch: 2,
            batch_axis: true,
            in_channels: 3,
            out_channels: 3,
            groups: 3,
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
        })
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
        g.0.batch = 1;
        g.0.batch_axis = false;
        check(g);
    }

    #[test]
    fn a_single_bias_value_is_broadcast() {
        let g = geometry(6, 3, 1, (1, 1));
        let data = values(g.batch * g.in_channels * g.in_h * g.in_w, 4);
        let kernel = values(g.in_channels * 9, 5);
        let op = PlaneDepthwise::new(g);
        let out = |bias: Tensor| {
            let inputs = tvec!(
                Tensor::from_shape(&[g.batch, g.in_channels, g.in_h, g.in_w], &data)
                    .unwrap()
                    .into_tvalue(),
                Tensor::from_shape(&[g.in_channels, 1, 3, 3], &kernel)
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
