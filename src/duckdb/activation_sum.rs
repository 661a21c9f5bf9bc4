//! `activation_sum(activation)`: `STRUCT(n BIGINT, sum DOUBLE[])`, the
//! number of non-NULL activations of the group and their element-wise sum
//! in `f64`: the global column-mean pass of a `gram` matrix computed in
//! blocks (`sum / n` is `layer_corr_block`'s `center`). Partial results of
//! disjoint shards add up. NULL activations are skipped; vectors of
//! different lengths and NULL elements are errors; a group with no
//! activation gives `n = 0` and a NULL sum.
//!
//! ```sql
//! SELECT layer, activation_sum(activation) FROM activations GROUP BY layer;
//! ```

use layercorr_kernels::try_zeroed_vec;
use libduckdb_sys as ffi;

use super::capi::old_ffi::{
    chunk_len, column, set_list, set_null, set_value, struct_child, FloatLists, LogicalType,
};
use super::capi::raw_register::Aggregate;

/// The `activation_sum` aggregate.
pub struct ActivationSum;

/// A group's count and sums.
#[derive(Default)]
pub struct SumState {
    n: i64,
    sum: Vec<f64>,
}

fn length_error(expected: usize, got: usize) -> String {
    format!(
        "an activation has {got} values but earlier ones have {expected}; all vectors of a group must have the same length"
    )
}

impl Aggregate for ActivationSum {
    type State = SumState;
    const NAME: &'static str = "activation_sum";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        let n = LogicalType::bigint();
        let sum = LogicalType::list(&LogicalType::double());
        vec![(
            vec![LogicalType::list(&LogicalType::float())],
            LogicalType::structure(&[("n", &n), ("sum", &sum)]),
        )]
    }

    unsafe fn update(
        input: ffi::duckdb_data_chunk,
        state_of: &mut dyn FnMut(usize) -> *mut SumState,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let acts = FloatLists::new(column(input, 0), rows);
        for row in 0..rows {
            let Some(v) = acts.get(row).map_err(|e| format!("activation: {e}"))? else {
                continue;
            };
            let state = &mut *state_of(row);
            if state.n == 0 {
                state.sum = try_zeroed_vec(v.len(), "activation_sum").map_err(|e| e.to_string())?;
            } else if state.sum.len() != v.len() {
                return Err(length_error(state.sum.len(), v.len()));
            }
            for (s, &x) in state.sum.iter_mut().zip(v) {
                *s += x as f64;
            }
            state.n += 1;
        }
        Ok(())
    }

    fn combine(source: &mut SumState, target: &mut SumState) -> Result<(), String> {
        if source.n == 0 {
            return Ok(());
        }
        if target.n == 0 {
            std::mem::swap(source, target);
            return Ok(());
        }
        if source.sum.len() != target.sum.len() {
            return Err(length_error(target.sum.len(), source.sum.len()));
        }
        for (t, s) in target.sum.iter_mut().zip(&source.sum) {
            *t += s;
        }
        target.n += source.n;
        Ok(())
    }

    unsafe fn finalize(
        state: &mut SumState,
        output: ffi::duckdb_vector,
        row: usize,
    ) -> Result<(), String> {
        set_value::<i64>(struct_child(output, 0), row, state.n);
        if state.n == 0 {
            set_null(struct_child(output, 1), row);
            return Ok(());
        }
        set_list(struct_child(output, 1), row, &state.sum)
    }
}
