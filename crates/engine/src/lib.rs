//! The engine of layercorr: an ONNX network (through tract) run over
//! images, returning chosen layers' activations. Nothing here knows of
//! DuckDB; the extension's binding (the root crate) converts vectors and
//! calls in, and the correlation arithmetic lives in `layercorr-kernels`.
//!
//! Modules import only from the ones below them in this list:
//!
//! | module        | job                                                              |
//! |---------------|------------------------------------------------------------------|
//! | [`pipeline`]  | paths or bytes -> activations: read on the caller's thread, decoded and run on rayon |
//! | [`pooling`]   | adaptive average / max pooling of a layer over its spatial axes  |
//! | [`model`]     | ONNX loading, metadata, layer listing and selection, plans, caches, weights |
//! | [`image`]     | decode, resize, crop, normalise -> the input tensor              |
//! | [`files`]     | where bytes come from ([`files::FileSource`]), size limits, safe globs |
//! | `arch`        | architecture-specific inner loops, each with a portable fallback |

mod arch;
pub mod files;
pub mod image;
pub mod model;
pub mod pipeline;
pub mod pooling;
#[cfg(test)]
mod test_data;
