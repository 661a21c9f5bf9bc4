//! What the picture functions share: reordering a keyed matrix by a key
//! order, choosing the colour range, short display names for keys, and
//! reading optional text arguments.

use super::capi::Chunk;
use super::corr_struct::KeyedMatrix;
use super::error::{Error, Result};

/// `m` with rows and columns in `order` (a permutation of its keys, e.g.
/// from `corr_order` of another layer); errors name a missing key.
pub fn reorder(m: &KeyedMatrix, order: &[String]) -> Result<KeyedMatrix> {
    let n = m.n();
    if order.len() != n {
        return Err(Error::invalid(format!(
            "order has {} keys but the matrix has {n}",
            order.len()
        )));
    }
    let index: std::collections::HashMap<&str, usize> = m
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let perm: Vec<usize> = order
        .iter()
        .map(|k| {
            index.get(k.as_str()).copied().ok_or_else(|| {
                Error::invalid(format!("order has key '{k}' that is not in the matrix"))
            })
        })
        .collect::<Result<_>>()?;
    let mut values = Vec::with_capacity(n * n);
    for &i in &perm {
        let row = &m.values[i * n..(i + 1) * n];
        values.extend(perm.iter().map(|&j| row[j]));
    }
    Ok(KeyedMatrix {
        keys: order.to_vec(),
        values,
    })
}

/// The colour range: `(-1, 1)` when every value is a correlation,
/// otherwise the data's own range (distances, Gram values).
pub fn value_range<T: Into<f64>>(values: impl IntoIterator<Item = T>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .map(Into::into)
        .filter(|v: &f64| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() || (lo >= -1.0 - 1e-6 && hi <= 1.0 + 1e-6) {
        (-1.0, 1.0)
    } else if lo == hi {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    }
}

/// A key as shown on an axis: file paths lose their folder.
pub fn display_key(key: &str) -> String {
    key.rsplit('/').next().unwrap_or(key).to_string()
}

/// Optional VARCHAR argument `index` at `row` (NULL or absent → `None`).
pub fn optional_text(input: &Chunk, index: usize, row: usize) -> Result<Option<String>> {
    let Some(column) = input.optional(index) else {
        return Ok(None);
    };
    Ok(column.strings()?.text(row).map(|t| t.into_owned()))
}

/// Optional `VARCHAR[]` argument `index` at `row`.
pub fn optional_list(input: &Chunk, index: usize, row: usize) -> Result<Option<Vec<String>>> {
    match input.optional(index) {
        None => Ok(None),
        Some(column) => column.lists()?.strings_at(row),
    }
}
