//! The L x L layer-similarity matrix with layer names on both axes.
//!
//! This is the figure of the whole analysis: how alike the similarity
//! structure of every pair of layers is (`layer_similarity`). L is small
//! (tens of layers), so every layer is named — rows on the left, columns
//! below, rotated — and for `L <= 30` each cell also carries its value with
//! two decimals, in black or white, whichever contrasts better with the
//! cell. Cells are made large enough for those numbers, so a 30 x 30 matrix
//! comes out somewhat larger than the usual 900 pixels.

use crate::colormap::{ColorScale, Colormap};
use crate::error::{check_labels, check_square, RenderResult};
use crate::parts::MatrixFigure;

/// Matrices up to this size have their values written in the cells.
pub const MAX_ANNOTATED_N: usize = 30;

/// Side of the matrix area, in pixels, that automatic cell sizes aim for.
pub const TARGET_MATRIX_PX: u32 = 900;

/// Options of [`labeled_matrix`].
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledMatrixOptions {
    /// Figure title; empty for none. Default empty.
    pub title: String,
    /// Values mapped to the ends of the colour bar. Default `(-1.0, 1.0)`;
    /// use `(0.0, 1.0)` for CKA.
    pub value_range: (f64, f64),
    /// Colour map; `None` (default) picks by range: diverging for ranges
    /// symmetric around zero, viridis otherwise.
    pub colormap: Option<Colormap>,
    /// Title of both axes (e.g. `"layer"`); empty for none. Default empty.
    pub axis_label: String,
    /// Title of the colour bar (e.g. `"RSA (Pearson r)"`). Default empty.
    pub colorbar_label: String,
    /// Write values in the cells when `n <=` [`MAX_ANNOTATED_N`].
    /// Default `true`.
    pub show_values: bool,
    /// Decimals of the written values. Default 2.
    pub decimals: usize,
    /// Pixels per cell; `None` (default) aims at [`TARGET_MATRIX_PX`] while
    /// keeping cells large enough for their labels and values.
    pub cell_px: Option<u32>,
}

impl Default for LabeledMatrixOptions {
    fn default() -> Self {
        LabeledMatrixOptions {
            title: String::new(),
            value_range: (-1.0, 1.0),
            colormap: None,
            axis_label: String::new(),
            colorbar_label: String::new(),
            show_values: true,
            decimals: 2,
            cell_px: None,
        }
    }
}

/// Renders the row-major `n` x `n` layer-similarity matrix `values` with
/// `labels[i]` naming row and column `i`.
///
/// Long names are shortened in the middle with `…`. When there are too
/// many layers for one label per row, every k-th layer is labelled. Fails
/// when `n == 0`, `values.len() != n * n`, `labels.len() != n`, the value
/// range is not finite and increasing, or the image would be too large.
pub fn labeled_matrix(
    values: &[f64],
    n: usize,
    labels: &[String],
    opts: &LabeledMatrixOptions,
) -> RenderResult<Vec<u8>> {
    const F: &str = "labeled_matrix";
    check_square(F, values.len(), n)?;
    check_labels(F, Some(labels), n)?;
    let scale = ColorScale::checked(F, opts.value_range, opts.colormap)?;
    let annotate = (opts.show_values && n <= MAX_ANNOTATED_N).then_some(opts.decimals.min(6));
    // Cells must hold a label per row and, when annotating, the widest
    // value: in size class 2 when that keeps the matrix within about
    // 1000 px (up to ~15 layers), else in class 1.
    let min_cell = match annotate {
        Some(d) => {
            let widest = format!("-0.{}", "0".repeat(d));
            let big = crate::font::text_width(&widest, 2) + crate::parts::VALUE_PAD_2;
            if n as u64 * u64::from(big) <= 1000 {
                big
            } else {
                crate::font::text_height(1).max(crate::font::text_width(&widest, 1) + 6)
            }
        }
        None if n <= 100 => 13,
        None => 1,
    };
    MatrixFigure {
        function: F,
        values,
        n,
        labels: Some(labels),
        title: &opts.title,
        axis_label: &opts.axis_label,
        colorbar_label: &opts.colorbar_label,
        scale,
        cell_px: opts.cell_px,
        target_px: TARGET_MATRIX_PX,
        min_cell,
        annotate,
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{INK, WHITE};
    use crate::error::ErrorKind;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("block{i}.project")).collect()
    }

    #[test]
    fn renders_with_values_and_expected_size() {
        let n = 12;
        let v: Vec<f64> = (0..n * n)
            .map(|k| 1.0 - ((k / n) as f64 - (k % n) as f64).abs() / n as f64)
            .collect();
        let png = labeled_matrix(&v, n, &names(n), &LabeledMatrixOptions::default()).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        // 75 px cells: the matrix alone is 900 px, plus labels and colour bar.
        assert!(img.width() > 900 && img.height() > 900);
        // The diagonal (1.00, dark red) carries white text: find cell (0, 0)
        // as the top-left-most dark red pixel and look for white inside it.
        let scale = ColorScale::new((-1.0, 1.0), None).unwrap();
        let dark_red = scale.color(1.0);
        let (x0, y0) = img
            .enumerate_pixels()
            .find(|(_, _, p)| p.0 == dark_red)
            .map(|(x, y, _)| (x, y))
            .expect("diagonal drawn");
        let cell = TARGET_MATRIX_PX / n as u32;
        // Every pixel of the cell is the cell colour, white, or an
        // antialiased blend of the two.
        let between = |p: [u8; 3]| {
            p.iter()
                .zip(dark_red.iter().zip(WHITE))
                .all(|(&v, (&a, b))| v >= a.min(b) && v <= a.max(b))
        };
        let mut white = 0;
        for y in y0..y0 + cell {
            for x in x0..x0 + cell {
                let p = img.get_pixel(x, y).0;
                assert!(between(p), "cell (0,0) has {p:?} at {x},{y}");
                white += usize::from(p.iter().all(|&c| c > 180));
            }
        }
        assert!(white > 50, "value text drawn in white: {white}");
        // Light cells get dark text.
        assert!(img.pixels().any(|p| p.0 == INK));
    }

    #[test]
    fn label_count_mismatch_is_an_error() {
        let e = labeled_matrix(&[1.0; 4], 2, &names(3), &Default::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LabelCountMismatch);
        let e = labeled_matrix(&[], 0, &[], &Default::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Empty);
    }

    #[test]
    fn many_layers_without_values() {
        let n = 150;
        let v = vec![0.5; n * n];
        let png = labeled_matrix(&v, n, &names(n), &Default::default()).unwrap();
        assert!(image::load_from_memory(&png).is_ok());
    }
}
