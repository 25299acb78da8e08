//! `head-of-line`: one slow batch of requests stalls a single event loop.
//!
//! The server runs with `--work-us 1000`: every request burns 1 ms of CPU,
//! standing in for real work (parsing, a computation, a cache miss to a
//! slow disk). The hog sends 500 requests in one write: half a second of
//! work that arrives in one `recv`. 50 ms later the probe asks one line.
//!
//! A single event loop (`epoll`, `coro`, `async`, tokio's current-thread
//! runtime) is busy inside the hog's batch: nothing else runs on its
//! thread until the batch is done, so the probe waits for most of the half
//! second. A thread per connection or a pool has another thread for the
//! probe, and the kernel's scheduler shares the CPU between them.
//!
//! 1 ms of CPU per request is, to an executor, what a 1 ms blocking call
//! inside a task is (`std::thread::sleep`, a blocking `read`): a task that
//! does not reach an `.await` that waits holds the thread.

use std::io;
use std::time::{Duration, Instant};

use super::{ms, Demo, Facts, Peer, Run, Stage};
use crate::models::Model;

pub const DEMO: Demo = Demo {
    name: "head-of-line",
    claim: "per-request CPU work on a single event loop delays every client behind it; \
            a thread pool keeps serving",
    default_models: &["epoll", "threadpool"],
    run,
    rank_by: None,
    finding,
};

/// What each request costs, in microseconds.
pub(super) const WORK_US: u64 = 1000;
/// Requests in the hog's batch.
pub(super) const HOG_REQUESTS: usize = 500;

fn run(stage: &mut Stage, _model: &Model) -> io::Result<Facts> {
    let (waited, hog_took) = hog_and_probe(stage, &["--work-us", &WORK_US.to_string()])?;
    let mut facts = Facts::new();
    facts.insert("work_us".into(), WORK_US.into());
    facts.insert("hog_requests".into(), HOG_REQUESTS.into());
    facts.insert("probe_ms".into(), ms(waited).into());
    facts.insert("hog_ms".into(), ms(hog_took).into());
    Ok(facts)
}

/// Starts the server with `extra` (which makes each request cost 1 ms:
/// `--work-us 1000` or `--block-us 1000`), lets the hog send its batch and
/// the probe ask one line 50 ms later, and stops the server. Returns how
/// long the probe waited and how long the hog's batch took. (`lab demo
/// offload` runs it too.)
pub(super) fn hog_and_probe(stage: &mut Stage, extra: &[&str]) -> io::Result<(Duration, Duration)> {
    let addr = stage.start(extra)?;
    let mut hog = Peer::connect(&addr)?;
    let batch: String = (0..HOG_REQUESTS).map(|i| format!("job {i:03}\n")).collect();
    let started = Instant::now();
    std::io::Write::write_all(hog.stream(), batch.as_bytes())?;
    stage.say(format_args!(
        "the hog sends {HOG_REQUESTS} requests in one write: {} ms at {WORK_US} µs each",
        HOG_REQUESTS as u64 * WORK_US / 1000
    ));
    std::thread::sleep(Duration::from_millis(50));
    let mut probe = Peer::connect(&addr)?;
    stage.say(format_args!("the probe connects and asks one line"));
    let (answer, waited) = probe
        .ask("just one", Duration::from_secs(30))?
        .ok_or_else(|| io::Error::other("the probe got no answer in 30 s"))?;
    stage.say(format_args!(
        "the probe gets {answer:?} after {:.1} ms",
        ms(waited)
    ));
    let got = hog.drain(batch.len(), Duration::from_secs(30))?;
    let hog_took = started.elapsed();
    stage.say(format_args!(
        "the hog has all {} answers after {:.0} ms",
        got / "job 000\n".len(),
        ms(hog_took)
    ));
    drop((hog, probe));
    stage.stop()?;
    Ok((waited, hog_took))
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    format!(
        "{}: the probe waited {:.1} ms behind {:.0} ms of someone else's work",
        run.model,
        run.number("probe_ms"),
        run.number("hog_ms")
    )
}
