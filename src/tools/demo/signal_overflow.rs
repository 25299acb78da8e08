//! `signal-overflow`: the signal-driven model loses its queue and recovers.
//!
//! `sigio` asks the kernel for a real-time signal (`F_SETSIG`) per readiness
//! change, each carrying the descriptor, queued for `sigtimedwait`. The
//! queue is bounded per user by `RLIMIT_SIGPENDING`; when it is full the
//! kernel drops the real-time signals and raises a plain `SIGIO` instead,
//! which says only "you lost some". The model must then look at every
//! connection itself (one `poll` over all of them) — the recovery path that
//! made signal-driven IO fall out of use for sockets.
//!
//! The demo runs the same load twice: once with the machine's limit, once
//! with the server's limit lowered to 4 queued signals (with `prlimit(2)` on
//! the running server), and compares the overflows and the answers.

use std::io;
use std::time::Duration;

use super::{Demo, Facts, Run, Stage};
use crate::models::Model;
use crate::tools::load::{self, LoadArgs};

pub const DEMO: Demo = Demo {
    name: "signal-overflow",
    claim: "signal-driven IO overflows its real-time signal queue under load and must \
            fall back to polling every connection; no answer is lost",
    default_models: &["sigio"],
    run,
    rank_by: None,
    finding,
};

const SMALL_QUEUE: u64 = 4;

fn run(stage: &mut Stage, _model: &Model) -> io::Result<Facts> {
    let mut facts = Facts::new();
    for lowered in [false, true] {
        let addr = stage.start(&[])?;
        if lowered {
            crate::sys::set_process_limit(
                stage.server_pid(),
                libc::RLIMIT_SIGPENDING,
                SMALL_QUEUE,
            )?;
            stage.say(format_args!(
                "the server's RLIMIT_SIGPENDING is lowered to {SMALL_QUEUE} queued signals"
            ));
        } else {
            stage.say(format_args!(
                "the server keeps the machine's RLIMIT_SIGPENDING"
            ));
        }
        let report = load::run(&LoadArgs::closed_loop(
            &addr,
            50,
            8,
            Duration::from_millis(1500),
        ))?;
        let summary = stage.stop()?;
        stage.say(format_args!(
            "50 connections x 8 in flight for 1.5 s: {} requests, {} wrong or missing \
             answers; the queue overflowed {} times, each time recovered by one poll over \
             every connection",
            report.requests, report.errors, summary.overflows
        ));
        let key = if lowered { "lowered" } else { "normal" };
        facts.insert(format!("{key}_overflows"), summary.overflows.into());
        facts.insert(format!("{key}_requests"), report.requests.into());
        facts.insert(format!("{key}_errors"), report.errors.into());
    }
    Ok(facts)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    format!(
        "{}: {} overflows with the machine's limit, {} with a queue of \
         {SMALL_QUEUE}; {} errors in {} requests",
        run.model,
        run.number("normal_overflows"),
        run.number("lowered_overflows"),
        run.number("normal_errors") + run.number("lowered_errors"),
        run.number("normal_requests") + run.number("lowered_requests")
    )
}
