//! `pause`: the server stops; its clients do not.
//!
//! A process can be stopped without being asked: `SIGSTOP` from a
//! debugger or an operator's Ctrl-Z, a container frozen, a virtual machine
//! descheduled, a laptop lid closed. The kernel goes on receiving for it,
//! so when it runs again its sockets hold lines that arrived in time, and
//! its clock says that much longer has passed than its idle timeout. The
//! protocol's idle timeout is about the *client*: "no byte received for
//! IDLE_TIMEOUT". These clients did send; a server that looks at its
//! timers before it looks at its sockets times out clients whose lines are
//! waiting in its receive buffers, and answers them `error: idle timeout`
//! (or closes them) instead of upper-casing their lines.
//!
//! Here 200 clients (`--scale` scales them) connect and are answered once;
//! then, in each of 3 rounds (2 with `--quick`), the whole server (its
//! process and every process under it) is stopped with `SIGSTOP`, every
//! client sends a line, and after the idle timeout plus 1 s the server is
//! resumed with `SIGCONT`. Every client must get its answer, byte for
//! byte: no `error: idle timeout`, no close, no reset.
//!
//! This needs the server's pid, and an idle timeout to step over: under
//! `--model` the server runs with `--idle-timeout 2`; for a server of your
//! own, give `--pid` and the `--idle-timeout` it runs with.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::wire::{self, IDLE_TIMEOUT, PATIENCE};
use super::{signal, Finding, Halt, Limits, Plan, Process, Scenario, Target};
use crate::tools::child::descendants;

pub const SCENARIO: Scenario = Scenario {
    name: "pause",
    must: "answer, after SIGCONT, every line that arrived while it was stopped past its idle \
           timeout",
    conns: |plan, _| plan.count(CLIENTS),
    process: Process::Pid,
    tune: |limits: &mut Limits| limits.idle_timeout = Some(Duration::from_secs(2)),
    run,
};

/// Clients, before scaling.
const CLIENTS: usize = 200;

fn run(target: &mut Target, plan: &Plan) -> Result<Finding, Halt> {
    let Some(pid) = target.pid else {
        return Err(Halt::NotApplicable("needs the server's pid".into()));
    };
    let Some(idle) = target.limits.idle_timeout else {
        return Err(Halt::NotApplicable(
            "say the server's idle timeout with --idle-timeout SECS".into(),
        ));
    };
    let mut f = Finding::default();
    let n = plan.count(CLIENTS);
    let rounds = if plan.quick { 2 } else { 3 };
    let stopped_for = idle + Duration::from_secs(1);

    let mut clients: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = wire::connect(target.addr)?;
        let line = format!("client {i} before the pause\n");
        wire::roundtrip(&mut stream, line.as_bytes(), PATIENCE)
            .map_err(|e| format!("client {i} was not served before any pause: {e}"))?;
        clients.push(Some(stream));
    }

    let (mut answered, mut timed_out, mut closed, mut other) = (0, 0, 0, 0);
    let mut first_failure = None;
    for round in 1..=rounds {
        let paused = Paused::stop(pid)?;
        let lines: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                format!("round {round}, client {i}: sent while the server was stopped\n")
                    .into_bytes()
            })
            .collect();
        for (stream, line) in clients.iter_mut().zip(&lines) {
            if let Some(s) = stream {
                // The kernel takes the line into the stopped server's
                // receive buffer; a failure means the connection is gone.
                if s.write_all(line).is_err() {
                    *stream = None;
                    closed += 1;
                }
            }
        }
        std::thread::sleep(stopped_for.saturating_sub(paused.since.elapsed()));
        drop(paused);
        for (i, (stream, line)) in clients.iter_mut().zip(&lines).enumerate() {
            let Some(s) = stream else { continue };
            let got = wire::expect(s, &wire::answer(line), PATIENCE);
            answered += usize::from(got.is_ok());
            if let Err(e) = got {
                let said = String::from_utf8_lossy(IDLE_TIMEOUT);
                if e.contains(said.trim_end()) {
                    timed_out += 1;
                } else if e.contains("closed") || e.contains("reset") {
                    closed += 1;
                } else {
                    other += 1;
                }
                first_failure.get_or_insert(format!("round {round}, client {i}: {e}"));
                *stream = None;
            }
        }
    }
    drop(clients);
    let failed = timed_out + closed + other;
    if let Some(first) = first_failure {
        f.fail(format!(
            "{failed} clients lost their line ({timed_out} idle timeouts, {closed} closed or \
             reset, {other} otherwise); the first: {first}"
        ));
    }
    f.fact("clients", n);
    f.fact("rounds", rounds);
    f.fact("stopped_s", stopped_for.as_secs_f64());
    f.fact("answered", answered);
    f.fact("idle_timeouts", timed_out);
    f.fact("closed_or_reset", closed);
    target.alive(&mut f);
    f.says = format!(
        "{n} clients × {rounds} rounds of SIGSTOP for {:.1} s (idle timeout {:.1} s): \
         {answered} answers of {}",
        stopped_for.as_secs_f64(),
        idle.as_secs_f64(),
        n * rounds
    );
    Ok(f)
}

/// A stopped server: its process and everything under it got `SIGSTOP`;
/// dropping this sends them `SIGCONT`, so the server is never left stopped,
/// whatever happens to the attack.
struct Paused {
    pids: Vec<i32>,
    since: Instant,
}

impl Paused {
    /// Stops the tree and waits (up to a second) until the kernel says the
    /// server is stopped.
    fn stop(pid: i32) -> Result<Paused, Halt> {
        let pids: Vec<i32> = std::iter::once(pid).chain(descendants(pid)).collect();
        let paused = Paused {
            pids,
            since: Instant::now(),
        };
        for &p in &paused.pids {
            signal(p, Signal::SIGSTOP).map_err(|e| format!("SIGSTOP {p}: {e}"))?;
        }
        while !is_stopped(pid) && paused.since.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(paused)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for &p in &self.pids {
            // A process that exited meanwhile cannot be resumed; nothing
            // else can fail here.
            let _ = signal(p, Signal::SIGCONT);
        }
    }
}

/// Whether `/proc/PID/stat` says the process is stopped (state `T`).
fn is_stopped(pid: i32) -> bool {
    crate::tools::child::stat_after_comm(pid)
        .is_some_and(|rest| rest.split_whitespace().next() == Some("T"))
}
