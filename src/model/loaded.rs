//! A parsed ONNX model and the list of its capturable layers.
//!
//! Layers are named by their ONNX output tensor names (node ids are not
//! stable across tract's optimisation, and ReLU6/Clip turns into Max/Min
//! nodes once typed). The list is made once per model by typing it with a
//! batch of one: shapes come from the typed model, op names from the ONNX
//! graph, positions from its topological order. `input` is a pseudo-layer:
//! the preprocessed pixels fed to the network.

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::metadata::preprocessing_from_props;
use super::ModelError;
use crate::image::{Layout, Preprocessing};

/// The pseudo-layer holding the preprocessed input pixels.
pub const INPUT_LAYER: &str = "input";

/// One capturable layer of a model, as `nn_layers` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// ONNX output tensor name (or `input`).
    pub name: String,
    /// ONNX operator that produces it.
    pub op: String,
    /// Per-image shape, without the batch axis.
    pub shape: Vec<i64>,
    /// Number of elements per image.
    pub size: i64,
    /// Topological position, `input` first.
    pub position: i32,
}

/// A parsed model with its preprocessing and layer list, shared by every
/// query and thread that uses the same file.
#[derive(Debug)]
pub struct LoadedModel {
    /// The file it was read from.
    pub path: PathBuf,
    /// How images become its input tensor.
    pub preprocessing: Preprocessing,
    /// Capturable layers in topological order, `input` first.
    pub layers: Vec<LayerInfo>,
    /// Names of the graph's outputs (what `nn_activations` without a layer
    /// list returns).
    pub outputs: Vec<String>,
    pub(crate) inference: InferenceModel,
}

fn declared_input(fact: &InferenceFact) -> Option<(u32, u32, Layout)> {
    let dims: Vec<Option<i64>> = fact
        .shape
        .dims()
        .map(|d| d.concretize().and_then(|d| d.as_i64()))
        .collect();
    let positive = |d: Option<i64>| d.filter(|v| *v > 0).map(|v| v as u32);
    match dims.as_slice() {
        [_, Some(3), h, w] => Some((positive(*h)?, positive(*w)?, Layout::Nchw)),
        [_, h, w, Some(3)] => Some((positive(*h)?, positive(*w)?, Layout::Nhwc)),
        _ => None,
    }
}

impl LoadedModel {
    /// Parses `path` and lists its layers.
    pub fn load(path: &Path) -> Result<LoadedModel, ModelError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(ModelError::Open {
                    path: path.to_path_buf(),
                    reason: "not a regular file".into(),
                })
            }
            Err(e) => {
                return Err(ModelError::Open {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        }
        // Intermediate shapes stored in the file (value_info, output shapes)
        // often carry a symbolic batch; we fix the batch ourselves, so they
        // are ignored and tract infers every shape from the input.
        let inference = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .with_ignore_output_shapes(true)
            .model_for_path(path)
            .map_err(|e| ModelError::NotOnnx {
                path: path.to_path_buf(),
                reason: format!("{e}"),
            })?;
        let unsupported = |reason: String| ModelError::UnsupportedInput {
            path: path.to_path_buf(),
            reason,
        };
        let inputs = inference
            .input_outlets()
            .map_err(|e| unsupported(e.to_string()))?;
        if inputs.len() != 1 {
            return Err(unsupported(format!(
                "{} inputs; layercorr feeds exactly one image tensor",
                inputs.len()
            )));
        }
        let declared = inference.input_fact(0).ok().and_then(declared_input);
        let preprocessing = preprocessing_from_props(path, &inference.properties, declared)?;
        let outputs = inference
            .output_outlets()
            .map_err(|e| unsupported(e.to_string()))?
            .iter()
            .map(|o| {
                inference
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| inference.nodes()[o.node].name.clone())
            })
            .collect();
        let mut model = LoadedModel {
            path: path.to_path_buf(),
            preprocessing,
            layers: Vec::new(),
            outputs,
            inference,
        };
        model.layers = model.list_layers()?;
        Ok(model)
    }

    /// The layer called `name`, if any.
    pub fn layer(&self, name: &str) -> Option<&LayerInfo> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// A copy of the ONNX graph with its input fixed to `batch` images.
    pub(crate) fn with_batch(&self, batch: usize) -> Result<InferenceModel, ModelError> {
        let mut shape = vec![batch];
        shape.extend(self.preprocessing.shape());
        let mut model = self.inference.clone();
        model
            .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))
            .map_err(|e| ModelError::UnsupportedInput {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(model)
    }

    fn list_layers(&self) -> Result<Vec<LayerInfo>, ModelError> {
        let prepare = |e: TractError| ModelError::Prepare {
            path: self.path.clone(),
            layers: "*".into(),
            reason: format!("{e:#}"),
        };
        let mut analysed = self.with_batch(1)?;
        analysed.analyse(false).map_err(prepare)?;
        let typed = analysed.clone().into_typed().map_err(prepare)?;
        let input_shape: Vec<i64> = self
            .preprocessing
            .shape()
            .iter()
            .map(|d| *d as i64)
            .collect();
        let mut layers = vec![LayerInfo {
            name: INPUT_LAYER.to_string(),
            op: "Input".to_string(),
            size: input_shape.iter().product(),
            shape: input_shape,
            position: 0,
        }];
        let order = self.inference.eval_order().map_err(prepare)?;
        for id in order {
            let node = &self.inference.nodes()[id];
            let op = node.op.name();
            if op == "Source" || op == "Const" {
                continue;
            }
            for ix in 0..node.outputs.len() {
                let outlet = OutletId::new(id, ix);
                let name = match self.inference.outlet_label(outlet) {
                    Some(label) => label.to_string(),
                    None if ix == 0 => node.name.clone(),
                    None => continue,
                };
                if name == INPUT_LAYER || layers.iter().any(|l| l.name == name) {
                    continue;
                }
                // Shapes come from the typed model; an outlet that typing
                // folded away (Dropout, Identity) keeps its inferred fact.
                let dims = match typed
                    .find_outlet_label(&name)
                    .and_then(|o| typed.outlet_fact(o).ok())
                {
                    Some(fact) => {
                        // Weights and other constants (initializers, constant
                        // subgraphs such as ConstantOfShape) are not activations.
                        if !fact.datum_type.is_float() || fact.konst.is_some() {
                            continue;
                        }
                        fact.shape.as_concrete().map(|d| d.to_vec())
                    }
                    None => {
                        let Ok(fact) = analysed.outlet_fact(outlet) else {
                            continue;
                        };
                        let is_float = fact.datum_type.concretize().is_some_and(|t| t.is_float());
                        if !is_float || fact.value.concretize().is_some() {
                            continue;
                        }
                        fact.shape
                            .as_concrete_finite()
                            .ok()
                            .flatten()
                            .map(|d| d.to_vec())
                    }
                };
                let Some(dims) = dims else {
                    continue;
                };
                let shape: Vec<i64> = dims.iter().skip(1).map(|d| *d as i64).collect();
                layers.push(LayerInfo {
                    name,
                    op: op.trim_end_matches("Hir").to_string(),
                    size: shape.iter().product(),
                    shape,
                    position: layers.len() as i32,
                });
            }
        }
        Ok(layers)
    }
}
