//! The optional `method` argument of the correlation functions: parsed
//! once per distinct string (a chunk usually repeats one constant), NULL
//! refused, and required to be the same for every row of a group.

use std::fmt::Display;
use std::str::FromStr;

use libduckdb_sys as ffi;

use super::capi::old_ffi::{str_at, LogicalType, TypeFn, Validity};

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

/// Reads optional argument `name` at `row` of a BIGINT vector (`None`: not
/// given). NULL is refused.
///
/// # Safety
/// `vector` must be a live flat BIGINT vector with more than `row` rows.
pub unsafe fn bigint_at(
    vector: Option<ffi::duckdb_vector>,
    row: usize,
    name: &str,
) -> Result<Option<i64>, String> {
    let Some(v) = vector else {
        return Ok(None);
    };
    if !Validity::of(v).is_valid(row) {
        return Err(format!("{name} is NULL"));
    }
    Ok(Some(
        *(ffi::duckdb_vector_get_data(v) as *const i64).add(row),
    ))
}

/// Reads optional argument `name` at `row` of a DOUBLE vector (`None`: not
/// given). NULL is refused.
///
/// # Safety
/// `vector` must be a live flat DOUBLE vector with more than `row` rows.
pub unsafe fn double_at(
    vector: Option<ffi::duckdb_vector>,
    row: usize,
    name: &str,
) -> Result<Option<f64>, String> {
    let Some(v) = vector else {
        return Ok(None);
    };
    if !Validity::of(v).is_valid(row) {
        return Err(format!("{name} is NULL"));
    }
    Ok(Some(
        *(ffi::duckdb_vector_get_data(v) as *const f64).add(row),
    ))
}

/// The optional arguments of the resampling functions after their
/// matrices: `method, resamples, seed, level`.
pub const RESAMPLE_ARGS: [TypeFn; 4] = [
    LogicalType::varchar,
    LogicalType::bigint,
    LogicalType::bigint,
    LogicalType::double,
];

/// The resampling options at `row`: columns `first..` of `input` hold
/// `count [, seed [, level]]` where given; defaults otherwise. `count_name`
/// is "resamples" or "permutations".
///
/// # Safety
/// `input` must be a live chunk whose columns from `first` are BIGINT,
/// BIGINT, DOUBLE.
pub unsafe fn resample_options(
    input: ffi::duckdb_data_chunk,
    first: usize,
    row: usize,
    what: &'static str,
    count_name: &'static str,
) -> Result<layercorr_kernels::resample::BootstrapOptions, String> {
    use layercorr_kernels::resample::{check_count, check_level, BootstrapOptions};
    let columns = super::capi::old_ffi::column_count(input);
    let col =
        |i: usize| (columns > first + i).then(|| super::capi::old_ffi::column(input, first + i));
    let mut opts = BootstrapOptions::default();
    if let Some(count) = bigint_at(col(0), row, count_name)? {
        opts.resamples = check_count(what, count_name, count).map_err(|e| e.to_string())?;
    }
    if let Some(seed) = bigint_at(col(1), row, "seed")? {
        opts.seed = seed as u64;
    }
    if let Some(level) = double_at(col(2), row, "level")? {
        opts.level = check_level(what, level).map_err(|e| e.to_string())?;
    }
    Ok(opts)
}
