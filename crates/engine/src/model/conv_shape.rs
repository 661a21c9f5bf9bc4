//! The concrete shape of a 2-d convolution over NCHW f32 data, as read from
//! tract's `Conv`, and the walk over a model's convolutions that
//! layercorr's depthwise and dense ops replace.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::ops::TypedOp;

/// Sizes, stride and padding of one convolution, all concrete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Images per batch.
    pub batch: usize,
    /// Whether the tensors have the batch axis (NCHW) or not (CHW: tract
    /// drops it from a batch-1 model).
    pub batch_axis: bool,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channel groups (1: dense; `in_channels`: depthwise).
    pub groups: usize,
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

impl ConvShape {
    /// The shape of `conv` on data of `shape` when it is a plain f32 2-d
    /// convolution (OIHW kernel, no dilation, not quantised) over NCHW or
    /// batch-less CHW data with a non-empty output.
    pub fn of(conv: &Conv, shape: &[usize]) -> Option<ConvShape> {
        let spec = &conv.pool_spec;
        let plain = conv.q_params.is_none()
            && conv.kernel_fmt == KernelFormat::OIHW
            && spec.rank() == 2
            && conv.group > 0
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
        let s = ConvShape {
            batch,
            batch_axis,
            in_channels: spec.input_channels,
            out_channels: spec.output_channels,
            groups: conv.group,
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
        (s.out_h > 0 && s.out_w > 0 && s.stride_h > 0 && s.stride_w > 0).then_some(s)
    }

    /// The output tensor's shape.
    pub fn output_shape(&self) -> TVec<usize> {
        let mut shape = tvec![self.out_channels, self.out_h, self.out_w];
        if self.batch_axis {
            shape.insert(0, self.batch);
        }
        shape
    }

    /// Values of the kernel: `O x I/groups x k_h x k_w`.
    fn kernel_len(&self) -> usize {
        self.out_channels * (self.in_channels / self.groups) * self.k_h * self.k_w
    }
}

/// Replaces every `Conv` of `model` with three f32 inputs of concrete
/// shapes (data, a kernel of [`ConvShape`]'s size, a bias of one value or
/// one per output channel) by the op `make` gives for its shape, where it
/// gives one; returns how many were replaced. Call it on a decluttered
/// model, before `into_optimized` turns convolutions into tract's kernels.
pub fn replace_convs(
    model: &mut TypedModel,
    make: impl Fn(ConvShape) -> Option<Box<dyn TypedOp>>,
) -> TractResult<usize> {
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
        let Some(shape) = facts[0]
            .shape
            .as_concrete()
            .and_then(|s| ConvShape::of(conv, s))
        else {
            continue;
        };
        let len = |fact: &TypedFact| -> Option<usize> {
            fact.shape.as_concrete().map(|s| s.iter().product())
        };
        let expected = model.outlet_fact(OutletId::new(id, 0))?.shape.as_concrete();
        if expected != Some(&shape.output_shape()[..])
            || len(facts[1]) != Some(shape.kernel_len())
            || !matches!(len(facts[2]), Some(n) if n == 1 || n == shape.out_channels)
        {
            continue;
        }
        if let Some(op) = make(shape) {
            model.nodes[id].op = op;
            replaced += 1;
        }
    }
    Ok(replaced)
}
