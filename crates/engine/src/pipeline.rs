//! Images (paths, or encoded bytes at hand such as SQL BLOBs) to
//! activations: decode, preprocess and run a plan, in parallel batches.
//!
//! This is the engine behind both forms of `nn_activations`; it knows
//! nothing of DuckDB. Files are read through the caller's [`FileSource`]
//! on the caller's thread (the host's file system may be a Python object);
//! decoding and forward passes run in batches of `BATCH` on rayon's pool,
//! so a chunk of rows keeps every core busy even when DuckDB gives the
//! whole table to one thread (small tables are a single row group).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use rayon::prelude::*;

use crate::files::{too_large, FileError, FileSource, MAX_IMAGE_BYTES};
use crate::image::{decode_for, preprocess, ImageError, DEFAULT_MAX_PIXELS};
use crate::model::{
    cached_model_with, cached_plan, select_layers, ImageActivations, LoadedModel, ModelError,
    ModelKey, Overrides,
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
#[derive(Clone)]
pub struct Prepared {
    /// Where the model and the images are read from.
    pub files: Arc<dyn FileSource>,
    /// The model file.
    pub model_path: PathBuf,
    /// Which version of the model file was loaded.
    pub model_key: ModelKey,
    /// The parsed model.
    pub model: Arc<LoadedModel>,
    /// Resolved layer names, in output order.
    pub layers: Vec<String>,
    /// Spatial pooling applied to each layer's activations.
    pub pooling: Pooling,
    /// Per-image shape of each resolved layer (before pooling).
    pub shapes: Vec<Vec<i64>>,
    /// Whether each resolved layer is laid out channels last (`[H, W, C]`:
    /// the `input` of an NHWC model and what keeps its layout), which
    /// pooling follows.
    pub channels_last: Vec<bool>,
}

/// Loads (or reuses) the model with the query's preprocessing `overrides`
/// and resolves the requested layers; `None` asks for the model's graph
/// outputs.
pub fn prepare(
    files: Arc<dyn FileSource>,
    model_path: &Path,
    requested: Option<&[String]>,
    pooling: Pooling,
    overrides: &Overrides,
) -> Result<Prepared, ModelError> {
    let (model_key, model) = cached_model_with(files.as_ref(), model_path, overrides)?;
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
    let last = model.channels_last_layers();
    let channels_last = layers.iter().map(|l| last.contains(l)).collect();
    Ok(Prepared {
        files,
        model_path: model_path.to_path_buf(),
        model_key,
        model,
        layers,
        pooling,
        shapes,
        channels_last,
    })
}

/// Where one image comes from.
#[derive(Debug, Clone)]
pub enum ImageInput {
    /// A file, read through the prepared [`FileSource`].
    Path(String),
    /// Encoded image bytes at hand (a SQL BLOB); `name` identifies it in
    /// errors.
    Bytes { name: String, bytes: Arc<[u8]> },
    /// Bytes over the image size limit, kept only as their size so that
    /// reading them is the same error as for a file.
    TooLarge { name: String, size: u64 },
}

impl ImageInput {
    /// Encoded image bytes at hand, copied unless they are over the limit
    /// a file is held to.
    pub fn from_bytes(name: String, bytes: &[u8]) -> ImageInput {
        let size = bytes.len() as u64;
        if size > MAX_IMAGE_BYTES {
            ImageInput::TooLarge { name, size }
        } else {
            ImageInput::Bytes {
                name,
                bytes: bytes.into(),
            }
        }
    }

    /// The path, or the name of the bytes.
    pub fn name(&self) -> &str {
        match self {
            ImageInput::Path(p) => p,
            ImageInput::Bytes { name, .. } | ImageInput::TooLarge { name, .. } => name,
        }
    }

    /// The encoded image, held to the same size limit as a file.
    fn read(&self, files: &dyn FileSource) -> ImageBytes {
        match self {
            ImageInput::Path(p) => files.read(p, MAX_IMAGE_BYTES),
            ImageInput::Bytes { bytes, .. } => Ok(bytes.to_vec()),
            ImageInput::TooLarge { size, .. } => Err(too_large(*size, MAX_IMAGE_BYTES)),
        }
    }
}

/// One image's file contents, or why they could not be read.
pub type ImageBytes = Result<Vec<u8>, FileError>;

/// Reads the files of `paths` through `files`, one result per path.
pub fn read_images(files: &dyn FileSource, paths: &[&str]) -> Vec<ImageBytes> {
    paths
        .iter()
        .map(|p| files.read(p, MAX_IMAGE_BYTES))
        .collect()
}

impl Prepared {
    /// Values one forward pass may hold at once: every layer of the model
    /// (an upper bound; tract frees values once no later node needs them).
    pub fn forward_values(&self) -> u64 {
        self.model
            .layers
            .iter()
            .map(|l| l.size.max(0) as u64)
            .fold(0u64, u64::saturating_add)
    }

    /// Values one image yields over all requested layers, after pooling.
    pub fn values_per_image(&self) -> u64 {
        self.shapes
            .iter()
            .zip(&self.channels_last)
            .map(|(shape, last)| {
                self.pooling
                    .shape_laid_out(shape, *last)
                    .iter()
                    .map(|d| (*d).max(0) as u64)
                    .fold(1u64, u64::saturating_mul)
            })
            .fold(0u64, u64::saturating_add)
    }
}

fn load_tensor(prepared: &Prepared, path: &str, bytes: ImageBytes) -> Result<Vec<f32>, ImageError> {
    let path = Path::new(path);
    let bytes = bytes.map_err(|e| ImageError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.0),
    })?;
    // Decoded as the model's preprocessing asks (EXIF rotation, alpha).
    let rgb = decode_for(
        &bytes,
        path,
        DEFAULT_MAX_PIXELS,
        &prepared.model.preprocessing,
    )?;
    drop(bytes);
    preprocess(&rgb, &prepared.model.preprocessing, path)
}

fn run_batch(
    prepared: &Prepared,
    images: Vec<(&str, ImageBytes)>,
    skip_bad_images: bool,
) -> Result<Vec<Option<ImageActivations>>, PipelineError> {
    let mut tensors = Vec::with_capacity(images.len());
    let mut names = Vec::with_capacity(images.len());
    let mut ok = Vec::with_capacity(images.len());
    for (path, bytes) in images {
        match load_tensor(prepared, path, bytes) {
            Ok(t) => {
                tensors.push(t);
                names.push(path);
                ok.push(true);
            }
            Err(_) if skip_bad_images => ok.push(false),
            Err(e) => return Err(e.into()),
        }
    }
    let mut results = if tensors.is_empty() {
        Vec::new()
    } else {
        let plan = cached_plan(
            &prepared.model_key,
            &prepared.model,
            &prepared.layers,
            tensors.len(),
        )?;
        let mut acts = plan.run(&tensors, &names)?;
        if prepared.pooling != Pooling::None {
            for image in &mut acts {
                let layouts = prepared.shapes.iter().zip(&prepared.channels_last);
                for (values, (shape, last)) in image.layers.iter_mut().zip(layouts) {
                    let pooled = prepared.pooling.apply_laid_out(
                        std::mem::take(values).into_vec(),
                        shape,
                        *last,
                    );
                    *values = pooled.into();
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

/// Activations for each image (its path and its file's bytes), in order. A
/// bad image is an error naming it, or `None` when `skip_bad_images` is set.
pub fn activations_for_images(
    prepared: &Prepared,
    images: Vec<(&str, ImageBytes)>,
    skip_bad_images: bool,
) -> Result<Vec<Option<ImageActivations>>, PipelineError> {
    let mut batches: Vec<Vec<(&str, ImageBytes)>> = Vec::new();
    let mut images = images.into_iter().peekable();
    while images.peek().is_some() {
        batches.push(images.by_ref().take(BATCH).collect());
    }
    let results: Vec<Vec<Option<ImageActivations>>> = batches
        .into_par_iter()
        .map(|batch| run_batch(prepared, batch, skip_bad_images))
        .collect::<Result<_, _>>()?;
    Ok(results.into_iter().flatten().collect())
}

/// Images computed per background step: two, one a core on two cores (the
/// steps in flight keep more cores busy where there are more). Small steps
/// reach DuckDB sooner at the start and leave less for DuckDB's thread to
/// store alone at the end (with steps of 8, two ahead, the stored table form
/// kept two cores 3% less busy and peaked 40% higher).
pub const IMAGES_PER_STEP: usize = 2;

/// Steps computed ahead of the one being consumed: 16 images, so that the
/// cores never wait for the slowest image of a step or for DuckDB's thread
/// (a step of EfficientNet's 12 demo layers is ~7 MB).
pub const STEPS_IN_FLIGHT: usize = 8;

/// One step's activations (`None` for a skipped bad image), or the error
/// that stops the run, as text.
pub type StepResult = Result<Vec<Option<ImageActivations>>, String>;

/// Activations for a list of paths, computed `IMAGES_PER_STEP` images at a
/// time on rayon's pool, a few steps ahead of the consumer.
///
/// Both forms of `nn_activations` copy each step into DuckDB while the
/// next ones compute, which keeps both cores busy: without the overlap they
/// idle while DuckDB's thread writes and stores activations.
pub struct Prefetch {
    prepared: Prepared,
    paths: Arc<Vec<ImageInput>>,
    skip_bad_images: bool,
    next_image: usize,
    in_flight: VecDeque<(usize, mpsc::Receiver<StepResult>)>,
}

impl Prefetch {
    /// A run over `paths` that starts computing on the first `next_step`.
    pub fn new(prepared: Prepared, paths: Arc<Vec<String>>, skip_bad_images: bool) -> Prefetch {
        let inputs = paths.iter().cloned().map(ImageInput::Path).collect();
        Prefetch::of_inputs(prepared, Arc::new(inputs), skip_bad_images)
    }

    /// A run over images from files or bytes at hand.
    pub fn of_inputs(
        prepared: Prepared,
        paths: Arc<Vec<ImageInput>>,
        skip_bad_images: bool,
    ) -> Prefetch {
        Prefetch {
            prepared,
            paths,
            skip_bad_images,
            next_image: 0,
            in_flight: VecDeque::new(),
        }
    }

    fn start_steps(&mut self) {
        while self.in_flight.len() < STEPS_IN_FLIGHT && self.next_image < self.paths.len() {
            let start = self.next_image;
            let end = (start + IMAGES_PER_STEP).min(self.paths.len());
            let (prepared, paths, skip) = (
                self.prepared.clone(),
                self.paths.clone(),
                self.skip_bad_images,
            );
            // Files are read here, on the caller's thread; only decoding and
            // forward passes move to the pool.
            let bytes: Vec<ImageBytes> = paths[start..end]
                .iter()
                .map(|p| p.read(prepared.files.as_ref()))
                .collect();
            let (send, receive) = mpsc::sync_channel(1);
            rayon::spawn(move || {
                let images: Vec<(&str, ImageBytes)> = paths[start..end]
                    .iter()
                    .map(ImageInput::name)
                    .zip(bytes)
                    .collect();
                let result = catch_unwind(AssertUnwindSafe(|| {
                    activations_for_images(&prepared, images, skip).map_err(|e| e.to_string())
                }))
                .unwrap_or_else(|_| Err("internal error: a forward pass panicked".into()));
                // The consumer may have stopped early (a LIMIT); nothing to do then.
                let _ = send.send(result);
            });
            self.next_image = end;
            self.in_flight.push_back((start, receive));
        }
    }

    /// The next step in order: the index of its first path and its
    /// activations; `None` once every path has been returned.
    pub fn next_step(&mut self) -> Option<(usize, StepResult)> {
        self.start_steps();
        let (first, receive) = self.in_flight.pop_front()?;
        let result = receive
            .recv()
            .unwrap_or_else(|_| Err("internal error: a background step stopped".into()));
        // The following steps compute while the caller uses this one.
        self.start_steps();
        Some((first, result))
    }
}
