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

use super::capi::{Aggregate, Chunk, LogicalType, Output, States};
use super::error::{ArgumentContext, Error, Result};

/// The `activation_sum` aggregate.
pub struct ActivationSum;

/// A group's count and sums.
#[derive(Default)]
pub struct SumState {
    n: i64,
    sum: Vec<f64>,
}

fn length_error(expected: usize, got: usize) -> Error {
    Error::invalid(format!(
        "an activation has {got} values but earlier ones have {expected}; all vectors of a group must have the same length"
    ))
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

    fn update(input: &Chunk, states: &mut States<SumState>) -> Result<()> {
        let acts = input.column(0)?.float_lists()?;
        for row in 0..input.rows() {
            let Some(v) = acts.get(row).of_argument("activation")? else {
                continue;
            };
            let state = states.get(row);
            if state.n == 0 {
                state.sum = try_zeroed_vec(v.len(), "activation_sum")?;
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

    fn combine(source: &mut SumState, target: &mut SumState) -> Result<()> {
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

    fn finalize(state: &mut SumState, output: &mut Output, row: usize) -> Result<()> {
        let mut fields = output.fields()?;
        let [n_out, sum_out] = fields.as_mut_slice() else {
            return Err(Error::internal("activation_sum result without two fields"));
        };
        n_out.set_value::<i64>(row, state.n)?;
        if state.n == 0 {
            return sum_out.set_null(row);
        }
        sum_out.set_list(row, &state.sum)
    }
}
