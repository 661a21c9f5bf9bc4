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

use capi::register::{register_aggregate, register_scalar, register_table};
use error::Result;

/// Every SQL function of the extension, registered on `con`.
pub fn register_all(con: duckdb_connection) -> Result<()> {
    capi::settings::register_options(con)?;
    register_table::<layercorr_settings::LayercorrSettings>(con)?;
    register_table::<nn_layers::NnLayers>(con)?;
    register_table::<nn_model::NnModel>(con)?;
    register_table::<nn_weights::NnWeights>(con)?;
    register_scalar::<nn_activations::NnActivations>(con)?;
    register_table::<nn_activations_table::NnActivationsTable>(con)?;
    register_aggregate::<layer_corr::LayerCorr>(con)?;
    register_aggregate::<layer_corr_block::LayerCorrBlock>(con)?;
    register_aggregate::<activation_sum::ActivationSum>(con)?;
    register_aggregate::<layer_cross::LayerCross>(con)?;
    register_aggregate::<layer_similarity::LayerSimilarity>(con)?;
    register_aggregate::<layer_similarity_ci::LayerSimilarityCi>(con)?;
    register_scalar::<rsa::Rsa>(con)?;
    register_scalar::<rsa_bootstrap::RsaBootstrap>(con)?;
    register_scalar::<rsa_bootstrap_diff::RsaBootstrapDiff>(con)?;
    register_scalar::<rsa_permutation::RsaPermutation>(con)?;
    register_scalar::<corr_order::CorrOrder>(con)?;
    register_scalar::<corr_heatmap::CorrHeatmap>(con)?;
    register_aggregate::<corr_heatmap_grid::CorrHeatmapGrid>(con)?;
    register_scalar::<similarity_heatmap::SimilarityHeatmap>(con)?;
    register_aggregate::<line_plot::LinePlot>(con)?;
    register_scalar::<write_png::WritePng>(con)?;
    Ok(())
}
