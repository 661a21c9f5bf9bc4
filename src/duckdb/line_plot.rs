//! `line_plot(series, x, y [, title])` and `line_plot(series, x, y, low,
//! high [, title])`: an aggregate that draws y against x (e.g. similarity
//! to the input against layer depth) as a PNG (BLOB), one line per series.
//! x values are category names (layer names) placed in first-seen order,
//! so feed rows with `ORDER BY position`. With `low` and `high` each series
//! gets a translucent band between them (e.g. a 95% interval); a NULL low
//! or high leaves that point without band, while a NaN or infinite one, or
//! low above high, is an error naming the series and x.
//!
//! ```sql
//! SELECT write_png('out/curve.png', line_plot('to input', layer, r, 'Similarity to input' ORDER BY position)) FROM curve;
//! SELECT write_png('out/ci.png', line_plot('to input', layer, ci.estimate, ci.ci_low, ci.ci_high ORDER BY position)) FROM boot;
//! ```

use layercorr_render::{line_plot, LinePlotOptions, Series};

use super::capi::{Aggregate, Chunk, LogicalType, Output, States, Values};
use super::error::{Error, Result};
use super::picture::optional_text;

/// The `line_plot` aggregate.
pub struct LinePlot;

/// One row: series, x, y (NaN for NULL) and the band's ends (NaN for NULL).
struct Point {
    series: String,
    x: String,
    y: f64,
    band: (f64, f64),
}

/// Points in arrival order, and the title from the first row that has one.
#[derive(Default)]
pub struct PlotState {
    points: Vec<Point>,
    title: Option<String>,
    banded: bool,
}

/// The band's end in `values` at `row`: NaN for NULL, an error for a
/// value that is not finite.
fn band_end(values: &Values<f64>, row: usize, what: &str, series: &str, x: &str) -> Result<f64> {
    match values.get(row) {
        None => Ok(f64::NAN),
        Some(v) if v.is_finite() => Ok(v),
        Some(v) => Err(Error::invalid(format!(
            "{what} is {v} for series '{series}' at x '{x}' (use NULL for no band there)"
        ))),
    }
}

impl Aggregate for LinePlot {
    type State = PlotState;
    const NAME: &'static str = "line_plot";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        let base = || {
            vec![
                LogicalType::varchar(),
                LogicalType::varchar(),
                LogicalType::double(),
            ]
        };
        let with = |extra: &[fn() -> LogicalType]| {
            let mut args = base();
            args.extend(extra.iter().map(|t| t()));
            (args, LogicalType::blob())
        };
        vec![
            with(&[]),
            with(&[LogicalType::varchar]),
            with(&[LogicalType::double, LogicalType::double]),
            with(&[
                LogicalType::double,
                LogicalType::double,
                LogicalType::varchar,
            ]),
        ]
    }

    fn update(input: &Chunk, states: &mut States<PlotState>) -> Result<()> {
        let series_names = input.column(0)?.strings()?;
        let xs = input.column(1)?.strings()?;
        let ys = input.column(2)?.values::<f64>()?;
        // Columns 3 and 4 are low and high in the 5- and 6-argument forms.
        let banded = input.columns() >= 5;
        let bands = if banded {
            Some((
                input.column(3)?.values::<f64>()?,
                input.column(4)?.values::<f64>()?,
            ))
        } else {
            None
        };
        let title_index = if banded { 5 } else { 3 };
        for row in 0..input.rows() {
            let Some(x) = xs.text(row) else {
                continue;
            };
            let x = x.into_owned();
            let series = series_names.text(row).unwrap_or_default().into_owned();
            let y = ys.get(row).unwrap_or(f64::NAN);
            let band = match &bands {
                Some((lows, highs)) => {
                    let low = band_end(lows, row, "low", &series, &x)?;
                    let high = band_end(highs, row, "high", &series, &x)?;
                    if low > high {
                        return Err(Error::invalid(format!(
                            "low {low} is above high {high} for series '{series}' at x '{x}'"
                        )));
                    }
                    (low, high)
                }
                None => (f64::NAN, f64::NAN),
            };
            let state = states.get(row);
            state.banded |= banded;
            if state.title.is_none() {
                state.title = optional_text(input, title_index, row)?;
            }
            state.points.push(Point { series, x, y, band });
        }
        Ok(())
    }

    fn combine(source: &mut PlotState, target: &mut PlotState) -> Result<()> {
        target.points.append(&mut source.points);
        target.banded |= source.banded;
        if target.title.is_none() {
            target.title = source.title.take();
        }
        Ok(())
    }

    fn finalize(state: &mut PlotState, output: &mut Output, row: usize) -> Result<()> {
        if state.points.is_empty() {
            return Err(Error::invalid("the group has no points"));
        }
        let mut xs: Vec<&str> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for p in &state.points {
            if !xs.contains(&p.x.as_str()) {
                xs.push(&p.x);
            }
            if !names.contains(&p.series.as_str()) {
                names.push(&p.series);
            }
        }
        let series: Vec<Series> = names
            .iter()
            .map(|name| {
                let mut y = vec![f64::NAN; xs.len()];
                let (mut low, mut high) = (y.clone(), y.clone());
                for p in state.points.iter().filter(|p| p.series == *name) {
                    if let Some(i) = xs.iter().position(|c| *c == p.x) {
                        (y[i], low[i], high[i]) = (p.y, p.band.0, p.band.1);
                    }
                }
                let s = Series::new(*name, y);
                if state.banded {
                    s.with_band(low, high)
                } else {
                    s
                }
            })
            .collect();
        let opts = LinePlotOptions {
            title: state.title.clone().unwrap_or_default(),
            x_tick_labels: Some(xs.iter().map(|s| s.to_string()).collect()),
            ..LinePlotOptions::default()
        };
        let png = line_plot(&series, &opts)?;
        output.set_blob(row, &png)
    }
}
