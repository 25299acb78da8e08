//! `race`: many clients buy tickets from one shared counter; who sells a
//! ticket twice, and what it takes to stop it.
//!
//! The server runs with `--tickets MODE` (the demo-only ticket desk of
//! [`crate::server::tickets`]): a `ticket` line is answered `TICKET n`
//! from one counter. [`CLIENTS`] clients connect, wait for each other, and
//! each sends [`TICKETS_EACH`] `ticket` lines in one write, so every
//! connection's sales are in flight at once. The demo counts the numbers
//! it got back and those it got more than once: a number sold twice is an
//! update lost (two sales read the same value before either wrote).
//!
//! Per model, the modes that tell its story:
//!
//! - `threads`, `threadpool`: `racy` (read, 20 µs of work, write) sells
//!   tickets twice, because two threads are inside the window at once
//!   (on two cores, or one preempted inside it); `locked` (a `Mutex`) and
//!   `atomic` (one `fetch_add`) sell each once, and the time each run took
//!   is the cost of the contention.
//! - `fork`, `prefork`: `atomic` is correct and still wrong: the counter
//!   is a global, and `fork` copied it into every process, so each child
//!   sells from its own copy (under `fork` every client gets 1, 2, 3...).
//!   `shared` puts the atomic in a `MAP_SHARED` page mapped before the
//!   fork (what Python's `multiprocessing.Value` does): one counter again.
//! - `epoll`, `async` and the other single-threaded loops: `racy` is safe.
//!   Nothing else runs on the thread between the read and the write.
//! - `coro`: `racy` is safe for the same reason; `yielding` puts a
//!   coroutine switch between the read and the write (as a gevent
//!   greenlet's `time.sleep` or socket call would), and the race is back
//!   on one thread.
//!
//! The facts are named by mode: for `racy`, `racy_sold`, `racy_distinct`,
//! `racy_sold_twice` (sales that got a number already sold: updates
//! lost), `racy_highest` and `racy_ms`; likewise `locked_sold_twice`,
//! `locked_ms`, `atomic_sold_twice`, `atomic_distinct`, `atomic_highest`,
//! `atomic_ms`, `shared_sold_twice`, `yielding_sold_twice` and the rest.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::{ms, Demo, Facts, Peer, Run, Stage};
use crate::models::Model;
use crate::server::tickets::TicketMode;

pub const DEMO: Demo = Demo {
    name: "race",
    claim: "a read-modify-write shared by threads or coroutines that yield loses updates \
            unless locked or atomic; processes need the counter in shared memory; \
            a single-threaded loop needs nothing",
    default_models: &[
        "threads",
        "threadpool --workers 4",
        "fork",
        "prefork --workers 4",
        "epoll",
        "coro",
        "async",
    ],
    run,
    rank_by: None,
    finding,
};

/// Clients buying at once.
pub const CLIENTS: usize = 8;
/// Tickets each client buys, in one write.
pub const TICKETS_EACH: usize = 250;

/// The modes that tell a model's story (see the module doc).
fn modes(model: &Model) -> &'static [TicketMode] {
    use TicketMode::*;
    match model.name {
        "threads" | "threadpool" => &[Racy, Locked, Atomic],
        "fork" | "prefork" => &[Atomic, Shared],
        "coro" => &[Racy, Yielding],
        _ => &[Racy],
    }
}

fn run(stage: &mut Stage, model: &Model) -> io::Result<Facts> {
    let mut facts = Facts::new();
    let mut told = Vec::new();
    for &mode in modes(model) {
        let addr = stage.start(&["--tickets", mode.name()])?;
        let started = Instant::now();
        let numbers = buy(&addr)?;
        let took = started.elapsed();
        stage.stop()?;
        let sold = numbers.len();
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for n in &numbers {
            *seen.entry(*n).or_default() += 1;
        }
        let distinct = seen.len();
        let highest = numbers.iter().copied().max().unwrap_or(0);
        stage.say(format_args!(
            "--tickets {}: {CLIENTS} clients bought {sold} tickets in {:.1} ms: \
             {distinct} different numbers, so {} sales repeated a number already sold \
             (an update lost), the highest {highest}",
            mode.name(),
            ms(took),
            sold - distinct,
        ));
        let key = mode.name();
        facts.insert(format!("{key}_sold"), sold.into());
        facts.insert(format!("{key}_distinct"), distinct.into());
        facts.insert(format!("{key}_sold_twice"), (sold - distinct).into());
        facts.insert(format!("{key}_highest"), highest.into());
        facts.insert(format!("{key}_ms"), ms(took).into());
        told.push(key);
    }
    facts.insert("modes".into(), told.join(" ").into());
    Ok(facts)
}

/// Every client connects, all start together, each sends its `ticket`
/// lines in one write and reads its answers; returns every number sold.
fn buy(addr: &str) -> io::Result<Vec<u64>> {
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, start) = (addr.to_string(), start.clone());
            std::thread::spawn(move || -> io::Result<Vec<u64>> {
                let mut peer = Peer::connect(&addr)?;
                let batch = "ticket\n".repeat(TICKETS_EACH);
                start.wait();
                peer.stream().write_all(batch.as_bytes())?;
                let mut numbers = Vec::with_capacity(TICKETS_EACH);
                for _ in 0..TICKETS_EACH {
                    let line = peer
                        .line_within(Duration::from_secs(30))?
                        .ok_or_else(|| io::Error::other("no answer within 30 s"))?;
                    let number = line
                        .strip_prefix("TICKET ")
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| io::Error::other(format!("not a ticket: {line:?}")))?;
                    numbers.push(number);
                }
                Ok(numbers)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(CLIENTS * TICKETS_EACH);
    for client in clients {
        let numbers = client
            .join()
            .map_err(|_| io::Error::other("a client thread panicked"))??;
        all.extend(numbers);
    }
    Ok(all)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    let modes = run
        .facts
        .get("modes")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    let parts: Vec<String> = modes
        .split_whitespace()
        .map(|mode| {
            format!(
                "{mode} sold {} twice ({:.0} ms)",
                run.number(&format!("{mode}_sold_twice")),
                run.number(&format!("{mode}_ms"))
            )
        })
        .collect();
    format!(
        "{}: of {} tickets, {}",
        run.model,
        CLIENTS * TICKETS_EACH,
        parts.join("; ")
    )
}
