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

use std::collections::HashMap;

use layercorr_render::{line_plot, LinePlotOptions, Series};

use super::capi::{Aggregate, Chunk, LogicalType, Output, States, Values};
use super::error::{Error, Result};
use super::picture::optional_text;

/// The `line_plot` aggregate.
pub struct LinePlot;

/// Lines one plot may have: more cannot be told apart, and their legend
/// outgrows the largest picture long before this.
const MAX_SERIES: usize = 512;
/// Series x positions one plot may lay out: every series gets a value (or
/// NaN) and band ends at each position, three `f64` a cell (96 MiB here).
const MAX_CELLS: usize = 1 << 22;

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
        // Series and x positions in first-seen order, and each point's
        // place among them.
        let mut xs: Vec<&str> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let mut x_index: HashMap<&str, usize> = HashMap::new();
        let mut name_index: HashMap<&str, usize> = HashMap::new();
        let mut places = Vec::with_capacity(state.points.len());
        for p in &state.points {
            let x = *x_index.entry(&p.x).or_insert_with(|| {
                xs.push(&p.x);
                xs.len() - 1
            });
            let s = *name_index.entry(&p.series).or_insert_with(|| {
                names.push(&p.series);
                names.len() - 1
            });
            places.push((s, x));
        }
        if names.len() > MAX_SERIES {
            return Err(Error::invalid(format!(
                "{} series in one plot (at most {MAX_SERIES}; GROUP BY to draw several plots)",
                names.len()
            )));
        }
        let cells = names.len().saturating_mul(xs.len());
        if cells > MAX_CELLS {
            return Err(Error::invalid(format!(
                "{} series x {} x positions = {cells} points to lay out (at most {MAX_CELLS})",
                names.len(),
                xs.len()
            )));
        }
        // Each series' y and band ends at every x position (NaN where it has
        // no point); a later point at the same x replaces an earlier one.
        let blank = vec![f64::NAN; xs.len()];
        let mut columns = vec![(blank.clone(), blank.clone(), blank); names.len()];
        for (p, &(s, x)) in state.points.iter().zip(&places) {
            let (y, low, high) = &mut columns[s];
            (y[x], low[x], high[x]) = (p.y, p.band.0, p.band.1);
        }
        let series: Vec<Series> = names
            .iter()
            .zip(columns)
            .map(|(name, (y, low, high))| {
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
