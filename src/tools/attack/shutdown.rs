//! `shutdown`: told to stop in the middle of the work.
//!
//! A deploy, a restart, a container orchestrator: servers are stopped with
//! `SIGTERM` while clients are mid-conversation. The protocol's contract is
//! a graceful drain: stop accepting, answer every complete line already
//! received, flush, close, and exit 0, all within `DRAIN_TIMEOUT`, then
//! print the summary. The bugs are a server that exits at once and loses
//! the lines in its buffers, one that waits for ever on a client that keeps
//! talking, and one that leaves a worker process behind still accepting.
//!
//! Here 16 clients (fewer if the server holds fewer) each keep 8 lines in
//! flight, as fast as the server answers, for a second (half with
//! `--quick`). Then the attack marks the moment, waits 50 ms (so every line
//! written before the mark is in the server's receive buffer), and sends
//! `SIGTERM`. A client counts a line as *sent before the signal* only if
//! its write had finished before the mark; it writes nothing after seeing
//! the mark, and reads on until the server closes. Every line sent before
//! the signal must be answered, exactly and in order; the server must exit
//! with status 0 within its drain timeout (plus 1 s for the process to go),
//! print its `summary` line, and leave nothing listening on its port.
//!
//! It needs a server the tool started itself: its exit status and its
//! summary are only there for its parent to read.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::wire::{self, PATIENCE};
use super::{signal, Finding, Halt, Limits, Plan, Process, Scenario, Target};

pub const SCENARIO: Scenario = Scenario {
    name: "shutdown",
    must: "on SIGTERM answer every line sent before it, exit 0 within the drain timeout and \
           print its summary",
    conns: |_, _| 1,
    process: Process::Child,
    tune: |_: &mut Limits| {},
    run,
};

/// Clients, at most.
const CLIENTS: usize = 16;
/// Lines each keeps in flight.
const DEPTH: usize = 8;
/// From the mark to the signal.
const GRACE: Duration = Duration::from_millis(50);
/// Beyond the drain timeout, for the process to exit and be seen to.
const EXIT_SLACK: Duration = Duration::from_secs(1);

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// Lines whose write finished before the mark.
    before: usize,
    /// Answers that came, exact and in order.
    answered: usize,
    /// What went wrong, if anything.
    failure: Option<String>,
}

fn run(target: &mut Target, plan: &Plan) -> Result<Finding, Halt> {
    let Some(mut server) = target.server.take() else {
        return Err(Halt::NotApplicable(
            "needs a server the tool started".into(),
        ));
    };
    let mut f = Finding::default();
    let clients = target.room.min(CLIENTS);
    let load_for = plan.phase(Duration::from_secs(1), Duration::from_millis(500));
    let drain = target.limits.drain_timeout;
    let (addr, pid) = (target.addr, server.pid());
    let mark = AtomicBool::new(false);

    let (seen, exit) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                let mark = &mark;
                scope.spawn(move || client(addr, c, mark, drain))
            })
            .collect();
        std::thread::sleep(load_for);
        mark.store(true, SeqCst);
        std::thread::sleep(GRACE);
        if let Err(e) = signal(pid, Signal::SIGTERM) {
            return (Vec::new(), Err(format!("SIGTERM: {e}")));
        }
        let exit = server.wait_exit(drain + Duration::from_secs(5));
        let seen: Vec<Seen> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect();
        (seen, Ok(exit))
    });
    let exit = exit?;

    let before: usize = seen.iter().map(|s| s.before).sum();
    let answered: usize = seen.iter().map(|s| s.answered).sum();
    for (c, s) in seen.iter().enumerate() {
        if let Some(why) = &s.failure {
            f.fail(format!("client {c}: {why}"));
        } else if s.answered < s.before {
            f.fail(format!(
                "client {c}: {} of its {} lines sent before the signal were answered",
                s.answered, s.before
            ));
        }
    }
    match exit.status {
        Some(status) => f.check(status.success(), || {
            format!("it exited with {status}{}", server.said())
        }),
        None => f.fail(format!(
            "still running {:.1} s after SIGTERM (killed)",
            exit.took.as_secs_f64()
        )),
    }
    f.check(exit.took <= drain + EXIT_SLACK, || {
        format!(
            "it took {:.2} s to exit, its drain timeout is {:.1} s",
            exit.took.as_secs_f64(),
            drain.as_secs_f64()
        )
    });
    f.check(exit.summary.is_some(), || {
        "it printed no summary line".into()
    });
    if wire::connect(addr).is_ok() {
        f.fail(format!(
            "after it exited, something still accepts on {addr}"
        ));
    }
    f.fact("clients", clients);
    f.fact("lines_before_signal", before);
    f.fact("answered", answered);
    f.fact("exit_s", exit.took.as_secs_f64());
    f.fact("exit_code", exit.status.and_then(|s| s.code()));
    f.says = format!(
        "{before} lines sent before SIGTERM by {clients} client(s), {answered} answered; \
         exited {} {:.0} ms after it (drain timeout {:.1} s){}",
        exit.status
            .and_then(|s| s.code())
            .map_or("by a signal".into(), |c| format!("with {c}")),
        exit.took.as_secs_f64() * 1e3,
        drain.as_secs_f64(),
        if exit.summary.is_some() {
            ", summary printed"
        } else {
            ", no summary"
        }
    );
    Ok(f)
}

/// One client: keeps [`DEPTH`] lines in flight until the mark, then reads
/// the answers to everything it sent until the server closes.
fn client(addr: std::net::SocketAddr, c: usize, mark: &AtomicBool, drain: Duration) -> Seen {
    let mut seen = Seen::default();
    let mut stream = match wire::connect(addr) {
        Ok(stream) => stream,
        Err(e) => {
            seen.failure = Some(format!("connect: {e}"));
            return seen;
        }
    };
    let mut in_flight: VecDeque<Vec<u8>> = VecDeque::new();
    let mut k = 0;
    // After the signal an answer may take up to the drain timeout.
    let within = PATIENCE + drain;
    loop {
        if in_flight.len() < DEPTH && !mark.load(SeqCst) {
            let line = format!("client {c} line {k}: sent under load, answered before exit\n");
            k += 1;
            if let Err(e) = stream.write_all(line.as_bytes()) {
                seen.failure = Some(format!("write of line {k} before the signal: {e}"));
                return seen;
            }
            // Only a write that finished before the mark was set is
            // certainly in the server's hands before the signal.
            if !mark.load(SeqCst) {
                seen.before += 1;
            }
            in_flight.push_back(line.into_bytes());
            continue;
        }
        let Some(line) = in_flight.pop_front() else {
            break;
        };
        match wire::expect(&mut stream, &wire::answer(&line), within) {
            Ok(()) => seen.answered += 1,
            Err(e) if mark.load(SeqCst) && seen.answered >= seen.before => {
                // A line after the mark need not be answered; the server
                // may have stopped reading. Only wrong bytes would matter.
                if !e.contains("closed") && !e.contains("reset") && !e.contains("within") {
                    seen.failure = Some(format!("answer {}: {e}", seen.answered));
                }
                return seen;
            }
            Err(e) => {
                seen.failure = Some(format!(
                    "answer {} of {} sent before the signal: {e}",
                    seen.answered + 1,
                    seen.before
                ));
                return seen;
            }
        }
    }
    // Everything answered: the server must now close.
    if let Err(e) = wire::read_to_close(&mut stream, within) {
        seen.failure = Some(format!("after its last answer the connection was {e}"));
    }
    seen
}
