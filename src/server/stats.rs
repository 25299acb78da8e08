//! What a run cost: the summary line printed at exit and the once-a-second
//! status line of `--stats`. Both read the counters kept by [`crate::sys`].

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::resource::UsageWho;
use serde::{Deserialize, Serialize};

use crate::server::shutdown;
use crate::sys::counters::{self, Counter, Kind};

/// The last line a server prints, as `summary {JSON}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// The model's name.
    pub model: String,
    /// Connections accepted (turned-away ones included).
    pub accepted: u64,
    /// Requests (complete lines) answered.
    pub requests: u64,
    /// Bytes received from clients.
    pub bytes_in: u64,
    /// Bytes sent to clients.
    pub bytes_out: u64,
    /// The most connections open at once.
    pub peak_conns: u64,
    /// Connections ended by an IO error (reset, broken pipe, write timeout).
    pub conn_errors: u64,
    /// Child processes that died of a signal of their own (process models).
    pub children_crashed: u64,
    /// Child processes the server killed because they were still busy at
    /// the end of the drain (process models): not crashes.
    #[serde(default)]
    pub children_stopped: u64,
    /// Event queues that overflowed and were recovered from (the realtime
    /// signal queue of `sigio`).
    pub overflows: u64,
    /// System calls on the hot path, by name; only those made at least once.
    pub syscalls: BTreeMap<String, u64>,
    /// Operations the kernel carried out from io_uring submissions, by name
    /// (empty for every other model).
    #[serde(default)]
    pub operations: BTreeMap<String, u64>,
    /// User CPU seconds since the server started: this process and the
    /// children it reaped.
    pub cpu_user_s: f64,
    /// System CPU seconds since the server started: this process and the
    /// children it reaped.
    pub cpu_sys_s: f64,
    /// Peak resident memory in KiB: this process's peak (`VmHWM`) plus the
    /// largest peak of any child it reaped (the kernel keeps no sum over
    /// children; a forked child's peak includes pages it shares with us).
    pub max_rss_kb: u64,
    /// Seconds from start to the end of the drain.
    pub wall_s: f64,
}

impl Summary {
    /// Total syscalls per answered request (0 when nothing was answered).
    pub fn syscalls_per_request(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.total_syscalls() as f64 / self.requests as f64
        }
    }

    /// Every counted system call, of every kind.
    pub fn total_syscalls(&self) -> u64 {
        self.syscalls.values().sum()
    }
}

/// Reads everything into a [`Summary`]. Flushes the calling thread's counts
/// first; other threads must have exited (or flushed) for exact numbers.
pub fn summary(model: &str, started: Instant) -> Summary {
    counters::flush();
    let totals = counters::totals();
    let usage = Usage::now();
    Summary {
        model: model.to_string(),
        accepted: totals.get(Counter::Accepted),
        requests: totals.get(Counter::Requests),
        bytes_in: totals.get(Counter::BytesIn),
        bytes_out: totals.get(Counter::BytesOut),
        peak_conns: totals.gauges.peak_conns.load(Relaxed).max(0) as u64,
        conn_errors: totals.gauges.conn_errors.load(Relaxed),
        children_crashed: totals.gauges.children_crashed.load(Relaxed),
        children_stopped: totals.gauges.children_stopped.load(Relaxed),
        overflows: totals.get(Counter::Overflows),
        syscalls: counts(Kind::Syscall),
        operations: counts(Kind::Operation),
        cpu_user_s: usage.user.as_secs_f64(),
        cpu_sys_s: usage.system.as_secs_f64(),
        max_rss_kb: usage.max_rss_kb,
        wall_s: started.elapsed().as_secs_f64(),
    }
}

fn counts(kind: Kind) -> BTreeMap<String, u64> {
    let totals = counters::totals();
    Counter::ALL
        .iter()
        .filter(|c| c.kind() == kind && totals.get(**c) > 0)
        .map(|c| (c.name().to_string(), totals.get(*c)))
        .collect()
}

/// The process's CPU times when the server started (see [`mark_start`]).
static START_CPU: OnceLock<(Duration, Duration)> = OnceLock::new();

/// Marks the server's start: CPU is counted from here. Linux carries a
/// process's CPU times across `execve`, so a `lab` that `cargo run` started
/// would otherwise report the seconds cargo spent before it `exec`ed us.
/// Call first thing, before any thread or child exists.
pub fn mark_start() {
    let _ = START_CPU.set(own_cpu());
}

/// Records a reaped child's use (async-signal-safe: atomics only; the
/// `SIGCHLD` handler calls it).
pub fn add_reaped_child(child: &crate::sys::Reaped) {
    let gauges = &counters::totals().gauges;
    gauges.children_user_us.fetch_add(child.user_us, Relaxed);
    gauges
        .children_system_us
        .fetch_add(child.system_us, Relaxed);
    gauges.children_peak_kb.fetch_max(child.max_rss_kb, Relaxed);
}

/// User and system CPU time of this process (`RUSAGE_SELF`), since exec's
/// predecessors included.
fn own_cpu() -> (Duration, Duration) {
    nix::sys::resource::getrusage(UsageWho::RUSAGE_SELF)
        .map_or((Duration::ZERO, Duration::ZERO), |u| {
            (timeval(u.user_time()), timeval(u.system_time()))
        })
}

/// CPU time and peak memory of the server: this process since
/// [`mark_start`], plus the children it reaped.
struct Usage {
    user: Duration,
    system: Duration,
    max_rss_kb: u64,
}

impl Usage {
    fn now() -> Usage {
        let (user, system) = Usage::cpu();
        // Our own peak from VmHWM, not getrusage: Linux carries ru_maxrss
        // across execve, so a server started by a big process (a test
        // harness, cargo) would report that process's peak as its own.
        let children_kb = counters::totals().gauges.children_peak_kb.load(Relaxed);
        Usage {
            user,
            system,
            max_rss_kb: own_peak_rss_kb() + children_kb,
        }
    }

    /// User and system CPU time of the server since it started, its reaped
    /// children included.
    fn cpu() -> (Duration, Duration) {
        let (user, system) = own_cpu();
        let (user0, system0) = START_CPU.get().copied().unwrap_or_default();
        let gauges = &counters::totals().gauges;
        let children = |us: &AtomicU64| Duration::from_micros(us.load(Relaxed));
        (
            user.saturating_sub(user0) + children(&gauges.children_user_us),
            system.saturating_sub(system0) + children(&gauges.children_system_us),
        )
    }
}

/// `VmHWM` of /proc/self/status: the peak resident size of this address
/// space, which starts afresh at exec.
fn own_peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

/// A `getrusage` time as a `Duration`.
pub fn timeval(tv: nix::sys::time::TimeVal) -> Duration {
    Duration::new(tv.tv_sec().max(0) as u64, tv.tv_usec().max(0) as u32 * 1000)
}

/// Prints one status line a second on stderr, from a thread that never
/// receives the stop signals, until the process exits:
///
/// ```text
/// [lab] open 100 | 41230 req/s | 82871 syscalls/s | 2.01 syscalls/req | cpu 97%
/// ```
pub fn spawn_status_line() -> std::io::Result<()> {
    shutdown::spawn_thread("stats".into(), || {
        let totals = counters::totals();
        // Once a second, but read only what the line shows: no map of
        // names, no /proc read for a peak that is not printed.
        let syscalls = || -> u64 {
            Counter::ALL
                .iter()
                .filter(|c| c.kind() == Kind::Syscall)
                .map(|c| totals.get(*c))
                .sum()
        };
        let cpu = || {
            let (user, system) = Usage::cpu();
            user + system
        };
        let (mut last_req, mut last_sys, mut last_cpu) =
            (totals.get(Counter::Requests), syscalls(), cpu());
        let mut last = Instant::now();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let (req, sys, cpu_now, now) = (
                totals.get(Counter::Requests),
                syscalls(),
                cpu(),
                Instant::now(),
            );
            let secs = (now - last).as_secs_f64();
            let requests = req - last_req;
            let calls = sys - last_sys;
            // With no requests there is no ratio, but the calls still show:
            // the non-blocking sweep makes hundreds of thousands a second
            // while idle.
            let per_req = match requests {
                0 => "-".to_string(),
                n => format!("{:.2}", calls as f64 / n as f64),
            };
            let line = format!(
                "[lab] open {} | {:.0} req/s | {:.0} syscalls/s | {per_req} syscalls/req | cpu {:.0}%\n",
                totals.gauges.open_conns.load(Relaxed),
                requests as f64 / secs,
                calls as f64 / secs,
                (cpu_now - last_cpu).as_secs_f64() / secs * 100.0,
            );
            // stderr may be closed; the server carries on regardless.
            let _ = std::io::stderr().write_all(line.as_bytes());
            (last_req, last_sys, last_cpu, last) = (req, sys, cpu_now, now);
        }
    })
    .map(drop)
}
