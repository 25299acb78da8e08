//! `edge-vs-level`: the same traffic through level- and edge-triggered epoll.
//!
//! Two phases of traffic, identical for both runs: a second of pipelined
//! load (50 connections, 8 requests in flight each), then five clients with
//! small receive buffers (64 KiB) that each write 8 MiB of requests before
//! reading any answer, so the server's answers back up: its sends hit
//! `EAGAIN`, and past `MAX_PENDING` it stops reading until they drain.
//!
//! Level-triggered, a connection's registration says what the server wants
//! *now*: when answers back up it adds `EPOLLOUT`, when they drain it takes
//! it away, when too many are pending it stops asking for `EPOLLIN` — each
//! change one `epoll_ctl`. Edge-triggered, every socket is registered once
//! for everything and never touched again; in exchange each wakeup must
//! read until `EAGAIN` (or a short read), since the kernel will not repeat
//! itself. The server's syscall counters tell the two apart.

use std::io::{self, Write};
use std::time::Duration;

use super::{Demo, Facts, Peer, Run, Stage};
use crate::models::Model;
use crate::tools::load::{self, LoadArgs};

pub const DEMO: Demo = Demo {
    name: "edge-vs-level",
    claim: "level-triggered epoll re-arms interest with epoll_ctl as buffers fill and drain; \
            edge-triggered registers once and reads until EAGAIN",
    default_models: &["epoll", "epoll --edge"],
    run,
    rank_by: None,
    finding,
};

/// Each phase-2 client writes this much before reading: more than the
/// server's send buffer can grow to (`tcp_wmem`'s 4 MiB maximum) plus the
/// client's receive buffer, so the answers must back up in the server.
const BURST: usize = 8 << 20;
const CLIENTS: usize = 5;

fn run(stage: &mut Stage, _model: &Model) -> io::Result<Facts> {
    let addr = stage.start(&[])?;
    stage.say(format_args!(
        "phase 1: 50 connections pipelining 8 requests each, for 1 s"
    ));
    let report = load::run(&LoadArgs::closed_loop(&addr, 50, 8, Duration::from_secs(1)))?;
    stage.say(format_args!(
        "phase 1 done: {} requests, {} errors",
        report.requests, report.errors
    ));
    stage.say(format_args!(
        "phase 2: {CLIENTS} clients with 64 KiB receive buffers each write {} MiB of \
         requests before reading",
        BURST >> 20
    ));
    let line = b"a line that comes back upper-cased once the client reads again\n";
    let burst = line.repeat(BURST / line.len());
    let mut backed_up = 0;
    for _ in 0..CLIENTS {
        let mut client = Peer::connect_with_receive_buffer(&addr, 64 << 10)?;
        let mut writer = client.stream().try_clone()?;
        // Write from a second thread: the writes block once the server
        // stops reading, and only our reading lets them finish.
        // A scoped thread borrows the one burst instead of copying it.
        std::thread::scope(|scope| {
            let done = scope.spawn(|| writer.write_all(&burst));
            std::thread::sleep(Duration::from_millis(200));
            backed_up += client.drain(burst.len(), Duration::from_secs(20))?;
            done.join()
                .map_err(|_| io::Error::other("the writer panicked"))?
        })?;
    }
    stage.say(format_args!(
        "phase 2 done: {} KiB of answers read back",
        backed_up >> 10
    ));
    let summary = stage.stop()?;
    let count = |name: &str| summary.syscalls.get(name).copied().unwrap_or(0);
    let (waits, ctls, recvs, sends) = (
        count("epoll_wait"),
        count("epoll_ctl"),
        count("recv"),
        count("send"),
    );
    stage.say(format_args!(
        "the server: {} requests, {} connections; {waits} epoll_wait, {ctls} epoll_ctl, \
         {recvs} recv, {sends} send",
        summary.requests, summary.accepted
    ));
    let mut facts = Facts::new();
    facts.insert("load_errors".into(), report.errors.into());
    facts.insert("requests".into(), summary.requests.into());
    facts.insert("accepted".into(), summary.accepted.into());
    facts.insert("epoll_wait".into(), waits.into());
    facts.insert("epoll_ctl".into(), ctls.into());
    facts.insert("recv".into(), recvs.into());
    facts.insert("send".into(), sends.into());
    // One ADD per connection, plus the listener's and the shutdown
    // eventfd's: every epoll_ctl beyond those changed a registration.
    let changes = ctls.saturating_sub(summary.accepted + 2);
    facts.insert("epoll_ctl_changes".into(), changes.into());
    stage.say(format_args!(
        "{changes} of the epoll_ctl calls changed a registration after its ADD"
    ));
    Ok(facts)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    format!(
        "{}: {} registration changes (epoll_ctl after ADD), {} epoll_wait, {} recv \
         for {} requests",
        run.model,
        run.number("epoll_ctl_changes"),
        run.number("epoll_wait"),
        run.number("recv"),
        run.number("requests")
    )
}
