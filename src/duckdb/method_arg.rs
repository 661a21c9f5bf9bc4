//! The optional `method` argument of the correlation functions: parsed
//! once per distinct string (a chunk usually repeats one constant), NULL
//! refused, and required to be the same for every row of a group.

use std::fmt::Display;
use std::str::FromStr;

use super::capi::{Chunk, LogicalType, Strings, TypeFn};
use super::error::{Error, Result};

/// Reads the method at `row` of `methods` (`None`: the argument was not
/// given, so `default`), reusing the last parse when the text repeats.
pub fn method_at<M>(
    methods: Option<&Strings>,
    row: usize,
    default: M,
    last: &mut Option<(String, M)>,
) -> Result<M>
where
    M: FromStr + Copy,
    M::Err: Display,
{
    let Some(methods) = methods else {
        return Ok(default);
    };
    let text = methods
        .text(row)
        .ok_or_else(|| Error::invalid("method is NULL"))?;
    if let Some((t, m)) = last.as_ref() {
        if *t == text {
            return Ok(*m);
        }
    }
    let m = text
        .parse::<M>()
        .map_err(|e| Error::invalid(e.to_string()))?;
    *last = Some((text.into_owned(), m));
    Ok(m)
}

/// Records `method` for a group, refusing a second, different one.
pub fn merge_method<M: PartialEq + Copy + Display>(state: &mut Option<M>, method: M) -> Result<()> {
    match state {
        Some(m) if *m != method => Err(Error::invalid(format!(
            "method must be the same for the whole group ('{m}' and '{method}')"
        ))),
        _ => {
            *state = Some(method);
            Ok(())
        }
    }
}

/// Optional argument `index` of `input` at `row` (`None`: not given).
/// NULL is refused, naming the argument `name`.
fn optional_value<T: super::capi::Plain>(
    input: &Chunk,
    index: usize,
    row: usize,
    name: &str,
) -> Result<Option<T>> {
    let Some(column) = input.optional(index) else {
        return Ok(None);
    };
    column
        .values::<T>()?
        .get(row)
        .map(Some)
        .ok_or_else(|| Error::invalid(format!("{name} is NULL")))
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
pub fn resample_options(
    input: &Chunk,
    first: usize,
    row: usize,
    what: &'static str,
    count_name: &'static str,
) -> Result<layercorr_kernels::resample::BootstrapOptions> {
    use layercorr_kernels::resample::{check_count, check_level, BootstrapOptions};
    let mut opts = BootstrapOptions::default();
    if let Some(count) = optional_value::<i64>(input, first, row, count_name)? {
        opts.resamples = check_count(what, count_name, count)?;
    }
    if let Some(seed) = optional_value::<i64>(input, first + 1, row, "seed")? {
        opts.seed = seed as u64;
    }
    if let Some(level) = optional_value::<f64>(input, first + 2, row, "level")? {
        opts.level = check_level(what, level)?;
    }
    Ok(opts)
}
