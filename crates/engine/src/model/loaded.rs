//! A parsed ONNX model and the list of its capturable layers.
//!
//! Layers are named by their ONNX output tensor names (node ids are not
//! stable across tract's optimisation, and ReLU6/Clip turns into Max/Min
//! nodes once typed). The list is made once per model by typing it with a
//! batch of one: shapes come from the typed model, op names from the ONNX
//! graph, positions from its topological order. `input` is a pseudo-layer:
//! the preprocessed pixels fed to the network.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use tract_onnx::model::ParseResult;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::metadata::{
    preprocessing_from_keys, report_keys, DeclaredInput, Keys, Overrides, PreprocessingSource,
};
use super::ModelError;
use crate::image::{Layout, Preprocessing};

/// The pseudo-layer holding the preprocessed input pixels.
pub const INPUT_LAYER: &str = "input";

/// One capturable layer of a model, as `nn_layers` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// ONNX output tensor name (or `input`).
    pub name: String,
    /// ONNX operator type of the node that produces it (`Relu`, `Conv`...).
    pub op: String,
    /// Name of that ONNX node; empty for a tensor tract made up.
    pub node: String,
    /// tract's operator for it, after tract's own translation.
    pub tract_op: String,
    /// Per-image shape, without the batch axis.
    pub shape: Vec<i64>,
    /// Number of elements per image.
    pub size: i64,
    /// Topological position, `input` first.
    pub position: i32,
}

/// What layout tracking needs of one ONNX node.
#[derive(Debug, Clone)]
struct LayoutNode {
    op: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// A Transpose's permutation.
    perm: Option<Vec<i64>>,
}

/// ONNX operators whose output has their first input's layout.
const KEEPS_LAYOUT: [&str; 22] = [
    "Relu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "LeakyRelu",
    "HardSigmoid",
    "HardSwish",
    "Elu",
    "Selu",
    "Softplus",
    "Mish",
    "Gelu",
    "PRelu",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Identity",
    "Cast",
    "Neg",
    "Abs",
    "Dropout",
];

/// Facts about the ONNX file itself, as `nn_model` reports them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelInfo {
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
    /// The ONNX IR version.
    pub ir_version: i64,
    /// The version of the default (`ai.onnx`) operator set.
    pub opset: i64,
    /// `producer_name` and `producer_version` as the exporter wrote them.
    pub producer_name: String,
    pub producer_version: String,
    /// The graph's image input: name, element type, declared shape
    /// (`?` for a symbolic dimension).
    pub input_name: String,
    pub input_type: String,
    pub input_shape: String,
}

/// A parsed model with its preprocessing and layer list, shared by every
/// query and thread that uses the same file.
#[derive(Debug)]
pub struct LoadedModel {
    /// The file it was read from.
    pub path: PathBuf,
    /// How images become its input tensor.
    pub preprocessing: Preprocessing,
    /// The element type of its input (`F32` unless the graph declares
    /// `F16`, `F64` or `U8`); the `f32` values from preprocessing are cast
    /// to it.
    pub input_type: DatumType,
    /// Capturable layers in topological order, `input` first.
    pub layers: Vec<LayerInfo>,
    /// Names of the graph's outputs (what `nn_activations` without a layer
    /// list returns).
    pub outputs: Vec<String>,
    /// Facts about the file (hash, opset, producer, input).
    pub info: ModelInfo,
    /// Every preprocessing value in force with its origin.
    pub preprocessing_sources: Vec<PreprocessingSource>,
    /// ONNX operator type (`Conv`, `Relu`...) and node name of the node
    /// producing each tensor, by output name.
    onnx_ops: HashMap<String, (String, String)>,
    /// The graph's nodes in file (topological) order, as far as layout
    /// tracking needs them.
    layout_nodes: Vec<LayoutNode>,
    /// What the graph declares about its input.
    declared: DeclaredInput,
    /// The query's preprocessing overrides this model was prepared with.
    pub overrides: Overrides,
    pub(crate) inference: InferenceModel,
}

/// What the graph declares about its input: the dimensions when the rank
/// is known, and the element type.
fn declared_input(fact: &InferenceFact) -> DeclaredInput {
    let dims = (!fact.shape.is_open()).then(|| {
        fact.shape
            .dims()
            .map(|d| d.concretize().and_then(|d| d.as_i64()))
            .collect()
    });
    DeclaredInput {
        dims,
        datum_type: fact.datum_type.concretize(),
    }
}

impl LoadedModel {
    /// Parses the model file at `path` and lists its layers.
    pub fn load(path: &Path) -> Result<LoadedModel, ModelError> {
        let open_error = |reason: String| ModelError::Open {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(open_error("not a regular file".into())),
            Err(e) => return Err(open_error(e.to_string())),
        }
        let bytes = std::fs::read(path).map_err(|e| open_error(e.to_string()))?;
        LoadedModel::from_bytes(&bytes, path)
    }

    /// Parses an ONNX model held in `bytes` and lists its layers. `path`
    /// names the model in errors and becomes [`LoadedModel::path`].
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<LoadedModel, ModelError> {
        let not_onnx = |reason: String| ModelError::NotOnnx {
            path: path.to_path_buf(),
            reason,
        };
        // Intermediate shapes stored in the file (value_info, output shapes)
        // often carry a symbolic batch; we fix the batch ourselves, so they
        // are ignored and tract infers every shape from the input.
        let onnx = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .with_ignore_output_shapes(true);
        let proto = onnx
            .proto_model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(|e| not_onnx(format!("{e}")))?;
        // What `model_for_read` does, plus the model's folder, where tensors
        // stored as ONNX external data are looked up (as `model_for_path`
        // does).
        let folder = path.parent().and_then(Path::to_str);
        let ParseResult {
            model: inference,
            unresolved_inputs,
            ..
        } = onnx
            .parse(&proto, folder)
            .map_err(|e| not_onnx(format!("{e:#}")))?;
        let layout_nodes: Vec<LayoutNode> = proto
            .graph
            .iter()
            .flat_map(|g| g.node.iter())
            .map(|n| LayoutNode {
                op: n.op_type.clone(),
                inputs: n.input.clone(),
                outputs: n.output.clone(),
                perm: n
                    .attribute
                    .iter()
                    .find(|a| a.name == "perm")
                    .map(|a| a.ints.clone()),
            })
            .collect();
        let onnx_ops: HashMap<String, (String, String)> = proto
            .graph
            .iter()
            .flat_map(|g| g.node.iter())
            .flat_map(|n| {
                n.output
                    .iter()
                    .map(|o| (o.clone(), (n.op_type.clone(), n.name.clone())))
            })
            .collect();
        let mut info = ModelInfo {
            sha256: Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            ir_version: proto.ir_version,
            opset: proto
                .opset_import
                .iter()
                .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
                .map_or(0, |o| o.version),
            producer_name: proto.producer_name.clone(),
            producer_version: proto.producer_version.clone(),
            ..ModelInfo::default()
        };
        drop(proto);
        if !unresolved_inputs.is_empty() {
            return Err(not_onnx(format!(
                "could not resolve inputs at top level: {}",
                unresolved_inputs.join(", ")
            )));
        }
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
        let declared = inference
            .input_fact(0)
            .map(declared_input)
            .unwrap_or_default();
        let overrides = Overrides::none();
        let keys = Keys {
            props: &inference.properties,
            overrides: &overrides,
        };
        let preprocessing = preprocessing_from_keys(path, &keys, &declared)?;
        let preprocessing_sources = report_keys(&preprocessing, &keys, &declared);
        info.input_name = inference
            .outlet_label(inputs[0])
            .map(str::to_string)
            .unwrap_or_else(|| inference.nodes()[inputs[0].node].name.clone());
        info.input_type = match declared.datum_type {
            None => "?".to_string(),
            Some(DatumType::F32) => "float".to_string(),
            Some(DatumType::F16) => "float16".to_string(),
            Some(DatumType::F64) => "double".to_string(),
            Some(DatumType::U8) => "uint8".to_string(),
            Some(other) => format!("{other:?}"),
        };
        info.input_shape = declared.shape_text();
        let input_type = declared.datum_type.unwrap_or(DatumType::F32);
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
            input_type,
            layers: Vec::new(),
            outputs,
            info,
            preprocessing_sources,
            onnx_ops,
            layout_nodes,
            declared,
            overrides,
            inference,
        };
        model.layers = model.list_layers()?;
        Ok(model)
    }

    /// This model with the query's preprocessing `overrides` in force over
    /// its metadata; the layer list is made again when the input's shape
    /// changes.
    pub fn with_overrides(&self, overrides: &Overrides) -> Result<LoadedModel, ModelError> {
        let keys = Keys {
            props: &self.inference.properties,
            overrides,
        };
        let preprocessing = preprocessing_from_keys(&self.path, &keys, &self.declared)?;
        let preprocessing_sources = report_keys(&preprocessing, &keys, &self.declared);
        let same_shape = preprocessing.shape() == self.preprocessing.shape();
        let mut model = LoadedModel {
            path: self.path.clone(),
            preprocessing,
            input_type: self.input_type,
            layers: Vec::new(),
            outputs: self.outputs.clone(),
            info: self.info.clone(),
            preprocessing_sources,
            onnx_ops: self.onnx_ops.clone(),
            layout_nodes: self.layout_nodes.clone(),
            declared: self.declared.clone(),
            overrides: overrides.clone(),
            inference: self.inference.clone(),
        };
        model.layers = if same_shape {
            self.layers.clone()
        } else {
            model.list_layers()?
        };
        Ok(model)
    }

    /// The layers laid out channels last (`[H, W, C]` per image): the
    /// `input` of an NHWC model and what follows it until a Transpose
    /// brings the channels first. Layouts are followed through Transpose
    /// and through operators that keep their input's layout (activations,
    /// elementwise arithmetic); ONNX's spatial operators (Conv, pooling,
    /// normalisation) are channels first by definition, and anything else
    /// is taken to be.
    pub fn channels_last_layers(&self) -> HashSet<String> {
        let mut last: HashSet<String> = HashSet::new();
        if self.preprocessing.layout != Layout::Nhwc {
            return last;
        }
        last.insert(INPUT_LAYER.to_string());
        last.insert(self.info.input_name.clone());
        for node in &self.layout_nodes {
            let first_last = node.inputs.first().is_some_and(|i| last.contains(i));
            let out_last = match node.op.as_str() {
                "Transpose" => match node.perm.as_deref() {
                    Some([0, 2, 3, 1]) => !first_last,
                    Some([0, 3, 1, 2]) => false,
                    Some([0, 1, 2, 3]) => first_last,
                    _ => false,
                },
                op if KEEPS_LAYOUT.contains(&op) => first_last,
                _ => false,
            };
            if out_last {
                last.extend(node.outputs.iter().cloned());
            }
        }
        last.remove(&self.info.input_name);
        last
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
            .set_input_fact(0, InferenceFact::dt_shape(self.input_type, shape))
            .map_err(|e| ModelError::UnsupportedInput {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(model)
    }

    /// Refuses an input so small that some layer's output has no values: a
    /// feature map halved past 1 x 1 makes every later pooled or classified
    /// value NaN (and that layer an empty list) without any error.
    fn check_no_empty_layer(&self, layers: &[LayerInfo]) -> Result<(), ModelError> {
        let Some(empty) = layers.iter().find(|l| l.size == 0) else {
            return Ok(());
        };
        let dims = |shape: &[i64]| {
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(" x ")
        };
        Err(ModelError::InputTooSmall {
            path: self.path.clone(),
            input: dims(&layers[0].shape),
            layer: empty.name.clone(),
            shape: dims(&empty.shape),
        })
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
            node: String::new(),
            tract_op: "Source".to_string(),
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
                // The ONNX operator type and node name from the file;
                // tract's own name only for nodes tract made up.
                let tract_op = op.trim_end_matches("Hir").to_string();
                let (op, node) = self
                    .onnx_ops
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| (tract_op.clone(), String::new()));
                layers.push(LayerInfo {
                    name,
                    op,
                    node,
                    tract_op,
                    size: shape.iter().product(),
                    shape,
                    position: layers.len() as i32,
                });
            }
        }
        self.check_no_empty_layer(&layers)?;
        Ok(layers)
    }
}

/// Tiny ONNX models written byte by byte (protobuf wire format), so that
/// tests need no model files: input `x` -> `Cast(to = float)` -> `Relu`
/// -> output `y`.
#[cfg(test)]
pub(crate) mod tiny_onnx {
    /// ONNX `TensorProto.DataType` codes used in tests.
    pub const FLOAT: u64 = 1;
    pub const UINT8: u64 = 2;
    pub const INT64: u64 = 7;

    /// One input dimension: a size or a symbol.
    pub enum Dim {
        Value(u64),
        Param(&'static str),
    }

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn int_field(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }

    fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn value_info(name: &str, elem_type: u64, dims: Option<&[Dim]>) -> Vec<u8> {
        let mut tensor = Vec::new();
        int_field(&mut tensor, 1, elem_type);
        if let Some(dims) = dims {
            let mut shape = Vec::new();
            for d in dims {
                let mut dim = Vec::new();
                match d {
                    Dim::Value(v) => int_field(&mut dim, 1, *v),
                    Dim::Param(p) => bytes_field(&mut dim, 2, p.as_bytes()),
                }
                bytes_field(&mut shape, 1, &dim);
            }
            bytes_field(&mut tensor, 2, &shape);
        }
        let mut ty = Vec::new();
        bytes_field(&mut ty, 1, &tensor);
        let mut info = Vec::new();
        bytes_field(&mut info, 1, name.as_bytes());
        bytes_field(&mut info, 2, &ty);
        info
    }

    fn node(op: &str, input: &str, output: &str, cast_to: Option<u64>) -> Vec<u8> {
        let mut node = Vec::new();
        bytes_field(&mut node, 1, input.as_bytes());
        bytes_field(&mut node, 2, output.as_bytes());
        bytes_field(&mut node, 3, output.as_bytes());
        bytes_field(&mut node, 4, op.as_bytes());
        if let Some(to) = cast_to {
            let mut attr = Vec::new();
            bytes_field(&mut attr, 1, b"to");
            int_field(&mut attr, 3, to);
            int_field(&mut attr, 20, 2); // AttributeProto.INT
            bytes_field(&mut node, 5, &attr);
        }
        node
    }

    /// The serialised model with input `x` of `elem_type` and `dims`, and
    /// `metadata` as `metadata_props`.
    pub fn model(elem_type: u64, dims: &[Dim], metadata: &[(&str, &str)]) -> Vec<u8> {
        let mut graph = Vec::new();
        bytes_field(&mut graph, 1, &node("Cast", "x", "xf", Some(FLOAT)));
        bytes_field(&mut graph, 1, &node("Relu", "xf", "y", None));
        bytes_field(&mut graph, 2, b"tiny");
        bytes_field(&mut graph, 11, &value_info("x", elem_type, Some(dims)));
        bytes_field(&mut graph, 12, &value_info("y", FLOAT, None));
        let mut opset = Vec::new();
        bytes_field(&mut opset, 1, b"");
        int_field(&mut opset, 2, 13);
        let mut model = Vec::new();
        int_field(&mut model, 1, 8); // ir_version
        bytes_field(&mut model, 8, &opset);
        bytes_field(&mut model, 7, &graph);
        for (key, value) in metadata {
            let mut entry = Vec::new();
            bytes_field(&mut entry, 1, key.as_bytes());
            bytes_field(&mut entry, 2, value.as_bytes());
            bytes_field(&mut model, 14, &entry);
        }
        model
    }
}

#[cfg(test)]
mod tests {
    use super::tiny_onnx::{model, Dim, FLOAT, INT64, UINT8};
    use super::*;
    use crate::image::{InputValues, Layout};

    fn load(bytes: &[u8]) -> Result<LoadedModel, String> {
        LoadedModel::from_bytes(bytes, Path::new("mem/tiny.onnx")).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_a_model_from_bytes() {
        let dims = [Dim::Param("N"), Dim::Value(3), Dim::Value(8), Dim::Value(6)];
        let m = load(&model(FLOAT, &dims, &[("layercorr.mean", "1,2,3")])).unwrap();
        assert_eq!(m.path, Path::new("mem/tiny.onnx"));
        assert_eq!(m.input_type, DatumType::F32);
        let pre = &m.preprocessing;
        assert_eq!((pre.channels, pre.height, pre.width), (3, 8, 6));
        assert_eq!(pre.mean, [1.0, 2.0, 3.0]);
        assert_eq!(m.outputs, vec!["y".to_string()]);
        let y = m.layer("y").unwrap();
        assert_eq!(y.shape, vec![3, 8, 6]);
        assert_eq!(m.layer(INPUT_LAYER).unwrap().shape, vec![3, 8, 6]);
    }

    #[test]
    fn uint8_and_grey_inputs_are_recognised() {
        let dims = [Dim::Value(1), Dim::Value(5), Dim::Value(4), Dim::Value(1)];
        let m = load(&model(UINT8, &dims, &[])).unwrap();
        assert_eq!(m.input_type, DatumType::U8);
        let pre = &m.preprocessing;
        assert_eq!(pre.values, InputValues::Raw);
        assert_eq!((pre.channels, pre.layout), (1, Layout::Nhwc));
        assert_eq!(m.layer(INPUT_LAYER).unwrap().shape, vec![5, 4, 1]);
    }

    #[test]
    fn bad_models_are_named_errors() {
        let e = load(b"certainly not protobuf").unwrap_err();
        assert!(
            e.starts_with("model 'mem/tiny.onnx' is not a valid ONNX model"),
            "{e}"
        );

        let vector = model(FLOAT, &[Dim::Value(1), Dim::Value(10)], &[]);
        let e = load(&vector).unwrap_err();
        assert!(
            e.contains("declares input [1,10]") && e.contains("[N,C,H,W]"),
            "{e}"
        );

        let four = [Dim::Value(1), Dim::Value(4), Dim::Value(8), Dim::Value(8)];
        let e = load(&model(FLOAT, &four, &[])).unwrap_err();
        assert!(e.contains("[1,4,8,8]") && e.contains("4 entries"), "{e}");

        let ints = [Dim::Value(1), Dim::Value(3), Dim::Value(8), Dim::Value(8)];
        let e = load(&model(INT64, &ints, &[])).unwrap_err();
        assert!(e.contains("I64 input"), "{e}");

        let symbolic = [
            Dim::Param("N"),
            Dim::Value(3),
            Dim::Param("H"),
            Dim::Param("W"),
        ];
        let e = load(&model(
            FLOAT,
            &symbolic,
            &[("layercorr.input_size", "100000")],
        ))
        .unwrap_err();
        assert!(
            e.contains("input_size = '100000'") && e.contains("4096"),
            "{e}"
        );

        let e = LoadedModel::load(Path::new("/nonexistent/m.onnx"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot open model '/nonexistent/m.onnx'"),
            "{e}"
        );
    }
}
