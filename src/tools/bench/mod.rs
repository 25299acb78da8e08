//! `lab bench`: every model under the same loads, side by side.
//!
//! For each model and each run of each scenario the runner starts the model
//! as its own process on port 0, drives it with [`crate::tools::load`] from this
//! process, stops it with SIGTERM and reads its summary line. Server and
//! generator are pinned to different CPUs when there are at least two, so
//! they do not steal each other's time slices (the report says which).
//!
//! The scenarios:
//!
//! | run | busy conns | depth | idle conns | what it shows |
//! |---|---|---|---|---|
//! | `rr-1` | 1 | 1 | 0 | the latency floor: one request at a time |
//! | `rr-100` | 100 | 1 | 0 | many clients, one request each in flight |
//! | `rr-1000` | 1,000 | 1 | 0 | the same at 1,000 clients |
//! | `pipeline` | 100 | 16 | 0 | batching: many requests per syscall |
//! | `c10k` | 100 | 1 | 10,000 | memory per connection; cost of idle ones |
//!
//! Two more scenarios sweep one quantity, for a curve rather than a bar
//! (`lab bench --sweep idle,load`, see [`charts`]):
//!
//! | scenario | runs | what it shows |
//! |---|---|---|
//! | `sweep-idle` | 100 busy beside 0, 1,000, 2,500, 5,000, 10,000 idle | CPU per request: O(n) waits against O(ready) |
//! | `sweep-load` | 1, 10, 100, 1,000 busy, depth 1 | syscalls per request: how far each model batches |
//!
//! A model that cannot hold a run's connections by its nature (the
//! iterative server, a pool smaller than the clients, `select` past 1,024)
//! is reported as such with the reason, never dropped quietly.
//!
//! Everything measured is per run: requests per second and latency
//! percentiles from the generator; server CPU per request, syscalls per
//! request and errors from the server's summary; memory per connection as
//! the growth of the server's proportional set size (PSS, so that forked
//! processes' shared pages count once) divided by the connections.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::models::{self, Capacity, Model};
use crate::tools::child::{pin_self, tie_to_us, tree_cpu_seconds, tree_memory_kib, ServerProcess};
use crate::tools::load::{self, LoadArgs};

pub mod book;
pub mod charts;
mod markdown;
mod report;

use markdown::{markdown, spread, us};
pub(crate) use report::{commit, machine, now_utc};
pub use report::{Attempt, BenchReport, Machine, Row};

/// One load a model is put under.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Run {
    /// Its name in the report.
    pub name: &'static str,
    /// Connections sending requests.
    pub conns: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Connections held open and silent.
    pub idle: usize,
}

/// The runs of a scenario name, or `None` if there is no such scenario.
pub fn scenario(name: &str) -> Option<&'static [Run]> {
    const RR: &[Run] = &[
        Run {
            name: "rr-1",
            conns: 1,
            depth: 1,
            idle: 0,
        },
        Run {
            name: "rr-100",
            conns: 100,
            depth: 1,
            idle: 0,
        },
        Run {
            name: "rr-1000",
            conns: 1000,
            depth: 1,
            idle: 0,
        },
    ];
    const PIPELINE: &[Run] = &[Run {
        name: "pipeline",
        conns: 100,
        depth: 16,
        idle: 0,
    }];
    const C10K: &[Run] = &[Run {
        name: "c10k",
        conns: 100,
        depth: 1,
        idle: 10_000,
    }];
    // The sweeps: one quantity varied, everything else held, so that a
    // measure can be drawn against it as a curve.
    const fn busy(name: &'static str, idle: usize) -> Run {
        Run {
            name,
            conns: 100,
            depth: 1,
            idle,
        }
    }
    const SWEEP_IDLE: &[Run] = &[
        busy("idle-0", 0),
        busy("idle-1000", 1000),
        busy("idle-2500", 2500),
        busy("idle-5000", 5000),
        busy("idle-10000", 10_000),
    ];
    const fn clients(name: &'static str, conns: usize) -> Run {
        Run {
            name,
            conns,
            depth: 1,
            idle: 0,
        }
    }
    const SWEEP_LOAD: &[Run] = &[
        clients("conns-1", 1),
        clients("conns-10", 10),
        clients("conns-100", 100),
        clients("conns-1000", 1000),
    ];
    match name {
        "rr" => Some(RR),
        "pipeline" => Some(PIPELINE),
        "c10k" => Some(C10K),
        "sweep-idle" => Some(SWEEP_IDLE),
        "sweep-load" => Some(SWEEP_LOAD),
        _ => None,
    }
}

/// The models a sweep compares unless told otherwise: `sweep-idle` the
/// four ways of waiting whose cost may grow with idle connections
/// (O(n) scans against O(ready)), `sweep-load` the two that can batch.
pub fn sweep_models(sweep: &str) -> &'static [&'static str] {
    match sweep {
        "sweep-idle" => &["nonblocking", "poll", "epoll", "uring"],
        "sweep-load" => &["epoll", "uring"],
        _ => &[],
    }
}

/// The run of any scenario called `name` (`rr-100`, `c10k`).
pub fn run_named(name: &str) -> Option<Run> {
    ["rr", "pipeline", "c10k", "sweep-idle", "sweep-load"]
        .into_iter()
        .filter_map(scenario)
        .flatten()
        .find(|run| run.name == name)
        .copied()
}

/// A model as the bench runs it: its name, perhaps with options (`uring
/// --sqpoll`), so that variants of one model can be compared side by side;
/// perhaps after the path of another build of `lab` (`/tmp/lab-before
/// uring`), so that one model before and after a change can be. (The
/// path can hold no space or comma: entries are split on both. What this
/// build knows of the model — how many connections it can hold, whether
/// it counts its calls — is taken for the other build's too, and the
/// other build must take the options the bench adds: `--addr`,
/// `--max-conns`, `--idle-timeout`, `--drain-timeout`.)
#[derive(Clone)]
struct Contender {
    model: &'static Model,
    /// The entry as given: the row's name in the report.
    label: String,
    /// The `lab` executable that serves it, if not this one.
    lab: Option<PathBuf>,
    /// The model and its options: the server's command line.
    command: Vec<String>,
}

impl Contender {
    fn parse(entry: &str) -> io::Result<Contender> {
        let mut words: Vec<String> = entry.split_whitespace().map(String::from).collect();
        // A first word with a slash in it is a path (a model name has none).
        let lab = match words.first() {
            Some(first) if first.contains('/') => Some(PathBuf::from(words.remove(0))),
            _ => None,
        };
        let name = words.first().map_or("", String::as_str);
        let model =
            models::find(name).ok_or_else(|| io::Error::other(format!("no model named {name}")))?;
        if let Some(lab) = &lab {
            if !lab.is_file() {
                return Err(io::Error::other(format!(
                    "{}: no such file (a contender's first word with a slash is a lab executable)",
                    lab.display()
                )));
            }
        }
        Ok(Contender {
            model,
            label: entry.split_whitespace().collect::<Vec<_>>().join(" "),
            lab,
            command: words,
        })
    }
}

/// What to compare.
#[derive(Clone, Debug)]
pub struct BenchArgs {
    /// Model names, in order, each perhaps with options (`uring --sqpoll`).
    pub models: Vec<String>,
    /// Scenario names, in order.
    pub scenarios: Vec<String>,
    /// Seconds measured per run.
    pub duration: Duration,
    /// Seconds of load before measuring, per run.
    pub warmup: Duration,
    /// Where the report goes.
    pub out: PathBuf,
    /// Times each run is repeated, in interleaved rounds; the report keeps
    /// the run with the median server CPU per request and gives the ranges.
    pub repeat: usize,
    /// The command line, for the report.
    pub command: String,
    /// The `lab` executable to start the models with.
    pub lab: PathBuf,
    /// A busy loop shares the server's CPU, so that the server, not the
    /// load generator, sets the pace (see `Neighbour`).
    pub saturate: bool,
}

/// A process that spins on the server's CPU for as long as this lives.
///
/// On a 2-core machine the generator, on its own core, is the bottleneck
/// of most busy runs, and a server that keeps up sleeps whenever it has
/// caught up: its CPU per request then counts those sleeps and wake-ups,
/// as many as the generator's pace makes, and every model's core ends up
/// about as busy (0.87–0.96 of it in one run of every model). With a busy
/// neighbour the scheduler gives the server about half its core and the
/// server never catches up: it is the bottleneck, runs without sleeping,
/// and its CPU per request is what serving costs when requests are always
/// waiting — each model's batching at its best.
struct Neighbour {
    /// A shell spinning in `while :; do :; done`: a process of its own, so
    /// that its CPU is not counted as the generator's (which is this one).
    spinner: std::process::Child,
}

impl Neighbour {
    fn start(cpu: usize) -> io::Result<Neighbour> {
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "while :; do :; done"])
            .stdin(std::process::Stdio::null());
        tie_to_us(&mut command, Some(cpu));
        Ok(Neighbour {
            spinner: command.spawn()?,
        })
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = self.spinner.kill();
        let _ = self.spinner.wait();
    }
}

/// Runs the comparison, printing a table as it goes, and writes
/// `report.json`, `report.md` and the charts to `args.out`.
pub fn run(args: &BenchArgs) -> io::Result<BenchReport> {
    let mut chosen: Vec<(Contender, &[Run])> = Vec::new();
    for entry in &args.models {
        let contender = Contender::parse(entry)?;
        for scenario_name in &args.scenarios {
            let runs = scenario(scenario_name).ok_or_else(|| {
                io::Error::other(format!(
                    "no scenario named {scenario_name} (rr, pipeline, c10k, sweep-idle, sweep-load)"
                ))
            })?;
            chosen.push((contender.clone(), runs));
        }
    }
    std::fs::create_dir_all(&args.out)?;
    // Read the machine before pinning ourselves to one CPU, after which
    // `available_parallelism` says 1.
    let machine = machine();
    let cores = machine.cores;
    let pinning = if cores >= 2 {
        pin_self(1);
        match args.saturate {
            true => {
                "server on CPU 0, shared with a busy loop (--saturate), load generator on CPU 1"
            }
            false => "server on CPU 0, load generator on CPU 1",
        }
        .to_string()
    } else {
        "not pinned (one CPU)".to_string()
    };
    let _neighbour = match args.saturate && cores >= 2 {
        true => Some(Neighbour::start(0)?),
        false => None,
    };
    // Every (model, run) pair, in the order of the report.
    let cells: Vec<(&Contender, &Run)> = chosen
        .iter()
        .flat_map(|(contender, runs)| runs.iter().map(move |run| (contender, run)))
        .collect();
    let rounds = args.repeat.max(1);
    let total = cells.len() * rounds;
    println!(
        "lab bench: {} runs of {:.1} s (+{:.1} s warm-up), in {rounds} round(s); {pinning}",
        cells.len(),
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
    );
    println!("{}", header());

    // The repeats run in rounds — every model's every run once, then all
    // again — not back to back: on a shared machine the noise comes in
    // spells of a minute or more, and a spell that falls on one model's
    // three repeats in a row would move its median alone. Each round
    // starts one model further on, so that no model always follows the
    // same one (the one whose 10,000 connections have just closed, say).
    let starts: Vec<usize> = (0..cells.len())
        .filter(|&i| i == 0 || cells[i].0.label != cells[i - 1].0.label)
        .collect();
    let mut attempts: Vec<Vec<Row>> = vec![Vec::new(); cells.len()];
    let mut in_order: Vec<Attempt> = Vec::new();
    let started = Instant::now();
    let mut done = 0;
    for round in 1..=rounds {
        let first = starts
            .get((round - 1) % starts.len().max(1))
            .copied()
            .unwrap_or(0);
        for i in (0..cells.len()).map(|i| (i + first) % cells.len()) {
            let ((contender, run), tried) = (cells[i], &mut attempts[i]);
            done += 1;
            // A run that could not run, or failed, is not tried again: the
            // report gives that attempt.
            if tried.last().is_some_and(Row::failed) {
                continue;
            }
            // Progress on stderr, when it is a terminal, erased before the
            // row is printed.
            let progress = io::stderr().is_terminal();
            if progress {
                let eta = match done {
                    1 => String::new(),
                    _ => format!(
                        ", about {:.0} s left",
                        started.elapsed().as_secs_f64() / (done - 1) as f64
                            * (total - done + 1) as f64
                    ),
                };
                eprint!(
                    "[{done}/{total}] round {round}: {} {}{eta}...\r",
                    contender.label, run.name
                );
            }
            let row = measure(contender, run, args, cores >= 2);
            if progress {
                eprint!("{:79}\r", "");
            }
            println!("{}", row_line(&row));
            if rounds > 1 && row.skipped.is_none() {
                in_order.push(Attempt::of(&row, round));
            }
            tried.push(row);
        }
    }
    let rows: Vec<Row> = attempts.into_iter().map(median_of).collect();
    if rounds > 1 {
        println!("\nmedians (by server CPU per request):\n{}", header());
        for row in &rows {
            println!("{}", row_line(row));
        }
    }
    let report = BenchReport {
        machine,
        date: now_utc(),
        commit: commit(),
        command: args.command.clone(),
        pinning,
        duration_s: args.duration.as_secs_f64(),
        repeat: args.repeat,
        interleaved: true,
        cpu_in_window: true,
        rows,
        attempts: in_order,
    };
    write_report(&report, &args.out)?;
    Ok(report)
}

fn header() -> String {
    format!(
        "{:<12} {:<9} {:>10} {:>7} {:>9} {:>9} {:>9} {:>17} {:>8} {:>8} {:>8} {:>6}",
        "model",
        "run",
        "req/s",
        "spread",
        "p50",
        "p99",
        "p99.9",
        "per conn min/max",
        "cpu µs",
        "sys/req",
        "KiB/conn",
        "errors"
    )
}

fn row_line(row: &Row) -> String {
    if let Some(reason) = &row.skipped {
        return format!("{:<12} {:<9} -- {reason}", row.model, row.run);
    }
    let Some(load) = &row.load else {
        return String::new();
    };
    let opt = |v: Option<f64>, digits: usize| v.map_or("n/a".into(), |v| format!("{v:.digits$}"));
    format!(
        "{:<12} {:<9} {:>10.0} {:>7} {:>9} {:>9} {:>9} {:>17} {:>8} {:>8} {:>8} {:>6}",
        row.model,
        row.run,
        row.requests_per_s,
        spread(row),
        us(load.latency_us.p50),
        us(load.latency_us.p99),
        us(load.latency_us.p999),
        format!("{}/{}", load.per_conn.min, load.per_conn.max),
        opt(row.cpu_us_per_request, 2),
        opt(row.syscalls_per_request, 2),
        opt(row.kib_per_conn, 1),
        row.errors
    )
}

/// The row a run's repeats are reported as: the attempt with the median
/// server CPU per request — the measure the book's comparisons rest on —
/// with the range of requests/s and of CPU over the repeats. A run that
/// could not run, or failed, is reported as that attempt.
fn median_of(mut tried: Vec<Row>) -> Row {
    if let Some(failed) = tried.iter().position(Row::failed) {
        return tried.swap_remove(failed);
    }
    let repeated = tried.len() > 1;
    let spread = range(tried.iter().map(|r| r.requests_per_s)).filter(|_| repeated);
    let cpu_spread = range(tried.iter().filter_map(|r| r.cpu_us_per_request)).filter(|_| repeated);
    // A run with no CPU measure (no requests) sorts as the dearest.
    let cpu = |r: &Row| r.cpu_us_per_request.unwrap_or(f64::INFINITY);
    tried.sort_by(|a, b| cpu(a).total_cmp(&cpu(b)));
    let mut median = tried.swap_remove(tried.len() / 2);
    median.spread = spread;
    median.cpu_spread = cpu_spread;
    median
}

/// The lowest and highest of `values`, if there are any.
fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |range, v| match range {
        None => Some((v, v)),
        Some((low, high)) => Some((low.min(v), high.max(v))),
    })
}

/// One model under one run, from start to summary.
fn measure(contender: &Contender, run: &Run, args: &BenchArgs, pin: bool) -> Row {
    let model = contender.model;
    let mut row = Row {
        model: contender.label.clone(),
        run: run.name.into(),
        ..Row::default()
    };
    let workers = model.default_workers().unwrap_or(1);
    if let Capacity::AtMost(most, why) = model.capacity(workers) {
        if run.conns + run.idle > most {
            row.skipped = Some(format!(
                "cannot hold {} connections: {why} (at most {most})",
                run.conns + run.idle
            ));
            return row;
        }
    }
    match measure_running(contender, run, args, pin, &mut row) {
        Ok(()) => {}
        Err(e) => row.skipped = Some(format!("failed: {e}")),
    }
    row
}

fn measure_running(
    contender: &Contender,
    run: &Run,
    args: &BenchArgs,
    pin: bool,
    row: &mut Row,
) -> io::Result<()> {
    let command: Vec<&str> = contender.command.iter().map(String::as_str).collect();
    let lab = contender.lab.as_ref().unwrap_or(&args.lab);
    let mut server = ServerProcess::start(lab, &command, pin)?;
    let pid = server.pid();
    let baseline = tree_memory_kib(pid);
    let peak = AtomicU64::new(baseline);
    let running = AtomicBool::new(true);
    let load_args = LoadArgs {
        warmup: args.warmup,
        idle: run.idle,
        ..LoadArgs::closed_loop(&server.addr, run.conns, run.depth, args.duration)
    };
    // The server's CPU time at the two ends of the measured window: not
    // its start-up, the connections opened during the warm-up (10,000 idle
    // ones in c10k), or the closing after, which its summary includes.
    let window_cpu = std::sync::Mutex::new(None);
    let report = std::thread::scope(|scope| {
        // Sample the server's memory while the connections are open.
        scope.spawn(|| {
            while running.load(Relaxed) {
                peak.fetch_max(tree_memory_kib(pid), Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let report = load::run_observed(&load_args, |from, to| {
            std::thread::sleep(from.saturating_duration_since(Instant::now()));
            let before = tree_cpu_seconds(pid);
            std::thread::sleep(to.saturating_duration_since(Instant::now()));
            let after = tree_cpu_seconds(pid);
            *window_cpu.lock().unwrap_or_else(|e| e.into_inner()) = Some(after - before);
        });
        running.store(false, Relaxed);
        report
    });
    let summary = server.stop()?;
    let report = report?;
    let conns = (run.conns + run.idle) as f64;
    row.kib_per_conn = Some(peak.load(Relaxed).saturating_sub(baseline) as f64 / conns);
    row.requests_per_s = report.requests_per_s;
    row.errors = report.errors;
    let window_cpu = window_cpu.into_inner().unwrap_or_else(|e| e.into_inner());
    if let (Some(cpu_s), true) = (window_cpu, report.requests > 0) {
        row.cpu_us_per_request = Some(cpu_s * 1e6 / report.requests as f64);
    }
    if summary.requests > 0 && contender.model.counts_syscalls {
        row.syscalls_per_request = Some(summary.syscalls_per_request());
    }
    row.load = Some(report);
    row.summary = Some(summary);
    Ok(())
}

/// Writes `report.md` and the charts again from a saved `report.json`
/// (`lab bench --rerender DIR`): the measurements are not repeated.
pub fn rerender(dir: &Path) -> io::Result<()> {
    let json = std::fs::read_to_string(dir.join("report.json"))?;
    let report: BenchReport = serde_json::from_str(&json).map_err(io::Error::other)?;
    let charts = charts::write_all(&report, dir)?;
    std::fs::write(dir.join("report.md"), markdown(&report, &charts))
}

fn write_report(report: &BenchReport, out: &Path) -> io::Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report).map_err(io::Error::other)?,
    )?;
    let charts = charts::write_all(report, out)?;
    std::fs::write(out.join("report.md"), markdown(report, &charts))
}
