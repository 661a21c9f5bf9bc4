//! The AVX-512 version of [`super::panel_product`].

use std::arch::x86_64::*;

use super::avx2::{store_tail_sums, tail_columns, tail_step};
use super::{tiles_per_block, Epilogue, PANEL_ROWS, TILE_COLS};

/// Tiles one block of outputs spans: 6 rows x 4 tiles is 24 accumulators
/// of the 32 registers, beside the 4 registers of the tiles' values and the
/// broadcast weight. Per step along the depth that is 4 loads and 6
/// broadcasts for 24 multiply-adds, which set the pace.
const GROUP_TILES: usize = 4;

/// Tails at least this wide go as one masked tile (six multiply-adds per
/// step along the depth, whatever the width); narrower ones as the AVX2
/// version's matrix-vector products (one multiply-add per column and step).
const MASKED_TAIL_MIN: usize = 6;

/// Tails at most this wide ride along with the last group of tiles when
/// that group has at most [`SIDE_GROUP_MAX`] tiles: each column is one
/// more multiply-add per step (the panel's 6 rows in one register), taken
/// while the group's own multiply-adds set the pace. Done apart, the one
/// column left over of a 7 x 7 map cost 13–23% of the 48 others' time;
/// along with the group, 2–8%.
const SIDE_COLUMNS_MAX: usize = 4;
/// The widest group the tail rides along with: 3 tiles leave room in the
/// registers for 4 more sums, 4 tiles do not.
const SIDE_GROUP_MAX: usize = 3;

/// See [`super::panel_product`], on the row-major input as it is: the
/// columns go in blocks of whole tiles whose rows stay in L2; within a
/// block, for each panel, the tiles four at a time (then three, two or
/// one), 16 columns of an input row per register and the accumulators in
/// registers over the whole depth, the bias and clamp applied before the
/// store; the tail along with the last group (up to 4 columns, a group of
/// up to 3 tiles), or after it as a masked tile or as matrix-vector
/// products.
///
/// Unlike the AVX2 version it does not pack the input into tiles: on the
/// AVX-512 machine measured, copying the input cost more than it saved on
/// the products with few output rows over large maps (16 x 32 x 12,544:
/// 1.6 times faer's time packed), and read in place no shape was slower.
///
/// # Safety
/// AVX-512F, AVX2 and FMA must be available; `panels`, `input`, `bias` and
/// `out` must have the lengths `panel_product` asserts, and `depth` must
/// not be zero.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn panel_product_avx512(
    panels: &[f32],
    input: &[f32],
    (rows, depth, cols): (usize, usize, usize),
    (bias, bounds): (&[f32], [f32; 2]),
    out: &mut [f32],
) {
    let whole = cols / TILE_COLS;
    let rest = cols % TILE_COLS;
    let tiles_per_block = tiles_per_block(depth, GROUP_TILES);
    let (p, x, o) = (panels.as_ptr(), input.as_ptr(), out.as_mut_ptr());
    let panel_count = rows.div_ceil(PANEL_ROWS);
    // The tail's width when it rides along with the last group of tiles
    // (0 when it goes on its own after them).
    let side = match last_group(whole, tiles_per_block) {
        1..=SIDE_GROUP_MAX if rest <= SIDE_COLUMNS_MAX => rest,
        _ => 0,
    };
    for block in (0..whole).step_by(tiles_per_block) {
        let block_end = (block + tiles_per_block).min(whole);
        for panel in 0..panel_count {
            let weights = p.add(panel * PANEL_ROWS * depth);
            let out_rows = o.add(panel * PANEL_ROWS * cols);
            let finish = Epilogue::of_panel(panel, rows, (bias, bounds));
            let mut tile = block;
            while tile < block_end {
                let group = (block_end - tile).min(GROUP_TILES);
                let (first, out_here) = (x.add(tile * TILE_COLS), out_rows.add(tile * TILE_COLS));
                let shape = (depth, cols);
                let side_here = if tile + group == whole { side } else { 0 };
                match group {
                    4 => tile_group::<4, 0>(weights, first, shape, out_here, &finish),
                    3 => group_with_side::<3>(weights, first, shape, out_here, &finish, side_here),
                    2 => group_with_side::<2>(weights, first, shape, out_here, &finish, side_here),
                    _ => group_with_side::<1>(weights, first, shape, out_here, &finish, side_here),
                }
                tile += group;
            }
        }
    }
    if rest > 0 && side == 0 {
        let tail = x.add(whole * TILE_COLS);
        for panel in 0..panel_count {
            let weights = p.add(panel * PANEL_ROWS * depth);
            let out_rows = o.add(panel * PANEL_ROWS * cols + whole * TILE_COLS);
            let finish = Epilogue::of_panel(panel, rows, (bias, bounds));
            if rest >= MASKED_TAIL_MIN {
                masked_tile(weights, tail, (depth, rest), out_rows, cols, &finish);
            } else {
                tail_columns(
                    weights,
                    (tail, cols),
                    (depth, rest),
                    out_rows,
                    cols,
                    &finish,
                );
            }
        }
    }
}

impl Epilogue {
    /// `min(max(v + add[row], lo), hi)`, NaN kept: `max_ps`/`min_ps`
    /// return their second operand when either is NaN.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn apply_zmm(&self, row: usize, v: __m512) -> __m512 {
        let v = _mm512_add_ps(v, _mm512_set1_ps(self.add[row]));
        let v = _mm512_max_ps(_mm512_set1_ps(self.bounds[0]), v);
        _mm512_min_ps(_mm512_set1_ps(self.bounds[1]), v)
    }
}

/// Tiles in the last group of a row of `whole` tiles cut into blocks of
/// `tiles_per_block` and each block into groups of [`GROUP_TILES`] (0
/// when there are none).
fn last_group(whole: usize, tiles_per_block: usize) -> usize {
    match whole {
        0 => 0,
        _ => (whole - 1) % tiles_per_block % GROUP_TILES + 1,
    }
}

/// [`tile_group`] of `T` tiles with `side` tail columns (at most
/// [`SIDE_COLUMNS_MAX`]) along.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn group_with_side<const T: usize>(
    weights: *const f32,
    first: *const f32,
    shape: (usize, usize),
    out: *mut f32,
    finish: &Epilogue,
    side: usize,
) {
    match side {
        0 => tile_group::<T, 0>(weights, first, shape, out, finish),
        1 => tile_group::<T, 1>(weights, first, shape, out, finish),
        2 => tile_group::<T, 2>(weights, first, shape, out, finish),
        3 => tile_group::<T, 3>(weights, first, shape, out, finish),
        _ => tile_group::<T, 4>(weights, first, shape, out, finish),
    }
}

/// One panel times the `T * 16` columns from `first` on of the row-major
/// `depth x cols` input, and the `S` columns right after them (the tail)
/// as matrix-vector sums: `out` rows `cols` apart.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn tile_group<const T: usize, const S: usize>(
    weights: *const f32,
    first: *const f32,
    (depth, cols): (usize, usize),
    out: *mut f32,
    finish: &Epilogue,
) {
    let mut acc = [[_mm512_setzero_ps(); T]; PANEL_ROWS];
    let mut side = [_mm256_setzero_ps(); S];
    let tail = first.add(T * TILE_COLS);
    let (mut x, mut w) = (first, weights);
    for k in 0..depth {
        let mut values = [_mm512_setzero_ps(); T];
        for (t, v) in values.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(x.add(t * TILE_COLS));
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let c = _mm512_set1_ps(*w.add(r));
            for (a, v) in row.iter_mut().zip(&values) {
                *a = _mm512_fmadd_ps(*v, c, *a);
            }
        }
        if S > 0 {
            tail_step(weights, (tail, cols), k, &mut side);
        }
        x = x.add(cols);
        w = w.add(PANEL_ROWS);
    }
    for (r, row) in acc.iter().enumerate().take(finish.rows) {
        let dst = out.add(r * cols);
        for (t, a) in row.iter().enumerate() {
            _mm512_storeu_ps(dst.add(t * TILE_COLS), finish.apply_zmm(r, *a));
        }
    }
    store_tail_sums(&side, out.add(T * TILE_COLS), cols, finish);
}

/// One panel times the `width < 16` columns from `tail` on of the
/// row-major `depth x cols` input, as one tile of masked loads and stores.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn masked_tile(
    weights: *const f32,
    tail: *const f32,
    (depth, width): (usize, usize),
    out: *mut f32,
    cols: usize,
    finish: &Epilogue,
) {
    let mask: __mmask16 = ((1u32 << width) - 1) as __mmask16;
    let mut acc = [_mm512_setzero_ps(); PANEL_ROWS];
    let (mut x, mut w) = (tail, weights);
    for _ in 0..depth {
        let v = _mm512_maskz_loadu_ps(mask, x);
        for (r, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(v, _mm512_set1_ps(*w.add(r)), *a);
        }
        x = x.add(cols);
        w = w.add(PANEL_ROWS);
    }
    for (r, a) in acc.iter().enumerate().take(finish.rows) {
        _mm512_mask_storeu_ps(out.add(r * cols), mask, finish.apply_zmm(r, *a));
    }
}
