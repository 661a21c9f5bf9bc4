//! An optimised tract plan whose outputs are the requested layers.
//!
//! Outputs are chosen by ONNX tensor name *before* optimisation (tract
//! renumbers and fuses nodes while optimising), with the input fixed to a
//! concrete batch so that every shape is known and tract can pick its fast
//! convolution kernels. Extra outputs cost almost nothing: the values are
//! computed anyway. The `input` pseudo-layer is served from the input tensor
//! itself, so a request for `input` alone never runs the network.

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::activation::{fuse_clamps, TakesClamp};
use super::dense_conv::{replace_dense_convs, DenseConv};
use super::depthwise::{replace_depthwise, PlaneDepthwise};
use super::lrn::replace_lrn;
use super::pointwise::{replace_pointwise, Pointwise};
use super::{LayerValues, LoadedModel, ModelError, INPUT_LAYER};

/// Whether convolutions run on layercorr's kernels ([`swap_in_own_kernels`],
/// the default) or on tract's own (the `layercorr_kernels` setting).
fn use_own_kernels() -> bool {
    super::cache::own_kernels()
}

/// Replaces tract's convolutions and LRN in a decluttered `model` by layercorr's
/// where they apply (depthwise, dense and pointwise convolutions, and LRN;
/// see their modules), with the clamping activations after the
/// convolutions taken in; returns how many ops were replaced.
/// [`Plan::build`] calls it unless the `layercorr_kernels` setting asks for
/// tract's kernels.
pub fn swap_in_own_kernels(model: &mut TypedModel) -> TractResult<usize> {
    let replaced = replace_depthwise(model)?
        + replace_dense_convs(model)?
        + replace_pointwise(model)?
        + replace_lrn(model)?;
    fuse_clamps(model, |node| {
        node.op_as::<PlaneDepthwise>()
            .map(|o| o as &dyn TakesClamp)
            .or_else(|| node.op_as::<DenseConv>().map(|o| o as &dyn TakesClamp))
            .or_else(|| node.op_as::<Pointwise>().map(|o| o as &dyn TakesClamp))
    })?;
    Ok(replaced)
}

/// One image's activations, one vector per requested layer in request order.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageActivations {
    /// `layers[i]` belongs to `Plan::layers()[i]`.
    pub layers: Vec<LayerValues>,
}

/// A runnable plan for one model, one list of layers and one batch size.
pub struct Plan {
    model: Arc<LoadedModel>,
    layers: Vec<String>,
    /// For each requested layer: `None` for `input`, else its index among
    /// the network's outputs.
    sources: Vec<Option<usize>>,
    runnable: Option<Arc<TypedRunnableModel>>,
    batch: usize,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("model", &self.model.path)
            .field("layers", &self.layers)
            .field("batch", &self.batch)
            .finish()
    }
}

impl Plan {
    /// Builds and optimises a plan for `layers` (already resolved names) at
    /// a fixed `batch` size.
    pub fn build(
        model: Arc<LoadedModel>,
        layers: Vec<String>,
        batch: usize,
    ) -> Result<Plan, ModelError> {
        let outputs: Vec<String> = layers
            .iter()
            .filter(|l| *l != INPUT_LAYER)
            .cloned()
            .collect();
        let sources = layers
            .iter()
            .map(|l| outputs.iter().position(|o| o == l))
            .collect();
        let runnable = if outputs.is_empty() {
            None
        } else {
            let prepare = |e: TractError| ModelError::Prepare {
                path: model.path.clone(),
                layers: outputs.join(", "),
                reason: format!("{e:#}"),
            };
            let mut graph = model.with_batch(batch)?;
            graph.select_outputs_by_name(&outputs).map_err(prepare)?;
            let mut typed = graph
                .into_typed()
                .and_then(|t| t.into_decluttered())
                .map_err(prepare)?;
            if use_own_kernels() {
                swap_in_own_kernels(&mut typed).map_err(prepare)?;
            }
            let optimized = typed.into_optimized().map_err(prepare)?;
            Some(optimized.into_runnable().map_err(prepare)?)
        };
        Ok(Plan {
            model,
            layers,
            sources,
            runnable,
            batch,
        })
    }

    /// The layers this plan returns, in order.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// The model this plan runs.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// How many images one call to `run` takes.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Runs exactly `batch` preprocessed images (each `tensor_len` values,
    /// converted to the model's input type); `names` identify the images
    /// in errors.
    pub fn run(
        &self,
        images: &[Vec<f32>],
        names: &[&str],
    ) -> Result<Vec<ImageActivations>, ModelError> {
        let fail = |reason: String| ModelError::Run {
            path: self.model.path.clone(),
            image: names.join("', '"),
            reason,
        };
        if images.len() != self.batch {
            return Err(fail(format!(
                "batch of {} images, plan expects {}",
                images.len(),
                self.batch
            )));
        }
        // outputs[o][i]: output o of image i.
        let mut outputs: Vec<Vec<LayerValues>> = Vec::new();
        if let Some(runnable) = &self.runnable {
            let per_image = self.model.preprocessing.tensor_len();
            if let Some(image) = images.iter().find(|i| i.len() != per_image) {
                return Err(fail(format!(
                    "input has {} values, expected {per_image}",
                    image.len()
                )));
            }
            let mut shape = vec![images.len()];
            shape.extend(self.model.preprocessing.shape());
            // The images are copied once, straight into the input tensor.
            let mut input = Tensor::zero::<f32>(&shape).map_err(|e| fail(format!("{e:#}")))?;
            {
                let mut view = input
                    .try_as_plain_ram_mut()
                    .map_err(|e| fail(format!("{e:#}")))?;
                let all = view
                    .as_slice_mut::<f32>()
                    .map_err(|e| fail(format!("{e:#}")))?;
                for (dst, image) in all.chunks_exact_mut(per_image.max(1)).zip(images) {
                    dst.copy_from_slice(image);
                }
            }
            // Preprocessing produces `f32`; a model declaring another input
            // type gets it converted (exact for the raw 0–255 values of a
            // `uint8` input).
            let input_type = self.model.input_type;
            if input_type != f32::datum_type() {
                input = input
                    .cast_to_dt(input_type)
                    .map_err(|e| fail(format!("{e:#}")))?
                    .into_owned();
            }
            let results = runnable
                .run(tvec!(input.into()))
                .map_err(|e| fail(format!("{e:#}")))?;
            for value in results {
                let all = LayerValues::from_tensor(value.into_tensor())
                    .map_err(|e| fail(format!("{e:#}")))?;
                outputs.push(if images.len() == 1 {
                    // One image: its output tensor as it is, no copy.
                    vec![all]
                } else {
                    let per = all.len() / images.len();
                    all.chunks_exact(per.max(1))
                        .map(|one| LayerValues::from(one.to_vec()))
                        .collect()
                });
            }
        }
        let mut per_image: Vec<ImageActivations> = (0..images.len())
            .map(|_| ImageActivations {
                layers: Vec::with_capacity(self.layers.len()),
            })
            .collect();
        // Each output is moved to the last layer that asks for it and
        // shared by earlier ones (a layer named twice).
        let mut uses_left = vec![0usize; outputs.len()];
        for o in self.sources.iter().flatten() {
            uses_left[*o] += 1;
        }
        for source in &self.sources {
            for (i, acts) in per_image.iter_mut().enumerate() {
                let values = match source {
                    None => LayerValues::from(images[i].clone()),
                    Some(o) if uses_left[*o] == 1 => outputs[*o]
                        .get_mut(i)
                        .map(std::mem::take)
                        .unwrap_or_default(),
                    Some(o) => outputs[*o].get(i).cloned().unwrap_or_default(),
                };
                acts.layers.push(values);
            }
            if let Some(o) = source {
                uses_left[*o] -= 1;
            }
        }
        Ok(per_image)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::loaded::tiny_onnx::{model, Dim, FLOAT, UINT8};
    use super::*;

    fn plan(bytes: &[u8], layers: &[&str], batch: usize) -> Plan {
        let model = LoadedModel::from_bytes(bytes, Path::new("tiny.onnx")).unwrap();
        let layers = layers.iter().map(|l| l.to_string()).collect();
        Plan::build(Arc::new(model), layers, batch).unwrap()
    }

    fn vecs(layers: &[LayerValues]) -> Vec<Vec<f32>> {
        layers.iter().map(|l| l.to_vec()).collect()
    }

    #[test]
    fn float_inputs_run_in_batches() {
        let dims = [Dim::Param("N"), Dim::Value(3), Dim::Value(2), Dim::Value(2)];
        let plan = plan(&model(FLOAT, &dims, &[]), &["y", INPUT_LAYER], 2);
        let a: Vec<f32> = (0..12).map(|v| v as f32 - 6.0).collect();
        let b: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let out = plan.run(&[a.clone(), b.clone()], &["a", "b"]).unwrap();
        let relu: Vec<f32> = a.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(vecs(&out[0].layers), vec![relu, a]);
        assert_eq!(vecs(&out[1].layers), vec![b.clone(), b]);
    }

    #[test]
    fn one_image_gets_its_outputs_whole_even_when_a_layer_is_named_twice() {
        let dims = [Dim::Param("N"), Dim::Value(3), Dim::Value(2), Dim::Value(2)];
        let plan = plan(&model(FLOAT, &dims, &[]), &["y", INPUT_LAYER, "y"], 1);
        let a: Vec<f32> = (0..12).map(|v| v as f32 - 6.0).collect();
        let out = plan.run(std::slice::from_ref(&a), &["a"]).unwrap();
        let relu: Vec<f32> = a.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(vecs(&out[0].layers), vec![relu.clone(), a, relu]);
    }

    #[test]
    fn uint8_inputs_get_raw_pixels_as_bytes() {
        // [1, 1, 2, 3] uint8: one grey channel, raw values.
        let dims = [Dim::Value(1), Dim::Value(1), Dim::Value(2), Dim::Value(3)];
        let plan = plan(&model(UINT8, &dims, &[]), &["y"], 1);
        assert_eq!(plan.model().input_type, DatumType::U8);
        let img = ::image::RgbImage::from_fn(30, 20, |x, _| {
            if x < 15 {
                ::image::Rgb([255, 255, 255])
            } else {
                ::image::Rgb([0, 0, 0])
            }
        });
        let pixels =
            crate::image::preprocess(&img, &plan.model().preprocessing, Path::new("g.png"))
                .unwrap();
        assert_eq!(pixels.len(), 6);
        assert!(pixels
            .iter()
            .all(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v)));
        assert_eq!(pixels[0], 255.0);
        let out = plan.run(std::slice::from_ref(&pixels), &["g.png"]).unwrap();
        assert_eq!(vecs(&out[0].layers), vec![pixels]);
    }
}
