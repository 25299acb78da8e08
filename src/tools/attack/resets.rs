//! `resets`: clients that vanish at the worst moment.
//!
//! A client that closes with `SO_LINGER` 0 sends RST instead of FIN: its
//! connection is gone at once, with whatever the server had not read yet
//! and whatever it had not sent yet. The server learns of it from its next
//! call on that socket, `ECONNRESET` from a read or `EPIPE` from a write,
//! possibly in the middle of an answer. The protocol asks that it drop that
//! connection and go on serving everyone else; the classic bugs are a
//! `SIGPIPE` that kills the process, an error path that forgets to close
//! or deregister, and state from the dead connection bleeding into the
//! next one that reuses its descriptor number.
//!
//! Four threads (fewer for a server that holds fewer clients) reset 2,000
//! connections (`--scale` scales them) in four ways, in turn: mid-line
//! (a partial line, then RST), right after a whole line (its answer in
//! flight), mid-answer (128 KiB of lines sent, the first KiB of answers
//! read, then RST while the server is still writing), and at once (RST
//! before a byte). Every eighth turn a fresh honest client asks and is
//! checked byte for byte, and one honest client stays connected through it
//! all, asking again and again. Afterwards the server must be alive.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use super::wire::{self, HONEST_WITHIN, PATIENCE};
use super::{Finding, Halt, Limits, Plan, Process, Scenario, Target};

pub const SCENARIO: Scenario = Scenario {
    name: "resets",
    must: "drop connections reset mid-line and mid-answer and serve the honest ones exactly",
    conns: |_, _| 1,
    process: Process::Any,
    tune: |_: &mut Limits| {},
    run,
};

/// Resets in all, before scaling.
const RESETS: usize = 2000;
/// Lines sent before a mid-answer reset.
const MID_ANSWER: usize = 128 * 1024;

fn run(target: &mut Target, plan: &Plan) -> Result<Finding, Halt> {
    let mut f = Finding::default();
    let resets = plan.count(RESETS);
    // One connection is the long-lived honest client, when there is room.
    let stays = target.room >= 2;
    let threads = target.room.saturating_sub(usize::from(stays)).clamp(1, 4);
    let addr = target.addr;
    let done = AtomicBool::new(false);

    let mut long_lived = if stays {
        Some(wire::connect(addr)?)
    } else {
        None
    };
    let (mut asked, mut failures) = (0usize, Vec::new());
    let storms: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let (mut honest, mut failures) = (0, Vec::new());
                    for i in (t..resets).step_by(threads) {
                        if let Err(e) = reset_one(addr, i % 4) {
                            failures.push(format!("reset {i}: {e}"));
                        }
                        if i % 8 == 7 {
                            honest += 1;
                            if let Err(e) = wire::honest(addr, i, HONEST_WITHIN) {
                                failures.push(e);
                            }
                        }
                    }
                    (honest, failures)
                })
            })
            .collect();
        // The long-lived client asks until the storm is over.
        let watcher = scope.spawn(|| {
            let results: Vec<_> = workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or((0, vec!["a reset thread panicked".into()]))
                })
                .collect();
            done.store(true, Relaxed);
            results
        });
        while let Some(stream) = long_lived.as_mut().filter(|_| !done.load(Relaxed)) {
            asked += 1;
            let line = format!("long-lived honest client, question {asked}\n");
            if let Err(e) = wire::roundtrip(stream, line.as_bytes(), HONEST_WITHIN) {
                failures.push(format!(
                    "the long-lived honest client, question {asked}: {e}"
                ));
                long_lived = None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        watcher.join().unwrap_or_default()
    });
    let honest: usize = storms.iter().map(|(n, _)| n).sum();
    failures.extend(storms.into_iter().flat_map(|(_, fails)| fails));
    if let Some(first) = failures.first() {
        f.fail(format!(
            "{} things went wrong; the first: {first}",
            failures.len()
        ));
    }
    f.fact("resets", resets);
    f.fact("honest_fresh", honest);
    f.fact("honest_long_lived_questions", asked);
    target.alive(&mut f);
    f.says = format!(
        "{resets} resets (mid-line, after a line, mid-answer, at once) from {threads} \
         thread(s); {honest} fresh honest clients and {asked} questions on a long-lived one \
         answered exactly"
    );
    Ok(f)
}

/// One hostile client: connects and resets, in the `kind`-th way. An error
/// here is the attacker's failing to connect or write before resetting:
/// the server turned it away or had already gone.
fn reset_one(addr: std::net::SocketAddr, kind: usize) -> Result<(), String> {
    let mut stream = wire::connect(addr).map_err(|e| format!("connect: {e}"))?;
    match kind {
        0 => stream
            .write_all(b"half a li")
            .map_err(|e| format!("write: {e}"))?,
        1 => stream
            .write_all(b"a whole line, whose answer is on its way\n")
            .map_err(|e| format!("write: {e}"))?,
        2 => {
            let lines = b"a line of lower-case letters, answered while the client resets\n"
                .iter()
                .copied()
                .cycle()
                .take(MID_ANSWER)
                .collect::<Vec<u8>>();
            stream
                .write_all(&lines)
                .map_err(|e| format!("write: {e}"))?;
            // The start of the answer, checked: it is there, and the rest
            // is still being written when the reset lands.
            wire::expect(&mut stream, &wire::answer(&lines[..1024]), PATIENCE)?;
        }
        _ => {}
    }
    wire::reset(stream);
    Ok(())
}
