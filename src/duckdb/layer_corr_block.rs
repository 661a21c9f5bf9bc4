//! `layer_corr_block(key, activation, side, method [, center])`: one block
//! of a layer's N x N matrix, between the group's `row` keys and its `col`
//! keys (an input on both sides, as in a diagonal block, has side
//! `both`), so that a cluster computes `layer_corr` as independent blocks.
//!
//! Returns `STRUCT(row_keys VARCHAR[], col_keys VARCHAR[], matrix
//! FLOAT[][], "method" VARCHAR)`, both key lists sorted ascending,
//! `matrix[i][j]` for `row_keys[i]`, `col_keys[j]`. Its entries are
//! `layer_corr`'s entries for the same keys: pearson, spearman and cosine
//! prepare each row on its own, and the block comes from `layer_corr`'s own
//! accumulator over the group's inputs; `gram` needs the column means of the whole
//! layer as `center` (`DOUBLE[]`, e.g. `activation_sum`'s sum divided by
//! its n), and without it uses the mean of the group's inputs (right only
//! when the group holds the whole layer); `euclidean` accepts a centre and
//! does not depend on it. The kernel is [`layercorr_kernels::block`].
//!
//! Rows with a NULL activation are skipped. Errors name the value: a NULL
//! key, side or method; a side other than `row`, `col`, `both`; an unknown
//! method; a key given twice; vectors of different lengths; a centre of
//! another length than the vectors, or different centres in one group; an
//! empty side; a constant row (pearson, spearman) or zero row (cosine).
//! Working memory (rows kept, both prepared sides, the product and the
//! result) is counted against `memory_limit` as the rows arrive.
//!
//! ```sql
//! SELECT layer_corr_block(path, activation,
//!        CASE WHEN path IN (...) THEN 'both' ELSE 'row' END, 'pearson')
//! FROM activations WHERE layer = 'head';
//! ```

use std::sync::atomic::AtomicU64;

use layercorr_kernels::block::{block_bytes, block_matrix};
use layercorr_kernels::CorrMethod;

use super::capi::{Aggregate, Chunk, LogicalType, Output, States};
use super::corr_struct::write_rows;
use super::error::{ArgumentContext, Error, Result};
use super::method_arg::{merge_method, method_at};
use super::reservation::Reservation;

/// The `layer_corr_block` aggregate.
pub struct LayerCorrBlock;

/// Working memory of every live `layer_corr_block` group of the process.
static RESERVED: AtomicU64 = AtomicU64::new(0);

const ROW: u8 = 1;
const COL: u8 = 2;

/// A group's inputs so far, in arrival order.
#[derive(Default)]
pub struct BlockState {
    keys: Vec<String>,
    sides: Vec<u8>,
    /// Inputs on the row side and on the column side.
    rows: usize,
    cols: usize,
    /// Row-major, `keys.len() x d`.
    values: Vec<f32>,
    d: Option<usize>,
    method: Option<CorrMethod>,
    center: Option<Vec<f64>>,
    reservation: Reservation,
}

impl BlockState {
    fn reserve(&mut self) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        let (m, d) = (self.keys.len(), self.d.unwrap_or(0));
        let method = self.method.unwrap_or(CorrMethod::Pearson);
        let need = block_bytes(method, m, rows, cols, d);
        self.reservation.reserve(&RESERVED, need, || {
            format!(
                "{}: a block of {rows} x {cols} keys of {d} values",
                method.name()
            )
        })
    }
}

fn side_of(text: &str) -> Result<u8> {
    match text.trim().to_ascii_lowercase().as_str() {
        "row" => Ok(ROW),
        "col" | "column" => Ok(COL),
        "both" => Ok(ROW | COL),
        _ => Err(Error::invalid(format!(
            "unknown side '{text}'; valid sides: row, col, both"
        ))),
    }
}

fn length_error(first: &str, key: &str, expected: usize, got: usize) -> Error {
    Error::invalid(format!(
        "activation of key '{key}' has {got} values but key '{first}' has {expected}; all vectors of a group must have the same length"
    ))
}

impl Aggregate for LayerCorrBlock {
    type State = BlockState;
    const NAME: &'static str = "layer_corr_block";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        let act = || LogicalType::list(&LogicalType::float());
        let v = LogicalType::varchar;
        vec![
            (vec![v(), act(), v(), v()], block_type()),
            (
                vec![
                    v(),
                    act(),
                    v(),
                    v(),
                    LogicalType::list(&LogicalType::double()),
                ],
                block_type(),
            ),
        ]
    }

    fn update(input: &Chunk, states: &mut States<BlockState>) -> Result<()> {
        let keys = input.column(0)?.strings()?;
        let acts = input.column(1)?.float_lists()?;
        let sides = input.column(2)?.strings()?;
        let methods = input.column(3)?.strings()?;
        let centers = input.optional(4).map(|c| c.lists_of::<f64>()).transpose()?;
        let mut last_method = None;
        for row in 0..input.rows() {
            let method = method_at(Some(&methods), row, CorrMethod::Pearson, &mut last_method)?;
            let Some(v) = acts.get(row).of_argument("activation")? else {
                continue;
            };
            let key = keys
                .text(row)
                .ok_or_else(|| Error::invalid("key is NULL for a non-NULL activation"))?;
            let side = sides
                .text(row)
                .ok_or_else(|| Error::invalid(format!("side is NULL for key '{key}'")))?;
            let side = side_of(&side)?;
            if v.is_empty() {
                return Err(Error::invalid(format!(
                    "empty activation (0 values) for key '{key}'"
                )));
            }
            let state = states.get(row);
            merge_method(&mut state.method, method)?;
            if let Some(centers) = &centers {
                let c = centers
                    .get(row)
                    .map_err(|e| Error::invalid(format!("center: {e}")))?
                    .ok_or_else(|| Error::invalid(format!("center is NULL for key '{key}'")))?;
                if c.len() != v.len() {
                    return Err(Error::invalid(format!(
                        "center has {} values but the activation of key '{key}' has {}",
                        c.len(),
                        v.len()
                    )));
                }
                match &state.center {
                    Some(old) if old.as_slice() != c => {
                        return Err(Error::invalid(format!(
                        "center must be the same for the whole group (it differs at key '{key}')"
                    )))
                    }
                    Some(_) => {}
                    None => state.center = Some(c.to_vec()),
                }
            }
            match state.d {
                Some(d) if d != v.len() => {
                    let first = state.keys.first().cloned().unwrap_or_default();
                    return Err(length_error(&first, &key, d, v.len()));
                }
                Some(_) => {}
                None => state.d = Some(v.len()),
            }
            state.keys.push(key.into_owned());
            state.sides.push(side);
            state.rows += usize::from(side & ROW != 0);
            state.cols += usize::from(side & COL != 0);
            state.reserve()?;
            state
                .values
                .try_reserve(v.len())
                .map_err(|_| Error::Host("cannot allocate the rows".into()))?;
            state.values.extend_from_slice(v);
        }
        Ok(())
    }

    fn combine(source: &mut BlockState, target: &mut BlockState) -> Result<()> {
        if let Some(m) = source.method {
            merge_method(&mut target.method, m)?;
        }
        if source.keys.is_empty() {
            return Ok(());
        }
        match (&target.center, &source.center) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::invalid(
                    "center must be the same for the whole group",
                ))
            }
            (None, Some(_)) => target.center = source.center.take(),
            _ => {}
        }
        match (target.d, source.d) {
            (Some(a), Some(b)) if a != b => {
                let first = target.keys.first().cloned().unwrap_or_default();
                let key = source.keys.first().cloned().unwrap_or_default();
                return Err(length_error(&first, &key, a, b));
            }
            (None, d) => target.d = d,
            _ => {}
        }
        target.reservation.absorb(&mut source.reservation);
        target.keys.append(&mut source.keys);
        target.sides.append(&mut source.sides);
        target.rows += std::mem::take(&mut source.rows);
        target.cols += std::mem::take(&mut source.cols);
        target.values.append(&mut source.values);
        target.reserve()
    }

    fn finalize(state: &mut BlockState, output: &mut Output, row: usize) -> Result<()> {
        let method = state.method.unwrap_or(CorrMethod::Pearson);
        let d = state.d.unwrap_or(0);
        let keys = &state.keys;
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        if let Some(w) = order.windows(2).find(|w| keys[w[0]] == keys[w[1]]) {
            return Err(Error::invalid(format!(
                "duplicate key '{}' in the group; give a key once (side 'both' for both sides)",
                keys[w[0]]
            )));
        }
        let row_idx: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| state.sides[i] & ROW != 0)
            .collect();
        let col_idx: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| state.sides[i] & COL != 0)
            .collect();
        if row_idx.is_empty() || col_idx.is_empty() {
            return Err(Error::invalid(format!(
                "{}: the group has {} row keys and {} col keys; a block needs at least one of each (side 'row', 'col' or 'both')",
                method.name(),
                row_idx.len(),
                col_idx.len()
            )));
        }
        let values = block_matrix(
            &state.values,
            d,
            &row_idx,
            &col_idx,
            method,
            state.center.as_deref(),
        )
        .map_err(|e| Error::at_key(e, keys))?;
        state.values = Vec::new();
        let row_keys: Vec<&str> = row_idx.iter().map(|&i| keys[i].as_str()).collect();
        let col_keys: Vec<&str> = col_idx.iter().map(|&i| keys[i].as_str()).collect();
        let (r, c) = (row_keys.len(), col_keys.len());
        let mut write = || -> Result<()> {
            let mut fields = output.fields()?;
            let [row_keys_out, col_keys_out, matrix_out, method_out] = fields.as_mut_slice() else {
                return Err(Error::internal("a block STRUCT without four fields"));
            };
            row_keys_out.set_str_list(row, &row_keys)?;
            col_keys_out.set_str_list(row, &col_keys)?;
            write_rows(matrix_out, row, r, &values)?;
            method_out.set_str(row, method.name())
        };
        write().map_err(|e| Error::Host(format!("cannot hand the {r} x {c} block to DuckDB: {e}")))
    }
}

/// `STRUCT(row_keys VARCHAR[], col_keys VARCHAR[], matrix FLOAT[][], method VARCHAR)`.
fn block_type() -> LogicalType {
    let keys = LogicalType::list(&LogicalType::varchar());
    let keys2 = LogicalType::list(&LogicalType::varchar());
    let rows = LogicalType::list(&LogicalType::list(&LogicalType::float()));
    let method = LogicalType::varchar();
    LogicalType::structure(&[
        ("row_keys", &keys),
        ("col_keys", &keys2),
        ("matrix", &rows),
        ("method", &method),
    ])
}
