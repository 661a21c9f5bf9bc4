//! 1x1 convolutions as one faer product per image.
//!
//! tract declutters a 1x1, stride-1, unpadded convolution into an `EinSum`
//! of the data `[N,] I, spatial…` with a constant `O x I` matrix, followed
//! by an `Add` of the bias. [`replace_pointwise`] swaps each such pair (or
//! the `EinSum` alone when nothing adds a bias to it) for [`Pointwise`],
//! which computes `out[O x S] = W[O x I] · X[I x S] + bias` straight from
//! the NCHW data with [`super::product::multiply`]: no packing copy of the
//! data, and output rows written whole (see `product` for why). Where
//! `product` prefers weights packed in panels on this CPU, the replacement
//! takes a packed copy of the weights made here, once per plan.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, ensure};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::InOut;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::activation::Clamp;
use super::own_op::{Kernel, OwnOp};
use super::product::{multiply, Bias, WeightLayout};

/// Sizes of one pointwise product, all concrete.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PointwiseShape {
    /// Images (the product of the batch axes, 1 without them).
    pub batch: usize,
    /// Output channels O.
    pub rows: usize,
    /// Input channels I.
    pub depth: usize,
    /// Positions S per image (the product of the spatial axes).
    pub cols: usize,
    /// The output tensor's shape.
    pub output: TVec<usize>,
    /// The position of the O axis in it.
    pub channel_axis: usize,
    /// How the weights input is laid out.
    pub weights: WeightLayout,
}

/// The replacement op: inputs are the data, the `O x I` weights (in the
/// shape's layout) and optionally the bias (one value per output channel, or one in all).
pub type Pointwise = OwnOp<PointwiseShape>;

impl Kernel for PointwiseShape {
    const NAME: &'static str = "LayercorrPointwise";
    const INPUTS: (usize, usize) = (2, 3);

    fn output_shape(&self) -> TVec<usize> {
        self.output.clone()
    }

    fn run(&self, inputs: &[&[f32]], clamp: Clamp, out: &mut [f32]) -> TractResult<()> {
        let s = self;
        let (data, weights, bias) = match *inputs {
            [data, weights] => (data, weights, Bias::None),
            [data, weights, bias] => (data, weights, Bias::PerRow(bias)),
            _ => bail!("pointwise expects data, weights and an optional bias"),
        };
        let (in_image, out_image) = (s.depth * s.cols, s.rows * s.cols);
        ensure!(
            data.len() == s.batch * in_image && out.len() == s.batch * out_image,
            "pointwise input has {} values, expected {s:?}",
            data.len()
        );
        // `multiply` writes every value of each image's output.
        for (image, out) in data
            .chunks_exact(in_image.max(1))
            .zip(out.chunks_exact_mut(out_image.max(1)))
        {
            let weights = (weights, s.weights);
            multiply(weights, image, bias, clamp, (s.rows, s.depth, s.cols), out)?;
        }
        Ok(())
    }
}

/// The axis letters of one slot of an `EinSum`, in position order; `None`
/// when a letter repeats within the slot (a diagonal).
fn letters(einsum: &EinSum, slot: InOut, rank: usize) -> Option<Vec<char>> {
    let mut found = vec![None; rank];
    for axis in einsum.axes.iter_all_axes() {
        let positions = match slot {
            InOut::In(i) => &axis.inputs[i],
            InOut::Out(o) => &axis.outputs[o],
        };
        for p in positions {
            *found.get_mut(*p)? = Some(axis.repr);
        }
    }
    let letters: Option<Vec<char>> = found.into_iter().collect();
    letters.filter(|l| (1..l.len()).all(|i| !l[..i].contains(&l[i])))
}

/// The sizes of `node` when it is an `EinSum` of f32 data with a constant
/// `O x I` matrix that [`Pointwise`] computes: data `[batch…, I, spatial…]`,
/// output `[batch…, O, spatial…]` (batch axes of size 1 may be dropped or
/// added).
fn pointwise_shape(model: &TypedModel, node: &TypedNode) -> TractResult<Option<PointwiseShape>> {
    let Some(einsum) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if einsum.q_params.is_some()
        || einsum.operating_dt != f32::datum_type()
        || node.inputs.len() != 2
    {
        return Ok(None);
    }
    let (data, weights) = (
        model.outlet_fact(node.inputs[0])?,
        model.outlet_fact(node.inputs[1])?,
    );
    let output = model.outlet_fact(OutletId::new(node.id, 0))?;
    let (Some(x), Some(w), Some(out)) = (
        data.shape.as_concrete(),
        weights.shape.as_concrete(),
        output.shape.as_concrete(),
    ) else {
        return Ok(None);
    };
    let f32s = [data, weights, output]
        .iter()
        .all(|f| f.datum_type == f32::datum_type());
    if !f32s || weights.konst.is_none() || w.len() != 2 {
        return Ok(None);
    }
    let (Some(xl), Some(wl), Some(ol)) = (
        letters(einsum, InOut::In(0), x.len()),
        letters(einsum, InOut::In(1), 2),
        letters(einsum, InOut::Out(0), out.len()),
    ) else {
        return Ok(None);
    };
    let (o, i) = (wl[0], wl[1]);
    let (Some(p), Some(q)) = (
        xl.iter().position(|l| *l == i),
        ol.iter().position(|l| *l == o),
    ) else {
        return Ok(None);
    };
    let spatial_match = xl[p + 1..] == ol[q + 1..]
        && xl[p + 1..].iter().all(|l| !wl.contains(l))
        && x[p + 1..] == out[q + 1..];
    // Batch axes: the same letters and sizes before I and before O, apart
    // from axes of size 1, which either side may have alone.
    let sized = |letters: &[char], dims: &[usize]| -> Vec<(char, usize)> {
        letters
            .iter()
            .zip(dims)
            .filter(|(_, d)| **d != 1)
            .map(|(l, d)| (*l, *d))
            .collect()
    };
    let batch_match = sized(&xl[..p], &x[..p]) == sized(&ol[..q], &out[..q]);
    if !spatial_match
        || !batch_match
        || xl.contains(&o)
        || ol.contains(&i)
        || x[p] != w[1]
        || out[q] != w[0]
    {
        return Ok(None);
    }
    Ok(Some(PointwiseShape {
        batch: x[..p].iter().product(),
        rows: w[0],
        depth: w[1],
        cols: x[p + 1..].iter().product(),
        output: out.iter().copied().collect(),
        channel_axis: q,
        weights: WeightLayout::RowMajor,
    }))
}

/// The `Add` after `node` that adds a constant bias per output channel (at
/// output axis `channel_axis`), with its other input; `None` when the
/// product's value is used elsewhere too or is itself a model output.
fn bias_add(
    model: &TypedModel,
    node: &TypedNode,
    shape: &PointwiseShape,
) -> TractResult<Option<(usize, OutletId)>> {
    let outlet = OutletId::new(node.id, 0);
    let successors = &node.outputs[0].successors;
    if successors.len() != 1 || model.outputs.contains(&outlet) {
        return Ok(None);
    }
    let add = model.node(successors[0].node);
    let is_add = add
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.name() == "Add");
    if !is_add || add.inputs.len() != 2 {
        return Ok(None);
    }
    let other = add.inputs[1 - successors[0].slot];
    let fact = model.outlet_fact(other)?;
    let sum = model.outlet_fact(OutletId::new(add.id, 0))?;
    let (Some(bias), Some(sum_shape)) = (fact.shape.as_concrete(), sum.shape.as_concrete()) else {
        return Ok(None);
    };
    if fact.konst.is_none()
        || fact.datum_type != f32::datum_type()
        || sum.datum_type != f32::datum_type()
        || sum_shape != &shape.output[..]
        || bias.len() > sum_shape.len()
    {
        return Ok(None);
    }
    // Right-aligned against the output, the bias may vary only along the
    // channel axis, the one right before the spatial axes.
    let offset = sum_shape.len() - bias.len();
    let per_channel = bias
        .iter()
        .enumerate()
        .all(|(a, d)| *d == 1 || (a + offset == shape.channel_axis && *d == shape.rows));
    Ok(per_channel.then_some((add.id, other)))
}

/// A constant in `patch` holding the weights of `node` (a pointwise
/// `EinSum`, weights its second input) in `shape`'s layout.
fn arranged_weights(
    model: &TypedModel,
    node: &TypedNode,
    shape: &PointwiseShape,
    patch: &mut TypedModelPatch,
) -> TractResult<OutletId> {
    let fact = model.outlet_fact(node.inputs[1])?;
    let Some(konst) = fact.konst.as_ref() else {
        bail!("pointwise weights of {} are not a constant", node.name);
    };
    let tensor = shape
        .weights
        .arrange_tensor(konst, shape.rows, shape.depth)?;
    patch.add_const(format!("{}.weights.{:?}", node.name, shape.weights), tensor)
}

/// Replaces every eligible pointwise `EinSum` (with its bias `Add`) of
/// `model` by [`Pointwise`]; returns how many were replaced. Call it on a
/// decluttered model, before `into_optimized`.
pub fn replace_pointwise(model: &mut TypedModel) -> TractResult<usize> {
    replace_pointwise_with(model, WeightLayout::preferred())
}

/// [`replace_pointwise`] with the weights in `layout`.
fn replace_pointwise_with(model: &mut TypedModel, layout: WeightLayout) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        let Some(mut shape) = pointwise_shape(model, node)? else {
            continue;
        };
        let mut patch = TypedModelPatch::new("layercorr pointwise");
        let mut taps = patch.taps(model, &node.inputs)?;
        shape.weights = layout;
        if shape.weights != WeightLayout::RowMajor {
            taps[1] = arranged_weights(model, node, &shape, &mut patch)?;
        }
        let (name, replaced_outlet) = match bias_add(model, node, &shape)? {
            Some((add, bias)) => {
                taps.push(patch.tap_model(model, bias)?);
                (model.nodes[add].name.clone(), OutletId::new(add, 0))
            }
            None => (node.name.clone(), OutletId::new(id, 0)),
        };
        let wire = patch.wire_node(format!("{name}.pointwise"), Pointwise::new(shape), &taps)?[0];
        patch.shunt_outside(model, replaced_outlet, wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests;
