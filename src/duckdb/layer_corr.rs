//! `layer_corr(key, activation [, method])`: the N x N matrix of one
//! layer over the group's images.
//!
//! Returns `STRUCT(keys VARCHAR[], matrix FLOAT[][])` with keys sorted
//! ascending. Methods: `pearson` (default), `spearman`, `cosine`,
//! `euclidean` (distance), `gram` (centred linear kernel, for CKA). Rows
//! with a NULL activation are skipped; a NULL key, duplicate keys, vectors
//! of different lengths, fewer than two rows, and a constant (zero
//! variance) activation for pearson/spearman are errors naming the key.
//!
//! For pearson, spearman and cosine the products are taken while DuckDB
//! hands the rows over ([`layercorr_kernels::stream`]): each chunk's rows
//! of a group are multiplied, on both cores, with each other and with the
//! group's earlier rows, straight from DuckDB's vector; finalize only
//! scales and writes the matrix. Where a chunk holds several groups and a
//! group's block is large (a `GROUP BY layer` over a stored table), the
//! block is copied into the group's store and multiplied on a thread of
//! its own while DuckDB scans the next chunk
//! ([`layercorr_kernels::pipelined`]). Euclidean and gram need every row before
//! the first product, so they multiply at finalize. Either way a group
//! keeps its rows (for products with later chunks): in memory up to
//! `LAYERCORR_SPILL_MB` megabytes (default 256), past that in an unlinked
//! file in the temporary folder (`TMPDIR`), so the host's memory stays
//! near the table plus N² however large the layer.
//! `LAYERCORR_SPILL_MB=off` keeps everything in memory. The accumulator
//! owns each method's meaning (spearman ranks each row as it arrives);
//! this file only hands it the raw rows and maps its errors to keys.
//!
//! ```sql
//! SELECT layer, layer_corr(path, activation) AS m FROM activations GROUP BY layer;
//! ```

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use layercorr_kernels::{
    working_parts, BlockBuffers, CorrMethod, PipelinedAccumulator, SpillPolicy,
};

use super::capi::host::Settings;
use super::capi::{Aggregate, Chunk, FloatLists, LogicalType, Output, States, Strings};
use super::corr_struct::{corr_matrix_type, write_keyed_matrix};
use super::error::{ArgumentContext, Error, Result};

use super::method_arg::{merge_method, method_at};
use super::reservation::Reservation;

/// The `layer_corr` aggregate.
pub struct LayerCorr;

/// One group's rows so far: keys in arrival order and their products (or
/// rows) in an accumulator.
#[derive(Default)]
pub struct CorrState {
    keys: Vec<String>,
    acc: Option<PipelinedAccumulator>,
    method: Option<CorrMethod>,
    /// Working memory this group has counted in [`RESERVED`].
    reservation: Reservation,
    /// This group keeps none of its rows in memory: with them there, all
    /// groups together would have passed `memory_limit`.
    spills_all: bool,
}

/// Working memory counted by every live `layer_corr` group of the process.
static RESERVED: AtomicU64 = AtomicU64::new(0);

impl CorrState {
    /// Counts the working memory of this group at `n` rows of `d` values.
    ///
    /// `layercorr_spill_mb` is per group, so many large groups in one
    /// query would keep many times that in memory. A group therefore keeps
    /// its rows in memory only while all groups together stay within half
    /// of `memory_limit`; past that it moves every row to its spill file
    /// (when that lowers its count), leaving the other half to the groups
    /// that spill. Refuses when the group fits neither way.
    ///
    /// The buffers of the products are counted in `call`, the host call's
    /// own count, once for all the groups it pushes (they share one set),
    /// at the largest group's size; twice when the call's chunk holds
    /// several groups (`shared_chunk`), since a block of such a chunk may
    /// then be multiplied behind DuckDB's scan with buffers of its own
    /// after the call returns (one such block at a time in the process,
    /// `PipelinedAccumulator`).
    fn reserve(
        &mut self,
        n: usize,
        d: usize,
        method: CorrMethod,
        policy: &SpillPolicy,
        call: &mut Reservation,
        shared_chunk: bool,
    ) -> Result<()> {
        self.reserve_held(n, d, method, policy.limit_bytes)?;
        let spill_limit = group_policy(self.spills_all, policy).limit_bytes;
        let copies = if shared_chunk { 2 } else { 1 };
        let buffers = working_parts(n, d, method, spill_limit)
            .per_call
            .saturating_mul(copies);
        call.reserve(&RESERVED, buffers.max(call.bytes()), || {
            format!(
                "{}: the products of a group of N = {n} rows of {d} values",
                method.name()
            )
        })
    }

    /// [`CorrState::reserve`]'s count of what the group holds, rows kept
    /// in memory up to `configured` bytes (`layercorr_spill_mb`).
    fn reserve_held(
        &mut self,
        n: usize,
        d: usize,
        method: CorrMethod,
        configured: Option<usize>,
    ) -> Result<()> {
        let what = |spilled: bool| {
            move || {
                let rows = if spilled {
                    ", its rows in a spill file,"
                } else {
                    ""
                };
                format!(
                    "{}: a group of N = {n} rows of {d} values{rows}",
                    method.name()
                )
            }
        };
        let spilled = need(n, d, method, Some(0));
        if self.spills_all {
            return self.reservation.reserve(&RESERVED, spilled, what(true));
        }
        let kept = need(n, d, method, configured);
        let half_limit = Settings::latest().memory_limit / 2;
        if configured.is_none()
            || spilled >= kept
            || self.reservation.fits(&RESERVED, kept, half_limit)
        {
            return self.reservation.reserve(&RESERVED, kept, what(false));
        }
        match self.reservation.reserve(&RESERVED, spilled, what(true)) {
            Ok(()) => {
                // The rows it kept go to the file at the next push.
                self.reservation.lower_to(spilled);
                self.spills_all = true;
                Ok(())
            }
            // Memory the spilling groups hold may still leave room for
            // this one's rows.
            Err(e) => self
                .reservation
                .reserve(&RESERVED, kept, what(false))
                .map_err(|_| e),
        }
    }
}

/// The spill policy of a group: `policy`, or every row to the file when
/// the group `spills_all`.
fn group_policy(spills_all: bool, policy: &SpillPolicy) -> Cow<'_, SpillPolicy> {
    if spills_all {
        Cow::Owned(SpillPolicy {
            limit_bytes: Some(0),
            dir: policy.dir.clone(),
        })
    } else {
        Cow::Borrowed(policy)
    }
}

/// What the kernels hold for a group of `n` rows of `d` values from one
/// call of the host to the next, rows kept in memory up to `spill_limit`
/// bytes, and the result DuckDB receives.
fn need(n: usize, d: usize, method: CorrMethod, spill_limit: Option<usize>) -> u64 {
    working_parts(n, d, method, spill_limit)
        .held()
        .saturating_add(layercorr_kernels::memory::result_bytes(n))
}

/// `layercorr_spill_mb` in bytes (`None`: never spill).
fn spill_limit_bytes(settings: &Settings) -> Option<usize> {
    settings
        .spill_mb
        .map(|mb| usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
}

/// The spill limit and folder, from `layercorr_spill_mb` and DuckDB's
/// `temp_directory` (the system's temporary folder when none is set).
fn spill_policy() -> Result<SpillPolicy> {
    let settings = Settings::latest();
    let mut policy = SpillPolicy::in_temp_dir(spill_limit_bytes(&settings));
    if let Some(dir) = settings.temp_directory {
        // DuckDB makes its temp_directory when it first spills; so do we,
        // but only the last folder of the path.
        if !std::path::Path::new(&dir).is_dir() {
            std::fs::create_dir(&dir).map_err(|e| {
                Error::invalid(format!("cannot create temp_directory '{dir}': {e}"))
            })?;
        }
        policy.dir = dir.into();
    }
    Ok(policy)
}

fn length_error(keys: &[String], key: &str, expected: usize, got: usize) -> Error {
    let first = keys.first().map(String::as_str).unwrap_or("?");
    Error::invalid(format!(
        "activation of key '{key}' has {got} values but key '{first}' has {expected}; all vectors of a group must have the same length"
    ))
}

/// What the groups of one host call share: the spill policy, one set of
/// buffers for their products, and those buffers' count in [`RESERVED`]
/// (given back when the call returns, after the buffers are dropped).
struct CallShared {
    policy: SpillPolicy,
    bufs: BlockBuffers,
    count: Reservation,
}

/// Adds one group's rows of this chunk (`rows`: chunk row numbers, in
/// order) to its state; `shared_chunk`: other groups have rows in it (the
/// accumulator may then multiply a large block behind DuckDB's scan).
fn add_group_rows(
    state: &mut CorrState,
    shared_chunk: bool,
    rows: &[usize],
    acts: &FloatLists,
    keys: &Strings,
    call: &mut CallShared,
) -> Result<()> {
    let key_at = |row: usize| keys.text(row).unwrap_or_default();
    let method = state.method.unwrap_or(CorrMethod::Pearson);
    let mut values: Vec<&[f32]> = Vec::with_capacity(rows.len());
    for &row in rows {
        let v = acts.get(row).of_argument("activation")?.unwrap_or(&[]);
        if v.is_empty() {
            return Err(Error::invalid(format!(
                "empty activation (0 values) for key '{}'",
                key_at(row)
            )));
        }
        let expected = match (&state.acc, values.first()) {
            (Some(acc), _) => Some(acc.d()),
            (None, Some(first)) => Some(first.len()),
            (None, None) => None,
        };
        if let Some(d) = expected.filter(|&d| d != v.len()) {
            // Named against the group's first key, as the message says.
            let first_key = match state.keys.first() {
                Some(k) => k.clone(),
                None => key_at(rows[0]).into_owned(),
            };
            return Err(length_error(&[first_key], &key_at(row), d, v.len()));
        }
        values.push(v);
    }
    let Some(d) = values.first().map(|v| v.len()) else {
        return Ok(());
    };
    // One key per row pushed: the accumulator's row count, without
    // waiting for products still running.
    let first_row = state.keys.len();
    state.reserve(
        first_row + values.len(),
        d,
        method,
        &call.policy,
        &mut call.count,
        shared_chunk,
    )?;
    state
        .keys
        .extend(rows.iter().map(|&r| key_at(r).into_owned()));
    // The accumulator owns the method: spearman rows are ranked there.
    let policy = group_policy(state.spills_all, &call.policy);
    state
        .acc
        .get_or_insert_with(|| PipelinedAccumulator::new(d, method))
        .push_rows(&values, &policy, &mut call.bufs, shared_chunk)
        .map_err(|e| Error::at_key(e, &state.keys))
}

impl Aggregate for LayerCorr {
    type State = CorrState;
    const NAME: &'static str = "layer_corr";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        let act = || LogicalType::list(&LogicalType::float());
        vec![
            (vec![LogicalType::varchar(), act()], corr_matrix_type()),
            (
                vec![LogicalType::varchar(), act(), LogicalType::varchar()],
                corr_matrix_type(),
            ),
        ]
    }

    fn update(input: &Chunk, states: &mut States<CorrState>) -> Result<()> {
        let keys = input.column(0)?.strings()?;
        let acts = input.column(1)?.float_lists()?;
        let methods = input.optional(2).map(|c| c.strings()).transpose()?;
        let mut last_method = None;
        let mut rows = Vec::with_capacity(input.rows());
        for row in 0..input.rows() {
            let method = method_at(methods.as_ref(), row, CorrMethod::Pearson, &mut last_method)?;
            if acts.get(row).of_argument("activation")?.is_none() {
                continue;
            }
            if keys.bytes(row).is_none() {
                return Err(Error::invalid("key is NULL for a non-NULL activation"));
            }
            merge_method(&mut states.get(row).method, method)?;
            rows.push(row);
        }
        // The chunk's rows by group, groups in order of first appearance,
        // so that each group's rows are multiplied as one block, with one
        // set of working buffers for every group of the chunk.
        let mut call = CallShared {
            policy: spill_policy()?,
            bufs: BlockBuffers::default(),
            count: Reservation::default(),
        };
        let groups = states.groups(&rows);
        let shared_chunk = groups.len() > 1;
        for group in groups {
            let group_rows: Vec<usize> = group.iter().map(|&i| rows[i]).collect();
            let state = states.get(group_rows[0]);
            add_group_rows(state, shared_chunk, &group_rows, &acts, &keys, &mut call)?;
        }
        Ok(())
    }

    fn combine(source: &mut CorrState, target: &mut CorrState) -> Result<()> {
        if let Some(m) = source.method {
            merge_method(&mut target.method, m)?;
        }
        let Some(src) = source.acc.take() else {
            return Ok(());
        };
        let policy = spill_policy()?;
        // The merge's products, as a call's (see `CorrState::reserve`).
        let mut call = Reservation::default();
        if let Some(dst) = &target.acc {
            // The source's count moves to the target, which then counts
            // the merged group.
            let (n, d) = (target.keys.len() + source.keys.len(), dst.d());
            let method = target.method.unwrap_or(CorrMethod::Pearson);
            source.reservation.release();
            target.reserve(n, d, method, &policy, &mut call, false)?;
        }
        match &mut target.acc {
            None => {
                target.acc = Some(src);
                target.keys = std::mem::take(&mut source.keys);
                target.reservation.absorb(&mut source.reservation);
            }
            Some(dst) => {
                if dst.d() != src.d() {
                    let key = source.keys.first().cloned().unwrap_or_default();
                    return Err(length_error(&target.keys, &key, dst.d(), src.d()));
                }
                let policy = group_policy(target.spills_all, &policy);
                let keeps_order = dst.merge(src, &policy)?;
                if keeps_order {
                    target.keys.append(&mut source.keys);
                } else {
                    source.keys.append(&mut target.keys);
                    target.keys = std::mem::take(&mut source.keys);
                }
            }
        }
        Ok(())
    }

    fn finalize(state: &mut CorrState, output: &mut Output, row: usize) -> Result<()> {
        let method = state.method.unwrap_or(CorrMethod::Pearson);
        let Some(acc) = state.acc.take() else {
            return Err(Error::invalid(format!(
                "{}: the group has no non-NULL activations; need at least 2 rows",
                method.name()
            )));
        };
        let keys = std::mem::take(&mut state.keys);
        if keys.len() < 2 {
            return Err(Error::invalid(format!(
                "{}: need at least 2 rows, got {} (key '{}')",
                method.name(),
                keys.len(),
                keys.first().map(String::as_str).unwrap_or("")
            )));
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        if let Some(w) = order.windows(2).find(|w| keys[w[0]] == keys[w[1]]) {
            return Err(Error::invalid(format!(
                "duplicate key '{}' in the group; keys must be unique",
                keys[w[0]]
            )));
        }
        let matrix = acc.finish(&order).map_err(|e| Error::at_key(e, &keys))?;
        let sorted: Vec<String> = order.iter().map(|i| keys[*i].clone()).collect();
        write_keyed_matrix(output, row, &sorted, matrix.as_slice(), method)?;
        Ok(())
    }
}
