//! What the blocking family's process and thread models must survive
//! beyond the protocol itself: reaping every child, replacing dead
//! workers, and a thread per connection at a thousand connections.

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use util::{Client, Server, IO_TIMEOUT};

/// Children of `pid` in state Z (exited, not yet reaped).
fn zombie_children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // After the command name's closing parenthesis: state, then ppid.
            let mut fields = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .collect()
}

/// Live children of `pid`.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|child| !zombie_children(pid).contains(child))
        .collect()
}

/// Polls `condition` until it holds or `within` has passed.
fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fork_leaves_no_zombie_after_200_sequential_connections() {
    let server = Server::start("fork", &[]);
    for i in 0..200 {
        let mut client = server.client();
        client.roundtrip(format!("connection {i}\n").as_bytes());
        client.shutdown_write();
        client.expect_eof();
    }
    // Each child exits when its client has gone; the SIGCHLD handler must
    // reap every one of them, with no accept needed to trigger it.
    let pid = server.pid();
    assert!(
        eventually(IO_TIMEOUT, || zombie_children(pid).is_empty()
            && children(pid).is_empty()),
        "zombies left: {:?}, children alive: {:?}",
        zombie_children(pid),
        children(pid)
    );
    let (status, summary) = server.stop();
    assert!(status.success());
    assert_eq!(summary.count("accepted"), 200);
    assert_eq!(summary.count("requests"), 200);
    assert_eq!(summary.count("children_crashed"), 0);
}

#[test]
fn prefork_replaces_a_worker_that_dies_and_counts_the_crash() {
    let server = Server::start("prefork", &["--workers", "3"]);
    let pid = server.pid();
    assert!(
        eventually(IO_TIMEOUT, || children(pid).len() == 3),
        "workers: {:?}",
        children(pid)
    );
    let victim = children(pid)[0];
    util::send_signal(victim, libc::SIGKILL);
    assert!(
        eventually(IO_TIMEOUT, || {
            let now = children(pid);
            now.len() == 3 && !now.contains(&victim)
        }),
        "the pool was not refilled: {:?}",
        children(pid)
    );
    // The pool still serves, three clients at once.
    let mut clients: Vec<Client> = (0..3).map(|_| server.client()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.roundtrip(format!("after the crash {i}\n").as_bytes());
    }
    drop(clients);
    let (status, summary) = server.stop();
    assert!(status.success());
    assert_eq!(summary.count("children_crashed"), 1);
    assert!(zombie_children(pid).is_empty());
}

#[test]
fn threads_holds_1000_concurrent_connections() {
    if !util::descriptors_for("threads_holds_1000_concurrent_connections", 1000) {
        return;
    }
    let server = Server::start("threads", &[]);
    let mut clients: Vec<Client> = (0..1000).map(|_| server.client()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("thread per connection {i}\n").as_bytes());
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.expect(format!("THREAD PER CONNECTION {i}\n").as_bytes());
    }
    let (status, summary) = server.stop();
    assert!(status.success());
    assert_eq!(summary.count("peak_conns"), 1000);
    assert_eq!(summary.count("requests"), 1000);
}

/// A drain that gives up on clients that never read is not a crash: each
/// child stops by itself within its share of the drain timeout, counts
/// flushed; none is killed, none counted in `children_crashed` (before,
/// `fork` reported all 30 as crashed and `prefork` 18).
#[test]
fn a_drain_past_clients_that_never_read_is_not_reported_as_crashes() {
    for (model, args) in [("fork", vec![]), ("prefork", vec!["--workers", "30"])] {
        let mut all = args.clone();
        all.extend(["--drain-timeout", "2"]);
        let server = Server::start(model, &all);
        let chunk = b"never read\n".repeat(6000);
        let mut hogs: Vec<Client> = (0..30).map(|_| server.client()).collect();
        for hog in &mut hogs {
            hog.roundtrip(b"admitted\n");
            hog.stream().set_nonblocking(true).expect("non-blocking");
        }
        // Push until the child is stuck writing answers nobody reads.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stuck = vec![false; hogs.len()];
        while stuck.contains(&false) && Instant::now() < deadline {
            for (hog, stuck) in hogs.iter_mut().zip(&mut stuck) {
                if !*stuck && hog.stream().write(&chunk).is_err() {
                    *stuck = true;
                }
            }
        }
        assert!(!stuck.contains(&false), "{model}: a client never filled up");
        let (status, summary) = server.stop();
        assert!(status.success(), "{model}: {status}");
        assert_eq!(
            summary.count("children_crashed"),
            0,
            "{model}: {:?}",
            summary.json
        );
        assert_eq!(
            summary.count("children_stopped"),
            0,
            "{model}: {:?}",
            summary.json
        );
        // The drain gave up on them (a child whose last write squeezed in
        // just before its deadline ends cleanly instead).
        assert!(
            summary.count("conn_errors") >= 20,
            "{model}: {:?}",
            summary.json
        );
        drop(hogs);
    }
}
