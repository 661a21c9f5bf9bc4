//! `line_plot(series, x, y [, title])`: an aggregate that draws y against
//! x (e.g. similarity to the input against layer depth) as a PNG (BLOB),
//! one line per series. x values are category names (layer names) placed
//! in first-seen order, so feed rows with `ORDER BY position`.
//!
//! ```sql
//! SELECT write_png('out/curve.png', line_plot('to input', layer, r, 'Similarity to input' ORDER BY position)) FROM curve;
//! ```

use ::duckdb::ffi;
use layercorr_render::{line_plot, LinePlotOptions, Series};

use super::ffi::{chunk_len, column, column_count, set_blob, str_at, LogicalType, Validity};
use super::picture::optional_text;
use super::register::Aggregate;

/// The `line_plot` aggregate.
pub struct LinePlot;

/// Points in arrival order, and the title from the first row that has one.
#[derive(Default)]
pub struct PlotState {
    points: Vec<(String, String, f64)>,
    title: Option<String>,
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
        let mut with_title = base();
        with_title.push(LogicalType::varchar());
        vec![
            (base(), LogicalType::blob()),
            (with_title, LogicalType::blob()),
        ]
    }

    unsafe fn update(
        input: ffi::duckdb_data_chunk,
        state_of: &mut dyn FnMut(usize) -> *mut PlotState,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let columns = column_count(input);
        let (series_vec, x_vec, y_vec) = (column(input, 0), column(input, 1), column(input, 2));
        let y_data = ffi::duckdb_vector_get_data(y_vec) as *const f64;
        for row in 0..rows {
            if !Validity::of(x_vec).is_valid(row) {
                continue;
            }
            let series = if Validity::of(series_vec).is_valid(row) {
                str_at(series_vec, row).into_owned()
            } else {
                String::new()
            };
            let y = if Validity::of(y_vec).is_valid(row) {
                *y_data.add(row)
            } else {
                f64::NAN
            };
            let state = &mut *state_of(row);
            if state.title.is_none() {
                state.title = optional_text(input, columns, 3, row);
            }
            state
                .points
                .push((series, str_at(x_vec, row).into_owned(), y));
        }
        Ok(())
    }

    fn combine(source: &mut PlotState, target: &mut PlotState) -> Result<(), String> {
        target.points.append(&mut source.points);
        if target.title.is_none() {
            target.title = source.title.take();
        }
        Ok(())
    }

    unsafe fn finalize(
        state: &mut PlotState,
        output: ffi::duckdb_vector,
        row: usize,
    ) -> Result<(), String> {
        if state.points.is_empty() {
            return Err("the group has no points".into());
        }
        let mut xs: Vec<&str> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (s, x, _) in &state.points {
            if !xs.contains(&x.as_str()) {
                xs.push(x);
            }
            if !names.contains(&s.as_str()) {
                names.push(s);
            }
        }
        let series: Vec<Series> = names
            .iter()
            .map(|name| {
                let mut y = vec![f64::NAN; xs.len()];
                for (s, x, v) in &state.points {
                    if s == name {
                        if let Some(i) = xs.iter().position(|c| c == x) {
                            y[i] = *v;
                        }
                    }
                }
                Series::new(*name, y)
            })
            .collect();
        let opts = LinePlotOptions {
            title: state.title.clone().unwrap_or_default(),
            x_tick_labels: Some(xs.iter().map(|s| s.to_string()).collect()),
            ..LinePlotOptions::default()
        };
        let png = line_plot(&series, &opts).map_err(|e| e.to_string())?;
        set_blob(output, row, &png)?;
        Ok(())
    }
}
