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

use super::capi::{CallContext, Chunk, Kind, LogicalType, Output, ScalarFunction};
use super::error::{Error, Result};
use super::preprocess_arg::{map_type, overrides_at};
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
) -> Result<()> {
    let threads = rayon::current_num_threads().max(1) as u64;
    let bytes = prepared
        .forward_values()
        .saturating_mul(4)
        .saturating_mul(threads);
    if bytes > limit {
        return Err(Error::invalid(format!(
            "model '{}' has {} values over all its layers per image; {threads} forward passes at once may need {bytes} bytes, above memory_limit ({limit} bytes)",
            prepared.model_path.display(),
            prepared.forward_values()
        )));
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

    fn invoke(input: &Chunk, output: &mut Output, ctx: &CallContext) -> Result<()> {
        let rows = input.rows();
        let columns = input.columns();
        let (model_col, image_col) = (input.column(0)?, input.column(1)?);
        let (models, images) = (model_col.strings()?, image_col.strings()?);
        let blobs = image_col.kind() == Kind::Blob;
        let layer_lists = input.optional(2).map(|c| c.lists()).transpose()?;
        // The override MAP comes last: 4th after layers, or 6th after pool.
        let map_col = match columns {
            4 => input.optional(3).filter(|c| c.kind() == Kind::Map),
            6 => input.optional(5),
            _ => None,
        };
        let skips = (columns >= 4 && !(columns == 4 && map_col.is_some()))
            .then(|| input.column(3).and_then(|c| c.values::<bool>()))
            .transpose()?;
        let pools = input.optional(4).map(|c| c.strings()).transpose()?;

        let mut groups: Vec<Group> = Vec::new();
        for row in 0..rows {
            let Some(image_bytes) = images.bytes(row) else {
                output.set_null(row)?;
                continue;
            };
            let model = models
                .text(row)
                .ok_or_else(|| Error::invalid("model is NULL"))?
                .into_owned();
            let layers = match &layer_lists {
                None => None,
                Some(lists) => Some(
                    lists
                        .strings_at(row)?
                        .ok_or_else(|| Error::invalid("layer list is NULL"))?,
                ),
            };
            let skip_bad_images = skips.and_then(|v| v.get(row)).unwrap_or(false);
            let pooling = match pools.and_then(|p| p.text(row)) {
                Some(text) => text.parse::<Pooling>()?,
                None => Pooling::None,
            };
            let overrides = match &map_col {
                Some(c) => overrides_at(c, row)?,
                None => Overrides::none(),
            };
            let image = if blobs {
                ImageInput::from_bytes(format!("BLOB in row {} of the chunk", row + 1), image_bytes)
            } else {
                ImageInput::Path(String::from_utf8_lossy(image_bytes).into_owned())
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
            })
            .collect::<std::result::Result<_, _>>()?;
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
            return Err(Error::invalid(format!(
                "the results of this chunk of {rows} images need {result_bytes} bytes, above memory_limit ({limit} bytes); use the table form nn_activations(model, [paths], layers := [...]), which streams, or fewer layers, or pool := 'avg'"
            )));
        }

        // Each group's images compute in background steps while earlier
        // steps are written into the output. The activation lists get room
        // for the whole chunk at the first write: growing them image by
        // image copies what is already there at every doubling, on the
        // thread that also hands the images to the workers.
        let mut unreserved = Some(result_bytes / 4);
        for (group, prepared) in groups.into_iter().zip(prepared) {
            let names = prepared.layers.clone();
            let mut steps =
                Prefetch::of_inputs(prepared, Arc::new(group.images), group.skip_bad_images);
            while let Some((first, result)) = steps.next_step() {
                for (i, act) in result?.into_iter().enumerate() {
                    let row = group.rows[first + i];
                    let (mut entries, offset) = output.append_list(row, names.len())?;
                    let mut fields = entries.fields()?;
                    let [name_col, values_col] = fields.as_mut_slice() else {
                        return Err(Error::internal("an activation entry without two fields"));
                    };
                    if let Some(values) = unreserved.take() {
                        let values = usize::try_from(values).map_err(|_| {
                            Error::invalid(format!(
                                "{values} activation values do not fit in memory"
                            ))
                        })?;
                        values_col.reserve_list(values_col.list_len()?.saturating_add(values))?;
                    }
                    for (k, name) in names.iter().enumerate() {
                        name_col.set_str(offset + k, name)?;
                        // A skipped bad image keeps its layers, NULL.
                        match &act {
                            Some(acts) => values_col.set_list(offset + k, &acts.layers[k])?,
                            None => {
                                values_col.set_list::<f32>(offset + k, &[])?;
                                values_col.set_null(offset + k)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
