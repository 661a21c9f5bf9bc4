//! ONNX models through tract: loading, layer listing, layer selection and
//! batched forward passes that return chosen intermediate tensors.
//!
//! `loaded` parses a model once and lists its capturable layers; `selection`
//! turns the user's names and glob patterns into layers (with "did you mean"
//! suggestions); `plan` builds an optimised tract plan whose outputs are
//! exactly those layers (with `depthwise`, a faster depthwise convolution
//! swapped in for tract's); `cache` shares parsed models and plans across
//! DuckDB threads and queries. Nothing here knows about DuckDB.

mod activation;
mod cache;
mod conv_shape;
mod dense_conv;
mod depthwise;
mod error;
mod layer_values;
mod loaded;
mod lrn;
mod metadata;
mod own_op;
mod plan;
mod pointwise;
mod product;
mod selection;
mod weights;

pub use cache::{
    cached_model, cached_model_with, cached_plan, own_kernels, set_own_kernels, ModelKey,
};
pub use conv_shape::ConvShape;
pub use error::ModelError;
pub use layer_values::LayerValues;
pub use loaded::{LayerInfo, LoadedModel, ModelInfo, INPUT_LAYER};
pub use metadata::{Overrides, PreprocessingSource, PREPROCESSING_KEYS};
pub use plan::{swap_in_own_kernels, ImageActivations, Plan};
pub use selection::select_layers;
pub use weights::{WeightInfo, NEAR_ZERO};
