//! Image files to network input tensors.
//!
//! Decoding (`decode`) and the resize / crop / normalise step
//! (`preprocess`) are separate so that tests can compare each with an
//! independent Pillow/numpy implementation, and so that the model layer only
//! sees a flat `f32` tensor. Nothing here knows about DuckDB or tract.

mod decode;
mod error;
mod jpeg;
mod preprocess;

pub use decode::{decode_for, decode_rgb, load_rgb, max_file_bytes, DEFAULT_MAX_PIXELS};
pub use error::ImageError;
pub use preprocess::{
    preprocess, Alpha, ChannelOrder, InputValues, Interpolation, Layout, Preprocessing, ResizeMode,
    MAX_INPUT_SIDE,
};
