//! `c10k`: what each connection costs in memory, model by model.
//!
//! The demo opens idle connections in steps (each asks one line, so the
//! server has really accepted it and set it up, then stays silent) and
//! reads the server's proportional set size (PSS: resident memory, pages
//! shared between processes split among them, so `fork`'s copies count
//! fairly) after each step. The slope is the memory a model spends per
//! connection: a thread's stack and buffers, a process, or a few hundred
//! bytes of state in an event loop. The kernel's own share (socket
//! buffers, a thread's kernel stack and task struct) is not in PSS; the
//! C10K chapter says where to see it.

use std::io;
use std::time::Duration;

use serde_json::json;

use super::{Demo, Facts, Peer, Run, Stage};
use crate::models::{Capacity, Model};
use crate::tools::child::tree_memory_kib;

pub const DEMO: Demo = Demo {
    name: "c10k",
    claim: "an idle connection costs what the model holds while it waits: a thread's \
            stack pages, a coroutine's one stack page, a task's future, or an event loop's \
            few hundred bytes (no read buffer: it is borrowed only while bytes are there)",
    default_models: &[
        "threads", "epoll", "uring", "coro", "async", "mio", "polling", "tokio",
    ],
    run,
    rank_by: Some("kib_per_conn"),
    finding,
};

const STEPS: [usize; 4] = [0, 1000, 2000, 4000];

fn run(stage: &mut Stage, model: &Model) -> io::Result<Facts> {
    let most = match model.capacity(model.default_workers().unwrap_or(1)) {
        Capacity::AtMost(most, why) => {
            stage.say(format_args!("{} holds at most {most}: {why}", model.name));
            most
        }
        Capacity::Unbounded => usize::MAX,
    };
    let addr = stage.start(&[])?;
    let pid = stage.server_pid();
    let mut open = Vec::new();
    let mut steps = Vec::new();
    for &target in STEPS.iter().filter(|&&n| n <= most) {
        while open.len() < target {
            let mut peer = Peer::connect(&addr)?;
            peer.ask("hello", Duration::from_secs(5))?
                .ok_or_else(|| io::Error::other("a connection got no answer"))?;
            open.push(peer);
        }
        // Let threads finish starting and the allocator settle.
        std::thread::sleep(Duration::from_millis(300));
        let pss = tree_memory_kib(pid);
        match steps.first() {
            Some(&(_, base)) if target > 0 => stage.say(format_args!(
                "{target:5} idle connections: server PSS {pss} KiB, {:.2} KiB per connection",
                (pss as f64 - base as f64) / target as f64
            )),
            _ => stage.say(format_args!(
                "{target:5} idle connections: server PSS {pss} KiB"
            )),
        }
        steps.push((target, pss));
    }
    drop(open);
    stage.stop()?;
    let (first, last) = (steps[0], steps[steps.len() - 1]);
    let per_conn = if last.0 > first.0 {
        (last.1 as f64 - first.1 as f64) / (last.0 - first.0) as f64
    } else {
        f64::NAN
    };
    let mut facts = Facts::new();
    facts.insert(
        "steps".into(),
        steps
            .iter()
            .map(|&(conns, pss)| json!({"conns": conns, "pss_kib": pss}))
            .collect(),
    );
    facts.insert("kib_per_conn".into(), json!(per_conn));
    Ok(facts)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    format!(
        "{}: {:.2} KiB per idle connection",
        run.model,
        run.number("kib_per_conn")
    )
}
