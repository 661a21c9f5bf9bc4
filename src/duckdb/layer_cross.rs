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

use layercorr_kernels::cross::{cross_bytes, CrossSums};
use libduckdb_sys as ffi;

use super::capi::api_guard::list_reserve;
use super::capi::old_ffi::{
    append_list, chunk_len, column, set_list, set_null, set_value, struct_child, FloatLists,
    LogicalType,
};
use super::capi::raw_register::Aggregate;
use super::reservation::Reservation;

/// The `layer_cross` aggregate.
pub struct LayerCross;

/// Working memory of every live `layer_cross` group of the process.
static RESERVED: AtomicU64 = AtomicU64::new(0);

/// One group's pairs of a chunk: its state and the two sides' rows.
type GroupPairs<'a> = (*mut CrossState, Vec<&'a [f32]>, Vec<&'a [f32]>);

/// A group's sums.
#[derive(Default)]
pub struct CrossState {
    sums: Option<CrossSums>,
    reservation: Reservation,
}

impl CrossState {
    fn start(&mut self, d_a: usize, d_b: usize) -> Result<&mut CrossSums, String> {
        if self.sums.is_none() {
            // The sums and the copy DuckDB receives at the end.
            let need = cross_bytes(d_a, d_b)
                .saturating_add((d_a as u64).saturating_mul(d_b as u64).saturating_mul(8));
            self.reservation
                .reserve(&RESERVED, need, || format!("a {d_a} x {d_b} cross product"))?;
            self.sums = Some(CrossSums::new(d_a, d_b).map_err(|e| e.to_string())?);
        }
        self.sums.as_mut().ok_or_else(|| "no sums".to_string())
    }
}

fn length_error(which: &str, expected: usize, got: usize) -> String {
    format!(
        "activation {which} has {got} values but earlier ones have {expected}; all vectors of a group must have the same length"
    )
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

    unsafe fn update(
        input: ffi::duckdb_data_chunk,
        state_of: &mut dyn FnMut(usize) -> *mut CrossState,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let a = FloatLists::new(column(input, 0), rows);
        let b = FloatLists::new(column(input, 1), rows);
        // The chunk's pairs by group, so that each group multiplies once.
        let mut groups: Vec<GroupPairs> = Vec::new();
        for row in 0..rows {
            let va = a.get(row).map_err(|e| format!("activation a: {e}"))?;
            let vb = b.get(row).map_err(|e| format!("activation b: {e}"))?;
            let (va, vb) = match (va, vb) {
                (None, None) => continue,
                (Some(x), Some(y)) => (x, y),
                _ => return Err("one activation of a pair is NULL and the other is not".into()),
            };
            if va.is_empty() || vb.is_empty() {
                return Err("empty activation (0 values)".into());
            }
            let state = state_of(row);
            match groups.iter_mut().find(|g| g.0 == state) {
                Some(g) => {
                    g.1.push(va);
                    g.2.push(vb);
                }
                None => groups.push((state, vec![va], vec![vb])),
            }
        }
        for (state, ga, gb) in groups {
            let state = &mut *state;
            let (da, db) = (ga[0].len(), gb[0].len());
            let sums = state.start(da, db)?;
            if let Some(x) = ga.iter().find(|x| x.len() != sums.d_a) {
                return Err(length_error("a", sums.d_a, x.len()));
            }
            if let Some(y) = gb.iter().find(|y| y.len() != sums.d_b) {
                return Err(length_error("b", sums.d_b, y.len()));
            }
            sums.push(&ga, &gb).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn combine(source: &mut CrossState, target: &mut CrossState) -> Result<(), String> {
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
                    return Err(format!(
                        "a group has activations of {} x {} values and of {} x {}",
                        dst.d_a, dst.d_b, src.d_a, src.d_b
                    ));
                }
                dst.merge(&src).map_err(|e| e.to_string())?;
                source.reservation.release();
            }
        }
        Ok(())
    }

    unsafe fn finalize(
        state: &mut CrossState,
        output: ffi::duckdb_vector,
        row: usize,
    ) -> Result<(), String> {
        let Some(s) = state.sums.take() else {
            set_value::<i64>(struct_child(output, 0), row, 0);
            for f in 1..4 {
                set_null(struct_child(output, f), row);
            }
            return Ok(());
        };
        set_value::<i64>(struct_child(output, 0), row, s.n as i64);
        set_list(struct_child(output, 1), row, &s.sum_a)?;
        set_list(struct_child(output, 2), row, &s.sum_b)?;
        let (rows_vec, offset) = append_list(struct_child(output, 3), row, s.d_a)?;
        let total = ffi::duckdb_list_vector_get_size(rows_vec) as usize + s.d_a * s.d_b;
        list_reserve(rows_vec, total)?;
        for i in 0..s.d_a {
            set_list(rows_vec, offset + i, &s.cross[i * s.d_b..(i + 1) * s.d_b])?;
        }
        Ok(())
    }
}
