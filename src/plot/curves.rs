//! Loss and accuracy against the training step: one run (`training_curves`) or
//! several on shared axes (`comparison`).

use anyhow::Result;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

use super::{
    bold_style, centered, legend, legend_height, render, save, step_range, text_style, tick_formatter, value_range,
    Area, Mark, MUTED,
};

/// (step, loss, accuracy as a fraction).
type Point = (u64, f64, f64);

/// One run for `comparison`: its legend text and its points.
pub struct Run {
    pub label: String,
    pub train: Vec<Point>,
    pub test: Vec<Point>,
}

/// Tableau's ten colours: distinct for the usual handful of runs, and readable on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const WIDTH: u32 = 1100;
const PANEL_HEIGHT: u32 = 420;
const Y_TICKS: usize = 6;
const LOSS_BOUNDS: (f64, f64) = (0.0, f64::INFINITY);
const PERCENT_BOUNDS: (f64, f64) = (0.0, 100.0);

const TEST: &str = "test set, at the end of each epoch";
const TEST_NONE_YET: &str = "test set: no points yet (measured at the end of each epoch)";

struct Series {
    mark: Mark,
    points: Vec<(u64, f64)>,
}

fn series(mark: Mark, points: &[Point], value: fn(&Point) -> f64) -> Series {
    Series { mark, points: points.iter().map(|p| (p.0, value(p))).collect() }
}

fn loss(p: &Point) -> f64 {
    p.1
}

fn percent(p: &Point) -> f64 {
    100.0 * p.2
}

/// The steps of all `series`, for an x axis that side-by-side panels share.
fn steps(all: &[Series]) -> Range<u64> {
    step_range(all.iter().flat_map(|s| s.points.iter().map(|p| p.0)))
}

/// One chart of value against step. Without any point it says so instead of drawing
/// an axis that means nothing.
fn panel(area: &Area, title: &str, y_desc: &str, bounds: (f64, f64), x: Range<u64>, all: &[Series]) -> Result<()> {
    let y = value_range(all.iter().flat_map(|s| s.points.iter().map(|p| p.1)), bounds);
    let y_labels = tick_formatter(&y, Y_TICKS, bounds);
    let mut chart = ChartBuilder::on(area)
        .caption(title, bold_style(18.0))
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("training step")
        .y_desc(y_desc)
        .x_labels(8)
        .y_labels(Y_TICKS)
        .y_label_formatter(&y_labels)
        .label_style(text_style(14.0))
        .axis_desc_style(text_style(15.0))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(TRANSPARENT)
        .draw()?;
    for s in all {
        let style = s.mark.color.stroke_width(2);
        let dot = |r: i32| s.points.iter().map(move |&p| Circle::new(p, r, s.mark.color.filled()));
        if s.mark.test {
            chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 8, 5, style))?;
            chart.draw_series(dot(4))?;
        } else {
            chart.draw_series(LineSeries::new(s.points.iter().copied(), style))?;
            // A single point makes no line: show it.
            if s.points.len() == 1 {
                chart.draw_series(dot(3))?;
            }
        }
    }
    if all.iter().all(|s| s.points.is_empty()) {
        let plot = chart.plotting_area().strip_coord_spec();
        let (w, h) = plot.dim_in_pixel();
        plot.draw(&Text::new("nothing logged yet", (w as i32 / 2, h as i32 / 2), centered(16.0).color(&MUTED)))?;
    }
    Ok(())
}

/// Loss and accuracy against the step in two panels: training points (a solid line,
/// each the mean over the batches since the previous one) and test-set points (dashed,
/// with a dot at the end of each epoch). Points are (step, loss, accuracy as a fraction).
/// An empty history draws the panels with "nothing logged yet".
pub fn training_curves(history: &[Point], test_history: &[Point], path: &Path) -> Result<()> {
    let train = Mark { color: PALETTE[0], test: false };
    let test = Mark { color: PALETTE[1], test: true };
    let test_label = if test_history.is_empty() { TEST_NONE_YET } else { TEST };
    let rows =
        [vec![(train, "training batches (mean since the previous point)".to_string()), (test, test_label.to_string())]];
    let both = |value| [series(train, history, value), series(test, test_history, value)];
    loss_and_accuracy(&rows, &both(loss), "accuracy", &both(percent), path)
}

/// Several runs on shared axes, a colour each: loss (training solid, test dashed) and
/// test accuracy, or training accuracy when no run has reached the end of an epoch.
pub fn comparison(runs: &[Run], path: &Path) -> Result<()> {
    let any_test = runs.iter().any(|r| !r.test.is_empty());
    let color = |i: usize| PALETTE[i % PALETTE.len()];
    let mut rows: Vec<Vec<(Mark, String)>> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let note = if any_test && r.test.is_empty() { "  (no test points yet)" } else { "" };
            vec![(Mark { color: color(i), test: false }, format!("{}{note}", r.label))]
        })
        .collect();
    rows.push(vec![
        (Mark { color: MUTED, test: false }, "training batches".to_string()),
        (Mark { color: MUTED, test: true }, if any_test { TEST } else { TEST_NONE_YET }.to_string()),
    ]);
    let mut losses = Vec::new();
    let mut accuracies = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let (train, test) = (Mark { color: color(i), test: false }, Mark { color: color(i), test: true });
        losses.push(series(train, &r.train, loss));
        losses.push(series(test, &r.test, loss));
        accuracies.push(if any_test { series(test, &r.test, percent) } else { series(train, &r.train, percent) });
    }
    let accuracy_title = if any_test { "test accuracy" } else { "training accuracy (no run has test points yet)" };
    loss_and_accuracy(&rows, &losses, accuracy_title, &accuracies, path)
}

/// The picture both functions draw: a legend over a loss panel and an accuracy panel
/// that share their steps.
fn loss_and_accuracy(
    rows: &[Vec<(Mark, String)>],
    losses: &[Series],
    accuracy_title: &str,
    accuracies: &[Series],
    path: &Path,
) -> Result<()> {
    let img = render(WIDTH, PANEL_HEIGHT + legend_height(rows.len()), |root| {
        let (top, body) = root.split_vertically(legend_height(rows.len()));
        legend(&top, rows)?;
        let panels = body.split_evenly((1, 2));
        // The losses hold every point drawn, so their steps are all the steps.
        let x = steps(losses);
        panel(&panels[0], "loss", "cross-entropy loss", LOSS_BOUNDS, x.clone(), losses)?;
        panel(&panels[1], accuracy_title, "accuracy (%)", PERCENT_BOUNDS, x, accuracies)
    })?;
    save(&img, path)
}
