//! The AVX2 + FMA version of [`super::panel_product`].

use std::arch::x86_64::*;

use super::super::portable::add_and_clamp;
use super::{tiles_per_block, Epilogue, PANEL_ROWS, TILE_COLS};

/// f32 values of one AVX2 register.
const YMM_LANES: usize = 8;
/// Tail columns taken together as matrix-vector products.
const TAIL_GROUP: usize = 4;

/// See [`super::panel_product`]: the columns go in blocks of whole tiles
/// that stay in L2; within a block, for each panel, one 6 x 16 block of
/// outputs per tile, its 12 accumulators in registers over the whole depth
/// (2 loads of the tile and 6 broadcast weights per step, so the
/// multiply-adds, not the loads, set the pace), the bias and clamp applied
/// before the store; then the tail's columns four at a time with the
/// panel's 6 rows in one register.
///
/// # Safety
/// AVX2 and FMA must be available; `panels`, `tiles`, `bias` and `out` must
/// have the lengths `panel_product` asserts, and `depth` must not be zero.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn panel_product_avx2(
    panels: &[f32],
    tiles: &[f32],
    (rows, depth, cols): (usize, usize, usize),
    (bias, bounds): (&[f32], [f32; 2]),
    out: &mut [f32],
) {
    let whole = cols / TILE_COLS;
    let rest = cols % TILE_COLS;
    let tiles_per_block = tiles_per_block(depth, 1);
    let (p, x, o) = (panels.as_ptr(), tiles.as_ptr(), out.as_mut_ptr());
    let panel_count = rows.div_ceil(PANEL_ROWS);
    for block in (0..whole).step_by(tiles_per_block) {
        let block_end = (block + tiles_per_block).min(whole);
        for panel in 0..panel_count {
            let weights = p.add(panel * PANEL_ROWS * depth);
            let out_rows = o.add(panel * PANEL_ROWS * cols);
            let finish = Epilogue::of_panel(panel, rows, (bias, bounds));
            for tile in block..block_end {
                let packed = x.add(tile * TILE_COLS * depth);
                tile_block(
                    weights,
                    packed,
                    depth,
                    out_rows.add(tile * TILE_COLS),
                    cols,
                    &finish,
                );
            }
        }
    }
    if rest > 0 {
        let tail = x.add(whole * TILE_COLS * depth);
        for panel in 0..panel_count {
            let weights = p.add(panel * PANEL_ROWS * depth);
            let out_rows = o.add(panel * PANEL_ROWS * cols + whole * TILE_COLS);
            tail_columns(
                weights,
                (tail, rest),
                (depth, rest),
                out_rows,
                cols,
                &Epilogue::of_panel(panel, rows, (bias, bounds)),
            );
        }
    }
}

impl Epilogue {
    /// `min(max(v + add[row], lo), hi)`, NaN kept: `max_ps`/`min_ps`
    /// return their second operand when either is NaN.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn apply_ymm(&self, row: usize, v: __m256) -> __m256 {
        let v = _mm256_add_ps(v, _mm256_set1_ps(self.add[row]));
        let v = _mm256_max_ps(_mm256_set1_ps(self.bounds[0]), v);
        _mm256_min_ps(_mm256_set1_ps(self.bounds[1]), v)
    }
}

/// One panel times one whole tile: `out` rows `cols` apart.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_block(
    weights: *const f32,
    tile: *const f32,
    depth: usize,
    out: *mut f32,
    cols: usize,
    finish: &Epilogue,
) {
    let z = _mm256_setzero_ps();
    let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = (z, z, z, z, z, z);
    let (mut b0, mut b1, mut b2, mut b3, mut b4, mut b5) = (z, z, z, z, z, z);
    let (mut x, mut w) = (tile, weights);
    for _ in 0..depth {
        let low = _mm256_loadu_ps(x);
        let high = _mm256_loadu_ps(x.add(YMM_LANES));
        let c = _mm256_broadcast_ss(&*w);
        a0 = _mm256_fmadd_ps(low, c, a0);
        b0 = _mm256_fmadd_ps(high, c, b0);
        let c = _mm256_broadcast_ss(&*w.add(1));
        a1 = _mm256_fmadd_ps(low, c, a1);
        b1 = _mm256_fmadd_ps(high, c, b1);
        let c = _mm256_broadcast_ss(&*w.add(2));
        a2 = _mm256_fmadd_ps(low, c, a2);
        b2 = _mm256_fmadd_ps(high, c, b2);
        let c = _mm256_broadcast_ss(&*w.add(3));
        a3 = _mm256_fmadd_ps(low, c, a3);
        b3 = _mm256_fmadd_ps(high, c, b3);
        let c = _mm256_broadcast_ss(&*w.add(4));
        a4 = _mm256_fmadd_ps(low, c, a4);
        b4 = _mm256_fmadd_ps(high, c, b4);
        let c = _mm256_broadcast_ss(&*w.add(5));
        a5 = _mm256_fmadd_ps(low, c, a5);
        b5 = _mm256_fmadd_ps(high, c, b5);
        x = x.add(TILE_COLS);
        w = w.add(PANEL_ROWS);
    }
    let rows = [(a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5)];
    for (r, (low, high)) in rows.iter().enumerate().take(finish.rows) {
        let row = out.add(r * cols);
        _mm256_storeu_ps(row, finish.apply_ymm(r, *low));
        _mm256_storeu_ps(row.add(YMM_LANES), finish.apply_ymm(r, *high));
    }
}

/// One panel times `width` columns of the input, the first of each of the
/// `depth` rows at `tail + k * pitch`, as matrix-vector products: the
/// panel's 6 weights at a depth are one masked load, each column's value
/// one broadcast; up to four columns at a time (see [`tail_group`]).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn tail_columns(
    weights: *const f32,
    (tail, pitch): (*const f32, usize),
    (depth, width): (usize, usize),
    out: *mut f32,
    cols: usize,
    finish: &Epilogue,
) {
    let mut first = 0;
    while first < width {
        let n = (width - first).min(TAIL_GROUP);
        let columns = (tail.add(first), pitch);
        let here = out.add(first);
        match n {
            1 => tail_group::<1, 4>(weights, columns, depth, (here, cols), finish),
            2 => tail_group::<2, 4>(weights, columns, depth, (here, cols), finish),
            3 => tail_group::<3, 2>(weights, columns, depth, (here, cols), finish),
            _ => tail_group::<4, 2>(weights, columns, depth, (here, cols), finish),
        }
        first += n;
    }
}

/// Stores column sums whose lanes are the panel's rows: `sums[c]` lane `r`
/// (bias and clamp applied) to `out[r * cols + c]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn store_tail_sums(
    sums: &[__m256],
    out: *mut f32,
    cols: usize,
    finish: &Epilogue,
) {
    for (c, a) in sums.iter().enumerate() {
        let mut lanes = [0.0f32; YMM_LANES];
        _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
        for (r, v) in lanes.iter_mut().enumerate().take(finish.rows) {
            // The lanes are rows here: each takes its own bias.
            add_and_clamp(std::slice::from_mut(v), finish.add[r], finish.bounds);
            *out.add(r * cols + c) = *v;
        }
    }
}

/// The panel's 6 rows times each of the `N` columns from `columns = (tail,
/// pitch)` on, rows `pitch` apart, stored (bias and clamp applied) to
/// `out`, rows `cols` apart. The depth is spread over `CHAINS`
/// partial sums per column (depth `k` into sum `k % CHAINS`), added at the
/// end: with one sum per column each step would wait for the previous
/// multiply-add (4 cycles), which made the one column left over of a 7 x 7
/// map cost a quarter to a third of the 48 others' time.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tail_group<const N: usize, const CHAINS: usize>(
    weights: *const f32,
    columns: (*const f32, usize),
    depth: usize,
    (out, cols): (*mut f32, usize),
    finish: &Epilogue,
) {
    let mut chains = [[_mm256_setzero_ps(); N]; CHAINS];
    let whole = depth / CHAINS * CHAINS;
    for k in (0..whole).step_by(CHAINS) {
        for (j, sums) in chains.iter_mut().enumerate() {
            tail_step(weights, columns, k + j, sums);
        }
    }
    for (j, sums) in chains.iter_mut().enumerate().take(depth - whole) {
        tail_step(weights, columns, whole + j, sums);
    }
    let mut total = chains[0];
    for sums in &chains[1..] {
        for (t, s) in total.iter_mut().zip(sums) {
            *t = _mm256_add_ps(*t, *s);
        }
    }
    store_tail_sums(&total, out, cols, finish);
}

/// Adds depth `k`'s term to `sums`: the panel's 6 weights at `k` times
/// each column's value in row `k`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn tail_step<const N: usize>(
    weights: *const f32,
    (tail, pitch): (*const f32, usize),
    k: usize,
    sums: &mut [__m256; N],
) {
    // The 6 lanes of a panel's weights at one depth: reading 8 would pass
    // the end of the last panel.
    let six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    let w = _mm256_maskload_ps(weights.add(k * PANEL_ROWS), six);
    let x = tail.add(k * pitch);
    for (c, a) in sums.iter_mut().enumerate() {
        *a = _mm256_fmadd_ps(w, _mm256_broadcast_ss(&*x.add(c)), *a);
    }
}
