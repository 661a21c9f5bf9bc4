//! A matrix product for narrow maps, `out[rows x cols] = W[rows x depth] ·
//! X[depth x cols]` with few columns (the 7 x 7 maps at the end of mobile
//! networks), on operands packed for it: the weights once when a plan is
//! built, the input once per product.
//!
//! faer multiplies these shapes with output tiles 24 columns wide, so 49
//! columns take a third tile for the last one, and it reads each weight
//! from the row-major matrix in four rows at once, with each weight used
//! only `cols` times: in a forward pass, where the weights come from L3 or
//! memory, such products ran at 25–33 GMAC/s on AVX2 against 36 with the
//! operands in cache. Here the weights are one contiguous stream, panels of
//! [`PANEL_ROWS`] rows interleaved along the depth; the input is cut into
//! tiles of [`TILE_COLS`] columns, each contiguous along the depth; and the
//! columns left over after the last whole tile are taken a few at a time
//! as matrix-vector products, the panel's rows in one register.

#[cfg(target_arch = "x86_64")]
mod avx2;

use super::portable;
#[cfg(target_arch = "x86_64")]
use super::x86;

/// Output rows of one weight panel.
pub const PANEL_ROWS: usize = 6;
/// Columns of one input tile.
pub const TILE_COLS: usize = 16;

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
/// first): tile `t` holds, for each `k` in order, the 16 values of row `k`
/// at columns `16t .. 16t + 16`; the `cols % 16` columns after the last
/// whole tile follow the same way, `cols % 16` values per row.
///
/// # Panics
/// When `input` does not hold `depth * cols` values.
pub fn pack_tiles(input: &[f32], depth: usize, cols: usize, tiles: &mut Vec<f32>) {
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

/// `out = W · X` from `panels` ([`pack_panels`] of W) and `tiles`
/// ([`pack_tiles`] of X); `out` is row-major `rows x cols`.
///
/// # Panics
/// When a slice's length does not match `(rows, depth, cols)`.
pub fn panel_product(
    panels: &[f32],
    tiles: &[f32],
    (rows, depth, cols): (usize, usize, usize),
    out: &mut [f32],
) {
    assert!(
        panels.len() == panels_len(rows, depth)
            && tiles.len() == depth * cols
            && out.len() == rows * cols,
        "panel_product: {rows}x{depth}x{cols} with {} packed weights, {} packed inputs, \
         {} outputs",
        panels.len(),
        tiles.len(),
        out.len()
    );
    if depth == 0 {
        out.fill(0.0);
        return;
    }
    if rows == 0 || cols == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if x86::avx2_available() {
        // SAFETY: the features were just detected and the lengths the
        // loops rely on asserted above.
        unsafe { avx2::panel_product_avx2(panels, tiles, (rows, depth, cols), out) };
        return;
    }
    portable::panel_product(panels, tiles, (rows, depth, cols), out);
}

/// Whether narrow products should go through [`panel_product`] on this
/// CPU rather than faer: where AVX2 is the widest vector unit, measured
/// faster on every narrow shape of the demo networks. With AVX-512, faer's
/// AVX-512 kernels stay (this product has no AVX-512 version to compare);
/// without AVX2 the portable loop would be slower than faer.
pub fn panels_preferred() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::avx2_available() && !x86::avx512_available()
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
    fn reference(w: &[f32], x: &[f32], (rows, depth, cols): (usize, usize, usize)) -> Vec<f32> {
        let mut out = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                let dot: f64 = (0..depth)
                    .map(|k| w[r * depth + k] as f64 * x[k * cols + c] as f64)
                    .sum();
                out[r * cols + c] = dot as f32;
            }
        }
        out
    }

    /// Shapes with every remainder of rows per panel and columns per tile
    /// (and of the tail's groups of four), a depth of 1, and the network's
    /// 7 x 7 and 14 x 14 maps.
    const SHAPES: [(usize, usize, usize); 10] = [
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
    ];

    type Product = fn(&[f32], &[f32], (usize, usize, usize), &mut [f32]);

    fn check(product: Product, what: &str) {
        let mut tiles = Vec::new();
        for (rows, depth, cols) in SHAPES {
            let w = values(rows * depth, 1);
            let x = values(depth * cols, 2);
            pack_tiles(&x, depth, cols, &mut tiles);
            let panels = pack_panels(&w, rows, depth);
            let mut out = vec![f32::NAN; rows * cols];
            product(&panels, &tiles, (rows, depth, cols), &mut out);
            let want = reference(&w, &x, (rows, depth, cols));
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{what} {rows}x{depth}x{cols}, value {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn the_portable_version_matches_the_definition() {
        check(portable::panel_product, "portable");
    }

    #[test]
    fn the_dispatched_version_matches_the_definition() {
        check(panel_product, "dispatched");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_version_matches_the_definition() {
        if x86::avx2_available() {
            // SAFETY: the feature was detected; `check` passes lengths that
            // match the shape, as `panel_product` asserts.
            check(
                |p, t, s, o| unsafe { avx2::panel_product_avx2(p, t, s, o) },
                "avx2",
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
        panel_product(&[0.0; 6], &[0.0; 3], (2, 1, 3), &mut [0.0; 5]);
    }
}
