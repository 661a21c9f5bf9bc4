//! `layer_cross(a, b)`: sums over the group's inputs of two layers'
//! activations of the same input, `STRUCT(n BIGINT, sum_a DOUBLE[],
//! sum_b DOUBLE[], cross DOUBLE[][])` with `cross = Xᵀ Y` (`d_a x d_b`,
//! `cross[i][j] = Σ a_i b_j`), accumulated in `f64`
//! ([`layercorr_kernels::cross`]). Partial results of disjoint shards
//! add up, so exact feature-space linear CKA between layers is a sum over
//! shards finished on one machine:
//! `Xcᵀ Yc = cross − n μ_a μ_bᵀ`, `CKA = |Xcᵀ Yc|² / (|Xcᵀ Xc| |Ycᵀ Yc|)`.
//!
//! A row where both are NULL is skipped (a skipped bad image); one NULL
//! and one not is an error. The cross product is refused before it is
//! allocated when it has more than 2^27 entries (pool the layers) or when
//! it would pass `memory_limit` with the other groups in progress.
//!
//! ```sql
//! SELECT layer_cross(x.activation, y.activation)
//! FROM acts x JOIN acts y USING (path) WHERE x.layer = 'stem' AND y.layer = 'head';
//! ```

use std::sync::atomic::AtomicU64;

use super::capi::{Aggregate, Chunk, LogicalType, Output, States};
use super::corr_struct::write_rows;
use super::error::{ArgumentContext, Error, Result};
use super::reservation::Reservation;
use layercorr_kernels::cross::{cross_bytes, CrossSums};

/// The `layer_cross` aggregate.
pub struct LayerCross;

/// Working memory of every live `layer_cross` group of the process.
static RESERVED: AtomicU64 = AtomicU64::new(0);

/// A group's sums.
#[derive(Default)]
pub struct CrossState {
    sums: Option<CrossSums>,
    reservation: Reservation,
}

impl CrossState {
    fn start(&mut self, d_a: usize, d_b: usize) -> Result<&mut CrossSums> {
        if self.sums.is_none() {
            // The sums and the copy DuckDB receives at the end.
            let need = cross_bytes(d_a, d_b)
                .saturating_add((d_a as u64).saturating_mul(d_b as u64).saturating_mul(8));
            self.reservation
                .reserve(&RESERVED, need, || format!("a {d_a} x {d_b} cross product"))?;
            self.sums = Some(CrossSums::new(d_a, d_b)?);
        }
        self.sums.as_mut().ok_or_else(|| Error::internal("no sums"))
    }
}

fn length_error(which: &str, expected: usize, got: usize) -> Error {
    Error::invalid(format!(
        "activation {which} has {got} values but earlier ones have {expected}; all vectors of a group must have the same length"
    ))
}

impl Aggregate for LayerCross {
    type State = CrossState;
    const NAME: &'static str = "layer_cross";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        let act = || LogicalType::list(&LogicalType::float());
        let n = LogicalType::bigint();
        let sa = LogicalType::list(&LogicalType::double());
        let sb = LogicalType::list(&LogicalType::double());
        let cross = LogicalType::list(&LogicalType::list(&LogicalType::double()));
        vec![(
            vec![act(), act()],
            LogicalType::structure(&[("n", &n), ("sum_a", &sa), ("sum_b", &sb), ("cross", &cross)]),
        )]
    }

    fn update(input: &Chunk, states: &mut States<CrossState>) -> Result<()> {
        let a = input.column(0)?.float_lists()?;
        let b = input.column(1)?.float_lists()?;
        // The chunk's pairs by group, so that each group multiplies once.
        let mut pairs = Vec::with_capacity(input.rows());
        for row in 0..input.rows() {
            let va = a.get(row).of_argument("activation a")?;
            let vb = b.get(row).of_argument("activation b")?;
            match (va, vb) {
                (None, None) => continue,
                (Some(x), Some(y)) if x.is_empty() || y.is_empty() => {
                    return Err(Error::invalid("empty activation (0 values)"))
                }
                (Some(x), Some(y)) => pairs.push((row, x, y)),
                _ => {
                    return Err(Error::invalid(
                        "one activation of a pair is NULL and the other is not",
                    ))
                }
            }
        }
        let rows: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        for group in states.groups(&rows) {
            let (ga, gb): (Vec<&[f32]>, Vec<&[f32]>) =
                group.iter().map(|&i| (pairs[i].1, pairs[i].2)).unzip();
            let state = states.get(rows[group[0]]);
            let (da, db) = (ga[0].len(), gb[0].len());
            let sums = state.start(da, db)?;
            if let Some(x) = ga.iter().find(|x| x.len() != sums.d_a) {
                return Err(length_error("a", sums.d_a, x.len()));
            }
            if let Some(y) = gb.iter().find(|y| y.len() != sums.d_b) {
                return Err(length_error("b", sums.d_b, y.len()));
            }
            sums.push(&ga, &gb)?;
        }
        Ok(())
    }

    fn combine(source: &mut CrossState, target: &mut CrossState) -> Result<()> {
        let Some(src) = source.sums.take() else {
            return Ok(());
        };
        match &mut target.sums {
            None => {
                target.sums = Some(src);
                target.reservation.absorb(&mut source.reservation);
            }
            Some(dst) => {
                if (dst.d_a, dst.d_b) != (src.d_a, src.d_b) {
                    return Err(Error::invalid(format!(
                        "a group has activations of {} x {} values and of {} x {}",
                        dst.d_a, dst.d_b, src.d_a, src.d_b
                    )));
                }
                dst.merge(&src)?;
                source.reservation.release();
            }
        }
        Ok(())
    }

    fn finalize(state: &mut CrossState, output: &mut Output, row: usize) -> Result<()> {
        let mut fields = output.fields()?;
        let [n_out, sum_a_out, sum_b_out, cross_out] = fields.as_mut_slice() else {
            return Err(Error::internal("layer_cross result without four fields"));
        };
        let Some(s) = state.sums.take() else {
            n_out.set_value::<i64>(row, 0)?;
            for out in [sum_a_out, sum_b_out, cross_out] {
                out.set_null(row)?;
            }
            return Ok(());
        };
        n_out.set_value::<i64>(row, s.n as i64)?;
        sum_a_out.set_list(row, &s.sum_a)?;
        sum_b_out.set_list(row, &s.sum_b)?;
        write_rows(cross_out, row, s.d_a, &s.cross)
    }
}
