//! The per-query preprocessing override: the `preprocess` argument of
//! `nn_activations` (named in the table form, a `MAP(VARCHAR, VARCHAR)`
//! argument in the scalar form) and of `nn_model`.
//!
//! It takes the `layercorr.*` preprocessing keys without the prefix, as a
//! STRUCT (`{'resize': 'letterbox', 'pad_value': 114}`) or a MAP
//! (`MAP {'resize': 'letterbox'}`); values may be text or numbers, and a
//! list such as `[123.7, 116.3, 103.5]` stands for `'123.7,116.3,103.5'`.
//! Keys are checked here (unknown or repeated: an error naming the key and
//! listing the valid ones); values when the model is prepared.

use super::capi::{Column, Kind, LogicalType, Value};
use super::error::{Error, Result};
use layercorr_engine::model::Overrides;

/// `MAP(VARCHAR, VARCHAR)`, the scalar form's override argument.
pub fn map_type() -> LogicalType {
    LogicalType::map(&LogicalType::varchar(), &LogicalType::varchar())
}

/// A value as override text: lists become comma-separated values.
fn value_text(key: &str, value: &Value) -> Result<String> {
    if let Some(items) = value.list_strings() {
        let items: Option<Vec<String>> = items.into_iter().collect();
        return items.map(|v| v.join(",")).ok_or_else(|| {
            Error::invalid(format!("preprocess value of '{key}' has a NULL element"))
        });
    }
    value
        .as_string()
        .ok_or_else(|| Error::invalid(format!("preprocess value of '{key}' is NULL")))
}

/// The overrides of a bind-time `preprocess` value (STRUCT or MAP); no
/// value means none.
pub fn overrides_from_value(value: Option<Value>) -> Result<Overrides> {
    let Some(value) = value else {
        return Ok(Overrides::none());
    };
    if value.is_null() {
        return Err(Error::invalid("preprocess is NULL"));
    }
    let mut pairs = Vec::new();
    match value.kind() {
        Some(Kind::Struct) => {
            for (key, child) in value.struct_fields().unwrap_or_default() {
                if key.is_empty() {
                    return Err(Error::invalid("preprocess has an unnamed field"));
                }
                let text = value_text(&key, &child)?;
                pairs.push((key, text));
            }
        }
        Some(Kind::Map) => {
            for (key, child) in value.map_entries().unwrap_or_default() {
                let key = key.ok_or_else(|| Error::invalid("preprocess has a NULL key"))?;
                let text = value_text(&key, &child)?;
                pairs.push((key, text));
            }
        }
        _ => {
            return Err(Error::invalid(
                "preprocess must be a STRUCT or a MAP of preprocessing keys, e.g. {'resize': 'letterbox'}",
            ))
        }
    }
    Ok(Overrides::new(pairs)?)
}

/// The overrides in row `row` of a `MAP(VARCHAR, VARCHAR)` column; a NULL
/// map means none.
pub fn overrides_at(column: &Column, row: usize) -> Result<Overrides> {
    let maps = column.lists()?;
    let Some(range) = maps.range(row)? else {
        return Ok(Overrides::none());
    };
    let fields = maps.child.fields()?;
    let [keys, values] = fields.as_slice() else {
        return Err(Error::internal("a MAP entry without key and value"));
    };
    let (keys, values) = (keys.strings()?, values.strings()?);
    let mut pairs = Vec::with_capacity(range.len());
    for i in range {
        let key = keys.text(i).unwrap_or_default().into_owned();
        let Some(value) = values.text(i) else {
            return Err(Error::invalid(format!(
                "preprocess value of '{key}' is NULL"
            )));
        };
        pairs.push((key, value.into_owned()));
    }
    Ok(Overrides::new(pairs)?)
}
