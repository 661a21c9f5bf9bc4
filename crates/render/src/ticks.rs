//! Axis scaling of the line plot: round tick steps and padded ranges.

use crate::colormap::format_fixed;

/// Round tick step near `span / count`: 1, 2 or 5 times a power of ten.
pub(crate) fn nice_step(span: f64, count: f64) -> f64 {
    let raw = (span / count).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let f = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    f * mag
}

/// Multiples of `step` within `[lo, hi]`, with their labels.
pub(crate) fn ticks_in(lo: f64, hi: f64, step: f64) -> Vec<(f64, String)> {
    let decimals = (-step.log10()).ceil().max(0.0) as usize;
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            (v, format_fixed(v, decimals))
        })
        .collect()
}

/// The data range padded by `margin` of its span on both sides; a single
/// value gets a unit-wide range around it.
pub(crate) fn padded(lo: f64, hi: f64, margin: f64) -> (f64, f64) {
    if hi > lo {
        let pad = (hi - lo) * margin;
        (lo - pad, hi + pad)
    } else {
        let pad = (lo.abs() * 0.1).max(0.5);
        (lo - pad, hi + pad)
    }
}

/// The x range: half a position beyond the first and last label when the
/// positions are named, else the data range with a small margin.
pub(crate) fn x_range(labels: Option<usize>, x_min: f64, x_max: f64) -> (f64, f64) {
    match labels {
        Some(count) => (
            (x_min - 0.5).min(-0.5),
            (x_max + 0.5).max(count as f64 - 0.5),
        ),
        None => padded(x_min, x_max, 0.03),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(2.0, 5.0), 0.5);
        assert_eq!(nice_step(100.0, 4.0), 20.0);
        let t: Vec<String> = ticks_in(-1.06, 1.06, 0.5)
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(t, ["-1.0", "-0.5", "0.0", "0.5", "1.0"]);
        assert_eq!(padded(2.0, 2.0, 0.05), (1.5, 2.5));
        assert_eq!(x_range(Some(17), 0.0, 16.0), (-0.5, 16.5));
        assert_eq!(x_range(None, 0.0, 100.0), (-3.0, 103.0));
    }
}
