//! `nn_activations(model, paths, layers := [...], skip_bad_images := false, pool := 'none')`
//! as a table function: rows `path, layer, activation` over a glob pattern
//! (`'photos/*.jpg'`) or a `VARCHAR[]` of paths.
//!
//! Unlike the scalar form, whose result for a whole 2048-row chunk must sit
//! in memory at once, this streams: a few images at a time (run in parallel
//! on both cores), so memory stays bounded on any number of images. Paths
//! from a glob are sorted; a glob that matches nothing is an error.
//!
//! ```sql
//! CREATE TABLE activations AS
//! FROM nn_activations('model.onnx', 'photos/*.jpg', layers := ['blocks.*', 'logits']);
//! ```

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use ::duckdb::ffi;

use super::api_guard::list_reserve;
use super::ffi::{column, set_list, set_str, LogicalType, Value};
use super::register::{BindArgs, Bound, TableFunction};
use crate::pipeline::{prepare, Prefetch, Prepared};
use crate::pooling::Pooling;

/// DuckDB's standard vector size.
const MAX_ROWS: usize = 2048;

/// The table form of `nn_activations`.
pub struct NnActivationsTable;

/// What bind resolved: the prepared model and the image paths.
pub struct Request {
    prepared: Prepared,
    paths: Arc<Vec<String>>,
    skip_bad_images: bool,
}

/// Scan progress: steps being computed and rows not yet emitted.
pub struct Progress {
    steps: Prefetch,
    pending: VecDeque<(usize, usize, Vec<f32>)>,
}

fn has_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

fn expand_paths(value: &Value) -> Result<Vec<String>, String> {
    if value.is_null() {
        return Err("paths is NULL".into());
    }
    if let Some(items) = value.list_strings() {
        return items
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.ok_or_else(|| format!("path {} of the list is NULL", i + 1)))
            .collect();
    }
    let text = value.as_string().ok_or("paths is NULL")?;
    if !has_glob(&text) {
        return Ok(vec![text]);
    }
    let entries = glob::glob(&text).map_err(|e| format!("bad glob pattern '{text}': {e}"))?;
    let mut paths: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if paths.is_empty() {
        return Err(format!("no files match '{text}'"));
    }
    paths.sort();
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
        ]
    }

    fn bind(args: &BindArgs) -> Bound<Self::Bind> {
        let model = args.positional(0).as_string().ok_or("model is NULL")?;
        let paths = expand_paths(&args.positional(1))?;
        let layers: Option<Vec<String>> = match args.named("layers") {
            None => None,
            Some(v) if v.is_null() => return Err("layers is NULL".into()),
            Some(v) => Some(
                v.list_strings()
                    .ok_or("layers must be a VARCHAR[]")?
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| l.ok_or_else(|| format!("layer {} of the list is NULL", i + 1)))
                    .collect::<Result<_, _>>()?,
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
        let prepared =
            prepare(Path::new(&model), layers.as_deref(), pooling).map_err(|e| e.to_string())?;
        let columns = vec![
            ("path", LogicalType::varchar()),
            ("layer", LogicalType::varchar()),
            ("activation", LogicalType::list(&LogicalType::float())),
        ];
        Ok((
            Request {
                prepared,
                paths: Arc::new(paths),
                skip_bad_images,
            },
            columns,
        ))
    }

    fn init(req: &Self::Bind) -> Result<Self::State, String> {
        Ok(Progress {
            steps: Prefetch::new(req.prepared.clone(), req.paths.clone(), req.skip_bad_images),
            pending: VecDeque::new(),
        })
    }

    unsafe fn next(
        req: &Self::Bind,
        progress: &mut Self::State,
        output: ffi::duckdb_data_chunk,
    ) -> Result<usize, String> {
        while progress.pending.is_empty() {
            let Some((first, result)) = progress.steps.next_step() else {
                break;
            };
            for (i, act) in result?.into_iter().enumerate() {
                if let Some(act) = act {
                    for (layer, values) in act.layers.into_iter().enumerate() {
                        progress.pending.push_back((first + i, layer, values));
                    }
                }
            }
        }
        let (path_vec, layer_vec, act_vec) =
            (column(output, 0), column(output, 1), column(output, 2));
        // Room for every value of this chunk at once: growing the list one
        // row at a time would copy what is already there at every doubling.
        let values: usize = progress
            .pending
            .iter()
            .take(MAX_ROWS)
            .map(|(_, _, v)| v.len())
            .sum();
        list_reserve(
            act_vec,
            ffi::duckdb_list_vector_get_size(act_vec) as usize + values,
        )?;
        let mut row = 0;
        while row < MAX_ROWS {
            let Some((image, layer, values)) = progress.pending.pop_front() else {
                break;
            };
            set_str(path_vec, row, &req.paths[image])?;
            set_str(layer_vec, row, &req.prepared.layers[layer])?;
            set_list(act_vec, row, &values)?;
            row += 1;
        }
        Ok(row)
    }
}
