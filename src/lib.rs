//! layercorr: a loadable DuckDB extension that runs an ONNX network over
//! images listed in a table, keeps chosen layers' activations as `FLOAT[]`
//! columns, and compares the layers' correlation structure in SQL.
//!
//! The engine (`model`, `image`, and the `layercorr-kernels` and
//! `layercorr-render` crates) knows nothing of DuckDB; `duckdb` is the thin binding layer that converts vectors and
//! calls the engine. This file only declares the modules; the entry point
//! lives in `duckdb::entry`.

pub mod files;
pub mod image;
pub mod model;
pub mod pipeline;
pub mod pooling;

mod duckdb;
