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
    #[error("model '{path}' has an unsupported input: {reason}")]
    UnsupportedInput { path: PathBuf, reason: String },
    /// tract could not type or optimise the model for the requested layers.
    #[error("cannot prepare model '{path}' for layers [{layers}]: {reason}")]
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
    #[error("inference failed in model '{path}' on image '{image}': {reason}")]
    Run {
        path: PathBuf,
        image: String,
        reason: String,
    },
}
