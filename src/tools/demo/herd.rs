//! `herd`: one connection arrives at a listener that several workers wait
//! on; how many of them wake?
//!
//! The server runs four workers. The demo connects [`CONNECTIONS`] times,
//! one connection at a time: each asks one line, half-closes, reads to the
//! end. Before and after each connection it reads every worker's
//! `voluntary_ctxt_switches` (`/proc/PID/task/TID/status`; for `prefork`,
//! the worker processes'): a worker that slept in `accept` or
//! `epoll_wait`, was woken and went back to sleep has gone up by at least
//! one. Before each reading the demo waits until no count has moved for
//! [`QUIET`], so every worker is asleep again (the waiting is a condition,
//! with a deadline, not a guess).
//!
//! - `prefork --workers 4`: four processes blocked in `accept` on one
//!   listener. Linux queues them as *exclusive* waiters and wakes one per
//!   connection: there is no herd in blocking `accept` (there was, before
//!   Linux 2.4, which is where the name comes from).
//! - `epoll --workers 4 --one-listener`: four loops, each with its own
//!   epoll watching one shared listener. Readiness is not accept: every
//!   epoll instance watching the socket is told, so all four wake, one
//!   accepts, three find `EAGAIN`. That is the herd.
//! - `--exclusive` adds `EPOLLEXCLUSIVE` (Linux 4.5) to the listener's
//!   registration: the kernel wakes one of the waiting epolls (or a few).
//! - `epoll --workers 4` (the default shape): each loop has its own
//!   listener bound with `SO_REUSEPORT`, and the kernel picks the
//!   listener by a hash of the connection's addresses and ports. No
//!   herd, no shared queue; the price is balance, which the hash decides
//!   (the demo counts connections per worker), and a closed listener
//!   takes the connections queued on it down with it (they are reset),
//!   which is why a graceful restart with `SO_REUSEPORT` needs care
//!   (Linux 5.14's `tcp_migrate_req`, or a BPF program that steers). The
//!   `epoll --workers 4` run ends by showing that on two listeners of the
//!   demo's own ([`close_one_reuseport_listener`]).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use super::{Demo, Facts, Peer, Run, Stage};
use crate::models::Model;

pub const DEMO: Demo = Demo {
    name: "herd",
    claim: "a connection wakes every epoll watching a shared listener (the thundering herd); \
            blocking accept, EPOLLEXCLUSIVE and SO_REUSEPORT wake one worker",
    default_models: &[
        "prefork --workers 4",
        "epoll --workers 4 --one-listener",
        "epoll --workers 4 --one-listener --exclusive",
        "epoll --workers 4",
    ],
    run,
    rank_by: None,
    finding,
};

/// Connections made, one at a time.
pub const CONNECTIONS: usize = 20;
/// How long no worker's count may move for the workers to count as asleep.
const QUIET: Duration = Duration::from_millis(30);
/// The longest the demo waits for that.
const QUIET_WITHIN: Duration = Duration::from_secs(3);

fn run(stage: &mut Stage, model: &Model) -> io::Result<Facts> {
    let addr = stage.start(&[])?;
    let pid = stage.server_pid();
    let processes = model.name == "prefork";
    let mut before = settle(pid, processes)?;
    let workers = before.len();
    stage.say(format_args!(
        "{workers} workers asleep; connecting {CONNECTIONS} times, one at a time"
    ));
    let mut woken_total = 0;
    let mut served: BTreeMap<i32, usize> = before.keys().map(|&w| (w, 0)).collect();
    for i in 0..CONNECTIONS {
        exchange(&addr)?;
        let after = settle(pid, processes)?;
        let deltas: Vec<(i32, u64)> = after
            .iter()
            .map(|(w, n)| (*w, n - before.get(w).copied().unwrap_or(*n)))
            .collect();
        let woken = deltas.iter().filter(|(_, d)| *d > 0).count();
        // The worker that served it woke most (accept, the line, the end).
        if let Some((server, _)) = deltas.iter().max_by_key(|(_, d)| *d) {
            *served.entry(*server).or_default() += 1;
        }
        if i < 3 {
            stage.say(format_args!(
                "connection {}: {woken} of {workers} workers woke",
                i + 1
            ));
        }
        woken_total += woken;
        before = after;
    }
    stage.stop()?;
    let mut facts = Facts::new();
    if model.name == "epoll" && !stage.has_flag("--one-listener") {
        let (reset, accepted) = close_one_reuseport_listener()?;
        stage.say(format_args!(
            "two SO_REUSEPORT listeners of the demo's own, {QUEUED} connections queued on them: \
             closing one reset {reset}; the other still had {accepted} to accept"
        ));
        facts.insert("closed_listener_reset".into(), reset.into());
        facts.insert("open_listener_accepted".into(), accepted.into());
    }
    let per_connection = woken_total as f64 / CONNECTIONS as f64;
    let counts: Vec<usize> = served.values().copied().collect();
    stage.say(format_args!(
        "{per_connection:.2} workers woke per connection; connections served per worker: {counts:?}"
    ));
    facts.insert("workers".into(), workers.into());
    facts.insert("connections".into(), CONNECTIONS.into());
    facts.insert("woken_per_connection".into(), per_connection.into());
    facts.insert("served_per_worker".into(), counts.clone().into());
    facts.insert(
        "busiest_worker_served".into(),
        counts.iter().copied().max().unwrap_or(0).into(),
    );
    Ok(facts)
}

/// Connections queued on the two listeners of [`close_one_reuseport_listener`].
pub const QUEUED: usize = 16;

/// Shows what the `SO_REUSEPORT` paragraph of the module doc says, on
/// sockets of the demo's own (a model drains all its listeners at once,
/// so it never meets this): binds two listeners to one port with
/// `SO_REUSEPORT`, connects [`QUEUED`] clients, which the kernel
/// completes into the two accept queues by hash, closes one listener
/// without accepting, and counts the clients reset and the connections
/// still waiting on the other listener. (With `net.ipv4.tcp_migrate_req`
/// set to 1, Linux 5.14 and later move them to the other listener instead.)
fn close_one_reuseport_listener() -> io::Result<(usize, usize)> {
    use socket2::{Domain, Socket, Type};
    let listen = |addr: &std::net::SocketAddr| -> io::Result<Socket> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_reuse_port(true)?;
        socket.bind(&(*addr).into())?;
        socket.listen(QUEUED as i32)?;
        Ok(socket)
    };
    let first = listen(&"127.0.0.1:0".parse().expect("a valid address"))?;
    let addr = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP listener"))?;
    let second = listen(&addr)?;
    let mut clients = (0..QUEUED)
        .map(|_| std::net::TcpStream::connect(addr))
        .collect::<io::Result<Vec<_>>>()?;
    drop(first);
    let mut reset = 0;
    for client in &mut clients {
        client.set_read_timeout(Some(Duration::from_millis(50)))?;
        match client.read(&mut [0u8; 1]) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => reset += 1,
            _ => {}
        }
    }
    second.set_nonblocking(true)?;
    let mut accepted = 0;
    while second.accept().is_ok() {
        accepted += 1;
    }
    Ok((reset, accepted))
}

/// One client: connects, asks a line, half-closes and reads to the end,
/// so the server has seen the whole connection when this returns.
fn exchange(addr: &str) -> io::Result<()> {
    let mut peer = Peer::connect(addr)?;
    peer.ask("herd", Duration::from_secs(10))?
        .ok_or_else(|| io::Error::other("no answer within 10 s"))?;
    peer.stream().shutdown(Shutdown::Write)?;
    peer.stream()
        .set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut rest = Vec::new();
    peer.stream().read_to_end(&mut rest)?;
    Ok(())
}

/// Waits until no worker's count of voluntary switches has moved for
/// [`QUIET`] (all asleep), and returns the counts.
fn settle(pid: i32, processes: bool) -> io::Result<BTreeMap<i32, u64>> {
    let deadline = Instant::now() + QUIET_WITHIN;
    let mut last = switches(pid, processes)?;
    let mut still_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let now = switches(pid, processes)?;
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= QUIET && !last.is_empty() {
            return Ok(last);
        }
        if Instant::now() > deadline {
            return Err(io::Error::other("the workers never went quiet"));
        }
    }
}

/// Every worker's voluntary context switches: the threads of `pid`, or
/// for a process pool its child processes.
fn switches(pid: i32, processes: bool) -> io::Result<BTreeMap<i32, u64>> {
    let workers: Vec<(i32, String)> = if processes {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
        children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .map(|child: i32| (child, format!("/proc/{child}/status")))
            .collect()
    } else {
        std::fs::read_dir(format!("/proc/{pid}/task"))?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .map(|tid: i32| (tid, format!("/proc/{pid}/task/{tid}/status")))
            .collect()
    };
    let mut counts = BTreeMap::new();
    for (worker, path) in workers {
        // A worker may be gone between the listing and the read.
        let Ok(status) = std::fs::read_to_string(path) else {
            continue;
        };
        let count = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        counts.insert(worker, count);
    }
    Ok(counts)
}

/// One line of the findings, for one measured run.
fn finding(run: &Run) -> String {
    format!(
        "{}: {:.2} of {} workers woke per connection; the busiest served {} of {}",
        run.model,
        run.number("woken_per_connection"),
        run.number("workers"),
        run.number("busiest_worker_served"),
        run.number("connections"),
    )
}
