//! Numerical core of layercorr: correlation matrices of activation rows,
//! rank transforms, second-order comparison of matrices, and hierarchical
//! clustering order.
//!
//! This crate knows nothing of DuckDB, tract or SQL; the binding layer
//! parses method names into [`method::CorrMethod`] /
//! [`method::CompareMethod`] once, calls one entry point per SQL function,
//! and maps [`error::KernelError`]'s row or matrix index back to the user's
//! key or layer name:
//!
//! | SQL function        | entry point                                          |
//! |---------------------|------------------------------------------------------|
//! | `layer_corr`        | [`corr::CorrAccumulator`] (push rows, merge, finish) |
//! | `layer_similarity`  | [`compare::similarity_matrix`]                       |
//! | `rsa`               | [`compare::compare_pair`]                            |
//! | `corr_order`        | [`cluster::leaf_order`]                              |
//! | `layer_corr_block`  | [`block::block_matrix`]                              |
//! | `layer_cross`       | [`cross::CrossSums`]                                 |
//!
//! [`corr::correlation_matrix`] is the same accumulator with every row
//! pushed at once, for callers that hold the rows (benches, tests).
//!
//! Modules import only from the ones below them in this list:
//!
//! | module              | job                                                         |
//! |---------------------|-------------------------------------------------------------|
//! | [`corr`]            | the accumulator: what each first-order method means         |
//! | [`stream`]          | products taken as rows arrive: when to multiply (`block`: the arithmetic) |
//! | `gram`              | products of rows at hand (euclidean, gram)                  |
//! | `triangle`          | packed products → per-method entries → mirrored, ordered matrix |
//! | `chunk`             | column chunks: copy, shift, chunk width                     |
//! | [`store`]           | a group's rows in memory or a spill file ([`store::file`]: the file) |
//! | [`source`]          | where the kernels read rows from                            |
//! | [`rank`], [`rows`], [`square`], `numeric`, [`alloc`], [`method`], [`error`] | ranks, row and square matrices, numeric helpers, fallible allocation, names, errors |
//!
//! [`memory`] sizes a group for the binding's memory check; [`compare`],
//! [`resample`] and [`cluster`] are the second-order kernels.
//!
//! Work is parallel on the global rayon pool (faer's matrix products run on
//! the same pool), so the kernels never start threads of their own beyond
//! a spill writer and never oversubscribe the machine.
#![deny(missing_docs)]

pub mod alloc;
pub mod block;
mod chunk;
pub mod cluster;
pub mod compare;
pub mod corr;
pub mod cross;
pub mod error;
mod gram;
pub mod memory;
pub mod method;
mod numeric;
pub mod pipelined;
pub mod rank;
pub mod resample;
pub mod rows;
pub mod source;
pub mod square;
pub mod store;
pub mod stream;
mod triangle;

pub use alloc::{try_with_capacity, try_zeroed_vec};
pub use corr::{correlation_matrix, CorrAccumulator};
pub use error::{KernelError, Result};
pub use memory::{
    result_bytes, working_bytes, working_bytes_with_spill, working_parts, WorkingParts,
    DEFAULT_SPILL_LIMIT_BYTES,
};
pub use method::{CompareMethod, CorrMethod};
pub use pipelined::PipelinedAccumulator;
pub use rows::RowMatrix;
pub use source::RowSource;
pub use square::SquareMatrix;
pub use store::{RowStore, SpillPolicy};
pub use stream::{BlockBuffers, StreamingGram};

/// Fallible zero-filled allocation, for the modules of this crate.
pub(crate) use alloc::try_zeroed_vec as try_zeroed;
