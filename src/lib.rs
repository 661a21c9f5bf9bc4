//! layercorr: a loadable DuckDB extension that runs an ONNX network over
//! images listed in a table, keeps chosen layers' activations as `FLOAT[]`
//! columns, and compares the layers' correlation structure in SQL.
//!
//! This crate is the binding alone: `duckdb` converts DuckDB vectors and
//! calls the engine crates, which know nothing of DuckDB —
//! `layercorr-engine` (models, images, forward passes, pooling),
//! `layercorr-kernels` (correlation and comparison arithmetic) and
//! `layercorr-render` (pictures). The entry point lives in `duckdb::entry`.

#![deny(unsafe_code)]

mod duckdb;
