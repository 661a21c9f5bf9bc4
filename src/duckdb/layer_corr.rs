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
//! ```sql
//! SELECT layer, layer_corr(path, activation) AS m FROM activations GROUP BY layer;
//! ```

use ::duckdb::ffi;
use layercorr_kernels::{corr::correlation_matrix, CorrMethod, KernelError, RowMatrix};

use super::corr_struct::{corr_matrix_type, reserve_keyed_matrices, write_keyed_matrix};
use super::ffi::{chunk_len, column, column_count, str_at, FloatLists, LogicalType, Validity};
use super::method_arg::{merge_method, method_at};
use super::register::Aggregate;

/// The `layer_corr` aggregate.
pub struct LayerCorr;

/// One group's rows, kept until finalize.
#[derive(Default)]
pub struct CorrState {
    keys: Vec<String>,
    rows: Option<RowMatrix>,
    method: Option<CorrMethod>,
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
        for row in 0..rows {
            let method = method_at(method_vec, row, CorrMethod::Pearson, &mut last_method)?;
            let Some(values) = acts.get(row).map_err(|e| format!("activation: {e}"))? else {
                continue;
            };
            if !key_ok.is_valid(row) {
                return Err("key is NULL for a non-NULL activation".into());
            }
            let key = str_at(key_vec, row);
            let state = &mut *state_of(row);
            merge_method(&mut state.method, method)?;
            let matrix = state
                .rows
                .get_or_insert_with(|| RowMatrix::new(values.len()));
            if matrix.d() != values.len() {
                return Err(length_error(&state.keys, &key, matrix.d(), values.len()));
            }
            matrix.push_row(values).map_err(|e| e.to_string())?;
            state.keys.push(key.into_owned());
        }
        Ok(())
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
                dst.append(&src_rows).map_err(|e| e.to_string())?;
                target.keys.append(&mut source.keys);
            }
        }
        Ok(())
    }

    unsafe fn reserve_output(states: &[&CorrState], output: ffi::duckdb_vector) {
        let sizes: Vec<usize> = states
            .iter()
            .filter(|s| s.rows.is_some())
            .map(|s| s.keys.len())
            .collect();
        reserve_keyed_matrices(output, &sizes);
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
        let mut keys = std::mem::take(&mut state.keys);
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
        if order.iter().enumerate().any(|(i, o)| i != *o) {
            rows.permute_rows(&order).map_err(|e| e.to_string())?;
            keys = order
                .iter()
                .map(|i| std::mem::take(&mut keys[*i]))
                .collect();
        }
        let matrix = correlation_matrix(rows, method).map_err(|e| kernel_error(e, &keys))?;
        write_keyed_matrix(output, row, &keys, matrix.as_slice());
        Ok(())
    }
}
