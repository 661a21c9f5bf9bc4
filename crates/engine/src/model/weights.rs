//! Summary statistics of a model's weight tensors, for comparing the
//! distribution of weights across layers (and across checkpoints).
//!
//! Weights are the ONNX initializers (constant nodes) with a floating-point
//! type; each is attributed to the node that consumes it, which for a
//! convolution or a fully connected layer is the layer itself.

use tract_onnx::tract_core::ops::konst::Const;

use super::LoadedModel;

/// Statistics of one weight tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightInfo {
    /// Initializer name.
    pub tensor: String,
    /// Name of the node that uses it (the layer).
    pub layer: String,
    /// Tensor shape.
    pub shape: Vec<i64>,
    /// Number of elements.
    pub count: i64,
    /// Mean value.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Fraction of values with `|w| <= NEAR_ZERO * max |w|`.
    pub near_zero: f64,
}

/// "Near zero" threshold, relative to the tensor's largest magnitude.
pub const NEAR_ZERO: f64 = 0.01;

fn stats(values: &[f32]) -> (f64, f64, f64, f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|v| (f64::from(*v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let min = values
        .iter()
        .fold(f64::INFINITY, |m, v| m.min(f64::from(*v)));
    let max = values
        .iter()
        .fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(*v)));
    let limit = NEAR_ZERO * min.abs().max(max.abs());
    let near = values
        .iter()
        .filter(|v| f64::from(v.abs()) <= limit)
        .count() as f64
        / n;
    (mean, var.sqrt(), min, max, near)
}

impl LoadedModel {
    /// Statistics of every floating-point weight tensor, in graph order.
    pub fn weights(&self) -> Vec<WeightInfo> {
        let graph = &self.inference;
        let mut out = Vec::new();
        for node in graph.nodes() {
            let Some(konst) = node.op_as::<Const>() else {
                continue;
            };
            let tensor = konst.val();
            if !tensor.datum_type().is_float() || tensor.len() == 0 {
                continue;
            }
            let Ok(cast) = tensor.cast_to::<f32>() else {
                continue;
            };
            let Ok(view) = cast.try_as_plain_ram() else {
                continue;
            };
            let Ok(values) = view.as_slice::<f32>() else {
                continue;
            };
            let layer = node
                .outputs
                .first()
                .and_then(|o| o.successors.first())
                .map(|inlet| graph.nodes()[inlet.node].name.clone())
                .unwrap_or_default();
            let (mean, std, min, max, near_zero) = stats(values);
            out.push(WeightInfo {
                tensor: node.name.clone(),
                layer,
                shape: tensor.shape().iter().map(|d| *d as i64).collect(),
                count: values.len() as i64,
                mean,
                std,
                min,
                max,
                near_zero,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_a_small_tensor() {
        let (mean, std, min, max, near) = stats(&[-2.0, 0.0, 0.01, 2.0]);
        // 0.01 is not exact in f32: compare with the f32 value's own stats.
        let small = f64::from(0.01f32);
        let expected_mean = small / 4.0;
        let expected_var = (8.0 + small * small) / 4.0 - expected_mean * expected_mean;
        assert!((mean - expected_mean).abs() < 1e-12);
        assert!((std - expected_var.sqrt()).abs() < 1e-9);
        assert_eq!((min, max), (-2.0, 2.0));
        assert_eq!(near, 0.5);
    }
}
