//! Several N x N matrices side by side with one shared colour bar.
//!
//! The question "where in the network is the input's structure lost" is
//! answered by looking at the same images' similarity matrix layer after
//! layer. Comparing panels only works if they share everything but the
//! layer: the same image order (all panels must have the same `n`; reorder
//! them all by one layer's `corr_order` first), the same colour scale (one
//! colour bar for all), and the same size. Panels are laid out in rows of
//! at most five, balanced so that the last row is not nearly empty.

use crate::canvas::{Canvas, INK, WHITE};
use crate::colormap::{ColorScale, Colormap};
use crate::error::{check_labels, ErrorKind, RenderError, RenderResult};
use crate::font::{self, Ellipsis, HAlign, VAlign};
use crate::parts::{
    check_side, colorbar_extra_below, colorbar_width, draw_colorbar, draw_matrix, draw_row_labels,
    fit_labels, label_plan, max_width, title_block, title_span, MatrixGeometry, BAR_GAP,
    LABEL_SCALE, MIN_BAR_H, PAD, TICK_GAP, TICK_LEN, TITLE_SCALE,
};

/// Most panels per row when the layout is automatic.
pub const MAX_AUTO_COLUMNS: usize = 5;

/// Horizontal gap between panels.
const H_GAP: u32 = 28;
/// Vertical gap between a panel row and the next row's titles.
const V_GAP: u32 = 20;

/// One matrix of a grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel<'a> {
    /// Shown above the panel, e.g. the layer name.
    pub title: String,
    /// Row-major `n` x `n` values.
    pub values: &'a [f32],
    /// Matrix size; the same for every panel of a grid.
    pub n: usize,
}

/// Options of [`heatmap_grid`].
#[derive(Debug, Clone, PartialEq)]
pub struct GridOptions {
    /// Figure title above all panels; empty for none. Default empty.
    pub title: String,
    /// Values mapped to the ends of the shared colour bar. Default `(-1.0, 1.0)`.
    pub value_range: (f64, f64),
    /// Colour map; `None` (default) picks by range: diverging for ranges
    /// symmetric around zero, viridis otherwise.
    pub colormap: Option<Colormap>,
    /// Title of the colour bar. Default empty.
    pub colorbar_label: String,
    /// One label per row, drawn left of the first panel of each row when
    /// `n <= 60` (every k-th when rows are too thin). The matrices being
    /// symmetric, the row labels also name the columns. Default `None`.
    pub tick_labels: Option<Vec<String>>,
    /// Panels per row; `None` (default) chooses at most
    /// [`MAX_AUTO_COLUMNS`], balancing the rows.
    pub columns: Option<usize>,
    /// Target side of each panel in pixels; `None` (default) uses 320 with
    /// up to three columns and 256 with more. Cells are whole pixels when
    /// `n` is at most the target, else averaged down to it.
    pub panel_px: Option<u32>,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            title: String::new(),
            value_range: (-1.0, 1.0),
            colormap: None,
            colorbar_label: String::new(),
            tick_labels: None,
            columns: None,
            panel_px: None,
        }
    }
}

/// Columns of an automatic layout: as few rows as [`MAX_AUTO_COLUMNS`]
/// allows, then as few columns as those rows need (7 panels → 4 + 3).
fn auto_columns(count: usize) -> usize {
    let rows = count.div_ceil(MAX_AUTO_COLUMNS);
    count.div_ceil(rows.max(1))
}

/// Renders `panels` as a grid of heatmaps with a shared colour bar.
///
/// Fails when there are no panels, a panel is empty or its values do not
/// form an `n` x `n` matrix, panels differ in `n`, the label count is not
/// `n`, the value range is invalid, or the image would be too large.
pub fn heatmap_grid(panels: &[Panel<'_>], opts: &GridOptions) -> RenderResult<Vec<u8>> {
    const F: &str = "heatmap_grid";
    let first = panels
        .first()
        .ok_or_else(|| RenderError::new(ErrorKind::Empty, format!("{F}: no panels to draw")))?;
    let n = first.n;
    for (k, p) in panels.iter().enumerate() {
        if p.n != n {
            return Err(RenderError::new(
                ErrorKind::SizeMismatch,
                format!(
                    "{F}: panel {k} ('{}') is {} x {}, panel 0 ('{}') is {n} x {n}",
                    p.title, p.n, p.n, first.title
                ),
            ));
        }
        crate::error::check_square(
            &format!("{F}: panel {k} ('{}')", p.title),
            p.values.len(),
            n,
        )?;
    }
    check_labels(F, opts.tick_labels.as_deref(), n)?;
    let scale = ColorScale::checked(F, opts.value_range, opts.colormap)?;

    let count = panels.len();
    let cols = opts
        .columns
        .unwrap_or_else(|| auto_columns(count))
        .clamp(1, count);
    let rows = count.div_ceil(cols);
    let target = opts
        .panel_px
        .unwrap_or(if cols <= 3 { 320 } else { 256 })
        .max(1);
    let geo = MatrixGeometry::new(F, n, None, target, 1)?;
    let side = geo.side;
    let has_nan = panels.iter().any(|p| p.values.iter().any(|v| v.is_nan()));

    let (lscale, stride) = label_plan(geo.pitch());
    let labels = opts
        .tick_labels
        .as_deref()
        .filter(|_| n <= crate::heatmap::MAX_LABELLED_N)
        .map(|l| fit_labels(l, lscale));
    let label_band = labels.as_ref().map_or(0, |l| {
        let shown: Vec<String> = l.iter().step_by(stride).cloned().collect();
        1 + TICK_LEN + TICK_GAP + max_width(&shown, lscale)
    });

    let panel_title_h = font::text_height(LABEL_SCALE) + 10;
    let row_h = u64::from(panel_title_h + side);
    let grid_w = cols as u64 * u64::from(side) + (cols as u64 - 1) * u64::from(H_GAP);
    let grid_h = rows as u64 * row_h + (rows as u64 - 1) * u64::from(V_GAP);
    let left = u64::from(PAD + label_band);
    let top = u64::from(PAD + title_block(&opts.title));
    let bar_h = check_side(F, "the colour bar", grid_h - u64::from(panel_title_h))?.max(MIN_BAR_H);
    let bar_x = left + grid_w + u64::from(BAR_GAP);
    let width = bar_x + u64::from(colorbar_width(&scale, &opts.colorbar_label)) + u64::from(PAD);
    let (title_left, title_w) = title_span(&opts.title, (left + grid_w / 2) as i64);
    let width = check_side(F, "the image width", width.max(u64::from(title_w)))?;
    let content_h = grid_h.max(u64::from(
        panel_title_h + bar_h + colorbar_extra_below(has_nan),
    ));
    let height = check_side(F, "the image height", top + content_h + u64::from(PAD))?;

    let mut canvas = Canvas::new(width, height, WHITE)?;
    for (k, panel) in panels.iter().enumerate() {
        let (r, c) = ((k / cols) as u64, (k % cols) as u64);
        let x = (left + c * u64::from(side + H_GAP)) as i64;
        let ty = (top + r * (row_h + u64::from(V_GAP))) as i64;
        let y = ty + i64::from(panel_title_h);
        let title = font::truncate(
            &panel.title,
            side + H_GAP - 16,
            LABEL_SCALE,
            Ellipsis::Middle,
        );
        let cx = x + i64::from(side) / 2;
        font::draw_text_aligned(
            &mut canvas,
            cx,
            ty,
            &title,
            LABEL_SCALE,
            INK,
            HAlign::Center,
            VAlign::Top,
        );
        draw_matrix(&mut canvas, x, y, panel.values, &geo, &scale);
        canvas.frame(x, y, side, side, 1, INK);
        if let (Some(labels), 0) = (&labels, c) {
            draw_row_labels(&mut canvas, x, y, labels, &geo, lscale, stride);
        }
    }
    let bar_y = (top + u64::from(panel_title_h)) as i64;
    draw_colorbar(
        &mut canvas,
        bar_x as i64,
        bar_y,
        bar_h,
        &scale,
        &opts.colorbar_label,
        has_nan,
    );
    if !opts.title.is_empty() {
        font::draw_text(
            &mut canvas,
            title_left,
            i64::from(PAD),
            &opts.title,
            TITLE_SCALE,
            INK,
        );
    }
    canvas.encode_png()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize, blocks: usize) -> Vec<f32> {
        (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                if i * blocks / n == j * blocks / n {
                    0.8
                } else {
                    -0.2
                }
            })
            .collect()
    }

    fn size(png: &[u8]) -> (u32, u32) {
        image::load_from_memory(png).unwrap().to_rgb8().dimensions()
    }

    #[test]
    fn three_panels_are_wider_than_one() {
        let v = block(40, 4);
        let one = [Panel {
            title: "conv1".into(),
            values: &v,
            n: 40,
        }];
        let three: Vec<Panel> = ["conv1", "block3", "logits"]
            .iter()
            .map(|t| Panel {
                title: t.to_string(),
                values: &v,
                n: 40,
            })
            .collect();
        let opts = GridOptions::default();
        let (w1, h1) = size(&heatmap_grid(&one, &opts).unwrap());
        let (w3, h3) = size(&heatmap_grid(&three, &opts).unwrap());
        assert!(w3 > w1 + 2 * 300, "{w3} vs {w1}");
        assert_eq!(h1, h3);
    }

    #[test]
    fn layout_wraps_rows() {
        assert_eq!(auto_columns(1), 1);
        assert_eq!(auto_columns(4), 4);
        assert_eq!(auto_columns(6), 3);
        assert_eq!(auto_columns(7), 4);
        assert_eq!(auto_columns(10), 5);
        assert_eq!(auto_columns(11), 4);
        let v = block(20, 2);
        let panels: Vec<Panel> = (0..6)
            .map(|i| Panel {
                title: format!("layer {i}"),
                values: &v,
                n: 20,
            })
            .collect();
        let (w6, h6) = size(&heatmap_grid(&panels, &GridOptions::default()).unwrap());
        let (w3, h3) = size(&heatmap_grid(&panels[..3], &GridOptions::default()).unwrap());
        assert_eq!(w6, w3);
        assert!(h6 > h3 + 300);
    }

    #[test]
    fn mismatched_panels_are_errors() {
        let a = block(10, 2);
        let b = block(12, 2);
        let panels = [
            Panel {
                title: "a".into(),
                values: &a,
                n: 10,
            },
            Panel {
                title: "b".into(),
                values: &b,
                n: 12,
            },
        ];
        let e = heatmap_grid(&panels, &GridOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeMismatch);
        assert!(e.to_string().contains("panel 1 ('b')"), "{e}");
        let short = [Panel {
            title: "c".into(),
            values: &a[..99],
            n: 10,
        }];
        let e = heatmap_grid(&short, &GridOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeMismatch);
        assert_eq!(
            heatmap_grid(&[], &GridOptions::default())
                .unwrap_err()
                .kind(),
            ErrorKind::Empty
        );
        let opts = GridOptions {
            tick_labels: Some(vec!["x".into()]),
            ..Default::default()
        };
        let ok = [Panel {
            title: "a".into(),
            values: &a,
            n: 10,
        }];
        let e = heatmap_grid(&ok, &opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LabelCountMismatch);
    }
}
