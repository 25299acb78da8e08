//! The SVG charts of a bench report, drawn with `plotters`.
//!
//! They chart what separates the models, not only how fast the load
//! generator could go: the server's CPU per request, its syscalls per
//! request, its memory per idle connection (c10k), latency percentiles at
//! one load, and requests per second, captioned for what it measures on two
//! cores (the generator as much as the server, see the book's *Measuring*).
//! A report of a sweep (`--sweep idle`, `--sweep load`) adds a curve: one
//! measure against the swept quantity, a line per model.
//!
//! Rules every chart keeps, because a chart that misleads is worse than a
//! table: a model that could not run is *written* at its place with the
//! bench's reason ("not run: cannot hold 10,100 connections"), never drawn
//! as a zero; every bar carries its value; the legend sits above the plot,
//! never on it; a scale that spans more than a decade and a half is
//! logarithmic, and says so. The output is a function of the report alone
//! (no font files are measured, no time is written), so the book's copies
//! can be compared byte for byte with what the report renders to now.

use std::io;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::tools::bench::book::{first_seen, thousands};
use crate::tools::bench::{self, BenchReport, Row};

/// One chart: its file name (`memory.svg`) and its SVG text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// The file name.
    pub name: String,
    /// The SVG.
    pub svg: String,
}

/// Writes every chart of `report` into `out`; returns their names.
pub fn write_all(report: &BenchReport, out: &Path) -> io::Result<Vec<String>> {
    let charts = render(report)?;
    for chart in &charts {
        std::fs::write(out.join(&chart.name), &chart.svg)?;
    }
    Ok(charts.into_iter().map(|c| c.name).collect())
}

/// Every chart of `report`, in the order a reader meets them.
pub fn render(report: &BenchReport) -> io::Result<Vec<Chart>> {
    let mut charts = Vec::new();
    let data = Data::new(report);
    let mut add = |name: &str, drawn: Result<String, Failure>| -> io::Result<()> {
        let svg = drawn.map_err(|e| io::Error::other(format!("{name}: {e}")))?;
        charts.push(Chart {
            name: name.into(),
            svg,
        });
        Ok(())
    };
    if !data.runs.is_empty() {
        add(
            "cpu-per-request.svg",
            data.per_run(
                "Server CPU per request, µs (lower is better)",
                "µs of server CPU (user + system) per request",
                |row| row.cpu_us_per_request.ok_or("no requests"),
            )
            .draw(),
        )?;
        add(
            "syscalls-per-request.svg",
            data.per_run(
                "Server syscalls per request (lower is better)",
                "syscalls per request",
                |row| match (row.syscalls_per_request, row.cpu_us_per_request) {
                    (Some(calls), _) => Ok(calls),
                    (None, Some(_)) => Err("not counted by this model"),
                    (None, None) => Err("no requests"),
                },
            )
            .draw(),
        )?;
        if data.runs.iter().any(|r| r == "c10k") {
            add("memory.svg", data.memory().draw())?;
        }
        if let Some(run) = ["rr-100", "rr-1000", "rr-1", "pipeline", "c10k"]
            .into_iter()
            .find(|run| data.runs.iter().any(|r| r == run))
        {
            add("latency.svg", data.latency(run).draw())?;
        }
        add("throughput.svg", data.throughput().draw())?;
    }
    for sweep in &SWEEPS {
        if let Some(lines) = data.sweep(sweep) {
            add(&format!("sweep-{}.svg", sweep.name), lines.draw())?;
        }
    }
    Ok(charts)
}

/// The names of the charts [`render`] makes of `report`, without drawing.
pub fn names(report: &BenchReport) -> Vec<String> {
    render(report)
        .map(|charts| charts.into_iter().map(|c| c.name).collect())
        .unwrap_or_default()
}

type Failure = Box<dyn std::error::Error>;

/// A sweep's chart: which scenario, which measure against what.
struct SweepChart {
    /// `idle` for `sweep-idle`.
    name: &'static str,
    title: &'static str,
    x: &'static str,
    y: &'static str,
    /// The swept quantity of a run.
    at: fn(&bench::Run) -> usize,
    measure: fn(&Row) -> Option<f64>,
}

const SWEEPS: [SweepChart; 2] = [
    SweepChart {
        name: "idle",
        title: "Server CPU per request against idle connections (100 busy)",
        x: "idle connections held open",
        y: "µs of server CPU per request",
        at: |run| run.idle,
        measure: |row| row.cpu_us_per_request,
    },
    SweepChart {
        name: "load",
        title: "Server syscalls per request against load (depth 1)",
        x: "busy connections (log scale)",
        y: "syscalls per request",
        at: |run| run.conns,
        measure: |row| row.syscalls_per_request,
    },
];

/// A report's rows, laid out by model and run.
struct Data<'a> {
    report: &'a BenchReport,
    /// Models in the report's order (the teaching order).
    models: Vec<String>,
    /// The runs of the fixed scenarios (not sweeps), in the report's order.
    runs: Vec<String>,
}

impl<'a> Data<'a> {
    fn new(report: &'a BenchReport) -> Self {
        let swept = |run: &str| run.starts_with("idle-") || run.starts_with("conns-");
        Data {
            report,
            models: first_seen(report.rows.iter().map(|r| r.model.as_str())),
            runs: first_seen(
                report
                    .rows
                    .iter()
                    .map(|r| r.run.as_str())
                    .filter(|run| !swept(run)),
            ),
        }
    }

    fn row(&self, model: &str, run: &str) -> Option<&'a Row> {
        self.report
            .rows
            .iter()
            .find(|r| r.model == model && r.run == run)
    }

    /// What a chart shows at `model` × `run`: a value, or why there is none.
    fn cell(
        &self,
        model: &str,
        run: &str,
        pick: impl Fn(&Row) -> Result<f64, &'static str>,
    ) -> Cell {
        match self.row(model, run) {
            None => Cell::Missing("not in this report".into()),
            Some(row) => match (&row.skipped, &row.load) {
                (Some(reason), _) => Cell::Missing(format!("not run: {}", short_reason(reason))),
                (None, None) => Cell::Missing("not run".into()),
                (None, Some(_)) => match pick(row) {
                    Ok(v) => Cell::Value(v),
                    Err(why) => Cell::Missing(why.into()),
                },
            },
        }
    }

    /// One measure, a bar per run in each model's group.
    fn per_run(
        &self,
        title: &str,
        unit: &str,
        pick: impl Fn(&Row) -> Result<f64, &'static str>,
    ) -> Bars {
        Bars {
            title: title.into(),
            note: self.source(),
            unit: unit.into(),
            categories: self.models.clone(),
            series: self
                .runs
                .iter()
                .map(|run| Series {
                    name: run.clone(),
                    cells: self
                        .models
                        .iter()
                        .map(|m| self.cell(m, run, &pick))
                        .collect(),
                })
                .collect(),
            reference: None,
            format: value,
        }
    }

    fn memory(&self) -> Bars {
        Bars {
            title: "Server memory per connection with 10,100 open (c10k), KiB".into(),
            note: self.source(),
            unit: "KiB of server PSS growth per open connection".into(),
            categories: self.models.clone(),
            series: vec![Series {
                name: "c10k".into(),
                cells: self
                    .models
                    .iter()
                    .map(|m| self.cell(m, "c10k", |r| r.kib_per_conn.ok_or("not measured")))
                    .collect(),
            }],
            reference: Some(Reference {
                at: GO_BYTES_PER_CONN / 1024.0,
                label: "a Go 1.19 goroutine-per-connection server with a 4 KiB bufio.Reader, \
                        7,613 bytes (7.4 KiB) per idle connection over 10,000, measured \
                        outside this lab (issue 13), not by it",
            }),
            format: value,
        }
    }

    fn latency(&self, run: &str) -> Bars {
        let percentile = |name: &str, pick: fn(&Row) -> Option<f64>| Series {
            name: name.into(),
            cells: self
                .models
                .iter()
                .map(|m| self.cell(m, run, |r| pick(r).ok_or("no latency")))
                .collect(),
        };
        Bars {
            title: format!("Latency in {run}, µs (lower is better)"),
            note: self.source(),
            unit: "µs from request sent to answer read".into(),
            categories: self.models.clone(),
            series: vec![
                percentile("p50", |r| r.load.as_ref().map(|l| l.latency_us.p50)),
                percentile("p99", |r| r.load.as_ref().map(|l| l.latency_us.p99)),
                percentile("p99.9", |r| r.load.as_ref().map(|l| l.latency_us.p999)),
            ],
            reference: None,
            format: latency,
        }
    }

    fn throughput(&self) -> Bars {
        let mut bars = self.per_run(
            "Requests per second: the load generator's pace as much as the server's",
            "requests/s (on 2 cores the generator has one core of its own)",
            |row| Ok(row.requests_per_s),
        );
        bars.note = format!(
            "{} The generator is one process on one core: where its share of that \
             core nears 100 %, it, not the server, set the pace.",
            self.source()
        );
        bars.format = human;
        bars
    }

    fn sweep(&self, sweep: &SweepChart) -> Option<Lines> {
        let runs = bench::scenario(&format!("sweep-{}", sweep.name))?;
        let rows = |model: &str| -> Vec<&Row> {
            runs.iter()
                .filter_map(|run| self.row(model, run.name))
                .collect()
        };
        let models: Vec<&String> = self.models.iter().filter(|m| !rows(m).is_empty()).collect();
        if models.is_empty() {
            return None;
        }
        let mut missing = Vec::new();
        let lines = models
            .iter()
            .map(|model| {
                let mut points = Vec::new();
                for run in runs {
                    let Some(row) = self.row(model, run.name) else {
                        continue;
                    };
                    match (&row.skipped, (sweep.measure)(row)) {
                        (None, Some(v)) => points.push(((sweep.at)(run) as f64, v)),
                        (Some(reason), _) => missing.push(format!(
                            "{model} at {}: {}",
                            thousands((sweep.at)(run) as f64),
                            short_reason(reason)
                        )),
                        (None, None) => {
                            missing.push(format!("{model} at {}: not counted", run.name))
                        }
                    }
                }
                (model.to_string(), points)
            })
            .collect();
        let mut note = self.source();
        if !missing.is_empty() {
            note = format!("{note} Not drawn: {}.", missing.join("; "));
        }
        Some(Lines {
            title: sweep.title.into(),
            note,
            x: sweep.x.into(),
            y: sweep.y.into(),
            lines,
            log_x: sweep.name == "load",
        })
    }

    /// The line under a chart: which report, which machine.
    fn source(&self) -> String {
        let r = self.report;
        let day = r.date.split('T').next().unwrap_or("");
        format!(
            "{day}, commit {}, {} CPUs, Linux {}, {:.0} s per run, {}.",
            r.commit,
            r.machine.cores,
            r.machine.kernel,
            r.duration_s,
            match r.repeat {
                0 | 1 => "one run each".to_string(),
                n => format!("median of {n}"),
            }
        )
    }
}

/// Bytes per idle connection of a Go goroutine-per-connection server with a
/// 4 KiB `bufio.Reader` (Go 1.19), 10,000 idle connections, measured outside
/// this lab and quoted in issue 13: a reference line, not a measurement.
const GO_BYTES_PER_CONN: f64 = 7613.0;

/// A bar's value, or why it has none.
enum Cell {
    Value(f64),
    Missing(String),
}

/// One colour of bars: one value (or its absence) per category.
struct Series {
    name: String,
    cells: Vec<Cell>,
}

/// A vertical line across a bar chart for a figure from elsewhere.
struct Reference {
    at: f64,
    label: &'static str,
}

/// A horizontal grouped bar chart: one group per category (model), one
/// bar per series (run).
struct Bars {
    title: String,
    note: String,
    unit: String,
    categories: Vec<String>,
    series: Vec<Series>,
    reference: Option<Reference>,
    format: fn(f64) -> String,
}

/// A line chart: one line per model.
struct Lines {
    title: String,
    note: String,
    x: String,
    y: String,
    lines: Vec<(String, Vec<(f64, f64)>)>,
    log_x: bool,
}

/// The book's text column is about 750 pixels wide: drawn at that width,
/// 12-pixel text reads as 12 pixels.
const WIDTH: u32 = 760;
/// Colours told apart with every common colour blindness (Okabe and Ito).
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
];
const GREY: RGBColor = RGBColor(110, 110, 110);

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

/// The title, the legend (outside the plot) and the note under it; returns
/// the area left for the plot.
fn frame<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    legend: &[(String, RGBColor, bool)],
    note_lines: &[String],
) -> Result<DrawingArea<SVGBackend<'a>, Shift>, Failure> {
    root.fill(&WHITE)?;
    let head = 30 + if legend.is_empty() { 0 } else { 22 };
    let foot = 8 + 15 * note_lines.len() as u32;
    let (top, rest) = root.split_vertically(head);
    let (_, height) = rest.dim_in_pixel();
    let (plot, bottom) = rest.split_vertically(height - foot);
    top.draw_text(
        title,
        &("sans-serif", 17, FontStyle::Bold)
            .into_font()
            .color(&BLACK),
        (10, 8),
    )?;
    let mut x = 12;
    for (name, colour, line) in legend {
        if *line {
            top.draw(&PathElement::new(
                vec![(x, 40), (x + 16, 40)],
                colour.stroke_width(3),
            ))?;
        } else {
            top.draw(&Rectangle::new([(x, 34), (x + 12, 46)], colour.filled()))?;
        }
        top.draw_text(name, &font(13), (x + 20, 34))?;
        x += 36 + 8 * name.chars().count() as i32;
    }
    for (i, line) in note_lines.iter().enumerate() {
        bottom.draw_text(line, &font(12).color(&GREY), (10, 4 + 15 * i as i32))?;
    }
    Ok(plot)
}

/// Words wrapped to lines of about `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// The value range of a chart and whether it needs a log scale.
fn scale(values: impl Iterator<Item = f64>) -> (f64, f64, bool) {
    let values: Vec<f64> = values.filter(|v| *v > 0.0).collect();
    let max = values.iter().copied().fold(0.0f64, f64::max).max(1e-3);
    let min = values.iter().copied().fold(max, f64::min);
    // More than a factor 30 between the smallest and the largest: a linear
    // axis would hide the small ones.
    let log = max / min > 30.0;
    (min, max, log)
}

impl Bars {
    fn draw(&self) -> Result<String, Failure> {
        let rows = self.categories.len().max(1);
        let k = self.series.len().max(1);
        let bar = if k == 1 { 20 } else { 14 };
        let group = (k * bar + 10) as u32;
        let mut note = wrap(&self.note, 108);
        if let Some(reference) = &self.reference {
            note.extend(wrap(&format!("Dashed line: {}.", reference.label), 108));
        }
        let legend: Vec<(String, RGBColor, bool)> = if k > 1 {
            self.series
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.clone(), COLOURS[i % COLOURS.len()], false))
                .collect()
        } else {
            Vec::new()
        };
        let head = 30 + if legend.is_empty() { 0 } else { 22 };
        let height = head + rows as u32 * group + 50 + 8 + 15 * note.len() as u32;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
            let plot = frame(&root, &self.title, &legend, &note)?;
            let values = self
                .series
                .iter()
                .flat_map(|s| &s.cells)
                .filter_map(|c| match c {
                    Cell::Value(v) => Some(*v),
                    Cell::Missing(_) => None,
                });
            let reference = self.reference.as_ref().map(|r| r.at);
            let (min, max, log) = scale(values.chain(reference));
            let mut builder = ChartBuilder::on(&plot);
            builder
                .margin_left(8)
                .margin_right(16)
                .x_label_area_size(40)
                .y_label_area_size(100);
            let unit = if log {
                format!("{} (log scale)", self.unit)
            } else {
                self.unit.clone()
            };
            let y = 0.0..rows as f64;
            if log {
                let low = 10f64.powf((min / 1.5).log10().floor());
                let high = max * 2.5;
                let chart = builder.build_cartesian_2d((low..high).log_scale(), y)?;
                self.plot(chart, low, &unit)?;
            } else {
                let chart = builder.build_cartesian_2d(0.0..max * 1.25, y)?;
                self.plot(chart, 0.0, &unit)?;
            }
            root.present()?;
        }
        Ok(svg)
    }

    fn plot<X>(
        &self,
        mut chart: ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, RangedCoordf64>>,
        floor: f64,
        unit: &str,
    ) -> Result<(), Failure>
    where
        X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let rows = self.categories.len().max(1);
        let k = self.series.len().max(1);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(8)
            .x_label_formatter(&|v: &f64| human(*v))
            .x_desc(unit)
            .axis_desc_style(font(13))
            .label_style(font(12))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(205, 205, 205))
            .draw()?;
        // Group i from the top: y from rows - i (top) down to rows - i - 1.
        let top = |i: usize| (rows - i) as f64;
        let slot = 0.84 / k as f64;
        for (i, name) in self.categories.iter().enumerate() {
            chart.draw_series(std::iter::once(
                EmptyElement::at((floor, top(i) - 0.5))
                    + Text::new(
                        name.clone(),
                        (-8, 0),
                        font(13).pos(Pos::new(HPos::Right, VPos::Center)),
                    ),
            ))?;
        }
        for (s, series) in self.series.iter().enumerate() {
            let colour = COLOURS[s % COLOURS.len()];
            for (i, cell) in series.cells.iter().enumerate() {
                let high = top(i) - 0.08 - slot * s as f64;
                let low = high - slot * 0.86;
                let middle = (high + low) / 2.0;
                match cell {
                    Cell::Value(v) => {
                        let v = v.max(floor);
                        chart.draw_series(std::iter::once(Rectangle::new(
                            [(floor, high), (v, low)],
                            colour.filled(),
                        )))?;
                        chart.draw_series(std::iter::once(
                            EmptyElement::at((v, middle))
                                + Text::new(
                                    (self.format)(v),
                                    (4, 0),
                                    font(11).pos(Pos::new(HPos::Left, VPos::Center)),
                                ),
                        ))?;
                    }
                    Cell::Missing(why) => {
                        chart.draw_series(std::iter::once(
                            EmptyElement::at((floor, middle))
                                + Text::new(
                                    why.clone(),
                                    (4, 0),
                                    font(11)
                                        .color(&GREY)
                                        .pos(Pos::new(HPos::Left, VPos::Center)),
                                ),
                        ))?;
                    }
                }
            }
        }
        if let Some(reference) = &self.reference {
            chart.draw_series(std::iter::once(DashedPathElement::new(
                vec![(reference.at, 0.0), (reference.at, rows as f64)],
                6,
                4,
                RGBColor(200, 0, 0).stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(
                EmptyElement::at((reference.at, rows as f64))
                    + Text::new(
                        "Go (not measured here)",
                        (4, 2),
                        font(11)
                            .color(&RGBColor(200, 0, 0))
                            .pos(Pos::new(HPos::Left, VPos::Top)),
                    ),
            ))?;
        }
        Ok(())
    }
}

impl Lines {
    fn draw(&self) -> Result<String, Failure> {
        let note = wrap(&self.note, 108);
        let legend: Vec<(String, RGBColor, bool)> = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), COLOURS[i % COLOURS.len()], true))
            .collect();
        let height = 52 + 380 + 8 + 15 * note.len() as u32;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
            let plot = frame(&root, &self.title, &legend, &note)?;
            let points = || self.lines.iter().flat_map(|(_, p)| p.iter());
            let x_max = points().map(|p| p.0).fold(1.0f64, f64::max);
            let (y_min, y_max, log) = scale(points().map(|p| p.1));
            let mut builder = ChartBuilder::on(&plot);
            builder
                .margin_left(8)
                .margin_right(24)
                .x_label_area_size(40)
                .y_label_area_size(70);
            let y_desc = if log {
                format!("{} (log scale)", self.y)
            } else {
                self.y.clone()
            };
            macro_rules! draw {
                ($chart:expr) => {{
                    let mut chart = $chart;
                    chart
                        .configure_mesh()
                        .x_label_formatter(&|v: &f64| human(*v))
                        .y_label_formatter(&|v: &f64| human(*v))
                        .x_desc(self.x.as_str())
                        .y_desc(y_desc.as_str())
                        .axis_desc_style(font(13))
                        .label_style(font(12))
                        .light_line_style(RGBColor(235, 235, 235))
                        .bold_line_style(RGBColor(205, 205, 205))
                        .draw()?;
                    // The last point's value, unless it would sit on
                    // another line's label (the grid gives it then).
                    let mut labelled: Vec<f64> = Vec::new();
                    for (i, (_, points)) in self.lines.iter().enumerate() {
                        let colour = COLOURS[i % COLOURS.len()];
                        chart.draw_series(LineSeries::new(
                            points.iter().copied(),
                            colour.stroke_width(2),
                        ))?;
                        chart.draw_series(
                            points.iter().map(|&p| Circle::new(p, 4, colour.filled())),
                        )?;
                        let last = points
                            .last()
                            .filter(|(_, y)| !labelled.iter().any(|l| (l / y).max(y / l) < 1.3));
                        if let Some(&(x, y)) = last {
                            labelled.push(y);
                            chart.draw_series(std::iter::once(
                                EmptyElement::at((x, y))
                                    + Text::new(
                                        value(y),
                                        (-6, -6),
                                        font(11).pos(Pos::new(HPos::Right, VPos::Bottom)),
                                    ),
                            ))?;
                        }
                    }
                }};
            }
            let y_low = if log {
                10f64.powf((y_min / 1.5).log10().floor())
            } else {
                0.0
            };
            let y_high = if log { y_max * 3.0 } else { y_max * 1.15 };
            match (self.log_x, log) {
                (true, true) => draw!(builder.build_cartesian_2d(
                    (0.7..x_max * 1.5).log_scale(),
                    (y_low..y_high).log_scale()
                )?),
                (true, false) => {
                    draw!(builder
                        .build_cartesian_2d((0.7..x_max * 1.5).log_scale(), y_low..y_high)?)
                }
                (false, true) => draw!(builder.build_cartesian_2d(
                    -x_max * 0.02..x_max * 1.04,
                    (y_low..y_high).log_scale()
                )?),
                (false, false) => {
                    draw!(builder.build_cartesian_2d(-x_max * 0.02..x_max * 1.04, y_low..y_high)?)
                }
            }
            root.present()?;
        }
        Ok(svg)
    }
}

/// The bench's reason, short enough to sit beside a bar: "cannot hold
/// 10100 connections: …" becomes "cannot hold 10,100 connections".
fn short_reason(reason: &str) -> String {
    let first = reason.split(':').next().unwrap_or(reason);
    first
        .split(' ')
        .map(|word| match word.parse::<f64>() {
            Ok(n) if word.len() > 3 => thousands(n),
            _ => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A measured value with the digits it deserves: 0.049, 7.77, 42.8, 136.
fn value(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 0.1 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// Latency in µs as the chapters write it: 472 µs, 5.8 ms, 12 ms.
fn latency(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.0} ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// 1500000 → "1.5M", 2000 → "2k", 0.5 → "0.5".
fn human(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let text = if scaled.abs() < 0.1 && scaled != 0.0 {
        format!("{scaled:.2}")
    } else {
        format!("{scaled:.1}")
    };
    format!("{}{suffix}", text.trim_end_matches(".0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::load::LoadReport;

    fn row(model: &str, run: &str, kib: Option<f64>, skipped: Option<&str>) -> Row {
        Row {
            model: model.into(),
            run: run.into(),
            skipped: skipped.map(Into::into),
            load: skipped.is_none().then(LoadReport::default),
            cpu_us_per_request: kib.map(|_| 9.5),
            kib_per_conn: kib,
            ..Row::default()
        }
    }

    #[test]
    fn a_model_that_could_not_run_is_written_not_drawn_as_zero() {
        let report = BenchReport {
            rows: vec![
                row("epoll", "c10k", Some(0.16), None),
                row(
                    "select",
                    "c10k",
                    None,
                    Some("cannot hold 10100 connections: FD_SETSIZE (at most 1016)"),
                ),
            ],
            ..BenchReport::default()
        };
        let charts = render(&report).unwrap();
        let names: Vec<&str> = charts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cpu-per-request.svg",
                "syscalls-per-request.svg",
                "memory.svg",
                "latency.svg",
                "throughput.svg"
            ]
        );
        let memory = &charts[2].svg;
        assert!(memory.contains("not run: cannot hold 10,100 connections"));
        assert!(memory.contains("\n0.16\n"), "epoll's bar carries its value");
        assert!(memory.contains("Go (not measured here)"));
        // One bar, epoll's, beside the background: none for select, not
        // even one of height zero.
        assert_eq!(memory.matches("<rect").count() - 1, 1, "{memory}");
        // The same report renders to the same bytes (the book compares them).
        assert_eq!(render(&report).unwrap(), charts);
    }

    #[test]
    fn a_reason_reads_short_with_its_number() {
        assert_eq!(
            short_reason("cannot hold 10100 connections: select's FD_SETSIZE (at most 1024)"),
            "cannot hold 10,100 connections"
        );
        assert_eq!(value(0.04855), "0.049");
        assert_eq!(value(135.57), "136");
        assert_eq!(human(200_000.0), "200k");
    }
}
