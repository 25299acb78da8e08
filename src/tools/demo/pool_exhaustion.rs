//! `pool-exhaustion`: a pool of two serves two clients, and the third waits.
//!
//! `threadpool --workers 2` (or `prefork --workers 2`) has two workers, each
//! serving one connection from accept to close. Clients A and B take both;
//! client C connects (the kernel completes the handshake and queues it) and
//! asks, and nobody reads its line until A leaves and a worker comes back
//! to `accept`. A pool bounds what the server spends; the price is that the
//! pool's size is the number of clients it can hold, idle ones included.

use std::io;
use std::time::{Duration, Instant};

use super::{ms, Demo, Facts, Peer, Run, Stage};
use crate::models::Model;

pub const DEMO: Demo = Demo {
    name: "pool-exhaustion",
    claim: "a pool of two workers serves two clients; the third waits until one leaves",
    default_models: &["threadpool --workers 2", "prefork --workers 2"],
    run,
    rank_by: None,
    finding,
};

/// How long C waits before A is asked to leave.
const PATIENCE: Duration = Duration::from_millis(1500);

fn run(stage: &mut Stage, model: &Model) -> io::Result<Facts> {
    let extra: &[&str] = if model.default_workers().is_some() && !stage.has_flag("--workers") {
        &["--workers", "2"]
    } else {
        &[]
    };
    let addr = stage.start(extra)?;
    let mut held = Vec::new();
    for name in ["A", "B"] {
        let mut peer = Peer::connect(&addr)?;
        let question = format!("hello from {}", name.to_lowercase());
        match peer.ask(&question, PATIENCE)? {
            Some((answer, took)) => stage.say(format_args!(
                "{name} connects, asks, gets {answer:?} after {:.2} ms, and stays",
                ms(took)
            )),
            None => stage.say(format_args!("{name} connects and asks: no answer yet")),
        }
        held.push(peer);
    }
    let mut c = Peer::connect(&addr)?;
    let asked = Instant::now();
    c.send("hello from c")?;
    stage.say(format_args!("C connects and asks \"hello from c\""));
    let mut facts = Facts::new();
    if let Some(answer) = c.line_within(PATIENCE)? {
        stage.say(format_args!(
            "C gets {answer:?} after {:.2} ms: a worker was free",
            ms(asked.elapsed())
        ));
        facts.insert("c_answered_while_a_b_connected".into(), true.into());
    } else {
        stage.say(format_args!(
            "{:.0} ms and nothing for C: both workers are busy holding A and B",
            ms(asked.elapsed())
        ));
        held.remove(0);
        let left = Instant::now();
        stage.say(format_args!("A leaves"));
        let answer = c
            .line_within(Duration::from_secs(5))?
            .ok_or_else(|| io::Error::other("C got no answer even after A left"))?;
        stage.say(format_args!(
            "C gets {answer:?}, {:.1} ms after A left: A's worker took C",
            ms(left.elapsed())
        ));
        facts.insert("c_answered_while_a_b_connected".into(), false.into());
    }
    facts.insert("c_wait_ms".into(), ms(asked.elapsed()).into());
    drop((held, c));
    stage.stop()?;
    Ok(facts)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    let how = if run.flag("c_answered_while_a_b_connected") {
        "answered while A and B held their connections"
    } else {
        "answered only when A left and freed a worker"
    };
    format!(
        "{}: C waited {:.1} ms, {how}",
        run.model,
        run.number("c_wait_ms")
    )
}
