//! Image paths to activations: decode, preprocess and run a plan, in
//! parallel batches.
//!
//! This is the engine behind both forms of `nn_activations`; it knows
//! nothing of DuckDB. Images of one call are split into batches of
//! `BATCH` and the batches run on rayon's pool (two cores here), so a chunk
//! of rows keeps both cores busy even when DuckDB gives the whole table to
//! one thread (small tables are a single row group).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::image::{load_rgb, preprocess, ImageError, DEFAULT_MAX_PIXELS};
use crate::model::{
    cached_model, cached_plan, select_layers, ImageActivations, LoadedModel, ModelError,
};
use crate::pooling::Pooling;

/// Images per forward pass.
pub const BATCH: usize = 1;

/// Why activations could not be computed for a request or an image.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The image could not be read or decoded.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The model, a layer name, or the forward pass failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A model with its resolved layer list, ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The model file.
    pub model_path: PathBuf,
    /// The parsed model.
    pub model: Arc<LoadedModel>,
    /// Resolved layer names, in output order.
    pub layers: Vec<String>,
    /// Spatial pooling applied to each layer's activations.
    pub pooling: Pooling,
    /// Per-image shape of each resolved layer (before pooling).
    pub shapes: Vec<Vec<i64>>,
}

/// Loads (or reuses) the model and resolves the requested layers; `None`
/// asks for the model's graph outputs.
pub fn prepare(
    model_path: &Path,
    requested: Option<&[String]>,
    pooling: Pooling,
) -> Result<Prepared, ModelError> {
    let model = cached_model(model_path)?;
    let layers = match requested {
        Some(requested) => select_layers(requested, &model.layers, model_path)?,
        None => model.outputs.clone(),
    };
    let shapes = layers
        .iter()
        .map(|l| {
            model
                .layer(l)
                .map(|info| info.shape.clone())
                .unwrap_or_default()
        })
        .collect();
    Ok(Prepared {
        model_path: model_path.to_path_buf(),
        model,
        layers,
        pooling,
        shapes,
    })
}

fn load_tensor(prepared: &Prepared, path: &str) -> Result<Vec<f32>, ImageError> {
    let path = Path::new(path);
    let rgb = load_rgb(path, DEFAULT_MAX_PIXELS)?;
    preprocess(&rgb, &prepared.model.preprocessing, path)
}

fn run_batch(
    prepared: &Prepared,
    paths: &[&str],
    skip_bad_images: bool,
) -> Result<Vec<Option<ImageActivations>>, PipelineError> {
    let mut tensors = Vec::with_capacity(paths.len());
    let mut names = Vec::with_capacity(paths.len());
    let mut ok = Vec::with_capacity(paths.len());
    for path in paths {
        match load_tensor(prepared, path) {
            Ok(t) => {
                tensors.push(t);
                names.push(*path);
                ok.push(true);
            }
            Err(_) if skip_bad_images => ok.push(false),
            Err(e) => return Err(e.into()),
        }
    }
    let mut results = if tensors.is_empty() {
        Vec::new()
    } else {
        let plan = cached_plan(&prepared.model_path, &prepared.layers, tensors.len())?;
        let mut acts = plan.run(&tensors, &names)?;
        if prepared.pooling != Pooling::None {
            for image in &mut acts {
                for (values, shape) in image.layers.iter_mut().zip(&prepared.shapes) {
                    *values = prepared.pooling.apply(std::mem::take(values), shape);
                }
            }
        }
        acts
    }
    .into_iter();
    Ok(ok
        .into_iter()
        .map(|good| if good { results.next() } else { None })
        .collect())
}

/// Activations for each path, in order. A bad image is an error naming it,
/// or `None` when `skip_bad_images` is set.
pub fn activations_for_paths(
    prepared: &Prepared,
    paths: &[&str],
    skip_bad_images: bool,
) -> Result<Vec<Option<ImageActivations>>, PipelineError> {
    let batches: Vec<Vec<Option<ImageActivations>>> = paths
        .par_chunks(BATCH)
        .map(|chunk| run_batch(prepared, chunk, skip_bad_images))
        .collect::<Result<_, _>>()?;
    Ok(batches.into_iter().flatten().collect())
}
