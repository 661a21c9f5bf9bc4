//! What layercorr's own ops (its convolutions and LRN) have in common as
//! tract ops: a kernel (the shapes, and the loop that fills the output) and
//! the clamp of the activation taken in after it. [`OwnOp`] implements tract's op traits
//! once for every [`Kernel`]: reading the f32 inputs, allocating the
//! output, naming the op in tract's listings and taking a clamp.

use std::fmt::Debug;
use std::hash::Hash;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{ensure, EvalContext, EvalOp, Op, StaticName};
use tract_onnx::tract_core::ops::TypedOp;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

use super::activation::{Clamp, TakesClamp};

/// One of layercorr's own ops (a convolution or LRN), all shapes concrete.
pub trait Kernel: Debug + Clone + PartialEq + Eq + Hash + Send + Sync + 'static {
    /// The op's name in tract's listings.
    const NAME: &'static str;

    /// How many inputs it takes: `(fewest, most)`.
    const INPUTS: (usize, usize);

    /// The output tensor's shape.
    fn output_shape(&self) -> TVec<usize>;

    /// Writes every value of `out` (the output, row-major) from `inputs`,
    /// clamped. It must write all of them: `out` starts uninitialised.
    fn run(&self, inputs: &[&[f32]], clamp: Clamp, out: &mut [f32]) -> TractResult<()>;
}

/// A [`Kernel`] as a tract op, with the clamp it applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnOp<K> {
    /// Shapes and loop.
    pub kernel: K,
    /// The activation applied to every output value.
    pub clamp: Clamp,
}

impl<K: Kernel> OwnOp<K> {
    /// The op without a clamp.
    pub fn new(kernel: K) -> OwnOp<K> {
        OwnOp {
            kernel,
            clamp: Clamp::NONE,
        }
    }
}

impl<K: Kernel> TakesClamp for OwnOp<K> {
    fn clamp(&self) -> Clamp {
        self.clamp
    }

    fn with_clamp(&self, clamp: Clamp) -> Box<dyn TypedOp> {
        Box::new(OwnOp {
            kernel: self.kernel.clone(),
            clamp,
        })
    }
}

impl<K: Kernel> Op for OwnOp<K> {
    fn name(&self) -> StaticName {
        K::NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}, {:?}", self.kernel, self.clamp)])
    }

    op_as_typed_op!();
}

impl<K: Kernel> EvalOp for OwnOp<K> {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (fewest, most) = K::INPUTS;
        ensure!(
            (fewest..=most).contains(&inputs.len()),
            "{} takes {fewest} to {most} inputs, got {}",
            K::NAME,
            inputs.len()
        );
        let views = inputs
            .iter()
            .map(|i| i.try_as_plain_ram())
            .collect::<TractResult<Vec<_>>>()?;
        let slices = views
            .iter()
            .map(|v| v.as_slice::<f32>())
            .collect::<TractResult<Vec<_>>>()?;
        // SAFETY: `Kernel::run` writes every value of the output.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.kernel.output_shape())? };
        {
            let mut out_view = output.try_as_plain_ram_mut()?;
            self.kernel
                .run(&slices, self.clamp, out_view.as_slice_mut::<f32>()?)?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl<K: Kernel> TypedOp for OwnOp<K> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (fewest, most) = K::INPUTS;
        ensure!((fewest..=most).contains(&inputs.len()), "{} arity", K::NAME);
        Ok(tvec!(f32::fact(self.kernel.output_shape())))
    }

    as_op!();
}
