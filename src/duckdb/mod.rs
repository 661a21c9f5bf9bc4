//! DuckDB binding layer.
