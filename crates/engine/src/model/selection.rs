//! From what the user typed to layer names.
//!
//! A request is a list of exact names and glob patterns (`blocks.*.project`,
//! `*conv*`); patterns expand in the model's topological order, exact names
//! keep the user's order. A name that matches nothing is an error that lists
//! the nearest existing names, since layer names are long and easy to
//! mistype.

use std::path::Path;

use super::{LayerInfo, ModelError};

fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// The (up to five) layer names closest to `wanted`.
fn nearest(wanted: &str, layers: &[LayerInfo]) -> String {
    let mut scored: Vec<(f64, &str)> = layers
        .iter()
        .map(|l| {
            (
                strsim::normalized_damerau_levenshtein(wanted, &l.name),
                l.name.as_str(),
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .iter()
        .take(5)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves `requested` names and patterns against `layers`. Duplicates are
/// kept once, at their first position.
pub fn select_layers(
    requested: &[String],
    layers: &[LayerInfo],
    model_path: &Path,
) -> Result<Vec<String>, ModelError> {
    if requested.is_empty() {
        return Err(ModelError::EmptyLayerList {
            path: model_path.to_path_buf(),
        });
    }
    let mut selected: Vec<String> = Vec::new();
    let mut push = |name: &str| {
        if !selected.iter().any(|s| s == name) {
            selected.push(name.to_string());
        }
    };
    for wanted in requested {
        let matches: Vec<&LayerInfo> = if is_pattern(wanted) {
            match glob::Pattern::new(wanted) {
                Ok(pattern) => layers.iter().filter(|l| pattern.matches(&l.name)).collect(),
                Err(_) => Vec::new(),
            }
        } else {
            layers.iter().filter(|l| &l.name == wanted).collect()
        };
        if matches.is_empty() {
            return Err(ModelError::UnknownLayer {
                layer: wanted.clone(),
                path: model_path.to_path_buf(),
                nearest: nearest(wanted, layers),
            });
        }
        for layer in matches {
            push(&layer.name);
        }
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(names: &[&str]) -> Vec<LayerInfo> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| LayerInfo {
                name: n.to_string(),
                op: "Conv".into(),
                node: String::new(),
                tract_op: "Conv".into(),
                shape: vec![1],
                size: 1,
                position: i as i32,
            })
            .collect()
    }

    #[test]
    fn exact_names_keep_request_order_and_patterns_expand_in_model_order() {
        let all = layers(&[
            "input",
            "stem",
            "blocks.0.project",
            "blocks.1.project",
            "logits",
        ]);
        let req = vec![
            "logits".to_string(),
            "blocks.*.project".to_string(),
            "logits".to_string(),
        ];
        let got = select_layers(&req, &all, Path::new("m.onnx")).unwrap();
        assert_eq!(got, vec!["logits", "blocks.0.project", "blocks.1.project"]);
    }

    #[test]
    fn unknown_layer_suggests_nearest() {
        let all = layers(&["input", "blocks.3.depthwise", "blocks.3.project", "logits"]);
        let err = select_layers(
            &["blocks.3.dephwise".to_string()],
            &all,
            Path::new("m.onnx"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'blocks.3.dephwise'"), "{err}");
        assert!(err.contains("nearest: blocks.3.depthwise"), "{err}");
    }

    #[test]
    fn empty_request_is_an_error() {
        let all = layers(&["input"]);
        assert!(matches!(
            select_layers(&[], &all, Path::new("m.onnx")),
            Err(ModelError::EmptyLayerList { .. })
        ));
    }
}
