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
//! A group keeps its rows until finalize: in memory up to
//! `LAYERCORR_SPILL_MB` megabytes (default 256), past that in an unlinked
//! file in the temporary folder (`TMPDIR`), read back a column chunk at a
//! time, so the host's memory stays near the table plus N² however large
//! the layer. `LAYERCORR_SPILL_MB=off` keeps everything in memory. For
//! spearman each row is ranked as it arrives.
//!
//! ```sql
//! SELECT layer, layer_corr(path, activation) AS m FROM activations GROUP BY layer;
//! ```

use ::duckdb::ffi;
use layercorr_kernels::corr::correlation_matrix_of;
use layercorr_kernels::rank::rank_row_into;
use layercorr_kernels::source::Permuted;
use layercorr_kernels::{CorrMethod, KernelError, RowStore, SpillPolicy};
use rayon::prelude::*;

use super::corr_struct::{corr_matrix_type, write_keyed_matrix};
use super::ffi::{chunk_len, column, column_count, str_at, FloatLists, LogicalType, Validity};
use super::method_arg::{merge_method, method_at};
use super::register::Aggregate;

/// The `layer_corr` aggregate.
pub struct LayerCorr;

/// One group's rows, kept until finalize (ranked already for spearman).
#[derive(Default)]
pub struct CorrState {
    keys: Vec<String>,
    rows: Option<RowStore>,
    method: Option<CorrMethod>,
}

/// Megabytes of rows a group keeps in memory before it spills to a file.
const DEFAULT_SPILL_MB: usize = 256;

/// The spill limit and folder, from `LAYERCORR_SPILL_MB` and `TMPDIR`.
fn spill_policy() -> Result<SpillPolicy, String> {
    let limit_bytes = match std::env::var("LAYERCORR_SPILL_MB") {
        Err(_) => Some(DEFAULT_SPILL_MB << 20),
        Ok(v) if v.trim().eq_ignore_ascii_case("off") => None,
        Ok(v) => Some(
            v.trim()
                .parse::<usize>()
                .map_err(|_| {
                    format!("LAYERCORR_SPILL_MB is '{v}'; expected a number of megabytes or 'off'")
                })?
                .saturating_mul(1 << 20),
        ),
    };
    Ok(SpillPolicy {
        limit_bytes,
        dir: std::env::temp_dir(),
    })
}

fn length_error(keys: &[String], key: &str, expected: usize, got: usize) -> String {
    let first = keys.first().map(String::as_str).unwrap_or("?");
    format!(
        "activation of key '{key}' has {got} values but key '{first}' has {expected}; all vectors of a group must have the same length"
    )
}

fn kernel_error(e: KernelError, keys: &[String]) -> String {
    match e.row().and_then(|r| keys.get(r)) {
        Some(key) => format!("{e} (row {} is key '{key}')", e.row().unwrap_or(0)),
        None => e.to_string(),
    }
}

/// Spearman rows ranked together in one parallel step.
const RANK_BATCH: usize = 16;

/// Adds a batch of `(row, method, values)` to their groups, ranking the
/// spearman ones first (in parallel, into `ranked`).
///
/// # Safety
/// `key_vec` is the live key column and `state_of` returns live states.
unsafe fn store_batch(
    batch: &[(usize, CorrMethod, &[f32])],
    ranked: &mut Vec<Vec<f32>>,
    key_vec: ffi::duckdb_vector,
    state_of: &mut dyn FnMut(usize) -> *mut CorrState,
    policy: &SpillPolicy,
) -> Result<(), String> {
    ranked.resize_with(batch.len(), Vec::new);
    let failed = batch
        .par_iter()
        .zip(ranked.par_iter_mut())
        .filter(|((_, method, _), _)| *method == CorrMethod::Spearman)
        .map(|((row, _, values), out)| {
            out.resize(values.len(), 0.0);
            rank_row_into(values, out).err().map(|e| (*row, e))
        })
        .flatten()
        .min_by_key(|(row, _)| *row);
    if let Some((row, e)) = failed {
        let key = str_at(key_vec, row);
        let e = e.to_string().replacen("row 0 ", "the activation ", 1);
        return Err(format!("{e} (key '{key}')"));
    }
    for ((row, method, values), ranks) in batch.iter().zip(ranked.iter()) {
        let key = str_at(key_vec, *row);
        let state = &mut *state_of(*row);
        merge_method(&mut state.method, *method)?;
        let store = state
            .rows
            .get_or_insert_with(|| RowStore::new(values.len()));
        if store.d() != values.len() {
            return Err(length_error(&state.keys, &key, store.d(), values.len()));
        }
        let values = if *method == CorrMethod::Spearman {
            &ranks[..]
        } else {
            values
        };
        store.push_row(values, policy).map_err(|e| e.to_string())?;
        state.keys.push(key.into_owned());
    }
    Ok(())
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
        // Spearman rows are ranked a batch at a time on rayon's pool (the
        // ranking is an n log n sort per row), then stored in arrival order.
        let mut batch: Vec<(usize, CorrMethod, &[f32])> = Vec::with_capacity(RANK_BATCH);
        let mut ranked: Vec<Vec<f32>> = Vec::new();
        for row in 0..rows {
            let method = method_at(method_vec, row, CorrMethod::Pearson, &mut last_method)?;
            let Some(values) = acts.get(row).map_err(|e| format!("activation: {e}"))? else {
                continue;
            };
            if !key_ok.is_valid(row) {
                return Err("key is NULL for a non-NULL activation".into());
            }
            batch.push((row, method, values));
            if batch.len() == RANK_BATCH {
                store_batch(&batch, &mut ranked, key_vec, state_of, &policy)?;
                batch.clear();
            }
        }
        store_batch(&batch, &mut ranked, key_vec, state_of, &policy)
    }

    fn combine(source: &mut CorrState, target: &mut CorrState) -> Result<(), String> {
        if let Some(m) = source.method {
            merge_method(&mut target.method, m)?;
        }
        let Some(src_rows) = source.rows.take() else {
            return Ok(());
        };
        match &mut target.rows {
            None => {
                target.rows = Some(src_rows);
                target.keys = std::mem::take(&mut source.keys);
            }
            Some(dst) => {
                if dst.d() != src_rows.d() {
                    let key = source.keys.first().cloned().unwrap_or_default();
                    return Err(length_error(&target.keys, &key, dst.d(), src_rows.d()));
                }
                let keeps_order = dst.append_keeps_order(&src_rows);
                dst.append(src_rows, &spill_policy()?)
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
        let Some(mut rows) = state.rows.take() else {
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
        rows.finish().map_err(|e| e.to_string())?;
        let sorted: Vec<String> = order.iter().map(|i| keys[*i].clone()).collect();
        let in_order = order.iter().enumerate().all(|(i, o)| i == *o);
        let matrix = match &mut rows {
            RowStore::Memory(m) => {
                if !in_order {
                    m.permute_rows(&order).map_err(|e| e.to_string())?;
                }
                correlation_matrix_of(m, method, None)
            }
            RowStore::Spilled(file) => {
                let permuted = Permuted::new(file, &order).map_err(|e| e.to_string())?;
                correlation_matrix_of(&permuted, method, None)
            }
        };
        drop(rows);
        let keys = sorted;
        let matrix = matrix.map_err(|e| kernel_error(e, &keys))?;
        write_keyed_matrix(output, row, &keys, matrix.as_slice())?;
        Ok(())
    }
}
