//! `max-conns`: one client too many, and then another, and another.
//!
//! A server holds `MAX_CONNS` connections and no more; the protocol says a
//! connection beyond that gets `error: too many connections` and is closed,
//! and the open ones are untouched. The attack fills the server to the
//! limit, K clients opened one by one, each answered, and kept open. Then it
//! opens extra clients one at a time, and *every* one must be turned away
//! with exactly that line and a close. Not only the first: a server whose
//! refusal gives back a place it never took (a permit dropped on the
//! refusing path, say) turns the first extra away and then admits the
//! second, and a test that tries one extra never sees it. Then one of the K
//! leaves, and a new client must be admitted again, within a few seconds
//! (the server learns of the close asynchronously).
//!
//! When the tool started the server, its summary says how many connections
//! it held at once (`peak_conns`): that must be K exactly, neither more
//! (the limit leaked) nor fewer (the count is wrong, and the limit it
//! enforces is wrong with it).
//!
//! Under `--model` the server runs with `--max-conns 16`; against another
//! server, `--max-conns K` tells the tool its limit.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::wire::{self, PATIENCE, TOO_MANY_CONNECTIONS};
use super::{Finding, Halt, Limits, Plan, Process, Scenario, Target};

pub const SCENARIO: Scenario = Scenario {
    name: "max-conns",
    must: "turn away every connection beyond MAX_CONNS with `error: too many connections`, \
           and admit again once one leaves",
    conns: |_, limits| limits.max_conns.map_or(0, |k| k + 1),
    process: Process::Any,
    tune: |limits: &mut Limits| limits.max_conns = Some(16),
    run,
};

/// Extra clients, each of which must be turned away.
const EXTRAS: usize = 5;

/// How long an extra client waits for the refusal and the close; a server
/// that admitted it says nothing and keeps it open.
const REFUSAL_WITHIN: Duration = Duration::from_secs(2);

fn run(target: &mut Target, _plan: &Plan) -> Result<Finding, Halt> {
    let Some(k) = target.limits.max_conns else {
        return Err(Halt::NotApplicable(
            "say the server's limit with --max-conns K".into(),
        ));
    };
    let mut f = Finding::default();
    f.fact("max_conns", k);

    let mut held: Vec<TcpStream> = Vec::with_capacity(k);
    for i in 0..k {
        let mut stream = wire::connect(target.addr)?;
        let line = format!("held client {i} of {k}\n");
        if let Err(e) = wire::roundtrip(&mut stream, line.as_bytes(), PATIENCE) {
            return Err(Halt::Failed(format!(
                "client {} of the {k} the limit allows was not served: {e}",
                i + 1
            )));
        }
        held.push(stream);
    }

    let mut turned_away = 0;
    for j in 1..=EXTRAS {
        let mut extra = wire::connect(target.addr)?;
        match wire::read_to_close(&mut extra, REFUSAL_WITHIN) {
            Ok(got) if got == TOO_MANY_CONNECTIONS => turned_away += 1,
            Ok(got) => f.fail(format!(
                "extra client {j} (with {k} open) got {} and a close, not the refusal",
                wire::show(&got)
            )),
            Err(e) => f.fail(format!(
                "extra client {j} (with {k} open) was not turned away: {e}"
            )),
        }
    }
    f.fact("extras_turned_away", turned_away);

    // One leaves; the server must notice and admit a newcomer. Refusals
    // while it has not noticed yet are fine, so retry until a deadline.
    drop(held.remove(0));
    let left = Instant::now();
    let readmitted = loop {
        let mut stream = wire::connect(target.addr)?;
        match wire::roundtrip(&mut stream, b"after one left\n", PATIENCE) {
            Ok(_) => {
                held.push(stream);
                break Some(left.elapsed());
            }
            Err(_) if left.elapsed() < PATIENCE => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                f.fail(format!(
                    "after one of the {k} left, no newcomer was admitted within {} s: {e}",
                    PATIENCE.as_secs()
                ));
                break None;
            }
        }
    };
    if let Some(took) = readmitted {
        f.fact("readmitted_after_ms", took.as_secs_f64() * 1e3);
    }
    drop(held);
    target.alive(&mut f);

    let peak = match target.stop() {
        Ok(summary) => summary.map(|s| s.peak_conns),
        Err(why) => {
            f.fail(format!("afterwards, {why}"));
            None
        }
    };
    if let Some(peak) = peak {
        f.fact("peak_conns", peak);
        f.check(peak == k as u64, || {
            format!("its summary says peak_conns {peak}, but it held exactly {k}")
        });
    }
    f.says = format!(
        "{k} held; {turned_away} of {EXTRAS} extra clients turned away{}{}",
        match readmitted {
            Some(took) => format!(
                "; a newcomer admitted {:.0} ms after one left",
                took.as_secs_f64() * 1e3
            ),
            None => String::new(),
        },
        peak.map_or(String::new(), |p| format!("; peak_conns {p}"))
    );
    Ok(f)
}
