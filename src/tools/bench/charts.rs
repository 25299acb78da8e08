//! The SVG charts of a bench report: throughput per model per run, latency
//! percentiles, and memory per connection. Drawn with `plotters`.

use std::io;
use std::path::Path;

use plotters::prelude::*;

use crate::tools::bench::{BenchReport, Row};

/// Writes `throughput.svg`, `latency.svg` and `memory.svg` into `out`.
pub fn write_all(report: &BenchReport, out: &Path) -> io::Result<()> {
    let models = names(report.rows.iter().map(|r| r.model.as_str()));
    let runs = names(report.rows.iter().map(|r| r.run.as_str()));
    let find = |model: &str, run: &str| {
        report
            .rows
            .iter()
            .find(|r| r.model == model && r.run == run && r.skipped.is_none())
    };

    let throughput: Vec<Series> = runs
        .iter()
        .map(|run| Series {
            name: run.clone(),
            values: models
                .iter()
                .map(|m| find(m, run).map(|r| r.requests_per_s))
                .collect(),
        })
        .collect();
    bars(
        &out.join("throughput.svg"),
        "Requests per second (higher is better; log scale)",
        "requests/s",
        &models,
        &throughput,
        true,
    )?;

    // Latency at the busiest request/response run measured.
    let latency_run = ["rr-100", "rr-1000", "rr-1", "pipeline", "c10k"]
        .into_iter()
        .find(|run| runs.iter().any(|r| r == run))
        .unwrap_or("rr-100");
    let percentile = |name: &str, pick: fn(&Row) -> Option<f64>| Series {
        name: name.into(),
        values: models
            .iter()
            .map(|m| find(m, latency_run).and_then(pick))
            .collect(),
    };
    let latency = vec![
        percentile("p50", |r| r.load.as_ref().map(|l| l.latency_us.p50)),
        percentile("p99", |r| r.load.as_ref().map(|l| l.latency_us.p99)),
        percentile("p99.9", |r| r.load.as_ref().map(|l| l.latency_us.p999)),
    ];
    let title = format!("Latency in {latency_run}, µs (lower is better; log scale)");
    bars(
        &out.join("latency.svg"),
        &title,
        "µs",
        &models,
        &latency,
        true,
    )?;

    // Memory per connection where most connections were open.
    let memory_run = ["c10k", "rr-1000", "rr-100"]
        .into_iter()
        .find(|run| runs.iter().any(|r| r == run))
        .unwrap_or("c10k");
    let memory = vec![Series {
        name: format!("KiB per connection in {memory_run}"),
        values: models
            .iter()
            .map(|m| find(m, memory_run).and_then(|r| r.kib_per_conn))
            .collect(),
    }];
    let title = format!("Server memory per open connection in {memory_run}, KiB (lower is better)");
    bars(
        &out.join("memory.svg"),
        &title,
        "KiB",
        &models,
        &memory,
        false,
    )
}

/// Distinct names in order of first appearance.
fn names<'a>(all: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for name in all {
        if !seen.iter().any(|s| s == name) {
            seen.push(name.to_string());
        }
    }
    seen
}

/// One bar per category; `None` draws nothing (a model that did not run).
struct Series {
    name: String,
    values: Vec<Option<f64>>,
}

/// A grouped bar chart: one group per category, one bar per series.
fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    categories: &[String],
    series: &[Series],
    log: bool,
) -> io::Result<()> {
    draw(path, title, unit, categories, series, log).map_err(|e| io::Error::other(e.to_string()))
}

fn draw(
    path: &Path,
    title: &str,
    unit: &str,
    categories: &[String],
    series: &[Series],
    log: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let width = 160 + 70 * categories.len().max(4) as u32;
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(1.0f64, |a, &b| a.max(b));
    let n = categories.len().max(1) as f64;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            categories.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80);
    let group = 0.8;
    let bar = group / series.len().max(1) as f64;
    let legend = |name: &str, i: usize| (name.to_string(), Palette99::pick(i).filled());

    macro_rules! plot {
        ($chart:expr, $floor:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(categories.len() + 1)
                .x_label_formatter(&label)
                .y_label_formatter(&|v: &f64| human(*v))
                .y_desc(unit)
                .draw()?;
            for (s, one) in series.iter().enumerate() {
                let (name, style) = legend(&one.name, s);
                chart
                    .draw_series(one.values.iter().enumerate().filter_map(|(i, v)| {
                        let v = (*v)?;
                        let left = i as f64 - group / 2.0 + bar * s as f64;
                        Some(Rectangle::new(
                            [(left, $floor), (left + bar * 0.9, v.max($floor))],
                            style,
                        ))
                    }))?
                    .label(name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 10, y + 5)], Palette99::pick(s).filled())
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    if log {
        plot!(
            builder.build_cartesian_2d(-0.5..n - 0.5, (1.0..max * 2.0).log_scale())?,
            1.0
        )
    } else {
        plot!(
            builder.build_cartesian_2d(-0.5..n - 0.5, 0.0..max * 1.1)?,
            0.0
        )
    }
    root.present()?;
    Ok(())
}

/// 1500000 → "1.5M", 2000 → "2k", 0.5 → "0.5".
fn human(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let text = format!("{scaled:.1}");
    format!("{}{suffix}", text.trim_end_matches(".0"))
}
