//! `select-limit`: what happens at descriptor 1,024.
//!
//! `select(2)` takes its sets as bitmaps of `FD_SETSIZE` = 1,024 bits, so a
//! descriptor numbered 1,024 or more cannot be waited on at all (writing
//! its bit would scribble past the set). The demo opens 1,100 connections
//! one after another, each asking one line and staying open. Under
//! `select` the server's descriptors run out of set: from there on it
//! answers each newcomer with the protocol's `error: too many connections`
//! and closes it. `poll` takes an array instead of a bitmap and serves all.

use std::io;
use std::time::Duration;

use super::{Demo, Facts, Peer, Run, Stage};
use crate::models::Model;

pub const DEMO: Demo = Demo {
    name: "select-limit",
    claim: "select cannot wait on descriptor 1,024 or above; poll can",
    default_models: &["select", "poll"],
    run,
    rank_by: None,
    finding,
};

const CONNECTIONS: usize = 1100;

fn run(stage: &mut Stage, _model: &Model) -> io::Result<Facts> {
    let addr = stage.start(&[])?;
    stage.say(format_args!(
        "opening {CONNECTIONS} connections, each asking one line and staying open"
    ));
    let mut open = Vec::new();
    let (mut served, mut refused, mut unanswered) = (0u64, 0u64, 0u64);
    let mut first_refused = None;
    for i in 1..=CONNECTIONS {
        let mut peer = Peer::connect(&addr)?;
        match peer.ask(&format!("connection {i}"), Duration::from_secs(2)) {
            Ok(Some((answer, _))) if answer.starts_with("error:") => {
                refused += 1;
                if first_refused.is_none() {
                    first_refused = Some(i);
                    stage.say(format_args!(
                        "connection {i} gets {answer:?}: {served} are open, and the \
                         server's next descriptor would not fit in an fd_set"
                    ));
                }
            }
            Ok(Some(_)) => {
                served += 1;
                if i == 1 || i % 250 == 0 {
                    stage.say(format_args!("connection {i} is served"));
                }
                open.push(peer);
            }
            Ok(None) => unanswered += 1,
            // A refused connection is closed by the server right after its
            // error line; a reset may beat the line.
            Err(_) => refused += 1,
        }
    }
    stage.say(format_args!(
        "{served} served and held, {refused} turned away, {unanswered} unanswered"
    ));
    drop(open);
    let summary = stage.stop()?;
    stage.say(format_args!(
        "the server's summary: peak {} connections open at once",
        summary.peak_conns
    ));
    let mut facts = Facts::new();
    facts.insert("connections".into(), CONNECTIONS.into());
    facts.insert("served".into(), served.into());
    facts.insert("refused".into(), refused.into());
    facts.insert("unanswered".into(), unanswered.into());
    facts.insert("first_refused".into(), first_refused.into());
    Ok(facts)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    format!(
        "{}: {} of {CONNECTIONS} served, {} turned away with the error line",
        run.model,
        run.number("served"),
        run.number("refused")
    )
}
