//! `batching`: syscalls per request as the load grows, epoll versus uring.
//!
//! With one connection and one request in flight, every model pays at
//! least one kernel crossing per request: `epoll` a wait, a `recv` and a
//! `send`; `uring` one `io_uring_enter` that both submits the send and
//! waits for the next completion. As connections and pipelining grow, one
//! `epoll_wait` reports many ready sockets, but each still costs its own
//! `recv` and `send`; one `io_uring_enter` submits and reaps *all* of them.
//! The server's counters give syscalls per answered request at each step
//! (each step on a fresh server, so nothing carries over).

use std::io;
use std::time::Duration;

use serde_json::json;

use super::{Demo, Facts, Run, Stage};
use crate::models::Model;
use crate::tools::load::{self, LoadArgs};

pub const DEMO: Demo = Demo {
    name: "batching",
    claim: "as load grows, io_uring batches many operations into one syscall; \
            epoll still pays a recv and a send per ready socket",
    default_models: &["epoll", "uring"],
    run,
    rank_by: None,
    finding,
};

/// (connections, requests in flight on each).
const STEPS: [(usize, usize); 3] = [(1, 1), (10, 4), (100, 16)];

fn run(stage: &mut Stage, model: &Model) -> io::Result<Facts> {
    let mut steps = Vec::new();
    for (conns, depth) in STEPS {
        let addr = stage.start(&[])?;
        let report = load::run(&LoadArgs::closed_loop(
            &addr,
            conns,
            depth,
            Duration::from_secs(1),
        ))?;
        let summary = stage.stop()?;
        let per_request = if model.counts_syscalls {
            summary.syscalls_per_request()
        } else {
            f64::NAN
        };
        let mut by_name: Vec<String> = summary
            .syscalls
            .iter()
            .map(|(name, &n)| (name, n as f64 / summary.requests.max(1) as f64))
            // Set-up calls (accept, setsockopt) round to nothing per request.
            .filter(|&(_, per)| per >= 0.0005)
            .map(|(name, per)| format!("{name} {per:.3}"))
            .collect();
        if by_name.is_empty() {
            by_name.push("not counted for this model".into());
        }
        stage.say(format_args!(
            "{conns} connection(s) x {depth} in flight: {} requests, {per_request:.3} \
             syscalls per request ({}); {} errors",
            report.requests,
            by_name.join(", "),
            report.errors
        ));
        steps.push(json!({
            "conns": conns,
            "depth": depth,
            "requests": report.requests,
            "errors": report.errors,
            "syscalls_per_request": per_request,
        }));
    }
    let mut facts = Facts::new();
    facts.insert("steps".into(), steps.into());
    Ok(facts)
}

/// Syscalls per request at step `i` of a run.
fn at_step(run: &Run, i: usize) -> f64 {
    run.facts["steps"][i]["syscalls_per_request"]
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    let per_step: Vec<String> = (0..STEPS.len())
        .map(|i| format!("{:.3}", at_step(run, i)))
        .collect();
    format!(
        "{}: syscalls per request {} as the load grows",
        run.model,
        per_step.join(" -> ")
    )
}
