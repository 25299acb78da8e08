//! `busy-poll`: what waiting costs when nobody sends anything.
//!
//! One client connects, asks once, and then says nothing for two seconds.
//! `nonblocking` has no way to wait: it sweeps every socket with `recv`,
//! gets `EAGAIN` from each, and sweeps again, burning a core to learn that
//! nothing happened. `epoll` sleeps in `epoll_wait` and costs nothing until
//! the kernel has news. The server's own summary (its `getrusage` and its
//! syscall counters) says which did what.

use std::io;
use std::time::Duration;

use super::{ms, Demo, Facts, Peer, Run, Stage};
use crate::models::Model;

pub const DEMO: Demo = Demo {
    name: "busy-poll",
    claim: "a server that polls without waiting burns a core while idle; epoll sleeps",
    default_models: &["nonblocking", "epoll"],
    run,
    rank_by: None,
    finding,
};

const IDLE: Duration = Duration::from_secs(2);

fn run(stage: &mut Stage, _model: &Model) -> io::Result<Facts> {
    let addr = stage.start(&[])?;
    let mut client = Peer::connect(&addr)?;
    if let Some((answer, took)) = client.ask("anyone there", Duration::from_secs(5))? {
        stage.say(format_args!(
            "a client asks and gets {answer:?} after {:.1} ms",
            ms(took)
        ));
    }
    stage.say(format_args!(
        "the client stays connected and silent for {} s",
        IDLE.as_secs()
    ));
    std::thread::sleep(IDLE);
    drop(client);
    let summary = stage.stop()?;
    let cpu = summary.cpu_user_s + summary.cpu_sys_s;
    let percent = 100.0 * cpu / summary.wall_s.max(1e-9);
    let syscalls = summary.total_syscalls();
    let busiest = summary
        .syscalls
        .iter()
        .max_by_key(|(_, &count)| count)
        .map(|(name, count)| format!("{count} {name}"))
        .unwrap_or_else(|| "none".into());
    stage.say(format_args!(
        "the server ran {:.2} s and used {cpu:.2} s of CPU ({percent:.0} % of a core); \
         {syscalls} counted syscalls, the most {busiest}, to answer {} request(s)",
        summary.wall_s, summary.requests
    ));
    let mut facts = Facts::new();
    facts.insert("wall_s".into(), summary.wall_s.into());
    facts.insert("cpu_s".into(), cpu.into());
    facts.insert("cpu_percent".into(), percent.into());
    facts.insert("syscalls".into(), syscalls.into());
    facts.insert("requests".into(), summary.requests.into());
    Ok(facts)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    format!(
        "{}: {:.0} % of a core and {} syscalls for one request and {} s of silence",
        run.model,
        run.number("cpu_percent"),
        run.number("syscalls"),
        IDLE.as_secs()
    )
}
