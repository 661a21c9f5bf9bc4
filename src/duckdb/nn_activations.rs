//! `nn_activations(model, image [, layers [, skip_bad_images [, pool]]] [, preprocess])`:
//! run the network on one image per row and return the chosen layers.
//! `image` is a path (`VARCHAR`) or the encoded image itself (`BLOB`, e.g.
//! from `read_blob` or Parquet; held to the same size limits as a file);
//! `preprocess` is a `MAP(VARCHAR, VARCHAR)` of preprocessing keys that
//! override the model's (see `preprocess_arg`), last after `layers` or
//! after `pool`.
//!
//! Returns `STRUCT(layer VARCHAR, activation FLOAT[])[]`, one entry per
//! requested layer in request order (patterns expand in model order;
//! without `layers`, the model's outputs). A NULL path or BLOB gives a NULL row; a
//! NULL model or layer list is an error; an unreadable image is an error
//! naming the file, or — when `skip_bad_images` is true — its layers with a
//! NULL activation (as the table form gives). `pool` (`none`, `avg`, `max`,
//! `avg2x2`, ...) pools `[C, H, W]` layers (and `[H, W, C]`
//! ones, such as an NHWC model's `input`) over space at capture time. A
//! chunk's images run in parallel on every core. DuckDB hands a scalar
//! function a whole chunk (up to 2,048 rows) whose results must sit in
//! memory at once: a chunk whose results would pass `memory_limit` is an
//! error that points to the streaming table form.
//!
//! ```sql
//! CREATE TABLE activations AS
//! SELECT path, unnest(nn_activations('model.onnx', path, ['input', 'blocks.*', 'logits']), recursive := true)
//! FROM images;
//! ```

use std::path::Path;
use std::sync::Arc;

use libduckdb_sys as ffi;

use super::ffi::{
    append_list, bytes_at, chunk_len, column, column_count, set_list, set_null, set_str, str_at,
    str_list_at, struct_child, LogicalType, Validity,
};
use super::preprocess_arg::{map_type, overrides_at};
use super::register::{CallContext, ScalarFunction};
use layercorr_engine::files::FileSource;
use layercorr_engine::model::Overrides;
use layercorr_engine::pipeline::{prepare, ImageInput, Prefetch};
use layercorr_engine::pooling::Pooling;

/// The `nn_activations` scalar function.
pub struct NnActivations;

/// `STRUCT(layer VARCHAR, activation FLOAT[])[]`, shared with the table form.
pub fn activation_list_type() -> LogicalType {
    let float_list = LogicalType::list(&LogicalType::float());
    let entry = LogicalType::structure(&[
        ("layer", &LogicalType::varchar()),
        ("activation", &float_list),
    ]);
    LogicalType::list(&entry)
}

/// Refuses a model whose forward passes, one per thread, could hold more
/// than `limit` bytes (its layers' sizes come from the model file).
pub fn check_forward_memory(
    prepared: &layercorr_engine::pipeline::Prepared,
    limit: u64,
) -> Result<(), String> {
    let threads = rayon::current_num_threads().max(1) as u64;
    let bytes = prepared
        .forward_values()
        .saturating_mul(4)
        .saturating_mul(threads);
    if bytes > limit {
        return Err(format!(
            "model '{}' has {} values over all its layers per image; {threads} forward passes at once may need {bytes} bytes, above memory_limit ({limit} bytes)",
            prepared.model_path.display(),
            prepared.forward_values()
        ));
    }
    Ok(())
}

/// One model + layer request and the rows that use it.
struct Group {
    model: String,
    layers: Option<Vec<String>>,
    skip_bad_images: bool,
    pooling: Pooling,
    overrides: Overrides,
    rows: Vec<usize>,
    images: Vec<ImageInput>,
}

/// The type id of a chunk column.
///
/// # Safety
/// `vector` must be a live vector.
unsafe fn type_of(vector: ffi::duckdb_vector) -> ffi::DUCKDB_TYPE {
    let ty = LogicalType(ffi::duckdb_vector_get_column_type(vector));
    ffi::duckdb_get_type_id(ty.0)
}

impl ScalarFunction for NnActivations {
    const NAME: &'static str = "nn_activations";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        let layers = || LogicalType::list(&LogicalType::varchar());
        let mut out = Vec::new();
        for image in [LogicalType::varchar, LogicalType::blob] {
            let lists = [
                vec![LogicalType::varchar(), image()],
                vec![LogicalType::varchar(), image(), layers()],
                vec![
                    LogicalType::varchar(),
                    image(),
                    layers(),
                    LogicalType::boolean(),
                ],
                vec![
                    LogicalType::varchar(),
                    image(),
                    layers(),
                    LogicalType::boolean(),
                    LogicalType::varchar(),
                ],
                vec![LogicalType::varchar(), image(), layers(), map_type()],
                vec![
                    LogicalType::varchar(),
                    image(),
                    layers(),
                    LogicalType::boolean(),
                    LogicalType::varchar(),
                    map_type(),
                ],
            ];
            out.extend(lists.into_iter().map(|args| (args, activation_list_type())));
        }
        out
    }

    unsafe fn invoke(
        input: ffi::duckdb_data_chunk,
        output: ffi::duckdb_vector,
        ctx: &CallContext,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let columns = column_count(input);
        let (model_vec, path_vec) = (column(input, 0), column(input, 1));
        let (model_ok, path_ok) = (Validity::of(model_vec), Validity::of(path_vec));
        let blobs = type_of(path_vec) == ffi::DUCKDB_TYPE_DUCKDB_TYPE_BLOB;
        let layers_vec = (columns >= 3).then(|| column(input, 2));
        // The override MAP comes last: 4th after layers, or 6th after pool.
        let map_vec = match columns {
            4 if type_of(column(input, 3)) == ffi::DUCKDB_TYPE_DUCKDB_TYPE_MAP => {
                Some(column(input, 3))
            }
            6 => Some(column(input, 5)),
            _ => None,
        };
        let skip_vec =
            (columns >= 4 && !(columns == 4 && map_vec.is_some())).then(|| column(input, 3));
        let pool_vec = (columns >= 5).then(|| column(input, 4));

        let mut groups: Vec<Group> = Vec::new();
        for row in 0..rows {
            if !path_ok.is_valid(row) {
                set_null(output, row);
                continue;
            }
            if !model_ok.is_valid(row) {
                return Err("model is NULL".into());
            }
            let model = str_at(model_vec, row).into_owned();
            let layers = match layers_vec {
                None => None,
                Some(v) => Some(str_list_at(v, rows, row)?.ok_or("layer list is NULL")?),
            };
            let skip_bad_images = match skip_vec {
                Some(v) if Validity::of(v).is_valid(row) => {
                    *(ffi::duckdb_vector_get_data(v) as *const bool).add(row)
                }
                _ => false,
            };
            let pooling = match pool_vec {
                Some(v) if Validity::of(v).is_valid(row) => str_at(v, row).parse::<Pooling>()?,
                _ => Pooling::None,
            };
            let overrides = match map_vec {
                Some(v) => overrides_at(v, rows, row)?,
                None => Overrides::none(),
            };
            let image = if blobs {
                ImageInput::from_bytes(
                    format!("BLOB in row {} of the chunk", row + 1),
                    bytes_at(path_vec, row),
                )
            } else {
                ImageInput::Path(str_at(path_vec, row).into_owned())
            };
            match groups.iter_mut().find(|g| {
                g.model == model
                    && g.layers == layers
                    && g.skip_bad_images == skip_bad_images
                    && g.pooling == pooling
                    && g.overrides == overrides
            }) {
                Some(g) => {
                    g.rows.push(row);
                    g.images.push(image);
                }
                None => groups.push(Group {
                    model,
                    layers,
                    skip_bad_images,
                    pooling,
                    overrides,
                    rows: vec![row],
                    images: vec![image],
                }),
            }
        }

        let files: Arc<dyn FileSource> = ctx.files()?;
        let prepared: Vec<_> = groups
            .iter()
            .map(|g| {
                prepare(
                    files.clone(),
                    Path::new(&g.model),
                    g.layers.as_deref(),
                    g.pooling,
                    &g.overrides,
                )
                .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        // The whole chunk's results live in DuckDB's vectors at once.
        let result_bytes = groups
            .iter()
            .zip(&prepared)
            .map(|(g, p)| (g.rows.len() as u64).saturating_mul(p.values_per_image()))
            .fold(0u64, u64::saturating_add)
            .saturating_mul(4);
        let limit = ctx.settings.memory_limit;
        for p in &prepared {
            check_forward_memory(p, limit)?;
        }
        if result_bytes > limit {
            return Err(format!(
                "the results of this chunk of {rows} images need {result_bytes} bytes, above memory_limit ({limit} bytes); use the table form nn_activations(model, [paths], layers := [...]), which streams, or fewer layers, or pool := 'avg'"
            ));
        }

        // Each group's images compute in background steps while earlier
        // steps are written into the output.
        for (group, prepared) in groups.into_iter().zip(prepared) {
            let names = prepared.layers.clone();
            let mut steps =
                Prefetch::of_inputs(prepared, Arc::new(group.images), group.skip_bad_images);
            while let Some((first, result)) = steps.next_step() {
                for (i, act) in result?.into_iter().enumerate() {
                    let row = group.rows[first + i];
                    let (entries, offset) = append_list(output, row, names.len())?;
                    let (name_vec, values_vec) =
                        (struct_child(entries, 0), struct_child(entries, 1));
                    for (k, name) in names.iter().enumerate() {
                        set_str(name_vec, offset + k, name)?;
                        // A skipped bad image keeps its layers, NULL.
                        match &act {
                            Some(acts) => set_list(values_vec, offset + k, &acts.layers[k])?,
                            None => {
                                set_list::<f32>(values_vec, offset + k, &[])?;
                                set_null(values_vec, offset + k);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
