//! Preprocessing declared in an ONNX file's `metadata_props`.
//!
//! A model states how its input is made with keys prefixed `layercorr.`:
//! `input_size` ("224" or "240x320" as HxW), `mean` and `std` ("r,g,b" on
//! the 0–255 scale), `resize` (`shorter_side_then_center_crop` or
//! `stretch`), `layout` (`NCHW` or `NHWC`). Our converter writes them;
//! `scripts/set_preprocessing.py` stamps them on any ONNX file. Missing keys
//! fall back to the declared input shape, then to the demo model's values.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::Tensor;

use super::ModelError;
use crate::image::{Layout, Preprocessing, ResizeMode};

const PREFIX: &str = "onnx.metadata_props.layercorr.";

fn prop(props: &HashMap<String, Arc<Tensor>>, key: &str) -> Option<String> {
    props.get(&format!("{PREFIX}{key}")).and_then(|t| {
        t.try_as_plain_ram()
            .ok()?
            .to_scalar::<String>()
            .ok()
            .cloned()
    })
}

fn triple(path: &Path, key: &str, text: &str) -> Result<[f32; 3], ModelError> {
    let bad = || ModelError::UnsupportedInput {
        path: path.to_path_buf(),
        reason: format!("metadata layercorr.{key} = '{text}' is not three numbers"),
    };
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    match values.as_slice() {
        [a, b, c] => Ok([*a, *b, *c]),
        [a] => Ok([*a; 3]),
        _ => Err(bad()),
    }
}

/// Builds the preprocessing of a model from its metadata, with `declared`
/// the (height, width, layout) read from the input's declared shape if any.
pub fn preprocessing_from_props(
    path: &Path,
    props: &HashMap<String, Arc<Tensor>>,
    declared: Option<(u32, u32, Layout)>,
) -> Result<Preprocessing, ModelError> {
    let mut pre = Preprocessing::default();
    if let Some((h, w, layout)) = declared {
        pre.height = h;
        pre.width = w;
        pre.layout = layout;
    }
    if let Some(size) = prop(props, "input_size") {
        let parse = |s: &str| s.trim().parse::<u32>().ok().filter(|v| *v > 0);
        let (h, w) = match size.split_once(['x', 'X']) {
            Some((h, w)) => (parse(h), parse(w)),
            None => (parse(&size), parse(&size)),
        };
        match (h, w) {
            (Some(h), Some(w)) => {
                pre.height = h;
                pre.width = w;
            }
            _ => {
                return Err(ModelError::UnsupportedInput {
                    path: path.to_path_buf(),
                    reason: format!("metadata layercorr.input_size = '{size}' is not a size"),
                })
            }
        }
    }
    if let Some(mean) = prop(props, "mean") {
        pre.mean = triple(path, "mean", &mean)?;
    }
    if let Some(std) = prop(props, "std") {
        pre.std = triple(path, "std", &std)?;
        if pre.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(ModelError::UnsupportedInput {
                path: path.to_path_buf(),
                reason: format!("metadata layercorr.std = '{std}' has a zero"),
            });
        }
    }
    if let Some(resize) = prop(props, "resize") {
        pre.resize = match resize.to_ascii_lowercase().as_str() {
            "stretch" => ResizeMode::Stretch,
            _ => ResizeMode::ShorterSideCenterCrop,
        };
    }
    if let Some(layout) = prop(props, "layout") {
        pre.layout = match layout.to_ascii_uppercase().as_str() {
            "NHWC" => Layout::Nhwc,
            _ => Layout::Nchw,
        };
    }
    Ok(pre)
}
