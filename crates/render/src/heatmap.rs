//! One N x N matrix over images: a layer's representational similarity
//! matrix as `layer_corr` returns it.
//!
//! N is the number of images, from a dozen to a few thousand, so this
//! figure must stay readable at both ends: small matrices get large square
//! cells and their image labels on both axes; matrices of more than 60 rows
//! drop the labels (they could not be read) and matrices larger than the
//! pixel area are averaged down to it, so block structure — what a reader
//! looks for — survives. The matrix is drawn in the order given; reorder
//! rows and columns with `corr_order` before rendering to show clusters.

use crate::colormap::{ColorScale, Colormap};
use crate::error::{check_labels, check_square, RenderResult};
use crate::parts::MatrixFigure;

/// Matrices with more rows than this are drawn without tick labels.
pub const MAX_LABELLED_N: usize = 60;

/// Side of the matrix area, in pixels, that automatic cell sizes aim for.
pub const TARGET_MATRIX_PX: u32 = 800;

/// Options of [`matrix_heatmap`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapOptions {
    /// Figure title; empty for none. Default: empty.
    pub title: String,
    /// Values mapped to the ends of the colour bar; values outside are
    /// clamped. Default `(-1.0, 1.0)`.
    pub value_range: (f64, f64),
    /// Colour map; `None` picks by range ([`Colormap::for_range`]):
    /// diverging blue–white–red for ranges symmetric around zero such as
    /// the default, viridis otherwise. Default `None`.
    pub colormap: Option<Colormap>,
    /// One label per row (e.g. image file names), drawn on both axes when
    /// `n <=` [`MAX_LABELLED_N`]. Its length must equal `n` either way.
    /// Default `None`.
    pub tick_labels: Option<Vec<String>>,
    /// Title of both axes (e.g. `"image"`); empty for none. Default empty.
    pub axis_label: String,
    /// Title of the colour bar (e.g. `"Pearson r"`); empty for none.
    /// Default empty.
    pub colorbar_label: String,
    /// Pixels per cell. `None` (default) picks the largest whole number
    /// that keeps the matrix within [`TARGET_MATRIX_PX`]; a matrix with more
    /// rows than that is averaged down to exactly [`TARGET_MATRIX_PX`].
    /// `Some(k)` draws every cell as a k x k square (e.g. `Some(1)` for one
    /// pixel per cell at any `n`).
    pub cell_px: Option<u32>,
}

impl Default for HeatmapOptions {
    fn default() -> Self {
        HeatmapOptions {
            title: String::new(),
            value_range: (-1.0, 1.0),
            colormap: None,
            tick_labels: None,
            axis_label: String::new(),
            colorbar_label: String::new(),
            cell_px: None,
        }
    }
}

/// Renders the row-major `n` x `n` matrix `values` as a PNG heatmap with
/// title, optional tick labels, a frame and a colour bar.
///
/// NaN cells are grey (and the colour bar then shows a NaN swatch). Fails
/// when `n == 0`, `values.len() != n * n`, the label count is not `n`, the
/// value range is not finite and increasing, or the image would exceed
/// [`crate::canvas::MAX_SIDE`] pixels.
pub fn matrix_heatmap(values: &[f32], n: usize, opts: &HeatmapOptions) -> RenderResult<Vec<u8>> {
    const F: &str = "matrix_heatmap";
    check_square(F, values.len(), n)?;
    check_labels(F, opts.tick_labels.as_deref(), n)?;
    let scale = ColorScale::checked(F, opts.value_range, opts.colormap)?;
    let labels = opts.tick_labels.as_deref().filter(|_| n <= MAX_LABELLED_N);
    MatrixFigure {
        function: F,
        values,
        n,
        labels,
        title: &opts.title,
        axis_label: &opts.axis_label,
        colorbar_label: &opts.colorbar_label,
        scale,
        cell_px: opts.cell_px,
        target_px: TARGET_MATRIX_PX,
        min_cell: 1,
        annotate: None,
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colormap::NAN_COLOR;
    use crate::error::ErrorKind;
    use image::RgbImage;

    fn decode(png: &[u8]) -> RgbImage {
        image::load_from_memory(png).expect("valid PNG").to_rgb8()
    }

    /// Centre of cell (i, j) of an auto-sized matrix drawn without title or
    /// labels: the matrix then starts at (PAD, PAD).
    fn cell_centre(n: usize, i: usize, j: usize) -> (u32, u32) {
        let pad = crate::parts::PAD;
        let cell = TARGET_MATRIX_PX / n as u32;
        (
            pad + j as u32 * cell + cell / 2,
            pad + i as u32 * cell + cell / 2,
        )
    }

    #[test]
    fn cells_have_the_colormap_colour() {
        let n = 3;
        let v = [1.0, -1.0, 0.0, f32::NAN, 0.5, -0.5, 0.0, 0.0, 1.0];
        let opts = HeatmapOptions::default();
        let img = decode(&matrix_heatmap(&v, n, &opts).unwrap());
        let scale = ColorScale::new((-1.0, 1.0), None).unwrap();
        let px = |i, j| {
            let (x, y) = cell_centre(n, i, j);
            img.get_pixel(x, y).0
        };
        let red = px(0, 0);
        assert_eq!(red, scale.color(1.0));
        assert!(red[0] > 90 && red[1] < 30, "+1 red-ish: {red:?}");
        let blue = px(0, 1);
        assert!(blue[2] > 90 && blue[0] < 30, "-1 blue-ish: {blue:?}");
        let white = px(0, 2);
        assert!(white.iter().all(|&c| c > 240), "0 white: {white:?}");
        assert_eq!(px(1, 0), NAN_COLOR);
        assert_eq!(px(1, 1), scale.color(0.5));
    }

    #[test]
    fn dimensions_follow_the_layout() {
        let n = 100;
        let v = vec![0.25f32; n * n];
        let png = matrix_heatmap(&v, n, &HeatmapOptions::default()).unwrap();
        let img = decode(&png);
        // 8 px per cell fills the 800 px target; the colour bar is to the right.
        assert!(
            img.width() > 800 + 2 * crate::parts::PAD + 60,
            "{}",
            img.width()
        );
        let below = crate::parts::colorbar_extra_below(false);
        assert_eq!(img.height(), 800 + 2 * crate::parts::PAD + below);
        // With one pixel per cell the matrix is exactly n pixels.
        let opts = HeatmapOptions {
            cell_px: Some(1),
            ..Default::default()
        };
        let small = decode(&matrix_heatmap(&v, n, &opts).unwrap());
        assert!(small.width() < img.width() && small.height() < img.height());
    }

    #[test]
    fn large_matrices_are_averaged_to_the_target() {
        let n = 2000;
        let v: Vec<f32> = (0..n * n)
            .map(|k| {
                if (k / n < n / 2) == (k % n < n / 2) {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let img = decode(&matrix_heatmap(&v, n, &HeatmapOptions::default()).unwrap());
        let pad = crate::parts::PAD;
        let below = crate::parts::colorbar_extra_below(false);
        assert_eq!(img.height(), TARGET_MATRIX_PX + 2 * pad + below);
        let scale = ColorScale::new((-1.0, 1.0), None).unwrap();
        assert_eq!(img.get_pixel(pad + 100, pad + 100).0, scale.color(1.0));
        assert_eq!(img.get_pixel(pad + 700, pad + 100).0, scale.color(-1.0));
    }

    #[test]
    fn bad_input_is_an_error() {
        let opts = HeatmapOptions::default();
        assert_eq!(
            matrix_heatmap(&[], 0, &opts).unwrap_err().kind(),
            ErrorKind::Empty
        );
        assert_eq!(
            matrix_heatmap(&[0.0; 5], 2, &opts).unwrap_err().kind(),
            ErrorKind::SizeMismatch
        );
        let opts = HeatmapOptions {
            tick_labels: Some(vec!["a".into(); 3]),
            ..Default::default()
        };
        let e = matrix_heatmap(&[0.0; 4], 2, &opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LabelCountMismatch);
        assert!(e.to_string().starts_with("matrix_heatmap: 3 labels"), "{e}");
        let opts = HeatmapOptions {
            value_range: (1.0, 1.0),
            ..Default::default()
        };
        let e = matrix_heatmap(&[0.0; 4], 2, &opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOption);
    }

    #[test]
    fn labels_widen_the_figure_only_for_small_n() {
        let n = 10;
        let v = vec![0.0f32; n * n];
        let labels: Vec<String> = (0..n).map(|i| format!("image_{i:03}.jpg")).collect();
        let plain = decode(&matrix_heatmap(&v, n, &HeatmapOptions::default()).unwrap());
        let opts = HeatmapOptions {
            tick_labels: Some(labels),
            title: "conv1".into(),
            ..Default::default()
        };
        let labelled = decode(&matrix_heatmap(&v, n, &opts).unwrap());
        assert!(labelled.width() > plain.width() + 50);
        assert!(labelled.height() > plain.height() + 50);
    }
}
