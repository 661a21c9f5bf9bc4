//! The optional `method` argument of the correlation functions: parsed
//! once per distinct string (a chunk usually repeats one constant), NULL
//! refused, and required to be the same for every row of a group.

use std::fmt::Display;
use std::str::FromStr;

use ::duckdb::ffi;

use super::ffi::{str_at, Validity};

/// Reads the method at `row` of `vector` (`None`: the argument was not
/// given, so `default`), reusing the last parse when the text repeats.
///
/// # Safety
/// `vector` must be a live flat VARCHAR vector with more than `row` rows.
pub unsafe fn method_at<M>(
    vector: Option<ffi::duckdb_vector>,
    row: usize,
    default: M,
    last: &mut Option<(String, M)>,
) -> Result<M, String>
where
    M: FromStr + Copy,
    M::Err: Display,
{
    let Some(v) = vector else {
        return Ok(default);
    };
    if !Validity::of(v).is_valid(row) {
        return Err("method is NULL".into());
    }
    let text = str_at(v, row);
    if let Some((t, m)) = last.as_ref() {
        if *t == text {
            return Ok(*m);
        }
    }
    let m = text.parse::<M>().map_err(|e| e.to_string())?;
    *last = Some((text.into_owned(), m));
    Ok(m)
}

/// Records `method` for a group, refusing a second, different one.
pub fn merge_method<M: PartialEq + Copy + Display>(
    state: &mut Option<M>,
    method: M,
) -> Result<(), String> {
    match state {
        Some(m) if *m != method => Err(format!(
            "method must be the same for the whole group ('{m}' and '{method}')"
        )),
        _ => {
            *state = Some(method);
            Ok(())
        }
    }
}
