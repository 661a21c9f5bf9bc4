//! The DuckDB binding layer: one file per SQL function, each converting
//! DuckDB vectors to engine calls and back. This file only lists them.

#[allow(unsafe_code)]
mod capi;
mod error;

mod activation_sum;
mod corr_heatmap;
mod corr_heatmap_grid;
mod corr_order;
mod corr_struct;
mod layer_corr;
mod layer_corr_block;
mod layer_cross;
mod layer_similarity;
mod layer_similarity_ci;
mod layercorr_settings;
mod line_plot;
mod method_arg;
mod nn_activations;
mod nn_activations_table;
mod nn_layers;
mod nn_model;
mod nn_weights;
mod picture;
mod preprocess_arg;
mod reservation;
mod rsa;
mod rsa_bootstrap;
mod rsa_bootstrap_diff;
mod rsa_permutation;
mod similarity_heatmap;
mod write_png;

use libduckdb_sys::duckdb_connection;

#[allow(unused_imports)]
use capi::{raw_register as raw, register as safe};

/// Every SQL function of the extension, registered on `con`.
pub fn register_all(con: duckdb_connection) -> Result<(), String> {
    capi::settings::register_options(con)?;
    raw::register_table::<layercorr_settings::LayercorrSettings>(con)?;
    raw::register_table::<nn_layers::NnLayers>(con)?;
    raw::register_table::<nn_model::NnModel>(con)?;
    raw::register_table::<nn_weights::NnWeights>(con)?;
    safe::register_scalar::<nn_activations::NnActivations>(con)?;
    safe::register_table::<nn_activations_table::NnActivationsTable>(con)?;
    raw::register_aggregate::<layer_corr::LayerCorr>(con)?;
    raw::register_aggregate::<layer_corr_block::LayerCorrBlock>(con)?;
    raw::register_aggregate::<activation_sum::ActivationSum>(con)?;
    raw::register_aggregate::<layer_cross::LayerCross>(con)?;
    raw::register_aggregate::<layer_similarity::LayerSimilarity>(con)?;
    raw::register_aggregate::<layer_similarity_ci::LayerSimilarityCi>(con)?;
    raw::register_scalar::<rsa::Rsa>(con)?;
    raw::register_scalar::<rsa_bootstrap::RsaBootstrap>(con)?;
    raw::register_scalar::<rsa_bootstrap_diff::RsaBootstrapDiff>(con)?;
    raw::register_scalar::<rsa_permutation::RsaPermutation>(con)?;
    raw::register_scalar::<corr_order::CorrOrder>(con)?;
    raw::register_scalar::<corr_heatmap::CorrHeatmap>(con)?;
    raw::register_aggregate::<corr_heatmap_grid::CorrHeatmapGrid>(con)?;
    raw::register_scalar::<similarity_heatmap::SimilarityHeatmap>(con)?;
    raw::register_aggregate::<line_plot::LinePlot>(con)?;
    raw::register_scalar::<write_png::WritePng>(con)?;
    Ok(())
}
