//! What hostile conditions found, each pinned by a test over real sockets:
//! a server paused while clients sent, clients that push without reading,
//! and the signals a server meets without asking. (The limit held for
//! every connection over `--max-conns` is the conformance suite's
//! `max_conns` clause.) `lab attack` runs these and more as a tool.

mod util;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use util::{Client, Server, IO_TIMEOUT};

/// The models that serve many connections from one loop or runtime, where
/// a timer and a socket's news can reach the code in either order.
const LOOPS: &[&str] = &[
    "epoll", "poll", "select", "sigio", "uring", "coro", "async", "tokio", "mio", "polling",
];

/// A server stopped (SIGSTOP) for longer than its idle timeout while its
/// clients sent a line each wakes up to due timers *and* queued bytes. A
/// connection is idle only if nothing arrived for the timeout: every client
/// gets its answer, none `error: idle timeout`, none a reset.
#[test]
fn a_paused_server_answers_what_arrived_while_it_was_stopped() {
    let edge = ["epoll", "--edge"];
    let mut runs: Vec<Vec<&str>> = LOOPS.iter().map(|m| vec![*m]).collect();
    runs.push(edge.to_vec());
    // Two at a time: each run sleeps through its pause.
    for pair in runs.chunks(2) {
        thread::scope(|scope| {
            for run in pair {
                scope.spawn(move || pause_round(run));
            }
        });
    }
}

fn pause_round(run: &[&str]) {
    let (model, variant) = (run[0], &run[1..]);
    let mut args = variant.to_vec();
    args.extend(["--idle-timeout", "2"]);
    let server = Server::start(model, &args);
    let mut clients: Vec<Client> = (0..100).map(|_| server.client()).collect();
    // Every connection accepted and its idle timer filed before the pause.
    for (i, c) in clients.iter_mut().enumerate().take(1) {
        c.roundtrip(format!("warm {i}\n").as_bytes());
    }
    thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGSTOP);
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("sent while stopped {i}\n").as_bytes());
    }
    // Longer than the idle timeout: every timer is due at the wake-up.
    thread::sleep(Duration::from_secs(3));
    server.signal(libc::SIGCONT);
    for (i, c) in clients.iter_mut().enumerate() {
        let want = format!("SENT WHILE STOPPED {i}\n");
        let got = c.read_exact_within(want.len(), IO_TIMEOUT);
        util::assert_bytes(
            &format!("{run:?}: client {i} after SIGSTOP/SIGCONT"),
            &got,
            want.as_bytes(),
        );
    }
    drop(clients);
    let (status, _) = server.stop();
    assert!(status.success(), "{run:?} exited with {status}");
}

/// SIGHUP (the terminal closed) drains like SIGTERM: the answer owed is
/// delivered, the server exits 0 and prints its summary. SIGUSR1 and
/// SIGUSR2 are ignored. For every model.
#[test]
fn sighup_drains_and_user_signals_are_ignored() {
    let names: Vec<String> = util::run_lab(&["list"])
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(names.len() >= 15, "lab list named {names:?}");
    for model in &names {
        let server = Server::start(model, &[]);
        let mut client = server.client();
        client.roundtrip(b"before\n");
        server.signal(libc::SIGUSR1);
        server.signal(libc::SIGUSR2);
        client.roundtrip(b"after the user signals\n");
        // A half-finished exchange: the line is complete, its answer owed.
        client.send(b"owed at the hangup\n");
        let started = Instant::now();
        server.signal(libc::SIGHUP);
        let (status, summary) = server.wait_exit(util::STOP_TIMEOUT);
        assert!(status.success(), "{model}: SIGHUP gave {status}");
        assert!(
            summary.count("requests") >= 2,
            "{model}: {:?}",
            summary.json
        );
        let got = client.read_to_end_within(IO_TIMEOUT);
        // The last line may or may not have been read before the drain
        // began; if it was, its answer must be whole.
        if !got.is_empty() {
            assert_eq!(got, b"OWED AT THE HANGUP\n");
        }
        assert!(
            started.elapsed() < util::STOP_TIMEOUT,
            "{model}: took {:?}",
            started.elapsed()
        );
    }
}

/// Clients that push megabytes and never read cost `uring` at most
/// `MAX_PENDING` of answers each, in at most two buffers (the one lent to
/// the kernel's send and the one filling), plus its fixed buffer ring; and
/// the memory comes back when they leave. Before the capped multishot
/// receive, each took whatever the socket held (about 300 KB here).
#[test]
fn uring_memory_per_client_that_never_reads_is_bounded_and_returned() {
    const HOGS: usize = 100;
    const MAX_PENDING: u64 = 65_536;
    let server = Server::start("uring", &["--max-pending", &MAX_PENDING.to_string()]);
    let mut probe = server.client();
    probe.roundtrip(b"warm\n");
    thread::sleep(Duration::from_millis(200));
    let base = iolab::tools::child::tree_memory_kib(server.pid());
    let mut hogs: Vec<Client> = (0..HOGS).map(|_| server.client()).collect();
    let chunk = b"x"
        .repeat(1023)
        .into_iter()
        .chain(*b"\n")
        .collect::<Vec<u8>>();
    let chunk = chunk.repeat(64);
    // Push until every hog's socket is full both ways (bounded: 4 MiB each).
    for hog in &mut hogs {
        hog.stream().set_nonblocking(true).expect("non-blocking");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pushed = vec![0usize; HOGS];
    while Instant::now() < deadline {
        let mut moved = false;
        for (hog, sent) in hogs.iter_mut().zip(&mut pushed) {
            if *sent < 4 << 20 {
                if let Ok(n) = hog.stream().write(&chunk) {
                    *sent += n;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    thread::sleep(Duration::from_secs(1));
    let during = iolab::tools::child::tree_memory_kib(server.pid());
    // The fixed cost: the buffer ring, 1,024 buffers of 4 KiB, all touched.
    let ring_kib = 4096;
    let per_hog = during.saturating_sub(base + ring_kib) as f64 / HOGS as f64;
    let bound = (2 * MAX_PENDING + 16 * 1024) as f64 / 1024.0;
    assert!(
        per_hog <= bound,
        "{per_hog:.1} KiB per client that never reads, over {bound} (base {base}, during {during} KiB)"
    );
    probe.roundtrip(b"an honest client is still served\n");
    drop(hogs);
    // Memory comes back once they are gone (polled: closing takes a
    // moment): all but a quarter of what they made the server grow. (The
    // allocator keeps freed memory unless asked to return it; before the
    // server asked, over half stayed.)
    let grown = during.saturating_sub(base + ring_kib);
    let allowed = base + ring_kib + grown / 4;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = u64::MAX;
    while Instant::now() < deadline {
        after = iolab::tools::child::tree_memory_kib(server.pid());
        if after <= allowed {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        after <= allowed,
        "{after} KiB after the clients closed, over {allowed} (base {base}, at most {during} KiB while they pushed)"
    );
    let (status, _) = server.stop();
    assert!(status.success());
}
