//! `second-client`: the iterative server makes the second client wait.
//!
//! Client A connects, asks, gets its answer and *stays connected*. Then
//! client B connects and asks. The iterative `blocking` server is still in
//! A's `recv`, so B's connection sits complete in the listen backlog (its
//! `connect` returned at once: the kernel finished the handshake) and its
//! line sits unread in its socket's receive buffer until A leaves. Under
//! `fork` or `threads` someone is already blocked in `accept` for B.

use std::io;
use std::time::{Duration, Instant};

use super::{ms, Demo, Facts, Peer, Run, Stage};
use crate::models::Model;

pub const DEMO: Demo = Demo {
    name: "second-client",
    claim: "an iterative server makes a second client wait until the first leaves; \
            a process or thread per connection does not",
    default_models: &["blocking", "fork", "threads"],
    run,
    rank_by: None,
    finding,
};

/// How long A stays after B asks: long enough that "B waited" cannot be
/// noise, short enough to watch.
const A_STAYS: Duration = Duration::from_millis(1500);

fn run(stage: &mut Stage, _model: &Model) -> io::Result<Facts> {
    let addr = stage.start(&[])?;
    let mut a = Peer::connect(&addr)?;
    stage.say(format_args!("A connects and asks \"hello from a\""));
    let (answer, took) = a
        .ask("hello from a", Duration::from_secs(5))?
        .ok_or_else(|| io::Error::other("A got no answer"))?;
    stage.say(format_args!(
        "A gets {answer:?} after {:.2} ms, and stays connected without a word",
        ms(took)
    ));

    let mut b = Peer::connect(&addr)?;
    stage.say(format_args!(
        "B connects: connect() returned at once (the kernel did the handshake)"
    ));
    let asked = Instant::now();
    b.send("hello from b")?;
    stage.say(format_args!("B asks \"hello from b\""));
    let mut facts = Facts::new();
    match b.line_within(A_STAYS)? {
        Some(answer) => {
            let waited = asked.elapsed();
            stage.say(format_args!(
                "B gets {answer:?} after {:.2} ms, while A is still connected",
                ms(waited)
            ));
            facts.insert("b_wait_ms".into(), ms(waited).into());
            facts.insert("b_answered_while_a_connected".into(), true.into());
            drop(a);
            stage.say(format_args!("A leaves"));
        }
        None => {
            stage.say(format_args!(
                "{:.0} ms and nothing for B: the server is still waiting on A",
                ms(asked.elapsed())
            ));
            drop(a);
            let left = Instant::now();
            stage.say(format_args!("A leaves"));
            let answer = b
                .line_within(Duration::from_secs(5))?
                .ok_or_else(|| io::Error::other("B got no answer even after A left"))?;
            let waited = asked.elapsed();
            stage.say(format_args!(
                "B gets {answer:?}, {:.1} ms after A left and {:.0} ms after it asked",
                ms(left.elapsed()),
                ms(waited)
            ));
            facts.insert("b_wait_ms".into(), ms(waited).into());
            facts.insert("b_answered_while_a_connected".into(), false.into());
        }
    }
    facts.insert("a_stayed_ms".into(), ms(A_STAYS).into());
    drop(b);
    stage.stop()?;
    Ok(facts)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    let how = if run.flag("b_answered_while_a_connected") {
        "answered while A was still connected"
    } else {
        "answered only after A left"
    };
    format!(
        "{}: B waited {:.1} ms, {how}",
        run.model,
        run.number("b_wait_ms")
    )
}
