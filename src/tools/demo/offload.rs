//! `offload`: a blocking call stalls a single event loop just as CPU work
//! does, and a pool behind the loop (`epoll --offload N`) takes the stall
//! away.
//!
//! The scenario is `head-of-line`'s (a hog sends 500 requests in one
//! write, a probe asks one line 50 ms later), run twice per model: with
//! `--work-us 1000` (each request burns 1 ms of CPU) and with `--block-us
//! 1000` (each request sleeps 1 ms: a blocking call, a disk read or a
//! query, during which the CPU is free).
//!
//! - `epoll`: the probe waits behind the hog's half second in both runs.
//!   A sleeping loop serves nobody: the free CPU does not help it.
//! - `epoll --offload 4`: the loop frames the hog's batch and hands its
//!   cost to a pool thread ([`crate::server::offload`]); the probe's
//!   request goes to another pool thread, and its answer comes back
//!   through the eventfd at once — libuv's design under Node.js.
//! - `threadpool`: a thread per connection at a time; the kernel shares
//!   the CPU (work) or has nothing to share (sleep).

use std::io;

use super::head_of_line::{hog_and_probe, WORK_US};
use super::{ms, Demo, Facts, Run, Stage};
use crate::models::Model;

pub const DEMO: Demo = Demo {
    name: "offload",
    claim: "a blocking call stalls a single event loop as CPU work does; \
            an event loop that hands the slow part to a thread pool keeps serving",
    default_models: &["epoll", "epoll --offload 4", "threadpool"],
    run,
    rank_by: None,
    finding,
};

fn run(stage: &mut Stage, _model: &Model) -> io::Result<Facts> {
    let cost = WORK_US.to_string();
    let mut facts = Facts::new();
    for (flag, key) in [("--work-us", "work"), ("--block-us", "block")] {
        let (waited, hog_took) = hog_and_probe(stage, &[flag, &cost])?;
        facts.insert(format!("{key}_probe_ms"), ms(waited).into());
        facts.insert(format!("{key}_hog_ms"), ms(hog_took).into());
    }
    facts.insert("cost_us".into(), WORK_US.into());
    Ok(facts)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    format!(
        "{}: behind CPU work the probe waited {:.1} ms, behind blocking calls {:.1} ms",
        run.model,
        run.number("work_probe_ms"),
        run.number("block_probe_ms"),
    )
}
