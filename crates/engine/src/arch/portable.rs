//! Plain Rust versions of the kernels in `arch`: the definition, and the
//! path on CPUs without the features the specialised versions need.

/// See [`super::accumulate_taps`]; the caller has checked the bounds.
pub fn accumulate_taps(
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
    [lo, hi]: [f32; 2],
    scratch: &[f32],
    grid: &mut [f32],
) {
    grid.fill(bias);
    for (offset, w) in offsets.iter().zip(weights) {
        for (o, x) in grid.iter_mut().zip(&scratch[*offset..]) {
            *o += w * x;
        }
    }
    for o in grid.iter_mut() {
        let v = if *o < lo { lo } else { *o };
        *o = if v > hi { hi } else { v };
    }
}

/// See [`super::add_and_clamp`]. Inlined into the x86 versions, which only
/// compile it for wider registers.
#[inline(always)]
pub fn add_and_clamp(values: &mut [f32], add: f32, [lo, hi]: [f32; 2]) {
    for v in values {
        let x = *v + add;
        let x = if x < lo { lo } else { x };
        *v = if x > hi { hi } else { x };
    }
}

/// See [`super::copy_rows`]; the caller has checked the bounds.
pub fn copy_rows(
    src: &[f32],
    src_pitch: usize,
    dst: &mut [f32],
    dst_pitch: usize,
    (rows, width): (usize, usize),
) {
    for r in 0..rows {
        dst[r * dst_pitch..r * dst_pitch + width]
            .copy_from_slice(&src[r * src_pitch..r * src_pitch + width]);
    }
}

/// See [`super::take_every_other`]; the caller has checked the bounds.
pub fn take_every_other(src: &[f32], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.iter().step_by(2)) {
        *d = *s;
    }
}

/// See [`super::panel_product`]; the caller has checked the lengths and
/// that `depth` is not zero.
pub fn panel_product(
    panels: &[f32],
    input: &[f32],
    (rows, depth, cols): (usize, usize, usize),
    (bias, bounds): (&[f32], [f32; 2]),
    out: &mut [f32],
) {
    use super::panels::PANEL_ROWS;
    for (p, panel) in panels.chunks_exact(PANEL_ROWS * depth).enumerate() {
        let rows_here = (rows - p * PANEL_ROWS).min(PANEL_ROWS);
        for c in 0..cols {
            for lane in 0..rows_here {
                let sum: f32 = (0..depth)
                    .map(|k| panel[k * PANEL_ROWS + lane] * input[k * cols + c])
                    .sum();
                out[(p * PANEL_ROWS + lane) * cols + c] = sum;
            }
        }
    }
    for (row, b) in out.chunks_exact_mut(cols).zip(bias) {
        add_and_clamp(row, *b, bounds);
    }
}
