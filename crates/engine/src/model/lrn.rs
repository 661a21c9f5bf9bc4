//! Local response normalisation across channels (ONNX `LRN`, as in
//! AlexNet- and GoogLeNet-style networks), a plane at a time.
//!
//! tract 0.23 evaluates it one output value at a time through an indexed
//! array view with a `powf` each: 30 ms for one 192-channel 55 x 55 map of
//! the demo's GoogLeNet-style network, more than all of its convolutions.
//! Here each output plane sums the squares of its window of input planes
//! as whole rows (vectorised), and the power -0.75 that every published
//! network uses is taken as a square root and a fourth root.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, ensure};
use tract_onnx::tract_core::ops::TypedOp;
use tract_onnx_opl::lrn::Lrn;

use super::activation::Clamp;
use super::own_op::{Kernel, OwnOp};

/// One LRN over f32 NCHW data of a concrete shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Normalisation {
    /// The input (and output) shape: images, channels, then the plane.
    shape: TVec<usize>,
    /// `alpha`, `beta` and `bias` as bits (ops must be hashable).
    alpha: u32,
    beta: u32,
    bias: u32,
    /// Channels in the window.
    size: usize,
}

/// The replacement op.
pub type PlaneLrn = OwnOp<Normalisation>;

impl Normalisation {
    /// Images, channels and values per plane.
    fn dims(&self) -> (usize, usize, usize) {
        (
            self.shape[0],
            self.shape[1],
            self.shape[2..].iter().product(),
        )
    }
}

impl Kernel for Normalisation {
    const NAME: &'static str = "LayercorrLrn";
    const INPUTS: (usize, usize) = (1, 1);

    fn output_shape(&self) -> TVec<usize> {
        self.shape.clone()
    }

    fn run(&self, inputs: &[&[f32]], clamp: Clamp, out: &mut [f32]) -> TractResult<()> {
        let &[data] = inputs else {
            bail!("LRN takes one input");
        };
        let (images, channels, plane) = self.dims();
        ensure!(
            data.len() == images * channels * plane && out.len() == data.len(),
            "LRN input has {} values, expected {:?}",
            data.len(),
            self.shape
        );
        let (alpha, beta, bias) = (
            f32::from_bits(self.alpha),
            f32::from_bits(self.beta),
            f32::from_bits(self.bias),
        );
        let scale = alpha / self.size as f32;
        // The window of channel c: c - (size-1)/2 ..= c + ceil((size-1)/2),
        // cut at the ends (ONNX's definition).
        let (below, above) = ((self.size - 1) / 2, (self.size - 1).div_ceil(2));
        let mut squares = vec![0.0f32; plane];
        for (image, out_image) in data
            .chunks_exact(channels * plane.max(1))
            .zip(out.chunks_exact_mut(channels * plane.max(1)))
        {
            for c in 0..channels {
                squares.fill(0.0);
                for w in c.saturating_sub(below)..=(c + above).min(channels - 1) {
                    let x = &image[w * plane..(w + 1) * plane];
                    for (s, v) in squares.iter_mut().zip(x) {
                        *s += v * v;
                    }
                }
                let x = &image[c * plane..(c + 1) * plane];
                let y = &mut out_image[c * plane..(c + 1) * plane];
                if beta == 0.75 {
                    for ((o, v), s) in y.iter_mut().zip(x).zip(&squares) {
                        let d = bias + scale * s;
                        let root = d.sqrt();
                        *o = v / (root * root.sqrt());
                    }
                } else {
                    for ((o, v), s) in y.iter_mut().zip(x).zip(&squares) {
                        *o = v / (bias + scale * s).powf(beta);
                    }
                }
                if !clamp.is_none() {
                    crate::arch::add_and_clamp(y, 0.0, clamp.bounds());
                }
            }
        }
        Ok(())
    }
}

/// Replaces every f32 `LRN` of `model` over a concrete NCHW shape by
/// [`PlaneLrn`]; returns how many were replaced.
pub fn replace_lrn(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        let Some(lrn) = node.op_as::<Lrn>() else {
            continue;
        };
        let fact = model.outlet_fact(node.inputs[0])?;
        let Some(shape) = fact.shape.as_concrete() else {
            continue;
        };
        if fact.datum_type != f32::datum_type() || shape.len() < 3 || lrn.size == 0 {
            continue;
        }
        let op = PlaneLrn::new(Normalisation {
            shape: shape.iter().copied().collect(),
            alpha: lrn.alpha.to_bits(),
            beta: lrn.beta.to_bits(),
            bias: lrn.bias.to_bits(),
            size: lrn.size,
        });
        model.nodes[id].op = Box::new(op) as Box<dyn TypedOp>;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::values;
    use tract_onnx::tract_core::internal::EvalOp;

    /// ONNX's definition, in f64, one value at a time.
    fn reference(n: &Normalisation, data: &[f32]) -> Vec<f32> {
        let (images, channels, plane) = n.dims();
        let (alpha, beta, bias) = (
            f32::from_bits(n.alpha) as f64,
            f32::from_bits(n.beta) as f64,
            f32::from_bits(n.bias) as f64,
        );
        let mut out = vec![0.0; data.len()];
        for b in 0..images {
            for c in 0..channels {
                let lo = c.saturating_sub((n.size - 1) / 2);
                let hi = (c + (n.size - 1).div_ceil(2)).min(channels - 1);
                for p in 0..plane {
                    let at = |c: usize| data[(b * channels + c) * plane + p] as f64;
                    let sum: f64 = (lo..=hi).map(|w| at(w) * at(w)).sum();
                    let d = (bias + alpha / n.size as f64 * sum).powf(beta);
                    out[(b * channels + c) * plane + p] = (at(c) / d) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_onnx_definition() {
        for (shape, size, beta) in [
            (tvec![2, 7, 3, 5], 5, 0.75f32),
            (tvec![1, 4, 6, 6], 3, 0.5),
            (tvec![1, 9, 2, 2], 4, 0.75),
            (tvec![1, 2, 3, 3], 5, 0.75),
        ] {
            let n = Normalisation {
                shape: shape.clone(),
                alpha: 0.3f32.to_bits(),
                beta: beta.to_bits(),
                bias: 1.5f32.to_bits(),
                size,
            };
            let data: Vec<f32> = values(shape.iter().product(), 7)
                .iter()
                .map(|v| v * 3.0)
                .collect();
            let input = Tensor::from_shape(&shape, &data).unwrap().into_tvalue();
            let got = PlaneLrn::new(n.clone())
                .eval_out_of_plan(tvec!(input))
                .unwrap()
                .unwrap();
            let view = got[0].try_as_plain_ram().unwrap();
            let got = view.as_slice::<f32>().unwrap();
            for (i, (a, b)) in got.iter().zip(reference(&n, &data)).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{shape:?} value {i}: {a} vs {b}"
                );
            }
        }
    }
}
