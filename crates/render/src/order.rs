//! Resolving a user's key order against a matrix's keys.
//!
//! The heatmaps can draw a matrix in another layer's image order (e.g.
//! `corr_order` of the input layer). That order comes from the user, so it
//! is checked to be a permutation of the matrix's keys before any value is
//! moved: a key given twice would draw one image twice and silently drop
//! another, and a key that is not in the matrix has no row to draw.

use std::collections::HashMap;

use crate::error::{ErrorKind, RenderError, RenderResult};

/// The permutation that puts a matrix with row keys `keys` into the order
/// `order`: entry `k` of the result is the index in `keys` of `order[k]`.
///
/// Errors ([`ErrorKind::InvalidOrder`], messages prefixed by `function`):
/// a key that appears twice in `keys` (the matrix itself is ambiguous) or
/// in `order`, naming the key and both positions; a key of `order` that is
/// not in `keys`; and `order` with another number of keys than the matrix.
pub fn key_order<K: AsRef<str>, O: AsRef<str>>(
    function: &str,
    keys: &[K],
    order: &[O],
) -> RenderResult<Vec<usize>> {
    let invalid = |message: String| RenderError::new(ErrorKind::InvalidOrder, message);
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        if let Some(first) = index.insert(k.as_ref(), i) {
            return Err(invalid(format!(
                "{function}: the matrix has key '{}' twice (rows {first} and {i})",
                k.as_ref()
            )));
        }
    }
    // Each key of `order` is looked up once, so a duplicate is found at its
    // second occurrence, before the count check could hide it behind a
    // less helpful message.
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(order.len());
    let mut perm = Vec::with_capacity(order.len().min(keys.len()));
    for (pos, k) in order.iter().enumerate() {
        let k = k.as_ref();
        if let Some(first) = seen.insert(k, pos) {
            return Err(invalid(format!(
                "{function}: order has key '{k}' twice (positions {first} and {pos}); \
                 each key of the matrix must appear exactly once"
            )));
        }
        let i = index.get(k).copied().ok_or_else(|| {
            invalid(format!(
                "{function}: order has key '{k}' that is not in the matrix"
            ))
        })?;
        perm.push(i);
    }
    if order.len() != keys.len() {
        return Err(invalid(format!(
            "{function}: order has {} keys but the matrix has {}",
            order.len(),
            keys.len()
        )));
    }
    Ok(perm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_permutation_resolves_to_indices() {
        let keys = s(&["a", "b", "c"]);
        assert_eq!(
            key_order("f", &keys, &s(&["c", "a", "b"])).unwrap(),
            [2, 0, 1]
        );
        assert_eq!(key_order("f", &keys, &keys).unwrap(), [0, 1, 2]);
    }

    #[test]
    fn a_duplicated_key_is_an_error_naming_it() {
        let keys = s(&["a", "b", "c"]);
        // Same length as the matrix: without the check, 'b' would be drawn
        // twice and 'c' dropped.
        let e = key_order("corr_heatmap", &keys, &s(&["a", "b", "b"])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOrder);
        assert_eq!(
            e.to_string(),
            "corr_heatmap: order has key 'b' twice (positions 1 and 2); \
             each key of the matrix must appear exactly once"
        );
        // Longer than the matrix: still named as a duplicate.
        let e = key_order("f", &keys, &s(&["a", "b", "c", "a"])).unwrap_err();
        assert!(e.to_string().contains("key 'a' twice"), "{e}");
    }

    #[test]
    fn a_key_not_in_the_matrix_is_an_error_naming_it() {
        let keys = s(&["a", "b", "c"]);
        let e = key_order("f", &keys, &s(&["a", "x", "c"])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOrder);
        assert_eq!(
            e.to_string(),
            "f: order has key 'x' that is not in the matrix"
        );
    }

    #[test]
    fn a_wrong_count_is_an_error() {
        let keys = s(&["a", "b", "c"]);
        let e = key_order("f", &keys, &s(&["a", "b"])).unwrap_err();
        assert_eq!(e.to_string(), "f: order has 2 keys but the matrix has 3");
        let e = key_order("f", &keys, &Vec::<String>::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOrder);
    }

    #[test]
    fn duplicate_keys_in_the_matrix_are_an_error() {
        let keys = s(&["a", "b", "a"]);
        let e = key_order("f", &keys, &s(&["a", "b", "c"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f: the matrix has key 'a' twice (rows 0 and 2)"
        );
    }
}
