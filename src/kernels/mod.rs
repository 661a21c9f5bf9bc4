//! Correlation kernels (owned by kernels work).
