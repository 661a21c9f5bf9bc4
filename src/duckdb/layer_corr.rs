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
//! scales and writes the matrix. Euclidean and gram need every row before
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

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use layercorr_kernels::{BlockBuffers, CorrAccumulator, CorrMethod, KernelError, SpillPolicy};
use libduckdb_sys as ffi;

use super::capi::host::Settings;
use super::capi::old_ffi::{
    chunk_len, column, column_count, str_at, FloatLists, LogicalType, Validity,
};
use super::capi::raw_register::Aggregate;
use super::corr_struct::{corr_matrix_type, write_keyed_matrix};
use super::method_arg::{merge_method, method_at};
use super::reservation::Reservation;

/// The `layer_corr` aggregate.
pub struct LayerCorr;

/// One group's rows so far: keys in arrival order and their products (or
/// rows) in an accumulator.
#[derive(Default)]
pub struct CorrState {
    keys: Vec<String>,
    acc: Option<CorrAccumulator>,
    method: Option<CorrMethod>,
    /// Working memory this group has counted in [`RESERVED`].
    reservation: Reservation,
}

/// Working memory counted by every live `layer_corr` group of the process.
static RESERVED: AtomicU64 = AtomicU64::new(0);

impl CorrState {
    /// Counts the working memory of this group at `n` rows of `d` values,
    /// or refuses when all groups together would pass `memory_limit`.
    fn reserve(&mut self, n: usize, d: usize, method: CorrMethod) -> Result<(), String> {
        let spill_limit = spill_limit_bytes(&Settings::latest());
        // The kernels' working memory and the result DuckDB receives.
        let need = layercorr_kernels::memory::working_bytes_with_spill(n, d, method, spill_limit)
            .saturating_add(layercorr_kernels::memory::result_bytes(n));
        self.reservation.reserve(&RESERVED, need, || {
            format!("{}: a group of N = {n} rows of {d} values", method.name())
        })
    }
}

/// `layercorr_spill_mb` in bytes (`None`: never spill).
fn spill_limit_bytes(settings: &Settings) -> Option<usize> {
    settings
        .spill_mb
        .map(|mb| usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
}

/// The spill limit and folder, from `layercorr_spill_mb` and DuckDB's
/// `temp_directory` (the system's temporary folder when none is set).
fn spill_policy() -> Result<SpillPolicy, String> {
    let settings = Settings::latest();
    let mut policy = SpillPolicy::in_temp_dir(spill_limit_bytes(&settings));
    if let Some(dir) = settings.temp_directory {
        // DuckDB makes its temp_directory when it first spills; so do we,
        // but only the last folder of the path.
        if !std::path::Path::new(&dir).is_dir() {
            std::fs::create_dir(&dir)
                .map_err(|e| format!("cannot create temp_directory '{dir}': {e}"))?;
        }
        policy.dir = dir.into();
    }
    Ok(policy)
}

fn length_error(keys: &[String], key: &str, expected: usize, got: usize) -> String {
    let first = keys.first().map(String::as_str).unwrap_or("?");
    format!(
        "activation of key '{key}' has {got} values but key '{first}' has {expected}; all vectors of a group must have the same length"
    )
}

/// A kernel error with its row (arrival order in the group) named by key.
fn kernel_error(e: KernelError, keys: &[String]) -> String {
    match e.row().and_then(|r| keys.get(r)) {
        Some(key) => format!("{e} (row {} is key '{key}')", e.row().unwrap_or(0)),
        None => e.to_string(),
    }
}

/// Adds one group's rows of this chunk (`rows`: chunk row numbers, in
/// order) to its state.
///
/// # Safety
/// `key_vec` is the live key column and `state` a live state.
unsafe fn add_group_rows(
    state: &mut CorrState,
    rows: &[usize],
    acts: &FloatLists,
    key_vec: ffi::duckdb_vector,
    policy: &SpillPolicy,
    bufs: &mut BlockBuffers,
) -> Result<(), String> {
    let method = state.method.unwrap_or(CorrMethod::Pearson);
    let mut values: Vec<&[f32]> = Vec::with_capacity(rows.len());
    for &row in rows {
        let v = acts
            .get(row)
            .map_err(|e| format!("activation: {e}"))?
            .unwrap_or(&[]);
        if v.is_empty() {
            return Err(format!(
                "empty activation (0 values) for key '{}'",
                str_at(key_vec, row)
            ));
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
                None => str_at(key_vec, rows[0]).into_owned(),
            };
            return Err(length_error(
                &[first_key],
                &str_at(key_vec, row),
                d,
                v.len(),
            ));
        }
        values.push(v);
    }
    let Some(d) = values.first().map(|v| v.len()) else {
        return Ok(());
    };
    let first_row = state.acc.as_ref().map_or(0, |a| a.n());
    state.reserve(first_row + values.len(), d, method)?;
    state
        .keys
        .extend(rows.iter().map(|&r| str_at(key_vec, r).into_owned()));
    // The accumulator owns the method: spearman rows are ranked there.
    state
        .acc
        .get_or_insert_with(|| CorrAccumulator::new(d, method))
        .push_rows(&values, policy, bufs)
        .map_err(|e| kernel_error(e, &state.keys))
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

    unsafe fn update(
        input: ffi::duckdb_data_chunk,
        state_of: &mut dyn FnMut(usize) -> *mut CorrState,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let (key_vec, act_vec) = (column(input, 0), column(input, 1));
        let key_ok = Validity::of(key_vec);
        let acts = FloatLists::new(act_vec, rows);
        let method_vec = (column_count(input) >= 3).then(|| column(input, 2));
        let mut last_method = None;
        let policy = spill_policy()?;
        // The chunk's rows by group, groups in order of first appearance,
        // so that each group's rows are multiplied as one block.
        let mut groups: Vec<(*mut CorrState, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<*mut CorrState, usize> = HashMap::new();
        for row in 0..rows {
            let method = method_at(method_vec, row, CorrMethod::Pearson, &mut last_method)?;
            if acts
                .get(row)
                .map_err(|e| format!("activation: {e}"))?
                .is_none()
            {
                continue;
            }
            if !key_ok.is_valid(row) {
                return Err("key is NULL for a non-NULL activation".into());
            }
            let state = state_of(row);
            merge_method(&mut (*state).method, method)?;
            let g = *group_of.entry(state).or_insert_with(|| {
                groups.push((state, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(row);
        }
        // One set of working buffers for every group of the chunk.
        let mut bufs = BlockBuffers::default();
        for (state, group_rows) in &groups {
            add_group_rows(&mut **state, group_rows, &acts, key_vec, &policy, &mut bufs)?;
        }
        Ok(())
    }

    fn combine(source: &mut CorrState, target: &mut CorrState) -> Result<(), String> {
        if let Some(m) = source.method {
            merge_method(&mut target.method, m)?;
        }
        let Some(src) = source.acc.take() else {
            return Ok(());
        };
        if let Some(dst) = &target.acc {
            // The source's count moves to the target, which then counts
            // the merged group.
            let (n, d) = (dst.n() + src.n(), dst.d());
            let method = target.method.unwrap_or(CorrMethod::Pearson);
            source.reservation.release();
            target.reserve(n, d, method)?;
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
                let keeps_order = dst
                    .merge(src, &spill_policy()?)
                    .map_err(|e| e.to_string())?;
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

    unsafe fn finalize(
        state: &mut CorrState,
        output: ffi::duckdb_vector,
        row: usize,
    ) -> Result<(), String> {
        let method = state.method.unwrap_or(CorrMethod::Pearson);
        let Some(acc) = state.acc.take() else {
            return Err(format!(
                "{}: the group has no non-NULL activations; need at least 2 rows",
                method.name()
            ));
        };
        let keys = std::mem::take(&mut state.keys);
        if keys.len() < 2 {
            return Err(format!(
                "{}: need at least 2 rows, got {} (key '{}')",
                method.name(),
                keys.len(),
                keys.first().map(String::as_str).unwrap_or("")
            ));
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        if let Some(w) = order.windows(2).find(|w| keys[w[0]] == keys[w[1]]) {
            return Err(format!(
                "duplicate key '{}' in the group; keys must be unique",
                keys[w[0]]
            ));
        }
        let matrix = acc.finish(&order).map_err(|e| kernel_error(e, &keys))?;
        let sorted: Vec<String> = order.iter().map(|i| keys[*i].clone()).collect();
        write_keyed_matrix(output, row, &sorted, matrix.as_slice(), method)?;
        Ok(())
    }
}
