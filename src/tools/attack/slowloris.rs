//! `slowloris`: thousands of clients that never finish a line.
//!
//! Robert Hansen's 2009 tool took down Apache with a laptop: open many
//! connections, send each a request a few bytes at a time, never finish
//! one. Each connection is busy, never idle, so no idle timeout fires; a
//! server that gives every connection a thread or a process from a fixed
//! pool runs out of them, and everyone else waits. The bandwidth it costs
//! the attacker is a byte per connection every few hundred milliseconds.
//!
//! Here 2,000 connections (`--scale` scales them) each send a partial line
//! one byte every 300 ms for 10 s (3 s with `--quick`). Meanwhile an honest
//! client connects every half second and must be answered, byte for byte,
//! within 2 s ([`wire::HONEST_WITHIN`]). No slow connection may get any
//! answer: its line has no LF, and the protocol sends no part of an answer
//! before the LF. Afterwards the server must still be alive and serving.
//!
//! An event loop holds the slow connections as a few hundred bytes of state
//! each and is not bothered; a thread per connection pays a stack each and
//! copes; a pool of N workers, or the iterative server, cannot hold them at
//! all, and the runner reports those n/a with the reason: that n/a *is*
//! slowloris's point.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::wire::{self, HONEST_WITHIN};
use super::{Finding, Halt, Limits, Plan, Process, Scenario, Target};

pub const SCENARIO: Scenario = Scenario {
    name: "slowloris",
    must: "answer an honest client within 2 s while 2,000 connections dribble partial lines",
    conns: |plan, _| plan.count(SLOW) + 1,
    process: Process::Any,
    tune: |_: &mut Limits| {},
    run,
};

/// Slow connections, before scaling.
const SLOW: usize = 2000;
/// Each slow connection sends one byte this often.
const DRIBBLE: Duration = Duration::from_millis(300);
/// An honest client comes this often.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// What the slow connections send, a byte at a time; never an LF.
const REQUEST: &[u8] = b"get /a-request-that-takes-its-time-to-arrive ";

fn run(target: &mut Target, plan: &Plan) -> Result<Finding, Halt> {
    let mut f = Finding::default();
    let n = plan.count(SLOW);
    let mut slow: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    for i in 0..n {
        match wire::connect(target.addr) {
            Ok(stream) => slow.push(Some(stream)),
            Err(e) => {
                f.fail(format!(
                    "slow connection {} of {n} could not connect: {e}",
                    i + 1
                ));
                break;
            }
        }
    }
    let opened = slow.len();
    let attack = plan.phase(Duration::from_secs(10), Duration::from_secs(3));
    let done = AtomicBool::new(false);
    let addr = target.addr;

    let probes: Vec<Result<Duration, String>> = std::thread::scope(|scope| {
        let prober = scope.spawn(|| {
            let mut results = Vec::new();
            while !done.load(Relaxed) {
                results.push(wire::honest(addr, results.len() + 1, HONEST_WITHIN));
                std::thread::sleep(PROBE_EVERY);
            }
            results
        });
        let started = Instant::now();
        let mut round = 0;
        while started.elapsed() < attack {
            let byte = [REQUEST[round % REQUEST.len()]];
            for stream in &mut slow {
                // A write fails once the server has closed the connection:
                // it is dropped from the attack (and counted below).
                if stream.as_mut().is_some_and(|s| s.write_all(&byte).is_err()) {
                    *stream = None;
                }
            }
            round += 1;
            let next = started + DRIBBLE * round as u32;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        done.store(true, Relaxed);
        prober.join().unwrap_or_default()
    });

    // What the slow connections got: nothing, or a refusal and a close.
    let (mut silent, mut refused, mut answered_early) = (0, 0, 0);
    let mut buf = [0u8; 256];
    for stream in slow.iter_mut().flatten() {
        let got = stream
            .set_nonblocking(true)
            .and_then(|()| stream.read(&mut buf));
        match got {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => silent += 1,
            Ok(k) if k > 0 && !buf.starts_with(b"error: ") => {
                answered_early += 1;
                if answered_early == 1 {
                    f.fail(format!(
                        "a slow connection got {} before its line had an LF",
                        wire::show(&buf[..k])
                    ));
                }
            }
            _ => refused += 1,
        }
    }
    let dropped = opened - silent - refused - answered_early;
    drop(slow);

    let answered: Vec<Duration> = probes
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .copied()
        .collect();
    let slowest = answered.iter().max().copied().unwrap_or_default();
    let failed: Vec<&String> = probes.iter().filter_map(|p| p.as_ref().err()).collect();
    if let Some(first) = failed.first() {
        f.fail(format!(
            "{} of {} honest clients were not answered within {} s; the first: {first}",
            failed.len(),
            probes.len(),
            HONEST_WITHIN.as_secs()
        ));
    }
    f.check(!probes.is_empty(), || "no honest client got to ask".into());
    f.fact("slow_conns", opened);
    f.fact("slow_still_held", silent);
    f.fact("slow_closed_by_server", dropped + refused);
    f.fact("answered_before_lf", answered_early);
    f.fact("honest_clients", probes.len());
    f.fact("honest_answered", answered.len());
    f.fact("honest_slowest_ms", slowest.as_secs_f64() * 1e3);
    target.alive(&mut f);
    f.says = format!(
        "{opened} slow connections for {:.0} s ({silent} still held at the end); \
         {} of {} honest clients answered, the slowest in {:.1} ms",
        attack.as_secs_f64(),
        answered.len(),
        probes.len(),
        slowest.as_secs_f64() * 1e3
    );
    Ok(f)
}
