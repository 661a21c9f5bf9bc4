//! Why a model could not be loaded or run; each variant names the model
//! file or the layer the user typed.

use std::path::PathBuf;

/// A model, layer or inference failure, worded for a SQL user.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file does not exist or cannot be read.
    #[error("cannot open model '{path}': {reason}")]
    Open { path: PathBuf, reason: String },
    /// The file exists but is not an ONNX model tract can read.
    #[error("model '{path}' is not a valid ONNX model: {reason}")]
    NotOnnx { path: PathBuf, reason: String },
    /// The model has an input we cannot feed with one RGB image.
    #[error("model '{path}' has an unsupported input: {reason}; nn_model('{path}') shows its declared input and the preprocessing in force")]
    UnsupportedInput { path: PathBuf, reason: String },
    /// A `layercorr.*` metadata value that cannot be used.
    #[error("model '{path}' has invalid metadata layercorr.{key} = '{value}': {reason}")]
    Metadata {
        path: PathBuf,
        key: String,
        value: String,
        reason: String,
    },
    /// A per-query preprocessing override value that cannot be used.
    #[error("preprocess override {key} = '{value}': {reason}")]
    Override {
        key: String,
        value: String,
        reason: String,
    },
    /// A per-query preprocessing override key that does not exist.
    #[error("preprocess key '{key}' {reason}")]
    OverrideKey { key: String, reason: String },
    /// The declared input is not something one image can fill.
    #[error("model '{path}' declares input {declared}, which layercorr cannot feed: {reason}; layercorr feeds images as [N,C,H,W] or [N,H,W,C] with C = 1 or 3")]
    NotAnImage {
        path: PathBuf,
        declared: String,
        reason: String,
    },
    /// The declared input is an image larger than one input may be.
    #[error("model '{path}' declares input {declared} of {height} x {width} pixels, above the limit of {limit} pixels per side")]
    InputTooLarge {
        path: PathBuf,
        declared: String,
        height: i64,
        width: i64,
        limit: u32,
    },
    /// The input is so small that a layer's output has no values (a map
    /// halved to 0 x 0): every value after it would be NaN or empty.
    #[error("model '{path}' fed {input} images makes layer '{layer}' empty (shape {shape}): the input is too small for this model; use a larger layercorr.input_size (nn_model('{path}') shows the declared input)")]
    InputTooSmall {
        path: PathBuf,
        input: String,
        layer: String,
        shape: String,
    },
    /// The declared input element type is not one images can become.
    #[error("model '{path}' declares a {datum_type} input; layercorr feeds float32, float16, float64 or uint8 images")]
    InputType { path: PathBuf, datum_type: String },
    /// tract could not type or optimise the model for the requested layers.
    #[error("cannot prepare model '{path}' for layers [{layers}]: {reason}; if shapes disagree, compare the input tensor in nn_model('{path}') (input_shape, preprocessing) with what the model expects")]
    Prepare {
        path: PathBuf,
        layers: String,
        reason: String,
    },
    /// A requested layer name or pattern matches nothing.
    #[error("unknown layer '{layer}' in model '{path}'; nearest: {nearest}")]
    UnknownLayer {
        layer: String,
        path: PathBuf,
        nearest: String,
    },
    /// The layer list is empty.
    #[error("empty layer list: name at least one layer (see nn_layers('{path}'))")]
    EmptyLayerList { path: PathBuf },
    /// The forward pass failed.
    #[error("inference failed in model '{path}' on image '{image}': {reason}; nn_model('{path}') shows the input shape and preprocessing in force")]
    Run {
        path: PathBuf,
        image: String,
        reason: String,
    },
}
