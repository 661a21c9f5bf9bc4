//! The matrix product of constant weights and a convolution's input,
//! `out[rows x cols] = clamp(W[rows x depth] · X[depth x cols] + bias)`,
//! with the weights packed once when a plan is built.
//!
//! The weights are one contiguous stream, panels of [`PANEL_ROWS`] rows
//! interleaved along the depth. The input's columns are taken
//! [`TILE_COLS`] at a time (a tile), in blocks that stay in L2: the AVX2
//! version packs each tile contiguous along the depth first, the AVX-512
//! version reads the row-major input where it lies. The columns left over
//! after the last whole tile go a few at a time as matrix-vector products,
//! the panel's rows in one register (AVX-512: up to 4 of them along with
//! the last tiles' products, a masked tile when there are 6 or more); the
//! bias and clamp are applied in registers before each store. faer's
//! product of the row-major operands, with the bias and clamp as a pass
//! of their own after it, ran the 1x1 convolutions of
//! EfficientNet-Lite0 at 25–33 GMAC/s in a forward pass on AVX2: its
//! 24-column tiles leave a third tile for the 49th column of a 7 x 7 map,
//! it reads the weights four rows at a time from the row-major matrix, and
//! each weight of the late layers is used only 49 times, coming from L3 or
//! memory. docs/performance.md has the figures on AVX2 and AVX-512.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use super::portable;
#[cfg(target_arch = "x86_64")]
use super::x86;

/// Output rows of one weight panel.
pub const PANEL_ROWS: usize = 6;
/// Columns of one input tile.
pub const TILE_COLS: usize = 16;

/// Bytes of packed input one column block may span: the block is read
/// once per panel, so it is sized to stay in L2 (512 KiB to 2 MiB a core on
/// the machines measured) beside the weights.
const BLOCK_BYTES: usize = 128 << 10;

/// Whole tiles of one column block at this depth: a multiple of `group`
/// (the tiles a kernel takes at once), at least one group.
fn tiles_per_block(depth: usize, group: usize) -> usize {
    let tile_bytes = depth * TILE_COLS * std::mem::size_of::<f32>();
    (BLOCK_BYTES / tile_bytes.max(1) / group).max(1) * group
}

/// What is done to a panel's sums before they are stored: `add[r]` added
/// to row `r`, then the clamp; only the first `rows` rows are stored.
struct Epilogue {
    add: [f32; PANEL_ROWS],
    rows: usize,
    bounds: [f32; 2],
}

impl Epilogue {
    /// The epilogue of panel `panel` of a product with `rows` output rows.
    fn of_panel(panel: usize, rows: usize, (bias, bounds): (&[f32], [f32; 2])) -> Epilogue {
        let first = panel * PANEL_ROWS;
        let rows_here = (rows - first).min(PANEL_ROWS);
        let mut add = [0.0f32; PANEL_ROWS];
        add[..rows_here].copy_from_slice(&bias[first..first + rows_here]);
        Epilogue {
            add,
            rows: rows_here,
            bounds,
        }
    }
}

/// Values of the packed weights of a `rows x depth` matrix.
pub fn panels_len(rows: usize, depth: usize) -> usize {
    rows.div_ceil(PANEL_ROWS) * PANEL_ROWS * depth
}

/// Packs the row-major `rows x depth` matrix `weights` into panels: panel
/// `p` holds, for each `k` in order, the values of rows `6p .. 6p + 6` at
/// column `k` (zeros for rows past the last).
///
/// # Panics
/// When `weights` does not hold `rows * depth` values.
pub fn pack_panels(weights: &[f32], rows: usize, depth: usize) -> Vec<f32> {
    assert_eq!(weights.len(), rows * depth, "pack_panels: {rows}x{depth}");
    let mut packed = vec![0.0; panels_len(rows, depth)];
    for (row, values) in weights.chunks_exact(depth.max(1)).enumerate() {
        let (panel, lane) = (row / PANEL_ROWS, row % PANEL_ROWS);
        let start = panel * PANEL_ROWS * depth;
        for (k, v) in values.iter().enumerate() {
            packed[start + k * PANEL_ROWS + lane] = *v;
        }
    }
    packed
}

/// Packs the row-major `depth x cols` matrix `input` into `tiles` (cleared
/// first) for the AVX2 version: tile `t` holds, for each `k` in order, the
/// 16 values of row `k` at columns `16t .. 16t + 16`; the `cols % 16`
/// columns after the last whole tile follow the same way, `cols % 16`
/// values per row.
///
/// # Panics
/// When `input` does not hold `depth * cols` values.
fn pack_tiles(input: &[f32], depth: usize, cols: usize, tiles: &mut Vec<f32>) {
    assert_eq!(input.len(), depth * cols, "pack_tiles: {depth}x{cols}");
    tiles.clear();
    tiles.reserve(input.len());
    let whole = cols / TILE_COLS * TILE_COLS;
    for first in (0..whole).step_by(TILE_COLS) {
        for row in input.chunks_exact(cols) {
            tiles.extend_from_slice(&row[first..first + TILE_COLS]);
        }
    }
    if whole < cols {
        for row in input.chunks_exact(cols) {
            tiles.extend_from_slice(&row[whole..]);
        }
    }
}

/// `out = clamp(W · X + bias)` from `panels` ([`pack_panels`] of W) and
/// the row-major `depth x cols` input X, with one bias per output row and
/// `clamp(v) = min(max(v, lo), hi)` (NaN kept), applied before the store;
/// `out` is row-major `rows x cols`. The AVX-512 version reads X in place;
/// the AVX2 version first packs it into tiles ([`pack_tiles`]).
///
/// # Panics
/// When a slice's length does not match `(rows, depth, cols)`.
pub fn panel_product(
    panels: &[f32],
    input: &[f32],
    (rows, depth, cols): (usize, usize, usize),
    (bias, bounds): (&[f32], [f32; 2]),
    out: &mut [f32],
) {
    assert!(
        panels.len() == panels_len(rows, depth)
            && input.len() == depth * cols
            && out.len() == rows * cols
            && bias.len() == rows,
        "panel_product: {rows}x{depth}x{cols} with {} packed weights, {} inputs, \
         {} biases, {} outputs",
        panels.len(),
        input.len(),
        bias.len(),
        out.len()
    );
    if rows == 0 || cols == 0 {
        return;
    }
    if depth == 0 {
        for (row, b) in out.chunks_exact_mut(cols).zip(bias) {
            row.fill(*b);
            portable::add_and_clamp(row, 0.0, bounds);
        }
        return;
    }
    let shape = (rows, depth, cols);
    #[cfg(target_arch = "x86_64")]
    if x86::avx512_available() && x86::avx2_available() {
        // SAFETY: the features were just detected and the lengths the
        // loops rely on asserted above.
        unsafe { avx512::panel_product_avx512(panels, input, shape, (bias, bounds), out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if x86::avx2_available() {
        let mut tiles = Vec::new();
        pack_tiles(input, depth, cols, &mut tiles);
        // SAFETY: the features were just detected and the lengths the
        // loops rely on asserted above (`pack_tiles` keeps the length).
        unsafe { avx2::panel_product_avx2(panels, &tiles, shape, (bias, bounds), out) };
        return;
    }
    portable::panel_product(panels, input, shape, (bias, bounds), out);
}

/// Whether products of constant weights should go through
/// [`panel_product`] on this CPU rather than faer: with AVX2 or AVX-512,
/// measured faster than faer on the 1x1 convolutions of the demo networks
/// (see docs/performance.md); without them the portable loop would be
/// slower than faer.
pub fn panels_preferred() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::avx2_available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::values;

    /// The definition in f64.
    fn reference(
        w: &[f32],
        x: &[f32],
        (rows, depth, cols): (usize, usize, usize),
        (bias, [lo, hi]): (&[f32], [f32; 2]),
    ) -> Vec<f32> {
        let mut out = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                let dot: f64 = (0..depth)
                    .map(|k| w[r * depth + k] as f64 * x[k * cols + c] as f64)
                    .sum();
                out[r * cols + c] = ((bias[r] as f64 + dot) as f32).max(lo).min(hi);
            }
        }
        out
    }

    /// Shapes with every remainder of rows per panel, columns per tile and
    /// tiles per group of four (and of the tail's groups of four, tails on
    /// both sides of the masked tile's least width, tails of 1 to 4
    /// columns along with a last group of 1 to 3 tiles), depths of 0 and
    /// 1, the network's 7 x 7 and 14 x 14 maps, and maps of several column
    /// blocks (the last one's last group with a tail along).
    const SHAPES: [(usize, usize, usize); 16] = [
        (4, 0, 20),
        (13, 40, 2000),
        (7, 300, 1100),
        (1, 1, 1),
        (6, 3, 16),
        (7, 5, 17),
        (11, 9, 49),
        (12, 1, 35),
        (13, 24, 31),
        (5, 40, 3),
        (30, 192, 49),
        (19, 112, 196),
        (2, 7, 64),
        (9, 33, 22),
        (8, 10, 21),
        (5, 300, 1122),
    ];

    type Product = fn(&[f32], &[f32], (usize, usize, usize), (&[f32], [f32; 2]), &mut [f32]);

    /// No clamp, and one that cuts the test values on both sides.
    const BOUNDS: [[f32; 2]; 2] = [[f32::NEG_INFINITY, f32::INFINITY], [-0.5, 1.5]];

    /// Checks `product` on every shape; `packed` says whether it takes the
    /// input packed into tiles (the AVX2 version) or row-major.
    fn check(product: Product, what: &str, packed: bool) {
        let mut tiles = Vec::new();
        for (rows, depth, cols) in SHAPES {
            // A depth of 0 is the dispatcher's to handle.
            if depth == 0 && what != "dispatched" {
                continue;
            }
            let w = values(rows * depth, 1);
            let x = values(depth * cols, 2);
            let bias = values(rows, 3);
            pack_tiles(&x, depth, cols, &mut tiles);
            let input = if packed { &tiles } else { &x };
            let panels = pack_panels(&w, rows, depth);
            for bounds in BOUNDS {
                let mut out = vec![f32::NAN; rows * cols];
                product(
                    &panels,
                    input,
                    (rows, depth, cols),
                    (&bias, bounds),
                    &mut out,
                );
                let want = reference(&w, &x, (rows, depth, cols), (&bias, bounds));
                for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "{what} {rows}x{depth}x{cols} {bounds:?}, value {i}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_nan_is_kept_through_the_clamp() {
        let (rows, depth, cols) = (7, 3, 21);
        let mut x = values(depth * cols, 2);
        x[cols + 4] = f32::NAN;
        x[cols + 20] = f32::NAN;
        let panels = pack_panels(&values(rows * depth, 1), rows, depth);
        let mut out = vec![0.0; rows * cols];
        panel_product(
            &panels,
            &x,
            (rows, depth, cols),
            (&[0.0; 7], [0.0, 6.0]),
            &mut out,
        );
        for r in 0..rows {
            for c in 0..cols {
                let v = out[r * cols + c];
                assert_eq!(v.is_nan(), c == 4 || c == 20, "row {r} column {c}: {v}");
            }
        }
    }

    #[test]
    fn the_portable_version_matches_the_definition() {
        check(portable::panel_product, "portable", false);
    }

    #[test]
    fn the_dispatched_version_matches_the_definition() {
        check(panel_product, "dispatched", false);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_version_matches_the_definition() {
        if x86::avx2_available() {
            // SAFETY: the feature was detected; `check` passes lengths that
            // match the shape, as `panel_product` asserts.
            check(
                |p, t, s, e, o| unsafe { avx2::panel_product_avx2(p, t, s, e, o) },
                "avx2",
                true,
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_version_matches_the_definition() {
        if x86::avx512_available() && x86::avx2_available() {
            // SAFETY: the features were detected; `check` passes lengths
            // that match the shape, as `panel_product` asserts.
            check(
                |p, t, s, e, o| unsafe { avx512::panel_product_avx512(p, t, s, e, o) },
                "avx512",
                false,
            );
        }
    }

    #[test]
    fn packing_puts_each_value_where_the_layout_says() {
        let (rows, depth, cols) = (7, 3, 18);
        let w: Vec<f32> = (0..rows * depth).map(|i| i as f32).collect();
        let panels = pack_panels(&w, rows, depth);
        assert_eq!(panels.len(), 2 * PANEL_ROWS * depth);
        // Row 6 is the first of the second panel; row 7 onwards are zeros.
        assert_eq!(
            panels[PANEL_ROWS * depth + 2 * PANEL_ROWS],
            w[6 * depth + 2]
        );
        assert_eq!(panels[PANEL_ROWS * depth + PANEL_ROWS + 1], 0.0);
        let x: Vec<f32> = (0..depth * cols).map(|i| i as f32).collect();
        let mut tiles = vec![-1.0];
        pack_tiles(&x, depth, cols, &mut tiles);
        assert_eq!(tiles.len(), x.len());
        assert_eq!(tiles[TILE_COLS + 3], x[cols + 3]);
        // The two columns after the tile, row 2.
        assert_eq!(tiles[TILE_COLS * depth + 2 * 2 + 1], x[2 * cols + 17]);
    }

    #[test]
    #[should_panic(expected = "panel_product")]
    fn mismatched_lengths_are_refused() {
        panel_product(
            &[0.0; 6],
            &[0.0; 3],
            (2, 1, 3),
            (&[0.0; 2], [0.0, 1.0]),
            &mut [0.0; 5],
        );
    }
}
