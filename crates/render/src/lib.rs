//! PNG figures of layercorr's matrices and per-layer curves.
//!
//! The extension's analyses end in pictures: a layer's N x N similarity
//! matrix over images, a row of such matrices through the network, the
//! L x L matrix comparing layers, and per-layer curves. This crate draws
//! them as PNG bytes a researcher can put straight into a paper: white
//! background, titled, framed, with a labelled colour bar and axis labels
//! that are never clipped, because margins are computed from the text.
//!
//! It depends on nothing of DuckDB or of the model code, and on no system
//! fonts (DejaVu Sans is embedded and drawn antialiased, see [`font`]), so
//! it renders the same inside a DuckDB process on a bare server as in a
//! test.
//!
//! The figure functions:
//! - [`heatmap::matrix_heatmap`] — one N x N matrix (N up to thousands);
//! - [`grid::heatmap_grid`] — several N x N matrices with a shared colour bar;
//! - [`labeled::labeled_matrix`] — the L x L layer-similarity matrix with
//!   layer names and values in the cells;
//! - [`lineplot::line_plot`] — values against depth for named series,
//!   optionally with a band (an interval) around each.
//!
//! Each takes an options struct whose `Default` is the usual figure, and
//! returns `Result<Vec<u8>, RenderError>`; invalid input is an error, never
//! a panic. [`canvas`], [`font`] and [`colormap`] are the building blocks,
//! public for callers that compose their own figures.

#![deny(missing_docs)]

pub mod canvas;
pub mod colormap;
pub mod error;
pub mod font;
pub mod grid;
pub mod heatmap;
pub mod labeled;
pub mod lineplot;
mod markers;
pub mod order;
mod parts;
mod ticks;

pub use colormap::{ColorScale, Colormap};
pub use error::{ErrorKind, RenderError, RenderResult};
pub use grid::{heatmap_grid, GridOptions, Panel};
pub use heatmap::{matrix_heatmap, HeatmapOptions};
pub use labeled::{labeled_matrix, LabeledMatrixOptions};
pub use lineplot::{line_plot, LinePlotOptions, Series};
pub use order::key_order;
