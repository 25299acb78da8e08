//! `slow-reader`: a client that sends and never reads.
//!
//! The hog writes request after request and never reads an answer. Each
//! answer is as long as its request, so a server that kept reading would
//! pile the answers up in its memory without bound. The protocol's
//! `MAX_PENDING` (256 KiB, docs/src/protocol.md) says: stop reading a
//! connection whose unsent answers pass it. Then the server's receive buffer
//! fills, TCP's window closes, the hog's send buffer fills, and its writes
//! stop: the kernel's flow control carries the backpressure to the client.
//! The server's memory stays flat, and every other client is still served.

use std::io::{self, Write};
use std::time::Duration;

use super::{ms, Demo, Facts, Peer, Run, Stage};
use crate::models::Model;
use crate::sys::is_timeout;
use crate::tools::child::tree_memory_kib;

pub const DEMO: Demo = Demo {
    name: "slow-reader",
    claim: "a client that never reads stalls itself, not the server: memory stays flat",
    default_models: &["epoll"],
    run,
    rank_by: None,
    finding,
};

/// The hog stops when its writes have made no progress for this long...
const STALLED: Duration = Duration::from_secs(1);
/// ...or when it has written this much (a server without backpressure).
const MOST: usize = 64 << 20;

fn run(stage: &mut Stage, _model: &Model) -> io::Result<Facts> {
    let addr = stage.start(&[])?;
    let pid = stage.server_pid();
    let before = tree_memory_kib(pid);
    stage.say(format_args!("the server's memory (PSS): {before} KiB"));

    // Two hogs, one after the other, both staying connected. The first
    // also pays for what the server sets up once (buffer pools, the first
    // connection's allocations); the second shows what one more costs.
    let mut hogs = Vec::new();
    let mut growth = Vec::new();
    let mut sent_total = Vec::new();
    let mut stalled = true;
    for name in ["the first hog", "a second hog"] {
        let start = tree_memory_kib(pid);
        let (hog, sent) = push_until_stalled(stage, &addr, name, pid)?;
        stalled &= sent < MOST;
        let now = tree_memory_kib(pid);
        stage.say(format_args!(
            "the server's memory: {now} KiB ({:+} KiB while {name} pushed {} KiB)",
            now as i64 - start as i64,
            sent >> 10
        ));
        growth.push(now as i64 - start as i64);
        sent_total.push(sent >> 10);
        hogs.push(hog);
    }
    let after = tree_memory_kib(pid);

    let mut other = Peer::connect(&addr)?;
    let answered = match other.ask("am i still served", Duration::from_secs(2))? {
        Some((answer, took)) => {
            stage.say(format_args!(
                "another client asks and gets {answer:?} after {:.1} ms",
                ms(took)
            ));
            true
        }
        None => {
            stage.say(format_args!(
                "another client asks and hears nothing in 2 s (this model serves one \
                 connection at a time)"
            ));
            false
        }
    };
    drop((hogs, other));
    stage.stop()?;
    let mut facts = Facts::new();
    facts.insert("hog_sent_kib".into(), sent_total.into());
    facts.insert("hog_growth_kib".into(), growth.into());
    facts.insert("hog_stalled".into(), stalled.into());
    facts.insert("pss_before_kib".into(), before.into());
    facts.insert(
        "pss_growth_kib".into(),
        (after as i64 - before as i64).into(),
    );
    facts.insert("other_client_served".into(), answered.into());
    Ok(facts)
}

/// Connects a hog and writes until no write has made progress for
/// [`STALLED`] (or [`MOST`] went through); returns it, still connected, and
/// how much it wrote.
fn push_until_stalled(
    stage: &Stage,
    addr: &str,
    name: &str,
    pid: i32,
) -> io::Result<(Peer, usize)> {
    let mut hog = Peer::connect(addr)?;
    // A write that can make no progress for STALLED gives up: the stall.
    hog.stream().set_write_timeout(Some(STALLED))?;
    stage.say(format_args!(
        "{name} connects and writes requests without ever reading"
    ));
    let chunk = b"please upper-case this line and keep the answer for me, thanks\n".repeat(1024);
    let (mut sent, mut next_report) = (0usize, 1usize << 20);
    while sent < MOST {
        match hog.stream().write(&chunk) {
            Ok(n) => {
                sent += n;
                if sent >= next_report {
                    stage.say(format_args!(
                        "{name} has written {} KiB; server PSS {} KiB",
                        sent >> 10,
                        tree_memory_kib(pid)
                    ));
                    next_report *= 2;
                }
            }
            Err(e) if is_timeout(&e) => break,
            Err(e) => return Err(e),
        }
    }
    if sent < MOST {
        stage.say(format_args!(
            "{name}'s writes stopped at {} KiB: no progress for {} s, every buffer on \
             the way is full",
            sent >> 10,
            STALLED.as_secs()
        ));
    } else {
        stage.say(format_args!(
            "{name} wrote {} MiB and the server kept taking it",
            MOST >> 20
        ));
    }
    Ok((hog, sent))
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    format!(
        "{}: two hogs pushed {} KiB and stalled: {}; the server grew {} KiB, \
         the second hog's share {} KiB; another client {}",
        run.model,
        run.facts["hog_sent_kib"],
        run.flag("hog_stalled"),
        run.number("pss_growth_kib"),
        run.facts["hog_growth_kib"][1],
        if run.flag("other_client_served") {
            "was served"
        } else {
            "was not served"
        }
    )
}
