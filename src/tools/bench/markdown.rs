//! `report.md`: a bench report as a Markdown table.

use super::report::{BenchReport, Row};

/// The spread of repeated runs as ± half the range, in percent of the median.
pub(super) fn spread(row: &Row) -> String {
    match row.spread {
        Some((low, high)) if row.requests_per_s > 0.0 => {
            format!("±{:.0}%", (high - low) / 2.0 / row.requests_per_s * 100.0)
        }
        _ => "-".into(),
    }
}

pub(super) fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}ms", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}ms", v / 1000.0)
    } else {
        format!("{v:.0}µs")
    }
}

/// `v` with `decimals` places, or "n/a" when it was not measured.
fn fixed(v: Option<f64>, decimals: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.decimals$}"))
}

/// The report as Markdown, showing the `charts` written beside it.
pub(super) fn markdown(report: &BenchReport, charts: &[String]) -> String {
    let m = &report.machine;
    let mut md = String::new();
    md.push_str("# lab bench report\n\n");
    let repeats = if report.interleaved {
        format!(
            "repeated {} time(s) in interleaved rounds (each model's each run once per round); \
             shown: the run with the median server CPU per request; spread = ± half the range \
             of requests/s; CPU range = lowest to highest server CPU µs/req",
            report.repeat
        )
    } else {
        format!(
            "repeated {} time(s) (median shown; spread = ± half the range of requests/s)",
            report.repeat
        )
    };
    md.push_str(&format!(
        "- machine: {} — {} CPUs, {:.1} GiB, Linux {}\n- date: {}\n- commit: {}\n- command: `{}`\n- placement: {}\n- each run: {:.0} s measured after a warm-up, 64-byte lines, {repeats}\n\n",
        m.cpu, m.cores, m.memory_gib, m.kernel, report.date, report.commit, report.command, report.pinning, report.duration_s
    ));
    let cpu = if report.cpu_in_window {
        "CPU per request is the server's CPU time (its process and any children, read from /proc) \
         during the measured window, over the requests sent in it; syscalls per request come from \
         the server's own summary over its whole run"
    } else {
        "CPU and syscalls per request from the server's own summary over its whole run"
    };
    md.push_str(&format!(
        "Requests/s and latency come from the load generator (every answer checked byte for byte); \
         {cpu}; KiB/conn is \
         the growth of the server's PSS divided by its connections. On a 2-core machine the \
         generator and the server each have one core, and the generator's share of its core is \
         given: near 100 % means the generator, not the server, set the pace.\n\n",
    ));
    // The CPU range column only in reports that kept it.
    let cpu_ranges = report.rows.iter().any(|r| r.cpu_spread.is_some());
    let (range_head, range_rule) = match cpu_ranges {
        true => (" CPU range |", "--:|"),
        false => ("", ""),
    };
    md.push_str(&format!("| model | run | req/s | spread | p50 | p99 | p99.9 | max | answers/conn min–max | server CPU µs/req |{range_head} syscalls/req | KiB/conn | generator CPU | errors |\n"));
    md.push_str(&format!(
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|{range_rule}--:|--:|--:|--:|\n"
    ));
    for row in &report.rows {
        match (&row.skipped, &row.load) {
            (Some(reason), _) => md.push_str(&format!(
                "| {} | {} | — | | | | | | | |{} | | | | {reason} |\n",
                row.model,
                row.run,
                if cpu_ranges { " |" } else { "" }
            )),
            (None, Some(load)) => {
                let l = &load.latency_us;
                let range = match (cpu_ranges, row.cpu_spread) {
                    (false, _) => String::new(),
                    (true, Some((low, high))) => format!(" {low:.2}–{high:.2} |"),
                    (true, None) => " — |".into(),
                };
                md.push_str(&format!(
                    "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {}–{} | {} |{range} {} | {} | {:.0}% | {} |\n",
                    row.model,
                    row.run,
                    row.requests_per_s,
                    spread(row),
                    us(l.p50),
                    us(l.p99),
                    us(l.p999),
                    us(l.max),
                    load.per_conn.min,
                    load.per_conn.max,
                    fixed(row.cpu_us_per_request, 2),
                    fixed(row.syscalls_per_request, 2),
                    fixed(row.kib_per_conn, 1),
                    load.cpu_share * 100.0,
                    row.errors
                ));
            }
            (None, None) => {}
        }
    }
    md.push('\n');
    if !report.attempts.is_empty() {
        md.push_str(
            "\nEvery attempt that ran, in the order they ran (one that failed or could not run \
             is the row above; the table above shows, for each model and \
             run, the one with the median server CPU per request):\n\n\
             | round | model | run | req/s | server CPU µs/req | syscalls/req | errors |\n\
             |--:|---|---|--:|--:|--:|--:|\n",
        );
        for a in &report.attempts {
            md.push_str(&format!(
                "| {} | {} | {} | {:.0} | {} | {} | {} |\n",
                a.round,
                a.model,
                a.run,
                a.requests_per_s,
                fixed(a.cpu_us_per_request, 2),
                fixed(a.syscalls_per_request, 2),
                a.errors
            ));
        }
        md.push('\n');
        md.push_str(&round_by_round(report));
    }
    for chart in charts {
        let alt = chart.trim_end_matches(".svg").replace('-', " ");
        md.push_str(&format!("\n![{alt}]({chart})\n"));
    }
    md
}

/// Each model's CPU per request over the first model's, run by run and
/// round by round, from the attempts: a slow spell of the host moves a
/// whole round, and a ratio within a round cancels what a median of
/// each model's own attempts keeps. Empty when there is nothing to
/// divide (fewer than two models with attempts, or no CPU measured).
pub(super) fn round_by_round(report: &BenchReport) -> String {
    let mut models: Vec<&str> = Vec::new();
    let mut runs: Vec<&str> = Vec::new();
    for a in &report.attempts {
        if !models.contains(&a.model.as_str()) {
            models.push(&a.model);
        }
        if !runs.contains(&a.run.as_str()) {
            runs.push(&a.run);
        }
    }
    // The first model, as the contenders were given, that has attempts
    // (one whose every run failed or was skipped has none).
    let Some(base) = report
        .rows
        .iter()
        .map(|r| r.model.as_str())
        .find(|m| models.contains(m))
    else {
        return String::new();
    };
    if models.len() < 2 {
        return String::new();
    }
    let cpu = |model: &str, run: &str, round: usize| {
        report
            .attempts
            .iter()
            .find(|a| a.model == model && a.run == run && a.round == round)
            .and_then(|a| a.cpu_us_per_request)
    };
    let rounds = report.attempts.iter().map(|a| a.round).max().unwrap_or(0);
    let mut table = String::new();
    for model in models.iter().filter(|m| **m != base) {
        for run in &runs {
            let ratios: Vec<f64> = (1..=rounds)
                .filter_map(|round| Some(cpu(model, run, round)? / cpu(base, run, round)?))
                .filter(|r| r.is_finite())
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            table.push_str(&format!(
                "| {model} | {run} | {} | {:.2} |\n",
                listed.join(", "),
                median(&ratios)
            ));
        }
    }
    if table.is_empty() {
        return String::new();
    }
    format!(
        "Server CPU per request over `{base}`'s in the same round (below 1: cheaper than \
         `{base}`); the host's slow spells move whole rounds, and a ratio within a round \
         cancels them:\n\n| model | run | round by round | median |\n|---|---|---|--:|\n{table}\n"
    )
}

/// The median of `values` (the mean of the middle two for an even count;
/// NaN for none).
fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() % 2 {
        0 if mid > 0 => (sorted[mid - 1] + sorted[mid]) / 2.0,
        _ => sorted[mid],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bench::report::Attempt;

    fn attempt(round: usize, model: &str, cpu: f64) -> Attempt {
        Attempt {
            round,
            model: model.into(),
            run: "rr-1000".into(),
            requests_per_s: 1000.0,
            cpu_us_per_request: Some(cpu),
            syscalls_per_request: None,
            errors: 0,
        }
    }

    /// The ratios pair each round's attempts, whatever order they ran in,
    /// and the median is of the ratios (1.15), not a ratio of the two
    /// models' medians (9.2 / 9, 1.02): their medians fall in different
    /// rounds.
    #[test]
    fn round_by_round_divides_within_each_round() {
        let report = BenchReport {
            rows: vec![Row {
                model: "epoll".into(),
                ..Row::default()
            }],
            attempts: vec![
                attempt(1, "epoll", 8.0),
                attempt(1, "uring", 9.2),
                attempt(2, "uring", 6.0),
                attempt(2, "epoll", 10.0),
                attempt(3, "epoll", 9.0),
                attempt(3, "uring", 12.0),
            ],
            ..BenchReport::default()
        };
        let md = round_by_round(&report);
        assert!(
            md.contains("| uring | rr-1000 | 1.15, 0.60, 1.33 | 1.15 |"),
            "{md}"
        );
        assert_eq!(median(&[3.0, 1.0]), 2.0);
        let alone = BenchReport {
            attempts: vec![attempt(1, "epoll", 8.0)],
            ..report
        };
        assert_eq!(round_by_round(&alone), "");
    }
}
