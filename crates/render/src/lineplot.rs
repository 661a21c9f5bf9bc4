//! Values against depth: one or more named series on shared axes.
//!
//! Per-layer summaries — the correlation of each layer's similarity matrix
//! with the input's or the output's, sparseness of activations, spread of
//! weights — are read as curves over the network's depth. The x axis is
//! usually the layer index, labelled with the layer names (vertical, so
//! that fifty names fit), and the figure compares a few series: two
//! checkpoints, two reference layers, two methods. Each series gets a
//! colour from matplotlib's `tab10` cycle and its own marker shape, so the
//! figure survives greyscale printing; the legend sits outside the plot
//! area so it never hides data. Non-finite points leave a gap in the line.
//!
//! A series may carry a band (e.g. a 95% interval): the area between its
//! low and high values, filled in the series' colour at [`BAND_OPACITY`]
//! under the line. Points whose low or high is not finite have no band; a
//! run of one such point becomes a short vertical bar.

use crate::canvas::{Canvas, Rgb, GRID, INK, WHITE};
use crate::error::{ErrorKind, RenderError, RenderResult};
use crate::font::{self, Ellipsis, HAlign, VAlign};
use crate::markers::{draw_marker, MARKERS};
use crate::parts::{
    check_side, fit_labels, label_plan, max_width, title_block, title_span, LABEL_SCALE, PAD,
    TICK_GAP, TICK_LEN, TITLE_SCALE,
};
use crate::ticks::{nice_step, padded, ticks_in, x_range};

/// Series colours: matplotlib's `tab10` cycle.
pub const PALETTE: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Slightly darker than [`GRID`]: the y = 0 reference line.
const ZERO_LINE: Rgb = [170, 170, 170];
/// Width of series lines in pixels.
const LINE_WIDTH: f64 = 2.5;
/// Opacity of a band over the white plot area.
pub const BAND_OPACITY: f64 = 0.22;

/// One named curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry; empty names are left out of the legend.
    pub name: String,
    /// x coordinates; `None` means `0, 1, 2, ...` (the layer index).
    pub x: Option<Vec<f64>>,
    /// y coordinates; NaN or infinite values break the line.
    pub y: Vec<f64>,
    /// Lower and upper ends of a band, one pair per point; a point whose
    /// low or high is not finite has no band.
    pub band: Option<(Vec<f64>, Vec<f64>)>,
}

impl Series {
    /// A series over the layer index `0..y.len()`.
    pub fn new(name: impl Into<String>, y: Vec<f64>) -> Series {
        Series {
            name: name.into(),
            x: None,
            y,
            band: None,
        }
    }

    /// The same series with a band from `low` to `high` at each point.
    pub fn with_band(mut self, low: Vec<f64>, high: Vec<f64>) -> Series {
        self.band = Some((low, high));
        self
    }

    /// x and the band's ends of the points that have one.
    fn band_points(&self) -> impl Iterator<Item = (usize, f64, f64, f64)> + '_ {
        self.band.iter().flat_map(move |(low, high)| {
            low.iter()
                .zip(high)
                .enumerate()
                .filter(|(_, (l, h))| l.is_finite() && h.is_finite())
                .map(move |(i, (&l, &h))| {
                    let x = self.x.as_ref().map_or(i as f64, |xs| xs[i]);
                    (i, x, l, h)
                })
        })
    }

    /// The same series at explicit x positions.
    pub fn with_x(mut self, x: Vec<f64>) -> Series {
        self.x = Some(x);
        self
    }

    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.y.iter().enumerate().map(move |(i, &y)| {
            let x = self.x.as_ref().map_or(i as f64, |xs| xs[i]);
            (x, y)
        })
    }
}

/// Options of [`line_plot`].
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlotOptions {
    /// Figure title; empty for none. Default empty.
    pub title: String,
    /// Title of the x axis (e.g. `"layer"`). Default empty.
    pub x_label: String,
    /// Title of the y axis (e.g. `"RSA with input (r)"`). Default empty.
    pub y_label: String,
    /// Names of the x positions `0, 1, 2, ...`, drawn vertically under the
    /// axis (every k-th when crowded); its length must equal the longest
    /// series'. `None` (default) draws numeric x ticks.
    pub x_tick_labels: Option<Vec<String>>,
    /// Fixed y range, e.g. `Some((-1.0, 1.0))` for correlations; points
    /// outside are clipped. `None` (default) fits the data with a margin.
    pub y_range: Option<(f64, f64)>,
    /// Draw a marker at each point (when points are at least 5 pixels
    /// apart). Default `true`.
    pub markers: bool,
    /// Width of the plot area (inside the axes) in pixels. Default 800.
    pub plot_width: u32,
    /// Height of the plot area in pixels. Default 450.
    pub plot_height: u32,
}

impl Default for LinePlotOptions {
    fn default() -> Self {
        LinePlotOptions {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_tick_labels: None,
            y_range: None,
            markers: true,
            plot_width: 800,
            plot_height: 450,
        }
    }
}

/// Checks a series' band: one low and one high per point, low <= high
/// wherever both are finite.
fn check_band(function: &str, s: &Series) -> RenderResult<()> {
    let Some((low, high)) = &s.band else {
        return Ok(());
    };
    if low.len() != s.y.len() || high.len() != s.y.len() {
        return Err(RenderError::new(
            ErrorKind::SizeMismatch,
            format!(
                "{function}: series '{}' has {} y values but {} low and {} high values",
                s.name,
                s.y.len(),
                low.len(),
                high.len()
            ),
        ));
    }
    match s.band_points().find(|(_, _, l, h)| l > h) {
        Some((i, _, l, h)) => Err(RenderError::new(
            ErrorKind::InvalidBand,
            format!(
                "{function}: series '{}' at point {i}: low {l} is above high {h}",
                s.name
            ),
        )),
        None => Ok(()),
    }
}

/// Runs of consecutive points that have a band and a finite x, as
/// `(x, low, high)`.
fn band_runs(s: &Series) -> Vec<Vec<(f64, f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64, f64)>> = Vec::new();
    let mut last: Option<usize> = None;
    for (i, x, l, h) in s.band_points().filter(|p| p.1.is_finite()) {
        match runs.last_mut() {
            Some(run) if last == Some(i.wrapping_sub(1)) => run.push((x, l, h)),
            _ => runs.push(vec![(x, l, h)]),
        }
        last = Some(i);
    }
    runs
}

/// Renders `series` as a line plot with axes, ticks, grid, legend and
/// optional layer-name ticks.
///
/// Fails when there are no series or no finite point at all, a series'
/// `x` and `y` differ in length, `x_tick_labels` does not have one label
/// per position of the longest series, `y_range` is not finite and
/// increasing, or the plot area is empty or too large.
pub fn line_plot(series: &[Series], opts: &LinePlotOptions) -> RenderResult<Vec<u8>> {
    const F: &str = "line_plot";
    if series.is_empty() {
        return Err(RenderError::new(
            ErrorKind::Empty,
            format!("{F}: no series to draw"),
        ));
    }
    for s in series {
        if let Some(x) = &s.x {
            if x.len() != s.y.len() {
                return Err(RenderError::new(
                    ErrorKind::SizeMismatch,
                    format!(
                        "{F}: series '{}' has {} x values and {} y values",
                        s.name,
                        x.len(),
                        s.y.len()
                    ),
                ));
            }
        }
    }
    for s in series {
        check_band(F, s)?;
    }
    let longest = series.iter().map(|s| s.y.len()).max().unwrap_or(0);
    if let Some(labels) = &opts.x_tick_labels {
        if labels.len() != longest {
            return Err(RenderError::new(
                ErrorKind::LabelCountMismatch,
                format!(
                    "{F}: {} x tick labels for series of {longest} points",
                    labels.len()
                ),
            ));
        }
    }
    if opts.plot_width < 50 || opts.plot_height < 50 {
        return Err(RenderError::new(
            ErrorKind::InvalidOption,
            format!(
                "{F}: plot area {} x {} is smaller than 50 x 50",
                opts.plot_width, opts.plot_height
            ),
        ));
    }
    let finite: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if finite.is_empty() {
        return Err(RenderError::new(
            ErrorKind::Empty,
            format!("{F}: no finite points to draw"),
        ));
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
        finite.iter().map(pick).fold(init, f)
    };
    let (x_min, x_max) = (
        fold(f64::min, f64::INFINITY, |p| p.0),
        fold(f64::max, f64::NEG_INFINITY, |p| p.0),
    );
    let (mut y_min, mut y_max) = (
        fold(f64::min, f64::INFINITY, |p| p.1),
        fold(f64::max, f64::NEG_INFINITY, |p| p.1),
    );
    for (_, _, l, h) in series.iter().flat_map(Series::band_points) {
        (y_min, y_max) = (y_min.min(l), y_max.max(h));
    }

    let (y_lo, y_hi) = match opts.y_range {
        Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => (lo, hi),
        Some((lo, hi)) => {
            return Err(RenderError::new(
                ErrorKind::InvalidOption,
                format!("{F}: y_range must be finite and increasing (got ({lo}, {hi}))"),
            ))
        }
        None => padded(y_min, y_max, 0.06),
    };
    let (x_lo, x_hi) = x_range(opts.x_tick_labels.as_ref().map(Vec::len), x_min, x_max);
    let (pw, ph) = (opts.plot_width, opts.plot_height);
    let y_ticks = ticks_in(y_lo, y_hi, nice_step(y_hi - y_lo, f64::from(ph) / 80.0));
    let integer_x = finite.iter().all(|p| p.0.fract() == 0.0);
    let mut x_step = nice_step(x_hi - x_lo, f64::from(pw) / 110.0);
    if integer_x && x_step < 1.0 {
        x_step = 1.0;
    }
    let x_ticks = ticks_in(x_lo, x_hi, x_step);

    // x tick labels: one per position if there is room, else every k-th.
    let pitch = f64::from(pw) / (x_hi - x_lo);
    let (lscale, stride) = label_plan(pitch);
    let lscale = lscale.min(LABEL_SCALE);
    let names = opts.x_tick_labels.as_ref().map(|l| fit_labels(l, lscale));
    let shown_names: Vec<String> = names.iter().flatten().step_by(stride).cloned().collect();

    // Layout.
    let y_tick_labels: Vec<String> = y_ticks.iter().map(|t| t.1.clone()).collect();
    let y_tick_w = max_width(&y_tick_labels, LABEL_SCALE);
    let axis_title_band = font::text_height(LABEL_SCALE) + 14;
    let y_title_band = if opts.y_label.is_empty() {
        0
    } else {
        axis_title_band
    };
    let x_title_band = if opts.x_label.is_empty() {
        0
    } else {
        axis_title_band
    };
    let x_tick_band = TICK_LEN
        + TICK_GAP
        + if names.is_some() {
            max_width(&shown_names, lscale)
        } else {
            font::text_height(LABEL_SCALE)
        };
    let legend: Vec<(usize, String)> = series
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.name.is_empty())
        .map(|(i, s)| (i, font::truncate(&s.name, 300, LABEL_SCALE, Ellipsis::End)))
        .collect();
    const SWATCH: u32 = 36;
    let legend_w = if legend.is_empty() {
        0
    } else {
        24 + SWATCH
            + 10
            + legend
                .iter()
                .map(|(_, n)| font::text_width(n, LABEL_SCALE))
                .max()
                .unwrap_or(0)
    };
    let left = PAD + y_title_band + y_tick_w + TICK_LEN + TICK_GAP;
    let top = PAD + title_block(&opts.title) + font::text_height(LABEL_SCALE) / 2;
    // The last numeric x tick label may stick out right of the plot area.
    let right = legend_w.max(
        font::text_width(
            &x_ticks.last().map(|t| t.1.clone()).unwrap_or_default(),
            LABEL_SCALE,
        ) / 2,
    ) + PAD;
    let width = u64::from(left) + u64::from(pw) + u64::from(right);
    let (title_left, title_w) = title_span(&opts.title, i64::from(left) + i64::from(pw) / 2);
    let width = check_side(F, "the image width", width.max(u64::from(title_w)))?;
    let legend_h = legend.len() as u64 * 26;
    let height = u64::from(top)
        + u64::from(ph).max(legend_h)
        + u64::from(1 + x_tick_band + x_title_band + PAD);
    let height = check_side(F, "the image height", height)?;

    let mut canvas = Canvas::new(width, height, WHITE)?;
    let (ox, oy) = (i64::from(left), i64::from(top));
    let to_px = |x: f64| (x - x_lo) / (x_hi - x_lo) * f64::from(pw);
    let to_py = |y: f64| (1.0 - (y - y_lo) / (y_hi - y_lo)) * f64::from(ph);

    // Plot area on its own canvas, so that everything inside is clipped to it.
    let mut plot = Canvas::new(pw, ph, WHITE)?;
    for (v, _) in &y_ticks {
        let py = to_py(*v).round() as i64;
        let color = if *v == 0.0 { ZERO_LINE } else { GRID };
        plot.hline(0, py.min(i64::from(ph) - 1), pw, color);
    }
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let bar = (pitch * 0.3).clamp(3.0, 8.0);
        for run in band_runs(s) {
            let mut outline: Vec<(f64, f64)> =
                run.iter().map(|p| (to_px(p.0), to_py(p.2))).collect();
            outline.extend(run.iter().rev().map(|p| (to_px(p.0), to_py(p.1))));
            if run.len() == 1 {
                let (x, lo, hi) = (outline[0].0, outline[1].1, outline[0].1);
                outline = vec![(x - bar, hi), (x + bar, hi), (x + bar, lo), (x - bar, lo)];
            }
            plot.fill_polygon(&outline, color, BAND_OPACITY);
        }
    }
    let marker_r = (pitch * 0.3).clamp(2.5, 4.5);
    let draw_markers = opts.markers && pitch >= 5.0;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut prev: Option<(f64, f64)> = None;
        for (x, y) in s.points() {
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            let p = (to_px(x), to_py(y));
            if let Some(q) = prev {
                plot.line(q.0, q.1, p.0, p.1, LINE_WIDTH, color);
            }
            prev = Some(p);
        }
        if draw_markers {
            let m = MARKERS[i % MARKERS.len()];
            for (x, y) in s.points().filter(|(x, y)| x.is_finite() && y.is_finite()) {
                let (px, py) = (to_px(x), to_py(y));
                draw_marker(&mut plot, m, px, py, marker_r + 1.3, WHITE);
                draw_marker(&mut plot, m, px, py, marker_r, color);
            }
        }
    }
    canvas.blit(&plot, ox, oy);
    canvas.frame(ox, oy, pw, ph, 1, INK);

    // y ticks.
    for (v, text) in &y_ticks {
        let py = oy + (to_py(*v).round() as i64).min(i64::from(ph) - 1);
        canvas.hline(ox - 1 - i64::from(TICK_LEN), py, TICK_LEN, INK);
        let tx = ox - 1 - i64::from(TICK_LEN + TICK_GAP);
        font::draw_text_aligned(
            &mut canvas,
            tx,
            py,
            text,
            LABEL_SCALE,
            INK,
            HAlign::Right,
            VAlign::Middle,
        );
    }
    // x ticks.
    let axis_y = oy + i64::from(ph);
    match &names {
        Some(names) => {
            for (i, name) in names.iter().enumerate().step_by(stride) {
                let px = ox + (to_px(i as f64).round() as i64).min(i64::from(pw) - 1);
                canvas.vline(px, axis_y + 1, TICK_LEN, INK);
                let top = axis_y + 1 + i64::from(TICK_LEN + TICK_GAP);
                let left = px - font::cap_centre(lscale).round() as i64;
                font::draw_text_vertical(&mut canvas, left, top, name, lscale, INK);
            }
        }
        None => {
            for (v, text) in &x_ticks {
                let px = ox + (to_px(*v).round() as i64).min(i64::from(pw) - 1);
                canvas.vline(px, axis_y + 1, TICK_LEN, INK);
                let ty = axis_y + 1 + i64::from(TICK_LEN + TICK_GAP);
                font::draw_text_aligned(
                    &mut canvas,
                    px,
                    ty,
                    text,
                    LABEL_SCALE,
                    INK,
                    HAlign::Center,
                    VAlign::Top,
                );
            }
        }
    }
    // Axis titles.
    if !opts.x_label.is_empty() {
        let text = font::truncate(&opts.x_label, pw, LABEL_SCALE, Ellipsis::End);
        let ty = axis_y + 1 + i64::from(x_tick_band) + 12;
        font::draw_text_aligned(
            &mut canvas,
            ox + i64::from(pw) / 2,
            ty,
            &text,
            LABEL_SCALE,
            INK,
            HAlign::Center,
            VAlign::Top,
        );
    }
    if !opts.y_label.is_empty() {
        let text = font::truncate(&opts.y_label, ph, LABEL_SCALE, Ellipsis::End);
        let tw = i64::from(font::text_width(&text, LABEL_SCALE));
        font::draw_text_vertical(
            &mut canvas,
            i64::from(PAD),
            oy + (i64::from(ph) - tw) / 2,
            &text,
            LABEL_SCALE,
            INK,
        );
    }
    // Legend, outside the plot area at its top right.
    let lx = ox + i64::from(pw) + 24;
    for (row, (i, name)) in legend.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let cy = oy + 10 + row as i64 * 26;
        let (x0, x1) = (lx as f64, (lx + i64::from(SWATCH)) as f64);
        if series[*i].band_points().next().is_some() {
            let (top, bottom) = (cy as f64 - 7.0, cy as f64 + 8.0);
            let swatch = [(x0, top), (x1, top), (x1, bottom), (x0, bottom)];
            canvas.fill_polygon(&swatch, color, BAND_OPACITY);
        }
        canvas.line(x0, cy as f64 + 0.5, x1, cy as f64 + 0.5, LINE_WIDTH, color);
        if opts.markers {
            let m = MARKERS[i % MARKERS.len()];
            let mx = (x0 + x1) / 2.0;
            draw_marker(&mut canvas, m, mx, cy as f64 + 0.5, 5.8, WHITE);
            draw_marker(&mut canvas, m, mx, cy as f64 + 0.5, 4.5, color);
        }
        let tx = lx + i64::from(SWATCH) + 10;
        font::draw_text_aligned(
            &mut canvas,
            tx,
            cy,
            name,
            LABEL_SCALE,
            INK,
            HAlign::Left,
            VAlign::Middle,
        );
    }
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

    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory(png).unwrap().to_rgb8()
    }

    #[test]
    fn two_series_with_names_render() {
        let a = Series::new("input", vec![1.0, 0.8, 0.6, f64::NAN, 0.3]);
        let b = Series::new("output", vec![0.1, 0.2, 0.4, 0.7, 1.0]);
        let names: Vec<String> = (0..5).map(|i| format!("block{i}")).collect();
        let opts = LinePlotOptions {
            title: "RSA".into(),
            x_tick_labels: Some(names),
            y_label: "r".into(),
            ..Default::default()
        };
        let img = decode(&line_plot(&[a, b], &opts).unwrap());
        assert!(img.width() > 800 && img.height() > 450);
        // Both series' colours appear.
        for c in &PALETTE[..2] {
            assert!(img.pixels().any(|p| &p.0 == c), "colour {c:?} missing");
        }
    }

    #[test]
    fn errors() {
        let opts = LinePlotOptions::default();
        assert_eq!(line_plot(&[], &opts).unwrap_err().kind(), ErrorKind::Empty);
        let nan = Series::new("a", vec![f64::NAN]);
        assert_eq!(
            line_plot(&[nan], &opts).unwrap_err().kind(),
            ErrorKind::Empty
        );
        let bad = Series::new("a", vec![1.0, 2.0]).with_x(vec![0.0]);
        assert_eq!(
            line_plot(&[bad], &opts).unwrap_err().kind(),
            ErrorKind::SizeMismatch
        );
        let opts = LinePlotOptions {
            x_tick_labels: Some(vec!["a".into()]),
            ..Default::default()
        };
        let s = Series::new("a", vec![1.0, 2.0]);
        let e = line_plot(std::slice::from_ref(&s), &opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LabelCountMismatch);
        let opts = LinePlotOptions {
            y_range: Some((1.0, 0.0)),
            ..Default::default()
        };
        assert_eq!(
            line_plot(&[s], &opts).unwrap_err().kind(),
            ErrorKind::InvalidOption
        );
    }

    #[test]
    fn band_is_drawn_translucent_and_checked() {
        let nan = f64::NAN;
        let s = Series::new("to input", vec![0.9, 0.6, 0.5, 0.3])
            .with_band(vec![0.8, 0.4, nan, 0.2], vec![1.0, 0.7, nan, 0.5]);
        let img =
            decode(&line_plot(std::slice::from_ref(&s), &LinePlotOptions::default()).unwrap());
        let c = PALETTE[0];
        let band = c.map(|v| (255.0 + (f64::from(v) - 255.0) * BAND_OPACITY).round() as u8);
        let near = |p: [u8; 3]| p.iter().zip(band).all(|(a, b)| a.abs_diff(b) <= 2);
        let count = img.pixels().filter(|p| near(p.0)).count();
        assert!(count > 2000, "{count} band pixels");

        let bad = s
            .clone()
            .with_band(vec![0.8, 0.9, 0.1, 0.1], vec![1.0, 0.7, 0.2, 0.2]);
        let e = line_plot(&[bad], &LinePlotOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidBand);
        assert!(
            e.to_string().contains("point 1: low 0.9 is above high 0.7"),
            "{e}"
        );
        let short = s.with_band(vec![0.1], vec![0.2]);
        let e = line_plot(&[short], &LinePlotOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeMismatch);
    }

    #[test]
    fn band_runs_split_at_missing_points() {
        let nan = f64::NAN;
        let s = Series::new("", vec![0.0; 5]).with_band(
            vec![0.0, 0.0, nan, 0.0, 0.0],
            vec![1.0, 1.0, 1.0, 1.0, f64::INFINITY],
        );
        let runs = band_runs(&s);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].len(), runs[1].len()), (2, 1));
        assert_eq!(runs[1][0].0, 3.0);
    }

    #[test]
    fn single_point_and_fixed_range() {
        let s = Series::new("", vec![0.5]);
        let opts = LinePlotOptions {
            y_range: Some((-1.0, 1.0)),
            ..Default::default()
        };
        assert!(line_plot(&[s], &opts).is_ok());
    }
}
