//! `corr_heatmap_grid(panel, matrix [, order [, title]])`: an aggregate
//! that draws several `layer_corr` matrices side by side as one PNG
//! (BLOB), every panel in the same image order — `order` if given (e.g.
//! `corr_order` of the input layer; every key exactly once), else the keys'
//! sorted order — with one shared colour bar. Panels appear in input order (use `ORDER BY`).
//!
//! ```sql
//! SELECT write_png('out/grid.png', corr_heatmap_grid(layer, m, (SELECT corr_order(m) FROM matrices WHERE layer = 'input') ORDER BY position))
//! FROM matrices JOIN layers USING (layer);
//! ```

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use layercorr_render::{heatmap_grid, key_order, GridOptions, Panel};

use super::capi::{Aggregate, Chunk, LogicalType, Output, States};
use super::corr_struct::{
    check_same_keys, corr_matrix_type, key_list_type, matrix_overloads, KeyedMatrix, MatrixColumn,
};
use super::error::{Error, Result};
use super::picture::{optional_list, optional_text, reorder, value_range};
use super::reservation::Reservation;

/// Bytes held by the groups of `corr_heatmap_grid` in progress, counted
/// against `memory_limit`.
static RESERVED: AtomicU64 = AtomicU64::new(0);

/// The `corr_heatmap_grid` aggregate.
pub struct CorrHeatmapGrid;

/// Panels collected so far, with the order and title from the first row,
/// and the bytes they hold, counted against `memory_limit`.
#[derive(Default)]
pub struct GridState {
    panels: Vec<(String, KeyedMatrix)>,
    order: Option<Vec<String>>,
    title: Option<String>,
    reservation: Reservation,
}

impl Aggregate for CorrHeatmapGrid {
    type State = GridState;
    const NAME: &'static str = "corr_heatmap_grid";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        matrix_overloads(
            &[LogicalType::varchar, corr_matrix_type],
            &[key_list_type, LogicalType::varchar],
            LogicalType::blob,
        )
    }

    fn update(input: &Chunk, states: &mut States<GridState>) -> Result<()> {
        let names = input.column(0)?.strings()?;
        let matrices = MatrixColumn::of(input.column(1)?)?;
        for row in 0..input.rows() {
            let Some(m) = matrices.read(row, "matrix")? else {
                continue;
            };
            let name = names.text(row).unwrap_or_default().into_owned();
            let state = states.get(row);
            if state.order.is_none() {
                state.order = optional_list(input, 2, row)?;
            }
            if state.title.is_none() {
                state.title = optional_text(input, 3, row)?;
            }
            let count = state.panels.len() + 1;
            state.reservation.grow(&RESERVED, m.bytes(), || {
                format!("the group's {count} panels of {} keys", m.n())
            })?;
            state.panels.push((name, m));
        }
        Ok(())
    }

    fn combine(source: &mut GridState, target: &mut GridState) -> Result<()> {
        target.panels.append(&mut source.panels);
        target.reservation.absorb(&mut source.reservation);
        if target.order.is_none() {
            target.order = source.order.take();
        }
        if target.title.is_none() {
            target.title = source.title.take();
        }
        Ok(())
    }

    fn finalize(state: &mut GridState, output: &mut Output, row: usize) -> Result<()> {
        let Some((first_name, first)) = state.panels.first() else {
            return Err(Error::invalid("the group has no non-NULL matrices"));
        };
        let order = state.order.clone().unwrap_or_else(|| first.keys.clone());
        // Every panel is checked to be on the first panel's keys below, so
        // one check of the order against them covers all panels: a key
        // given twice or missing is an error naming it.
        key_order(Self::NAME, &first.keys, &order)?;
        // Panels already in the order are drawn as they are; the others
        // from a reordered copy: at most as much again.
        let (count, n) = (state.panels.len(), first.n());
        let need = state.reservation.bytes().saturating_mul(2);
        state.reservation.reserve(&RESERVED, need, || {
            format!("drawing {count} panels of {n} keys")
        })?;
        let mut ordered = Vec::with_capacity(state.panels.len());
        for (name, m) in &state.panels {
            check_same_keys(
                &first.keys,
                &format!("panel '{first_name}'"),
                &m.keys,
                &format!("panel '{name}'"),
            )?;
            let m = if m.keys == order {
                Cow::Borrowed(m)
            } else {
                Cow::Owned(reorder(m, &order)?)
            };
            ordered.push((name.clone(), m));
        }
        let panels: Vec<Panel<'_>> = ordered
            .iter()
            .map(|(name, m)| Panel {
                title: name.clone(),
                values: &m.values,
                n: m.n(),
            })
            .collect();
        let opts = GridOptions {
            title: state.title.clone().unwrap_or_default(),
            value_range: value_range(ordered.iter().flat_map(|(_, m)| m.values.iter().copied())),
            ..GridOptions::default()
        };
        let png = heatmap_grid(&panels, &opts)?;
        output.set_blob(row, &png)?;
        state.panels.clear();
        state.reservation.release();
        Ok(())
    }
}
