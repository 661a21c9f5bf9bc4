//! Figure parts shared by the matrix renderers ([`crate::heatmap`],
//! [`crate::grid`], [`crate::labeled`]) and the line plot: text sizes and
//! spacing, matrix rasters (exact cells or block averages), the colour bar,
//! and row/column tick labels.
//!
//! Keeping these in one place is what makes the four figure kinds look like
//! one family: same fonts, same frame, same colour bar.

use crate::canvas::{Canvas, Rgb, INK, MAX_SIDE};
use crate::colormap::{ColorScale, NAN_COLOR};
use crate::error::{ErrorKind, RenderError, RenderResult};
use crate::font::{self, Ellipsis, HAlign, VAlign};

/// Outer white margin of every figure.
pub(crate) const PAD: u32 = 20;
/// Scale of figure titles (24-pixel glyph cells).
pub(crate) const TITLE_SCALE: u32 = 3;
/// Scale of ordinary labels: axis titles, colour-bar ticks, legends.
pub(crate) const LABEL_SCALE: u32 = 2;
/// Gap between the title and what it names.
pub(crate) const TITLE_GAP: u32 = 16;
/// Length of tick marks outside a frame.
pub(crate) const TICK_LEN: u32 = 5;
/// Gap between a tick mark and its label.
pub(crate) const TICK_GAP: u32 = 4;
/// Longest tick label, in pixels; longer labels are shortened with `…`.
pub(crate) const MAX_LABEL_PX: u32 = 260;
/// Width of the colour bar itself.
const BAR_W: u32 = 22;
/// Smallest colour bar height, so that its five tick labels never collide.
pub(crate) const MIN_BAR_H: u32 = 160;
/// Gap between a matrix and its colour bar.
pub(crate) const BAR_GAP: u32 = 28;

/// Rejects sizes larger than a canvas can be.
pub(crate) fn check_side(function: &str, what: &str, px: u64) -> RenderResult<u32> {
    if px > u64::from(MAX_SIDE) {
        return Err(RenderError::new(
            ErrorKind::TooLarge,
            format!("{function}: {what} would be {px} pixels (limit {MAX_SIDE})"),
        ));
    }
    Ok(px as u32)
}

/// How an n x n matrix maps to pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MatrixGeometry {
    /// Pixels per cell when each cell is a solid square; `None` when cells
    /// are smaller than a pixel and each pixel averages a block of cells.
    pub cell: Option<u32>,
    /// Side of the drawn matrix in pixels.
    pub side: u32,
    /// Matrix size.
    pub n: usize,
}

impl MatrixGeometry {
    /// `cell_px` cells when given; otherwise the largest whole number of
    /// pixels per cell that keeps the side at most `target`, at least
    /// `min_cell`; a matrix larger than `target` is averaged down to it.
    pub fn new(
        function: &str,
        n: usize,
        cell_px: Option<u32>,
        target: u32,
        min_cell: u32,
    ) -> RenderResult<MatrixGeometry> {
        let cell = match cell_px {
            Some(c) => Some(c.max(1)),
            None if n as u64 <= u64::from(target) => {
                Some(((u64::from(target) / n as u64) as u32).max(min_cell).max(1))
            }
            None if min_cell > 1 => Some(min_cell),
            None => None,
        };
        let side = match cell {
            Some(c) => check_side(function, "the matrix side", n as u64 * u64::from(c))?,
            None => target,
        };
        Ok(MatrixGeometry { cell, side, n })
    }

    /// Pixels per matrix row (fractional when averaging).
    pub fn pitch(&self) -> f64 {
        f64::from(self.side) / self.n as f64
    }

    /// Pixel offset of the centre of row (or column) `i`.
    pub fn centre(&self, i: usize) -> i64 {
        match self.cell {
            Some(c) => (i as i64) * i64::from(c) + i64::from(c) / 2,
            None => ((i as f64 + 0.5) * self.pitch()) as i64,
        }
    }
}

/// Draws an n x n row-major matrix at `(x, y)`: solid cells, or for
/// matrices larger than their pixel area, each pixel the mean of the
/// non-NaN cells it covers. Returns whether any value was NaN.
pub(crate) fn draw_matrix<T: Copy + Into<f64>>(
    canvas: &mut Canvas,
    x: i64,
    y: i64,
    values: &[T],
    geo: &MatrixGeometry,
    scale: &ColorScale,
) -> bool {
    let n = geo.n;
    let has_nan = values.iter().any(|&v| v.into().is_nan());
    match geo.cell {
        Some(c) => {
            let ci = i64::from(c);
            for (i, row) in values.chunks_exact(n).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    let color = scale.color(v.into());
                    canvas.fill_rect(x + j as i64 * ci, y + i as i64 * ci, c, c, color);
                }
            }
        }
        None => {
            let side = geo.side as usize;
            let bounds: Vec<usize> = (0..=side).map(|p| p * n / side).collect();
            let mut sums = vec![0.0f64; side];
            let mut counts = vec![0u32; side];
            for py in 0..side {
                sums.iter_mut().for_each(|s| *s = 0.0);
                counts.iter_mut().for_each(|c| *c = 0);
                for row in values.chunks_exact(n).take(bounds[py + 1]).skip(bounds[py]) {
                    for px in 0..side {
                        for &v in &row[bounds[px]..bounds[px + 1]] {
                            let v: f64 = v.into();
                            if !v.is_nan() {
                                sums[px] += v;
                                counts[px] += 1;
                            }
                        }
                    }
                }
                for px in 0..side {
                    let mean = if counts[px] > 0 {
                        sums[px] / f64::from(counts[px])
                    } else {
                        f64::NAN
                    };
                    canvas.put(x + px as i64, y + py as i64, scale.color(mean));
                }
            }
        }
    }
    has_nan
}

/// Picks the label scale for rows `pitch` pixels apart and which rows get a
/// label: every row when there is room, else every k-th.
pub(crate) fn label_plan(pitch: f64) -> (u32, usize) {
    // A label needs about its capitals plus descenders across the rows:
    // 13 px in class 1, 22 px for class 2 with some air.
    if pitch >= 22.0 {
        (2, 1)
    } else if pitch >= 13.0 {
        (1, 1)
    } else {
        (1, (13.0 / pitch.max(1e-9)).ceil() as usize)
    }
}

/// The labels as they will be drawn: shortened to [`MAX_LABEL_PX`].
pub(crate) fn fit_labels(labels: &[String], scale: u32) -> Vec<String> {
    labels
        .iter()
        .map(|l| font::truncate(l, MAX_LABEL_PX, scale, Ellipsis::Middle))
        .collect()
}

/// Width of the widest label at `scale`.
pub(crate) fn max_width(labels: &[String], scale: u32) -> u32 {
    labels
        .iter()
        .map(|l| font::text_width(l, scale))
        .max()
        .unwrap_or(0)
}

/// Tick labels of matrix rows, right-aligned against the left edge `x` of a
/// matrix whose top is at `y`; every `stride`-th row.
pub(crate) fn draw_row_labels(
    canvas: &mut Canvas,
    x: i64,
    y: i64,
    labels: &[String],
    geo: &MatrixGeometry,
    scale: u32,
    stride: usize,
) {
    for (i, label) in labels.iter().enumerate().step_by(stride.max(1)) {
        let cy = y + geo.centre(i);
        canvas.hline(x - 1 - i64::from(TICK_LEN), cy, TICK_LEN, INK);
        let tx = x - 1 - i64::from(TICK_LEN + TICK_GAP);
        font::draw_text_aligned(
            canvas,
            tx,
            cy,
            label,
            scale,
            INK,
            HAlign::Right,
            VAlign::Middle,
        );
    }
}

/// Tick labels of matrix columns, vertical, hanging below the bottom edge
/// `y` of a matrix whose left is at `x`; every `stride`-th column.
#[allow(clippy::too_many_arguments)]
pub(crate) fn draw_column_labels(
    canvas: &mut Canvas,
    x: i64,
    y: i64,
    labels: &[String],
    geo: &MatrixGeometry,
    scale: u32,
    stride: usize,
) {
    for (j, label) in labels.iter().enumerate().step_by(stride.max(1)) {
        let cx = x + geo.centre(j);
        canvas.vline(cx, y + 1, TICK_LEN, INK);
        let top = y + 1 + i64::from(TICK_LEN + TICK_GAP);
        // The letters' tops face left: centre their capitals on the column.
        let left = cx - font::cap_centre(scale).round() as i64;
        font::draw_text_vertical(canvas, left, top, label, scale, INK);
    }
}

/// Space a colour bar takes to the right of its left edge.
pub(crate) fn colorbar_width(scale: &ColorScale, label: &str) -> u32 {
    let ticks: Vec<String> = scale.ticks().into_iter().map(|t| t.1).collect();
    let mut w = BAR_W + TICK_LEN + TICK_GAP + max_width(&ticks, LABEL_SCALE);
    if !label.is_empty() {
        w += 14 + font::text_height(LABEL_SCALE);
    }
    w
}

/// Extra height a colour bar needs below its bottom edge (the NaN swatch).
pub(crate) fn colorbar_extra_below(has_nan: bool) -> u32 {
    if has_nan {
        44
    } else {
        font::text_height(LABEL_SCALE) / 2
    }
}

/// Draws a vertical colour bar with its top-left corner at `(x, y)`: the
/// gradient (max at the top), a frame, ticks with labels at min, quarter
/// points and max, the vertical `label`, and a grey NaN swatch when
/// `has_nan`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn draw_colorbar(
    canvas: &mut Canvas,
    x: i64,
    y: i64,
    height: u32,
    scale: &ColorScale,
    label: &str,
    has_nan: bool,
) {
    let (lo, hi) = scale.range();
    let h = height.max(2);
    for py in 0..h {
        let t = 1.0 - f64::from(py) / f64::from(h - 1);
        canvas.fill_rect(
            x,
            y + i64::from(py),
            BAR_W,
            1,
            scale.color(lo + t * (hi - lo)),
        );
    }
    canvas.frame(x, y, BAR_W, h, 1, INK);
    let ticks = scale.ticks();
    let labels: Vec<String> = ticks.iter().map(|t| t.1.clone()).collect();
    let label_w = max_width(&labels, LABEL_SCALE);
    let bar_right = x + i64::from(BAR_W) + 1;
    for (v, text) in &ticks {
        let t = (v - lo) / (hi - lo);
        let ty = y + ((1.0 - t) * f64::from(h - 1)).round() as i64;
        canvas.hline(bar_right, ty, TICK_LEN, INK);
        let tx = bar_right + i64::from(TICK_LEN + TICK_GAP);
        font::draw_text_aligned(
            canvas,
            tx,
            ty,
            text,
            LABEL_SCALE,
            INK,
            HAlign::Left,
            VAlign::Middle,
        );
    }
    if !label.is_empty() {
        let lw = i64::from(font::text_width(label, LABEL_SCALE));
        let lx = bar_right + i64::from(TICK_LEN + TICK_GAP + label_w + 14);
        let ly = y + (i64::from(h) - lw) / 2;
        font::draw_text_vertical(canvas, lx, ly, label, LABEL_SCALE, INK);
    }
    if has_nan {
        let sy = y + i64::from(h) + 18;
        canvas.fill_rect(x, sy, BAR_W, 14, NAN_COLOR);
        canvas.frame(x, sy, BAR_W, 14, 1, INK);
        let tx = bar_right + i64::from(TICK_GAP);
        font::draw_text_aligned(
            canvas,
            tx,
            sy + 7,
            "NaN",
            LABEL_SCALE,
            INK,
            HAlign::Left,
            VAlign::Middle,
        );
    }
}

/// Height taken by a title and the gap under it (zero without a title).
pub(crate) fn title_block(title: &str) -> u32 {
    if title.is_empty() {
        0
    } else {
        font::text_height(TITLE_SCALE) + TITLE_GAP
    }
}

/// Left x for a title centred on `centre` that stays inside the left pad;
/// returns the title's left edge and the canvas width needed to hold it.
pub(crate) fn title_span(title: &str, centre: i64) -> (i64, u32) {
    if title.is_empty() {
        return (centre, 0);
    }
    let w = i64::from(font::text_width(title, TITLE_SCALE));
    let left = (centre - w / 2).max(i64::from(PAD));
    (left, (left + w) as u32 + PAD)
}

/// Text colour for writing on `background`: white on dark cells,
/// near-black on light ones. The switch is at relative luminance 0.3, the
/// darkest background on which white still has a contrast ratio of 3:
/// white stays on dark and saturated cells (teal, red), black takes the
/// pale ones (salmon, light green).
pub(crate) fn contrast_text(background: Rgb) -> Rgb {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * lin(background[0]) + 0.7152 * lin(background[1]) + 0.0722 * lin(background[2]);
    if l > 0.3 {
        INK
    } else {
        crate::canvas::WHITE
    }
}

/// Room around a cell value written in size class 2, so that neighbouring
/// values never run into each other.
pub(crate) const VALUE_PAD_2: u32 = 14;

/// One square matrix figure: title, matrix with optional row/column labels
/// and cell values, axis titles and a colour bar. [`crate::heatmap`] and
/// [`crate::labeled`] are thin front ends to this.
pub(crate) struct MatrixFigure<'a, T> {
    pub function: &'static str,
    pub values: &'a [T],
    pub n: usize,
    pub labels: Option<&'a [String]>,
    pub title: &'a str,
    pub axis_label: &'a str,
    pub colorbar_label: &'a str,
    pub scale: ColorScale,
    pub cell_px: Option<u32>,
    pub target_px: u32,
    pub min_cell: u32,
    /// Write each value with this many decimals inside its cell.
    pub annotate: Option<usize>,
}

impl<T: Copy + Into<f64>> MatrixFigure<'_, T> {
    pub fn render(&self) -> RenderResult<Vec<u8>> {
        let n = self.n;
        let geo = MatrixGeometry::new(
            self.function,
            n,
            self.cell_px,
            self.target_px,
            self.min_cell,
        )?;
        let side = geo.side;
        let has_nan = self.values.iter().any(|&v| v.into().is_nan());

        let (lscale, stride) = label_plan(geo.pitch());
        let labels = self.labels.map(|l| fit_labels(l, lscale));
        let lw = labels.as_ref().map_or(0, |l| {
            let shown: Vec<String> = l.iter().step_by(stride).cloned().collect();
            max_width(&shown, lscale)
        });
        let label_band = if labels.is_some() {
            1 + TICK_LEN + TICK_GAP + lw
        } else {
            0
        };
        let axis_band = if self.axis_label.is_empty() {
            0
        } else {
            font::text_height(LABEL_SCALE) + 12
        };

        let left = PAD + axis_band + label_band;
        let top = PAD + title_block(self.title);
        let bar_h = side.max(MIN_BAR_H);
        let matrix_h = side + label_band + axis_band;
        let bar_total = bar_h + colorbar_extra_below(has_nan);
        let mut width = u64::from(left)
            + u64::from(side)
            + u64::from(BAR_GAP)
            + u64::from(colorbar_width(&self.scale, self.colorbar_label))
            + u64::from(PAD);
        let (title_left, title_w) = title_span(self.title, i64::from(left) + i64::from(side) / 2);
        width = width.max(u64::from(title_w));
        let height = u64::from(top) + u64::from(matrix_h.max(bar_total)) + u64::from(PAD);
        let width = check_side(self.function, "the image width", width)?;
        let height = check_side(self.function, "the image height", height)?;

        let mut canvas = Canvas::new(width, height, crate::canvas::WHITE)?;
        let (x, y) = (i64::from(left), i64::from(top));
        draw_matrix(&mut canvas, x, y, self.values, &geo, &self.scale);
        if let (Some(decimals), Some(cell)) = (self.annotate, geo.cell) {
            self.annotate_cells(&mut canvas, x, y, cell, decimals);
        }
        canvas.frame(x, y, side, side, 1, INK);

        if let Some(labels) = &labels {
            draw_row_labels(&mut canvas, x, y, labels, &geo, lscale, stride);
            draw_column_labels(
                &mut canvas,
                x,
                y + i64::from(side),
                labels,
                &geo,
                lscale,
                stride,
            );
        }
        if !self.axis_label.is_empty() {
            let text = font::truncate(self.axis_label, side, LABEL_SCALE, Ellipsis::End);
            let by = y + i64::from(side + label_band) + 8;
            font::draw_text_aligned(
                &mut canvas,
                x + i64::from(side) / 2,
                by,
                &text,
                LABEL_SCALE,
                INK,
                HAlign::Center,
                VAlign::Top,
            );
            let tw = i64::from(font::text_width(&text, LABEL_SCALE));
            font::draw_text_vertical(
                &mut canvas,
                i64::from(PAD),
                y + (i64::from(side) - tw) / 2,
                &text,
                LABEL_SCALE,
                INK,
            );
        }
        let bx = x + i64::from(side + BAR_GAP);
        draw_colorbar(
            &mut canvas,
            bx,
            y,
            bar_h,
            &self.scale,
            self.colorbar_label,
            has_nan,
        );
        if !self.title.is_empty() {
            font::draw_text(
                &mut canvas,
                title_left,
                i64::from(PAD),
                self.title,
                TITLE_SCALE,
                INK,
            );
        }
        canvas.encode_png()
    }

    /// Writes each value inside its cell, as large as fits (size class 2 or
    /// 1), skipped when even class 1 does not fit.
    fn annotate_cells(&self, canvas: &mut Canvas, x: i64, y: i64, cell: u32, decimals: usize) {
        let texts: Vec<String> = self
            .values
            .iter()
            .map(|&v| {
                let v: f64 = v.into();
                if v.is_nan() {
                    "NaN".to_string()
                } else {
                    crate::colormap::format_fixed(v, decimals)
                }
            })
            .collect();
        let scale = if max_width(&texts, 2) + VALUE_PAD_2 <= cell {
            2
        } else if max_width(&texts, 1) + 4 <= cell && font::text_height(1) <= cell {
            1
        } else {
            return;
        };
        let ci = i64::from(cell);
        for (k, (text, &v)) in texts.iter().zip(self.values).enumerate() {
            let (i, j) = ((k / self.n) as i64, (k % self.n) as i64);
            let color = contrast_text(self.scale.color(v.into()));
            let (cx, cy) = (x + j * ci + ci / 2, y + i * ci + ci / 2);
            font::draw_text_aligned(
                canvas,
                cx,
                cy,
                text,
                scale,
                color,
                HAlign::Center,
                VAlign::Middle,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::WHITE;

    #[test]
    fn geometry_auto_and_fixed() {
        let g = MatrixGeometry::new("t", 100, None, 800, 1).unwrap();
        assert_eq!((g.cell, g.side), (Some(8), 800));
        let g = MatrixGeometry::new("t", 2000, None, 800, 1).unwrap();
        assert_eq!((g.cell, g.side), (None, 800));
        let g = MatrixGeometry::new("t", 12, Some(3), 800, 1).unwrap();
        assert_eq!((g.cell, g.side), (Some(3), 36));
        assert_eq!(g.centre(0), 1);
        let e = MatrixGeometry::new("t", 5000, Some(10), 800, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
    }

    #[test]
    fn averaging_keeps_block_means() {
        // 4 x 4 -> 2 x 2 pixels: each pixel is the mean of a 2 x 2 block.
        let v: Vec<f32> = vec![
            1.0,
            1.0,
            -1.0,
            -1.0, //
            1.0,
            1.0,
            -1.0,
            f32::NAN, //
            0.0,
            0.0,
            1.0,
            1.0, //
            0.0,
            0.0,
            1.0,
            1.0,
        ];
        let geo = MatrixGeometry {
            cell: None,
            side: 2,
            n: 4,
        };
        let scale = ColorScale::new((-1.0, 1.0), None).unwrap();
        let mut c = Canvas::new(2, 2, WHITE).unwrap();
        assert!(draw_matrix(&mut c, 0, 0, &v, &geo, &scale));
        assert_eq!(c.get(0, 0), Some(scale.color(1.0)));
        assert_eq!(c.get(1, 0), Some(scale.color(-1.0)));
        assert_eq!(c.get(0, 1), Some(scale.color(0.0)));
    }

    #[test]
    fn value_text_contrasts_with_its_cell() {
        let div = ColorScale::new((-1.0, 1.0), None).unwrap();
        assert_eq!(contrast_text(div.color(1.0)), WHITE);
        assert_eq!(contrast_text(div.color(-1.0)), WHITE);
        assert_eq!(contrast_text(div.color(0.0)), INK);
        assert_eq!(contrast_text(div.color(0.3)), INK);
        let seq = ColorScale::new((0.0, 1.0), None).unwrap();
        assert_eq!(contrast_text(seq.color(0.0)), WHITE);
        assert_eq!(contrast_text(seq.color(1.0)), INK);
    }
}
