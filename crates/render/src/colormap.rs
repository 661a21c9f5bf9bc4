//! Mapping values to colours.
//!
//! Two maps cover layercorr's matrices. Correlations and centred kernels
//! live in a range symmetric around zero, where the sign matters as much as
//! the size: they get a *diverging* blue–white–red map (matplotlib's
//! `RdBu_r`, i.e. ColorBrewer RdBu reversed), so zero is near-white and
//! `+1`/`-1` are dark red/dark blue. Distances, CKA and any other one-sided
//! range get a *sequential*, perceptually uniform map (viridis), dark for
//! small and yellow for large values. Both are tables of anchor colours
//! interpolated linearly, exactly as matplotlib builds them.
//!
//! NaN (e.g. the correlation of a constant activation vector) is drawn in
//! [`NAN_COLOR`], a mid grey that neither map produces; `±inf` is clamped
//! to the ends of the scale.

use crate::canvas::Rgb;
use crate::error::{ErrorKind, RenderError, RenderResult};

/// Colour of NaN cells: a mid grey, distinct from the near-white centre of
/// the diverging map and from every viridis colour.
pub const NAN_COLOR: Rgb = [150, 150, 150];

/// ColorBrewer RdBu (11 classes) reversed: blue (low) to red (high).
const RDBU_R: [Rgb; 11] = [
    [5, 48, 97],
    [33, 102, 172],
    [67, 147, 195],
    [146, 197, 222],
    [209, 229, 240],
    [247, 247, 247],
    [253, 219, 199],
    [244, 165, 130],
    [214, 96, 77],
    [178, 24, 43],
    [103, 0, 31],
];

/// Viridis sampled at 11 evenly spaced points.
const VIRIDIS: [Rgb; 11] = [
    [68, 1, 84],
    [72, 36, 117],
    [65, 68, 135],
    [53, 96, 141],
    [42, 120, 142],
    [33, 145, 140],
    [34, 168, 132],
    [68, 191, 112],
    [122, 209, 81],
    [189, 223, 38],
    [253, 231, 37],
];

/// A colour map over the unit interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colormap {
    /// Blue–white–red (`RdBu_r`), for signed values such as correlations.
    Diverging,
    /// Viridis, for one-sided values such as distances.
    Sequential,
}

impl Colormap {
    /// The colour at `t` in `[0, 1]` (clamped); NaN gives [`NAN_COLOR`].
    pub fn sample(self, t: f64) -> Rgb {
        if t.is_nan() {
            return NAN_COLOR;
        }
        let table: &[Rgb; 11] = match self {
            Colormap::Diverging => &RDBU_R,
            Colormap::Sequential => &VIRIDIS,
        };
        let pos = t.clamp(0.0, 1.0) * (table.len() - 1) as f64;
        let i = (pos.floor() as usize).min(table.len() - 2);
        let f = pos - i as f64;
        let (a, b) = (table[i], table[i + 1]);
        let mix =
            |k: usize| (f64::from(a[k]) + (f64::from(b[k]) - f64::from(a[k])) * f).round() as u8;
        [mix(0), mix(1), mix(2)]
    }

    /// The map layercorr uses for a value range when none is asked for:
    /// diverging for a range symmetric around zero (the default `(-1, 1)`
    /// of correlations), sequential for anything else.
    pub fn for_range(range: (f64, f64)) -> Colormap {
        let (lo, hi) = range;
        let symmetric = lo < 0.0 && hi > 0.0 && (lo + hi).abs() <= 1e-9 * hi.max(-lo);
        if symmetric {
            Colormap::Diverging
        } else {
            Colormap::Sequential
        }
    }
}

/// A colormap stretched over a value range: what a colour bar shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorScale {
    colormap: Colormap,
    min: f64,
    max: f64,
}

impl ColorScale {
    /// A scale from `range.0` to `range.1` with `colormap`, or the map
    /// [`Colormap::for_range`] picks when `None`.
    ///
    /// Fails unless both ends are finite and `range.0 < range.1`.
    pub fn new(range: (f64, f64), colormap: Option<Colormap>) -> RenderResult<ColorScale> {
        Self::checked("color_scale", range, colormap)
    }

    pub(crate) fn checked(
        function: &str,
        range: (f64, f64),
        colormap: Option<Colormap>,
    ) -> RenderResult<ColorScale> {
        let (min, max) = range;
        if !(min.is_finite() && max.is_finite() && min < max) {
            return Err(RenderError::new(
                ErrorKind::InvalidOption,
                format!(
                    "{function}: value_range must be finite and increasing (got ({min}, {max}))"
                ),
            ));
        }
        Ok(ColorScale {
            colormap: colormap.unwrap_or_else(|| Colormap::for_range(range)),
            min,
            max,
        })
    }

    /// The colormap in use.
    pub fn colormap(&self) -> Colormap {
        self.colormap
    }

    /// The value range `(min, max)`.
    pub fn range(&self) -> (f64, f64) {
        (self.min, self.max)
    }

    /// The colour of value `v`: clamped to the range, NaN grey.
    pub fn color(&self, v: f64) -> Rgb {
        if v.is_nan() {
            return NAN_COLOR;
        }
        self.colormap.sample((v - self.min) / (self.max - self.min))
    }

    /// The colour-bar ticks: min, the quarter points, mid and max, each with
    /// its label. All labels use the same number of decimals, the fewest
    /// that show every tick exactly (at most six).
    pub fn ticks(&self) -> Vec<(f64, String)> {
        let values: Vec<f64> = (0..5)
            .map(|i| self.min + (self.max - self.min) * f64::from(i) / 4.0)
            .collect();
        let labels = format_ticks(&values);
        values.into_iter().zip(labels).collect()
    }
}

/// Formats `v` with `decimals` digits, never as `-0.0`.
pub(crate) fn format_fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// Formats tick values with one shared number of decimals: the fewest (up
/// to six) that represent every value to within a millionth of its spacing.
pub(crate) fn format_ticks(values: &[f64]) -> Vec<String> {
    let spread = values
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    let decimals = (0..=6)
        .find(|&d| {
            let f = 10f64.powi(d);
            values
                .iter()
                .all(|v| ((v * f).round() / f - v).abs() <= 1e-9 * spread.max(1.0))
        })
        .unwrap_or(6) as usize;
    values.iter().map(|&v| format_fixed(v, decimals)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_ends_and_centre() {
        let s = ColorScale::new((-1.0, 1.0), None).unwrap();
        assert_eq!(s.colormap(), Colormap::Diverging);
        let [r, g, b] = s.color(1.0);
        assert!(r > 90 && g < 30 && b < 40, "+1 should be red");
        let [r, g, b] = s.color(-1.0);
        assert!(b > 90 && r < 30, "-1 should be blue: {r} {g} {b}");
        let [r, g, b] = s.color(0.0);
        assert!(r > 240 && g > 240 && b > 240, "0 should be white");
        assert_eq!(s.color(f64::NAN), NAN_COLOR);
        assert_eq!(s.color(f64::INFINITY), s.color(1.0));
        assert_eq!(s.color(-7.0), s.color(-1.0));
    }

    #[test]
    fn auto_map_choice() {
        assert_eq!(Colormap::for_range((-1.0, 1.0)), Colormap::Diverging);
        assert_eq!(Colormap::for_range((-0.3, 0.3)), Colormap::Diverging);
        assert_eq!(Colormap::for_range((0.0, 1.0)), Colormap::Sequential);
        assert_eq!(Colormap::for_range((-1.0, 2.0)), Colormap::Sequential);
        let s = ColorScale::new((0.0, 10.0), None).unwrap();
        assert_eq!(s.color(0.0), VIRIDIS[0]);
        assert_eq!(s.color(10.0), VIRIDIS[10]);
    }

    #[test]
    fn bad_ranges_are_errors() {
        for r in [
            (1.0, -1.0),
            (0.0, 0.0),
            (f64::NAN, 1.0),
            (0.0, f64::INFINITY),
        ] {
            let e = ColorScale::new(r, None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidOption);
        }
    }

    #[test]
    fn tick_labels() {
        let s = ColorScale::new((-1.0, 1.0), None).unwrap();
        let labels: Vec<String> = s.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["-1.0", "-0.5", "0.0", "0.5", "1.0"]);
        let s = ColorScale::new((0.0, 2.0), None).unwrap();
        let labels: Vec<String> = s.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0.0", "0.5", "1.0", "1.5", "2.0"]);
        let s = ColorScale::new((0.0, 100.0), None).unwrap();
        let labels: Vec<String> = s.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0", "25", "50", "75", "100"]);
        assert_eq!(format_fixed(-0.0001, 2), "0.00");
    }
}
