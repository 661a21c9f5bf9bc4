//! `nn_activations(model, paths, layers := [...], skip_bad_images := false, pool := 'none', preprocess := {...})`
//! as a table function: rows `path, layer, activation` over a glob pattern
//! (`'photos/*.jpg'`) or a `VARCHAR[]` of paths, or rows `image, layer,
//! activation` over a `BLOB[]` of encoded images, `image` being the 1-based
//! position of the BLOB in the list (a NULL BLOB gives its layers with a
//! NULL activation). `preprocess` overrides the model's preprocessing keys
//! for this query (see `preprocess_arg`).
//!
//! Unlike the scalar form, whose result for a whole 2048-row chunk must sit
//! in memory at once, this streams: a few images at a time (run in parallel
//! on every core), so memory stays bounded on any number of images. Paths
//! from a glob are sorted, each real file once; a glob that matches nothing
//! is an error. Globs are expanded on the local file system (only where
//! DuckDB's sandbox allows reading the pattern's folder); a list of paths
//! works on any file system DuckDB has (`memory://` from fsspec, httpfs).
//! With `skip_bad_images`, a bad image gives its layers with a NULL
//! activation, as the scalar form does.
//!
//! ```sql
//! CREATE TABLE activations AS
//! FROM nn_activations('model.onnx', 'photos/*.jpg', layers := ['blocks.*', 'logits']);
//! ```

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use super::capi::host::HostFiles;
use super::capi::{
    BindArgs, Bound, CallContext, Kind, LogicalType, OutputChunk, TableFunction, Value,
};
use super::error::{Error, Result};
use super::preprocess_arg::overrides_from_value;
use layercorr_engine::files::{expand_local_glob, glob_base, has_glob, is_local, FileSource};
use layercorr_engine::model::LayerValues;
use layercorr_engine::pipeline::{
    prepare, ImageInput, Prefetch, Prepared, IMAGES_PER_STEP, STEPS_IN_FLIGHT,
};
use layercorr_engine::pooling::Pooling;

/// DuckDB's standard vector size.
const MAX_ROWS: usize = 2048;

/// Pending rows of the k-th NULL BLOB carry `NULL_BLOB + k` as their
/// image index (images are counted from 0, far below it).
const NULL_BLOB: usize = usize::MAX / 2;

/// The table form of `nn_activations`.
pub struct NnActivationsTable;

/// What bind resolved: the prepared model and the images.
pub struct Request {
    prepared: Prepared,
    images: Images,
    skip_bad_images: bool,
}

/// The images of a request.
enum Images {
    /// Files, keyed by their path.
    Paths(Arc<Vec<String>>),
    /// BLOBs, keyed by their 1-based position in the list: the non-NULL
    /// ones with their positions, and the positions of the NULL ones.
    Blobs {
        inputs: Arc<Vec<ImageInput>>,
        positions: Vec<i64>,
        nulls: Vec<i64>,
    },
}

/// The BLOBs of a `BLOB[]` value (`None` for a NULL element), or `None`
/// when the value is not a list of BLOBs.
fn blob_list(value: &Value) -> Option<Vec<Option<Vec<u8>>>> {
    if value.list_child_kind() != Some(Kind::Blob) {
        return None;
    }
    Some(value.list_items()?.iter().map(Value::as_blob).collect())
}

/// The images of a `BLOB[]`, named by position in errors.
fn blob_images(blobs: Vec<Option<Vec<u8>>>) -> Images {
    let (mut inputs, mut positions, mut nulls) = (Vec::new(), Vec::new(), Vec::new());
    for (i, blob) in blobs.into_iter().enumerate() {
        let position = i as i64 + 1;
        match blob {
            Some(bytes) => {
                inputs.push(ImageInput::from_bytes(
                    format!("BLOB {position} of the list"),
                    &bytes,
                ));
                positions.push(position);
            }
            None => nulls.push(position),
        }
    }
    Images::Blobs {
        inputs: Arc::new(inputs),
        positions,
        nulls,
    }
}

/// Scan progress: steps being computed, rows not yet emitted (`None`: a
/// skipped bad image's layer) and, for BLOBs, the NULL ones not yet
/// reached.
pub struct Progress {
    steps: Prefetch,
    pending: VecDeque<(usize, usize, Option<LayerValues>)>,
    next_null: usize,
}

fn expand_paths(value: &Value, files: &HostFiles) -> Result<Vec<String>> {
    if value.is_null() {
        return Err(Error::invalid("paths is NULL"));
    }
    if let Some(items) = value.list_strings() {
        return items
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                p.ok_or_else(|| Error::invalid(format!("path {} of the list is NULL", i + 1)))
            })
            .collect();
    }
    let text = value
        .as_string()
        .ok_or_else(|| Error::invalid("paths is NULL"))?;
    if !has_glob(&text) {
        return Ok(vec![text]);
    }
    if !is_local(&text) {
        return Err(Error::invalid(format!(
            "cannot expand the glob '{text}': globs work on local paths; pass a VARCHAR[] of paths for other file systems"
        )));
    }
    // Listing a folder is reading it: ask DuckDB's sandbox first.
    files.sandbox_allows(&glob_base(&text))?;
    let paths = expand_local_glob(&text)?;
    if paths.is_empty() {
        return Err(Error::invalid(format!("no files match '{text}'")));
    }
    Ok(paths)
}

impl TableFunction for NnActivationsTable {
    type Bind = Request;
    type State = Progress;
    const NAME: &'static str = "nn_activations";

    fn parameters() -> Vec<LogicalType> {
        vec![LogicalType::varchar(), LogicalType::any()]
    }

    fn named_parameters() -> Vec<(&'static str, LogicalType)> {
        vec![
            ("layers", LogicalType::list(&LogicalType::varchar())),
            ("skip_bad_images", LogicalType::boolean()),
            ("pool", LogicalType::varchar()),
            ("preprocess", LogicalType::any()),
        ]
    }

    fn bind(args: &BindArgs, ctx: &CallContext) -> Bound<Self::Bind> {
        let model = args
            .positional(0)
            .as_string()
            .ok_or_else(|| Error::invalid("model is NULL"))?;
        let overrides = overrides_from_value(args.named("preprocess"))?;
        let files = ctx.files()?;
        let images_arg = args.positional(1);
        let images = match blob_list(&images_arg) {
            Some(blobs) => blob_images(blobs),
            None => Images::Paths(Arc::new(expand_paths(&images_arg, &files)?)),
        };
        let layers: Option<Vec<String>> = match args.named("layers") {
            None => None,
            Some(v) if v.is_null() => return Err(Error::invalid("layers is NULL")),
            Some(v) => Some(
                v.list_strings()
                    .ok_or_else(|| Error::invalid("layers must be a VARCHAR[]"))?
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| l.ok_or_else(|| format!("layer {} of the list is NULL", i + 1)))
                    .collect::<std::result::Result<_, _>>()?,
            ),
        };
        let skip_bad_images = args
            .named("skip_bad_images")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let pooling = match args.named("pool").and_then(|v| v.as_string()) {
            Some(text) => text.parse::<Pooling>()?,
            None => Pooling::None,
        };
        let source: Arc<dyn FileSource> = files;
        let prepared = prepare(
            source,
            Path::new(&model),
            layers.as_deref(),
            pooling,
            &overrides,
        )?;
        // The steps in flight, the one being emitted and DuckDB's chunk.
        let step_bytes = prepared
            .values_per_image()
            .saturating_mul(4 * (IMAGES_PER_STEP * (STEPS_IN_FLIGHT + 2)) as u64);
        let limit = ctx.settings.memory_limit;
        if step_bytes > limit {
            return Err(Error::invalid(format!(
                "model '{model}' gives {} values per image over the requested layers; a few images of them need {step_bytes} bytes, above memory_limit ({limit} bytes): request fewer layers or pool := 'avg'",
                prepared.values_per_image()
            )));
        }
        super::nn_activations::check_forward_memory(&prepared, limit)?;
        let key = match images {
            Images::Paths(_) => ("path", LogicalType::varchar()),
            Images::Blobs { .. } => ("image", LogicalType::bigint()),
        };
        let columns = vec![
            key,
            ("layer", LogicalType::varchar()),
            ("activation", LogicalType::list(&LogicalType::float())),
        ];
        Ok((
            Request {
                prepared,
                images,
                skip_bad_images,
            },
            columns,
        ))
    }

    fn init(req: &Self::Bind) -> Result<Self::State> {
        let (prepared, skip) = (req.prepared.clone(), req.skip_bad_images);
        let steps = match &req.images {
            Images::Paths(paths) => Prefetch::new(prepared, paths.clone(), skip),
            Images::Blobs { inputs, .. } => Prefetch::of_inputs(prepared, inputs.clone(), skip),
        };
        Ok(Progress {
            steps,
            pending: VecDeque::new(),
            next_null: 0,
        })
    }

    fn next(
        req: &Self::Bind,
        progress: &mut Self::State,
        output: &mut OutputChunk,
    ) -> Result<usize> {
        let layers = req.prepared.layers.len();
        while progress.pending.is_empty() {
            let Some((first, result)) = progress.steps.next_step() else {
                // BLOBs: the NULL ones after the last image.
                if let Images::Blobs { nulls, .. } = &req.images {
                    for k in progress.next_null..nulls.len() {
                        for layer in 0..layers {
                            progress.pending.push_back((NULL_BLOB + k, layer, None));
                        }
                    }
                    progress.next_null = nulls.len();
                }
                break;
            };
            for (i, act) in result?.into_iter().enumerate() {
                // BLOBs: the NULL ones before this image, in list order.
                if let Images::Blobs {
                    nulls, positions, ..
                } = &req.images
                {
                    while progress.next_null < nulls.len()
                        && nulls[progress.next_null] < positions[first + i]
                    {
                        for layer in 0..layers {
                            progress.pending.push_back((
                                NULL_BLOB + progress.next_null,
                                layer,
                                None,
                            ));
                        }
                        progress.next_null += 1;
                    }
                }
                match act {
                    Some(act) => {
                        for (layer, values) in act.layers.into_iter().enumerate() {
                            progress.pending.push_back((first + i, layer, Some(values)));
                        }
                    }
                    None => {
                        for layer in 0..req.prepared.layers.len() {
                            progress.pending.push_back((first + i, layer, None));
                        }
                    }
                }
            }
        }
        let max_rows = output.capacity().min(MAX_ROWS);
        let mut columns = output.columns();
        let [key_col, layer_col, act_col] = columns.as_mut_slice() else {
            return Err(Error::internal(
                "nn_activations output without three columns",
            ));
        };
        // Room for every value of this chunk at once: growing the list one
        // row at a time would copy what is already there at every doubling.
        let values: usize = progress
            .pending
            .iter()
            .take(max_rows)
            .map(|(_, _, v)| v.as_ref().map_or(0, |v| v.len()))
            .sum();
        act_col.reserve_list(act_col.list_len()? + values)?;
        let mut row = 0;
        while row < max_rows {
            let Some((image, layer, values)) = progress.pending.pop_front() else {
                break;
            };
            match &req.images {
                Images::Paths(paths) => key_col.set_str(row, &paths[image])?,
                Images::Blobs {
                    positions, nulls, ..
                } => {
                    let position = match image.checked_sub(NULL_BLOB) {
                        Some(k) => nulls[k],
                        None => positions[image],
                    };
                    key_col.set_value(row, position)?;
                }
            }
            layer_col.set_str(row, &req.prepared.layers[layer])?;
            match values {
                Some(values) => act_col.set_list(row, &values)?,
                None => {
                    act_col.set_list::<f32>(row, &[])?;
                    act_col.set_null(row)?;
                }
            }
            row += 1;
        }
        Ok(row)
    }
}
