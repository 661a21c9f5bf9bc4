//! Marker shapes of the line plot's points: a different shape per series,
//! so that curves stay apart in greyscale print.

use crate::canvas::{Canvas, Rgb};

/// Marker shapes, cycled through by series index.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Marker {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
}

pub(crate) const MARKERS: [Marker; 5] = [
    Marker::Circle,
    Marker::Square,
    Marker::TriangleUp,
    Marker::Diamond,
    Marker::TriangleDown,
];

pub(crate) fn draw_marker(canvas: &mut Canvas, m: Marker, x: f64, y: f64, r: f64, color: Rgb) {
    match m {
        Marker::Circle => canvas.fill_circle(x, y, r, color),
        Marker::Square => {
            let h = r * 0.88;
            canvas.fill_polygon(
                &[
                    (x - h, y - h),
                    (x + h, y - h),
                    (x + h, y + h),
                    (x - h, y + h),
                ],
                color,
                1.0,
            )
        }
        Marker::TriangleUp => {
            let s = r * 1.2;
            canvas.fill_polygon(
                &[(x, y - s), (x + s, y + s * 0.8), (x - s, y + s * 0.8)],
                color,
                1.0,
            )
        }
        Marker::TriangleDown => {
            let s = r * 1.2;
            canvas.fill_polygon(
                &[(x, y + s), (x - s, y - s * 0.8), (x + s, y - s * 0.8)],
                color,
                1.0,
            )
        }
        Marker::Diamond => {
            let s = r * 1.25;
            canvas.fill_polygon(
                &[(x, y - s), (x + s, y), (x, y + s), (x - s, y)],
                color,
                1.0,
            )
        }
    }
}
