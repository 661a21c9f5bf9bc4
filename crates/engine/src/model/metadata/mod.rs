//! Preprocessing declared in an ONNX file's `metadata_props` and its
//! input's declared type and shape.
//!
//! A model states how its input is made with keys prefixed `layercorr.`:
//! `input_size` ("224" or "240x320" as HxW), `mean` and `std` ("r,g,b" on
//! the 0–255 scale), `resize` (`shorter_side_then_center_crop`, `stretch`
//! or `letterbox`, padded with `pad_value`: one value or "r,g,b"), `layout` (`NCHW` or `NHWC`), `resize_size` (the shorter
//! side before the centre crop), `channel_order` (`RGB` or `BGR`),
//! `interpolation` (`bilinear`, `bicubic`, `lanczos`, `nearest`, `area`),
//! `exif` (`apply` or `ignore`), `alpha` (`drop` or `composite`) and
//! `background` (`white`, `black` or `r,g,b`). Our converter writes them;
//! `scripts/set_preprocessing.py` stamps them on any ONNX file. A query may
//! override any of them ([`Overrides`], the keys without the prefix); an
//! override wins over the file. Missing keys fall back to the declared
//! input shape, then to the demo model's values.
//!
//! The declared input decides what an image becomes: its channel axis (1:
//! grey, 3: RGB) and layout, its size when no key gives one, and its element
//! type (`uint8` inputs take raw 0–255 pixels, float inputs normalised
//! values). A declared input that no image can fill (a vector, four
//! channels, an unsupported type, a side above [`MAX_INPUT_SIDE`]) is a
//! named error here rather than a shape error from tract later; a symbolic
//! or unknown shape is accepted and filled from the keys and defaults.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::{DatumType, Tensor};

use super::ModelError;
use crate::image::{
    Alpha, ChannelOrder, InputValues, Interpolation, Layout, Preprocessing, ResizeMode,
    MAX_INPUT_SIDE,
};

const PREFIX: &str = "onnx.metadata_props.layercorr.";

/// The valid values of `layercorr.layout`.
const LAYOUT_NAMES: &str = "NCHW, NHWC";

/// One preprocessing value in force and where it came from: `override`
/// (the query's), `metadata` (a `layercorr.*` key), `declared shape`,
/// `declared type` or `default`.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessingSource {
    pub key: String,
    pub value: String,
    pub source: String,
}

/// Every preprocessing key (without the `layercorr.` prefix).
pub const PREPROCESSING_KEYS: [&str; 12] = [
    "input_size",
    "resize_size",
    "mean",
    "std",
    "resize",
    "pad_value",
    "interpolation",
    "channel_order",
    "layout",
    "exif",
    "alpha",
    "background",
];

/// Preprocessing values a query gives in place of the file's metadata:
/// keys from [`PREPROCESSING_KEYS`] (a `layercorr.` prefix is accepted),
/// sorted, each once. Values are checked when the model is prepared with
/// them, with the same rules and messages as metadata values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Overrides(Vec<(String, String)>);

impl Overrides {
    /// No override.
    pub fn none() -> Overrides {
        Overrides::default()
    }

    /// Checks the keys of `pairs`: an unknown or repeated key is an error
    /// naming it (with the valid keys).
    pub fn new(pairs: Vec<(String, String)>) -> Result<Overrides, ModelError> {
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let bare = key.trim();
            let bare = bare.strip_prefix("layercorr.").unwrap_or(bare);
            let bare = bare.to_ascii_lowercase();
            if !PREPROCESSING_KEYS.contains(&bare.as_str()) {
                return Err(ModelError::OverrideKey {
                    key,
                    reason: format!("is unknown; valid: {}", PREPROCESSING_KEYS.join(", ")),
                });
            }
            if out.iter().any(|(k, _)| *k == bare) {
                return Err(ModelError::OverrideKey {
                    key,
                    reason: "is given twice".into(),
                });
            }
            out.push((bare, value));
        }
        out.sort();
        Ok(Overrides(out))
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The preprocessing keys in force: the query's overrides, then the
/// file's `layercorr.*` metadata.
pub struct Keys<'a> {
    pub props: &'a HashMap<String, Arc<Tensor>>,
    pub overrides: &'a Overrides,
}

impl Keys<'_> {
    /// The value of `key` and whether it is an override.
    fn get(&self, key: &str) -> Option<(String, bool)> {
        match self.overrides.get(key) {
            Some(v) => Some((v.to_string(), true)),
            None => prop(self.props, key).map(|v| (v, false)),
        }
    }

    /// Where `key`'s value comes from, when a key gives it.
    fn source(&self, key: &str) -> Option<&'static str> {
        self.get(key)
            .map(|(_, o)| if o { "override" } else { "metadata" })
    }
}

/// What the graph declares about its single input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeclaredInput {
    /// The dimensions, `None` where symbolic or unknown; `None` as a whole
    /// when even the rank is unknown.
    pub dims: Option<Vec<Option<i64>>>,
    /// The element type, if declared.
    pub datum_type: Option<DatumType>,
}

impl DeclaredInput {
    /// The declared shape as text, `?` for an unknown dimension.
    pub(crate) fn shape_text(&self) -> String {
        match &self.dims {
            None => "[?]".to_string(),
            Some(dims) => {
                let dims: Vec<String> = dims
                    .iter()
                    .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
                    .collect();
                format!("[{}]", dims.join(","))
            }
        }
    }
}

fn prop(props: &HashMap<String, Arc<Tensor>>, key: &str) -> Option<String> {
    props.get(&format!("{PREFIX}{key}")).and_then(|t| {
        t.try_as_plain_ram()
            .ok()?
            .to_scalar::<String>()
            .ok()
            .cloned()
    })
}

fn metadata_error(path: &Path, key: &str, value: &str, reason: impl Into<String>) -> ModelError {
    ModelError::Metadata {
        path: path.to_path_buf(),
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn override_error(key: &str, value: &str, reason: impl Into<String>) -> ModelError {
    ModelError::Override {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses "r,g,b" (or one value for all three), each finite.
fn triple(path: &Path, key: &str, text: &str) -> Result<[f32; 3], ModelError> {
    let bad = || metadata_error(path, key, text, "not three numbers");
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let values = match values.as_slice() {
        [a, b, c] => [*a, *b, *c],
        [a] => [*a; 3],
        _ => return Err(bad()),
    };
    if values.iter().any(|v| v.is_nan()) {
        return Err(metadata_error(path, key, text, "has a NaN value"));
    }
    if values.iter().any(|v| v.is_infinite()) {
        return Err(metadata_error(path, key, text, "has an infinite value"));
    }
    Ok(values)
}

/// Parses `layercorr.input_size`: "224" or "HxW", each side 1 to
/// [`MAX_INPUT_SIDE`].
fn input_size(path: &Path, text: &str) -> Result<(u32, u32), ModelError> {
    let bad = || {
        metadata_error(
            path,
            "input_size",
            text,
            "not a size (a number of pixels such as 224, or HxW such as 240x320)",
        )
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok().filter(|v| *v > 0);
    let (h, w) = match text.split_once(['x', 'X']) {
        Some((h, w)) => (parse(h), parse(w)),
        None => (parse(text), parse(text)),
    };
    let (Some(h), Some(w)) = (h, w) else {
        return Err(bad());
    };
    let limit = u64::from(MAX_INPUT_SIDE);
    if h > limit || w > limit {
        return Err(metadata_error(
            path,
            "input_size",
            text,
            format!("above the limit of {MAX_INPUT_SIDE} pixels per side"),
        ));
    }
    Ok((h as u32, w as u32))
}

/// The values an input of element type `datum_type` takes, or an error
/// for types images cannot become.
fn input_values(path: &Path, datum_type: Option<DatumType>) -> Result<InputValues, ModelError> {
    match datum_type {
        None | Some(DatumType::F32 | DatumType::F16 | DatumType::F64) => {
            Ok(InputValues::Normalised)
        }
        Some(DatumType::U8) => Ok(InputValues::Raw),
        Some(other) => Err(ModelError::InputType {
            path: path.to_path_buf(),
            datum_type: format!("{other:?}"),
        }),
    }
}

/// The layout the declared shape implies: the axis holding 1 or 3
/// (channels first preferred); `None` when the shape does not tell.
fn declared_layout(dims: &[Option<i64>]) -> Option<Layout> {
    let is_channels = |d: Option<i64>| matches!(d, Some(1 | 3));
    match dims {
        [_, c, _, _] if is_channels(*c) => Some(Layout::Nchw),
        [_, _, _, c] if is_channels(*c) => Some(Layout::Nhwc),
        _ => None,
    }
}

/// Builds the preprocessing of a model from its metadata and its declared
/// input (shape and element type).
#[cfg(test)]
pub fn preprocessing_from_props(
    path: &Path,
    props: &HashMap<String, Arc<Tensor>>,
    declared: &DeclaredInput,
) -> Result<Preprocessing, ModelError> {
    let overrides = Overrides::none();
    preprocessing_from_keys(
        path,
        &Keys {
            props,
            overrides: &overrides,
        },
        declared,
    )
}

/// Builds the preprocessing from the keys in force (overrides first) and
/// the declared input. A bad override value is an error that names it as
/// an override, not as the file's metadata.
pub fn preprocessing_from_keys(
    path: &Path,
    keys: &Keys,
    declared: &DeclaredInput,
) -> Result<Preprocessing, ModelError> {
    parse_keys(path, keys, declared).map_err(|e| match e {
        ModelError::Metadata {
            key, value, reason, ..
        } if keys.overrides.get(&key).is_some() => override_error(&key, &value, reason),
        e => e,
    })
}

fn parse_keys(
    path: &Path,
    keys: &Keys,
    declared: &DeclaredInput,
) -> Result<Preprocessing, ModelError> {
    let prop = |_: &HashMap<String, Arc<Tensor>>, key: &str| keys.get(key).map(|(v, _)| v);
    let props = keys.props;
    let mut pre = Preprocessing {
        values: input_values(path, declared.datum_type)?,
        ..Preprocessing::default()
    };
    let not_an_image = |reason: String| ModelError::NotAnImage {
        path: path.to_path_buf(),
        declared: declared.shape_text(),
        reason,
    };

    let dims = match &declared.dims {
        Some(dims) if dims.len() != 4 => {
            return Err(not_an_image(format!(
                "{} dimensions instead of 4",
                dims.len()
            )))
        }
        Some(dims) => Some(dims.as_slice()),
        None => None,
    };
    let layout_key = prop(props, "layout");
    if let Some(layout) = &layout_key {
        pre.layout = match layout.trim().to_ascii_uppercase().as_str() {
            "NCHW" => Layout::Nchw,
            "NHWC" => Layout::Nhwc,
            _ => {
                return Err(metadata_error(
                    path,
                    "layout",
                    layout,
                    format!("valid: {LAYOUT_NAMES}"),
                ))
            }
        };
    } else if let Some(layout) = dims.and_then(declared_layout) {
        pre.layout = layout;
    }

    if let Some(dims) = dims {
        let (c, h, w) = match pre.layout {
            Layout::Nchw => (dims[1], dims[2], dims[3]),
            Layout::Nhwc => (dims[3], dims[1], dims[2]),
        };
        match c {
            Some(c @ (1 | 3)) => pre.channels = c as u32,
            Some(c) => {
                let axis = match (&layout_key, pre.layout) {
                    (Some(key), _) => format!("with layercorr.layout = '{key}' the channel axis"),
                    (None, Layout::Nchw) => "the channel axis (NCHW)".to_string(),
                    (None, Layout::Nhwc) => "the channel axis (NHWC)".to_string(),
                };
                return Err(not_an_image(format!("{axis} has {c} entries")));
            }
            None => {}
        }
        let limit = i64::from(MAX_INPUT_SIDE);
        if let (Some(h), Some(w)) = (h, w) {
            if h > limit || w > limit {
                return Err(ModelError::InputTooLarge {
                    path: path.to_path_buf(),
                    declared: declared.shape_text(),
                    height: h,
                    width: w,
                    limit: MAX_INPUT_SIDE,
                });
            }
            if h > 0 && w > 0 {
                pre.height = h as u32;
                pre.width = w as u32;
            }
        }
    }

    if let Some(size) = prop(props, "input_size") {
        (pre.height, pre.width) = input_size(path, &size)?;
    }
    if let Some(mean) = prop(props, "mean") {
        pre.mean = triple(path, "mean", &mean)?;
    }
    if let Some(std) = prop(props, "std") {
        pre.std = triple(path, "std", &std)?;
        if pre.std.contains(&0.0) {
            return Err(metadata_error(path, "std", &std, "has a zero"));
        }
        if pre.std.iter().any(|s| *s < 0.0) {
            return Err(metadata_error(path, "std", &std, "has a negative value"));
        }
    }
    if let Some(resize) = prop(props, "resize") {
        pre.resize = ResizeMode::parse(&resize).ok_or_else(|| {
            metadata_error(
                path,
                "resize",
                &resize,
                format!("valid: {}", ResizeMode::NAMES),
            )
        })?;
    }
    if let Some(text) = prop(props, "pad_value") {
        let v = triple(path, "pad_value", &text).map_err(|_| {
            metadata_error(
                path,
                "pad_value",
                &text,
                "not a pixel value from 0 to 255 (one value, or one per channel as r,g,b)",
            )
        })?;
        if v.iter().any(|c| !(0.0..=255.0).contains(c)) {
            return Err(metadata_error(
                path,
                "pad_value",
                &text,
                "not a pixel value from 0 to 255 (one value, or one per channel as r,g,b)",
            ));
        }
        pre.pad_value = v;
    }
    if let Some(text) = prop(props, "resize_size") {
        let side = text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=MAX_INPUT_SIDE).contains(v));
        pre.resize_size = Some(side.ok_or_else(|| {
            metadata_error(
                path,
                "resize_size",
                &text,
                format!("not a number of pixels from 1 to {MAX_INPUT_SIDE}"),
            )
        })?);
    }
    if let Some(text) = prop(props, "channel_order") {
        pre.channel_order = match text.trim().to_ascii_uppercase().as_str() {
            "RGB" => ChannelOrder::Rgb,
            "BGR" => ChannelOrder::Bgr,
            _ => {
                return Err(metadata_error(
                    path,
                    "channel_order",
                    &text,
                    "valid: RGB, BGR",
                ))
            }
        };
    }
    if let Some(text) = prop(props, "interpolation") {
        pre.interpolation = Interpolation::parse(&text).ok_or_else(|| {
            metadata_error(
                path,
                "interpolation",
                &text,
                format!("valid: {}", Interpolation::NAMES),
            )
        })?;
    }
    if let Some(text) = prop(props, "exif") {
        pre.exif = match text.trim().to_ascii_lowercase().as_str() {
            "apply" => true,
            "ignore" => false,
            _ => return Err(metadata_error(path, "exif", &text, "valid: apply, ignore")),
        };
    }
    let background = match prop(props, "background") {
        Some(text) => {
            let bad = || {
                metadata_error(
                    path,
                    "background",
                    &text,
                    "not a colour: white, black, or r,g,b (or one value) from 0 to 255",
                )
            };
            match text.trim().to_ascii_lowercase().as_str() {
                "white" => [255; 3],
                "black" => [0; 3],
                _ => {
                    let v = triple(path, "background", &text).map_err(|_| bad())?;
                    if v.iter()
                        .any(|c| !(0.0..=255.0).contains(c) || c.fract() != 0.0)
                    {
                        return Err(bad());
                    }
                    v.map(|c| c as u8)
                }
            }
        }
        None => [255; 3],
    };
    if let Some(text) = prop(props, "alpha") {
        pre.alpha = match text.trim().to_ascii_lowercase().as_str() {
            "drop" => Alpha::Drop,
            "composite" => Alpha::Composite(background),
            _ => {
                return Err(metadata_error(
                    path,
                    "alpha",
                    &text,
                    "valid: drop, composite",
                ))
            }
        };
    }
    Ok(pre)
}

/// Every preprocessing value in force in `pre` (built by
/// [`preprocessing_from_props`] from the same `props` and `declared`), with
/// where it came from: `metadata` (a `layercorr.*` key), `declared shape`,
/// `declared type` or `default`.
#[cfg(test)]
pub fn preprocessing_report(
    pre: &Preprocessing,
    props: &HashMap<String, Arc<Tensor>>,
    declared: &DeclaredInput,
) -> Vec<PreprocessingSource> {
    let overrides = Overrides::none();
    report_keys(
        pre,
        &Keys {
            props,
            overrides: &overrides,
        },
        declared,
    )
}

/// [`preprocessing_report`] for the keys in force, overrides included
/// (source `override`).
pub fn report_keys(
    pre: &Preprocessing,
    keys: &Keys,
    declared: &DeclaredInput,
) -> Vec<PreprocessingSource> {
    let dims = declared.dims.as_deref().filter(|d| d.len() == 4);
    let declared_size = dims.is_some_and(|d| {
        let (h, w) = match pre.layout {
            Layout::Nchw => (d[2], d[3]),
            Layout::Nhwc => (d[1], d[2]),
        };
        matches!((h, w), (Some(h), Some(w)) if h > 0 && w > 0)
    });
    let declared_channels = dims.is_some_and(|d| {
        let c = match pre.layout {
            Layout::Nchw => d[1],
            Layout::Nhwc => d[3],
        };
        c.is_some()
    });
    let from = |key: &str, declared_here: bool| {
        if let Some(source) = keys.source(key) {
            source
        } else if declared_here {
            "declared shape"
        } else {
            "default"
        }
    };
    let triple_text = |v: [f32; 3]| {
        if v[0] == v[1] && v[1] == v[2] {
            format!("{}", v[0])
        } else {
            format!("{},{},{}", v[0], v[1], v[2])
        }
    };
    let size = if pre.height == pre.width {
        pre.height.to_string()
    } else {
        format!("{}x{}", pre.height, pre.width)
    };
    let raw = pre.values == InputValues::Raw;
    let normalisation = |key: &str, v: [f32; 3]| {
        if raw {
            ("not applied (uint8 input)".to_string(), "declared type")
        } else {
            (triple_text(v), from(key, false))
        }
    };
    let (mean, mean_source) = normalisation("mean", pre.mean);
    let (std, std_source) = normalisation("std", pre.std);
    let rows = [
        ("input_size", size, from("input_size", declared_size)),
        (
            "channels",
            match pre.channels {
                1 => "1 (grey)".to_string(),
                c => format!("{c} (RGB)"),
            },
            if declared_channels {
                "declared shape"
            } else {
                "default"
            },
        ),
        (
            "layout",
            match pre.layout {
                Layout::Nchw => "NCHW",
                Layout::Nhwc => "NHWC",
            }
            .to_string(),
            from("layout", dims.and_then(declared_layout).is_some()),
        ),
        ("mean", mean, mean_source),
        ("std", std, std_source),
        (
            "resize",
            pre.resize.name().to_string(),
            from("resize", false),
        ),
        (
            "values",
            match pre.values {
                InputValues::Normalised => "normalised",
                InputValues::Raw => "raw 0-255",
            }
            .to_string(),
            if declared.datum_type.is_some() {
                "declared type"
            } else {
                "default"
            },
        ),
    ];
    let extra = [
        (
            "resize_size",
            pre.resize_size
                .map_or("= input size".to_string(), |s| s.to_string()),
            from("resize_size", false),
        ),
        (
            "pad_value",
            triple_text(pre.pad_value),
            from("pad_value", false),
        ),
        (
            "interpolation",
            pre.interpolation.name().to_string(),
            from("interpolation", false),
        ),
        (
            "channel_order",
            match pre.channel_order {
                ChannelOrder::Rgb => "RGB",
                ChannelOrder::Bgr => "BGR",
            }
            .to_string(),
            from("channel_order", false),
        ),
        (
            "exif",
            if pre.exif { "apply" } else { "ignore" }.to_string(),
            from("exif", false),
        ),
        (
            "alpha",
            match pre.alpha {
                Alpha::Drop => "drop".to_string(),
                Alpha::Composite(c) => format!("composite onto {},{},{}", c[0], c[1], c[2]),
            },
            from("alpha", false),
        ),
    ];
    rows.into_iter()
        .chain(extra)
        .map(|(key, value, source)| PreprocessingSource {
            key: key.to_string(),
            value,
            source: source.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
