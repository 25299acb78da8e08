//! What a bench run measured, as it is saved (`report.json`) and read back
//! (`lab bench --rerender`): the types the runner fills and the renderers
//! (Markdown, charts, the book's tables) read, and the machine it ran on.

use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::server::stats::Summary;
use crate::tools::load::LoadReport;

/// One model under one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Row {
    /// The model.
    pub model: String,
    /// The run.
    pub run: String,
    /// Why it was not run, or why the run failed; `None` if it ran.
    pub skipped: Option<String>,
    /// Requests answered per second (the median run's, if repeated).
    pub requests_per_s: f64,
    /// The lowest and highest requests/s over the repeats.
    pub spread: Option<(f64, f64)>,
    /// The lowest and highest server CPU µs per request over the repeats
    /// (reports before 2026-12-06's interleaved runs did not keep it).
    #[serde(default)]
    pub cpu_spread: Option<(f64, f64)>,
    /// Latency percentiles (µs) and fairness, from the generator.
    pub load: Option<LoadReport>,
    /// Server CPU microseconds per request (user + system, its process tree,
    /// during the measured window only; reports before 2026-12-06's last
    /// runs took the summary's whole run, start-up and warm-up included).
    pub cpu_us_per_request: Option<f64>,
    /// Server syscalls per request (whole run), if the model counts them.
    pub syscalls_per_request: Option<f64>,
    /// Growth of the server's memory per open connection, KiB.
    pub kib_per_conn: Option<f64>,
    /// Errors seen by the generator.
    pub errors: u64,
    /// The server's summary line.
    pub summary: Option<Summary>,
}

impl Row {
    /// Whether the run could not be made, or made errors: a repeat would
    /// tell nothing more, and the report gives this attempt.
    pub fn failed(&self) -> bool {
        self.skipped.is_some() || self.errors > 0
    }
}

/// The machine a report was measured on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    /// From /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
}

/// Everything `lab bench` writes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BenchReport {
    /// Where it ran.
    pub machine: Machine,
    /// When (UTC, RFC 3339).
    pub date: String,
    /// `git describe` of the source, if known.
    pub commit: String,
    /// How it was invoked.
    pub command: String,
    /// How server and generator were placed on CPUs.
    pub pinning: String,
    /// Seconds measured per run.
    pub duration_s: f64,
    /// Times each run was repeated.
    pub repeat: usize,
    /// Whether the repeats ran in interleaved rounds (every model's every
    /// run once, then again), each row being the run with the median
    /// server CPU per request; older reports repeated each run back to
    /// back and kept the median by requests/s.
    #[serde(default)]
    pub interleaved: bool,
    /// Whether CPU per request counts only the measured window (from
    /// `/proc`, since 2026-12-06) or, in older reports, the server's whole
    /// run from its summary.
    #[serde(default)]
    pub cpu_in_window: bool,
    /// Every model × run.
    pub rows: Vec<Row>,
    /// With repeats, every attempt in the order it ran, so that a reader
    /// can see how far the ones not shown lie from the median (empty in
    /// older reports and without repeats).
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

/// One attempt of a repeated run, in brief.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Attempt {
    /// The round it ran in, from 1.
    pub round: usize,
    /// As in its [`Row`].
    pub model: String,
    /// As in its [`Row`].
    pub run: String,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Server CPU µs per request, in the measured window.
    pub cpu_us_per_request: Option<f64>,
    /// System calls per request, over the server's whole run.
    pub syscalls_per_request: Option<f64>,
    /// Errors the generator saw.
    pub errors: u64,
}

impl Attempt {
    /// The brief of `row`, measured in round `round`.
    pub fn of(row: &Row, round: usize) -> Attempt {
        Attempt {
            round,
            model: row.model.clone(),
            run: row.run.clone(),
            requests_per_s: row.requests_per_s,
            cpu_us_per_request: row.cpu_us_per_request,
            syscalls_per_request: row.syscalls_per_request,
            errors: row.errors,
        }
    }
}

pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = crate::sys::kernel_release();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel,
        memory_gib: mem_kib / 1024.0 / 1024.0,
    }
}

pub(crate) fn now_utc() -> String {
    let output = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output();
    output
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub(crate) fn commit() -> String {
    let output = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}
