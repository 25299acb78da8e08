//! `churn`: twenty thousand clients that each ask once and leave.
//!
//! Nothing here is malicious, which is why it finds so much: every
//! connection runs the whole life cycle, accept, register, read, answer,
//! end of stream, deregister, close, and a server that forgets one step
//! for one path leaks a descriptor or a buffer per connection. A thousand
//! connections hide the leak; twenty thousand (`--scale` scales them) run
//! a server that leaks a descriptor a connection into its limit, and the
//! kernel's `EMFILE` shows it.
//!
//! Two threads (one, for a server that serves one client at a time) each
//! connect, send one line, check the answer byte for byte and close, over
//! and over. When the server's process is known, its open descriptors
//! (`/proc/PID/fd`, summed over the server and any processes under it)
//! are counted before, after one round to warm it up, and again after the
//! churn: within 5 s they must be back to that baseline.

use std::time::{Duration, Instant};

use super::wire::{self, PATIENCE};
use super::{Finding, Halt, Limits, Plan, Process, Scenario, Target};
use crate::tools::child::tree_descriptors;

pub const SCENARIO: Scenario = Scenario {
    name: "churn",
    must: "answer every one of 20,000 short connections exactly and give back every descriptor",
    conns: |_, _| 1,
    process: Process::Any,
    tune: |_: &mut Limits| {},
    run,
};

/// Rounds in all, before scaling.
const ROUNDS: usize = 20_000;
/// The most failures described in the verdict's details.
const SAMPLES: usize = 3;

fn run(target: &mut Target, plan: &Plan) -> Result<Finding, Halt> {
    let mut f = Finding::default();
    let rounds = plan.count(ROUNDS);
    let threads = target.room.clamp(1, 2);
    // One round first: a server may open what it keeps for good (a pool, a
    // runtime's threads) on its first connection.
    wire::honest(target.addr, 0, PATIENCE)?;
    let before = target.pid.map(tree_descriptors);

    let started = Instant::now();
    let addr = target.addr;
    let failures: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let (mut count, mut samples) = (0, Vec::new());
                    for i in (t..rounds).step_by(threads) {
                        let line = format!("churn round {i} of {rounds}, MiXeD\n");
                        let result = wire::connect(addr)
                            .map_err(|e| format!("connect: {e}"))
                            .and_then(|mut s| wire::roundtrip(&mut s, line.as_bytes(), PATIENCE));
                        if let Err(e) = result {
                            count += 1;
                            if samples.len() < SAMPLES {
                                samples.push(format!("round {i}: {e}"));
                            }
                        }
                    }
                    (count, samples)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or((1, vec!["a churn thread panicked".into()]))
            })
            .collect()
    });
    let took = started.elapsed();
    let failed: usize = failures.iter().map(|(n, _)| n).sum();
    let samples: Vec<String> = failures
        .into_iter()
        .flat_map(|(_, s)| s)
        .take(SAMPLES)
        .collect();
    if failed > 0 {
        f.fail(format!(
            "{failed} of {rounds} rounds went wrong: {}",
            samples.join("; ")
        ));
    }

    // The server learns of the last closes a little later; give it 5 s.
    let mut after = None;
    if let (Some(pid), Some(before)) = (target.pid, before) {
        let since = Instant::now();
        let mut now = tree_descriptors(pid);
        while now > before && since.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(100));
            now = tree_descriptors(pid);
        }
        f.check(now <= before, || {
            format!("{} descriptors open after the churn, {before} before", now)
        });
        f.fact("descriptors_before", before);
        f.fact("descriptors_after", now);
        after = Some((before, now));
    }
    f.fact("rounds", rounds);
    f.fact("failed", failed);
    f.fact("rounds_per_s", rounds as f64 / took.as_secs_f64());
    target.alive(&mut f);
    f.says = format!(
        "{} of {rounds} rounds exact at {:.0}/s{}",
        rounds - failed,
        rounds as f64 / took.as_secs_f64(),
        match after {
            Some((before, now)) => format!("; descriptors {before} before, {now} after"),
            None => "; descriptors not counted (no --pid)".into(),
        }
    );
    Ok(f)
}
