//! Clamping activations (ReLU, ReLU6, any `Clip`) taken into the
//! convolution before them.
//!
//! tract declutters them into a `Max` and/or a `Min` with a constant, which
//! its optimiser runs as one more pass over the convolution's output
//! (2 ms of EfficientNet-Lite0's forward pass, mostly on the large early
//! maps). layercorr's convolutions apply the clamp while their output is
//! still in cache instead: [`fuse_clamps`] folds every such chain after one
//! of them into the op.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::TypedOp;

/// `x -> min(max(x, lo), hi)`, stored as bits so that ops holding it can
/// be hashed and compared as tract requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Clamp {
    lo: u32,
    hi: u32,
}

impl Clamp {
    /// No clamping.
    pub const NONE: Clamp = Clamp {
        lo: f32::NEG_INFINITY.to_bits(),
        hi: f32::INFINITY.to_bits(),
    };

    /// `min(max(x, lo), hi)`.
    #[cfg(test)]
    pub fn new(lo: f32, hi: f32) -> Clamp {
        Clamp {
            lo: lo.to_bits(),
            hi: hi.to_bits(),
        }
    }

    /// The lower bound.
    pub fn lo(self) -> f32 {
        f32::from_bits(self.lo)
    }

    /// The upper bound.
    pub fn hi(self) -> f32 {
        f32::from_bits(self.hi)
    }

    /// `[lo, hi]`, as the vector loops of `crate::arch` take them.
    pub fn bounds(self) -> [f32; 2] {
        [self.lo(), self.hi()]
    }

    /// Whether it changes anything.
    pub fn is_none(self) -> bool {
        self == Clamp::NONE
    }

    /// This clamp followed by `max(·, c)`:
    /// `max(min(max(x, lo), hi), c) = min(max(x, max(lo, c)), max(hi, c))`.
    fn then_max(self, c: f32) -> Clamp {
        Clamp {
            lo: self.lo().max(c).to_bits(),
            hi: self.hi().max(c).to_bits(),
        }
    }

    /// This clamp followed by `min(·, c)`.
    fn then_min(self, c: f32) -> Clamp {
        Clamp {
            lo: self.lo,
            hi: self.hi().min(c).to_bits(),
        }
    }

    /// Applies it to one value (the kernels apply it with
    /// `crate::arch::add_and_clamp` and in the depthwise loops).
    #[cfg(test)]
    fn apply(self, v: f32) -> f32 {
        let mut one = [v];
        crate::arch::add_and_clamp(&mut one, 0.0, self.bounds());
        one[0]
    }
}

/// An op of layercorr's that can apply a clamp to its output.
pub trait TakesClamp {
    /// The clamp it applies now.
    fn clamp(&self) -> Clamp;
    /// The same op applying `clamp` instead.
    fn with_clamp(&self, clamp: Clamp) -> Box<dyn TypedOp>;
}

/// The single f32 value of a constant input, when it has exactly one.
fn scalar_constant(model: &TypedModel, outlet: OutletId) -> TractResult<Option<f32>> {
    let fact = model.outlet_fact(outlet)?;
    let Some(konst) = &fact.konst else {
        return Ok(None);
    };
    if fact.datum_type != f32::datum_type() || konst.len() != 1 {
        return Ok(None);
    }
    let view = konst.try_as_plain_ram()?;
    Ok(view.as_slice::<f32>()?.first().copied())
}

/// The `Max`/`Min`-with-a-constant node that alone reads `outlet`, with its
/// output and the clamp it adds; `None` when `outlet` is a model output,
/// feeds anything else, or the op changes the shape.
fn clamp_after(
    model: &TypedModel,
    outlet: OutletId,
    clamp: Clamp,
) -> TractResult<Option<(OutletId, Clamp)>> {
    let successors = &model.node(outlet.node).outputs[outlet.slot].successors;
    if successors.len() != 1 || model.outputs.contains(&outlet) {
        return Ok(None);
    }
    let next = model.node(successors[0].node);
    let Some(op) = next.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if next.inputs.len() != 2 || op.1.is_some() {
        return Ok(None);
    }
    let Some(c) = scalar_constant(model, next.inputs[1 - successors[0].slot])? else {
        return Ok(None);
    };
    let next_outlet = OutletId::new(next.id, 0);
    if model.outlet_fact(next_outlet)?.shape != model.outlet_fact(outlet)?.shape {
        return Ok(None);
    }
    let clamp = match op.0.name() {
        "Max" => clamp.then_max(c),
        "Min" => clamp.then_min(c),
        _ => return Ok(None),
    };
    Ok(Some((next_outlet, clamp)))
}

/// Folds every chain of `Max`/`Min` with constants that follows an op for
/// which `fusable` gives a [`TakesClamp`] into that op; returns how many
/// ops took a clamp. Values named as model outputs are never skipped over.
pub fn fuse_clamps(
    model: &mut TypedModel,
    fusable: impl Fn(&TypedNode) -> Option<&dyn TakesClamp>,
) -> TractResult<usize> {
    let mut fused = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        let Some(op) = fusable(node) else {
            continue;
        };
        let (mut end, mut clamp) = (OutletId::new(id, 0), op.clamp());
        while let Some((next, wider)) = clamp_after(model, end, clamp)? {
            (end, clamp) = (next, wider);
        }
        if end.node == id {
            continue;
        }
        let new_op = op.with_clamp(clamp);
        let mut patch = TypedModelPatch::new("layercorr clamp");
        let taps = patch.taps(model, &node.inputs)?;
        let name = format!("{}.clamped", model.node(end.node).name);
        let wire = patch.wire_node(name, new_op, &taps)?[0];
        patch.shunt_outside(model, end, wire)?;
        patch.apply(model)?;
        fused += 1;
    }
    Ok(fused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_of_max_and_min_composes_in_order() {
        let relu6 = Clamp::NONE.then_max(0.0).then_min(6.0);
        assert_eq!((relu6.lo(), relu6.hi()), (0.0, 6.0));
        assert!(Clamp::NONE.is_none() && !relu6.is_none());
        // (is_max, constant) steps, applied one at a time vs composed.
        let chains: [&[(bool, f32)]; 3] = [
            &[(false, 1.0), (true, 2.0)],
            &[(true, -1.0), (false, 2.0), (true, 0.0)],
            &[(false, 3.0), (false, 1.0), (true, -4.0)],
        ];
        for chain in chains {
            let composed = chain.iter().fold(Clamp::NONE, |c, (is_max, k)| {
                if *is_max {
                    c.then_max(*k)
                } else {
                    c.then_min(*k)
                }
            });
            for x in [-5.0f32, -0.5, 0.5, 1.5, 7.0] {
                let stepwise = chain
                    .iter()
                    .fold(x, |v, (is_max, k)| if *is_max == (v < *k) { *k } else { v });
                assert_eq!(composed.apply(x), stepwise, "{chain:?} at {x}");
            }
        }
    }
}
