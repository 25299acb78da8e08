//! What one thread serving many connections must survive, checked for
//! every model of the readiness family (and every later model that serves
//! many connections from a few threads): thousands of connections at once,
//! running out of descriptors, `select`'s 1,024 ceiling, and the
//! signal-driven model's queue overflowing.
//!
//! The models are read from the registry, so a model added later is
//! covered without touching this file.

mod util;

use std::time::{Duration, Instant};

use iolab::models::{self, Family, Model};
use iolab::server::protocol::ERR_TOO_MANY_CONNS;
use util::{Client, Server, IO_TIMEOUT};

/// Models that serve many connections from a few threads: the readiness
/// family and the reference models (not the blocking family, whose
/// thread or process per connection is another test's subject).
fn event_driven() -> impl Iterator<Item = &'static Model> {
    models::all()
        .iter()
        .filter(|m| m.family != Family::Blocking)
}

/// Sets a resource limit of a running process (root may lower anyone's).
fn set_limit(pid: i32, resource: libc::__rlimit_resource_t, value: u64) {
    iolab::sys::set_process_limit(pid, resource, value)
        .unwrap_or_else(|e| panic!("prlimit({pid}): {e}"));
}

/// How many descriptors a process has open.
fn open_fds(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces, so split
    // after its closing parenthesis): utime is the 14th field, stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Reads until `n` bytes have arrived or the server closes, whichever is
/// first (a turned-away client gets a short error line and a close).
fn read_up_to(client: &mut Client, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut stream = client.stream();
    let mut buf = [0u8; 256];
    while got.len() < n {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    got
}

/// Opens `n` connections, sends each a distinct line, checks each answer,
/// and keeps them all open while it does.
fn hold_many(server: &Server, n: usize) {
    let mut clients: Vec<Client> = (0..n).map(|_| server.client()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("connection number {i}\n").as_bytes());
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.expect(format!("CONNECTION NUMBER {i}\n").as_bytes());
    }
    // And once more, now that every connection has been open all along.
    for (i, client) in clients.iter_mut().enumerate().step_by(7) {
        client.roundtrip(format!("again {i}\n").as_bytes());
    }
}

#[test]
fn a_burst_of_connections_past_the_accept_budget_is_all_served() {
    // A stopped server accepts nothing: 300 connections queue up in the
    // kernel's backlog, each with its line sent. Woken, the server hears
    // of its listener once if that is edge-triggered (mio, signal-driven
    // IO); its accept stops at the budget (`driver::ACCEPT_BUDGET`, 64),
    // and the rest must come from the deferred work the driver keeps, not
    // from a report that will never come.
    const BURST: usize = 300;
    for model in event_driven().filter(|m| m.fd_limit.is_none()) {
        let server = Server::start(model.name, &[]);
        server.signal(libc::SIGSTOP);
        let mut clients: Vec<Client> = (0..BURST).map(|_| server.client()).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            client.send(format!("queued {i}\n").as_bytes());
        }
        server.signal(libc::SIGCONT);
        for (i, client) in clients.iter_mut().enumerate() {
            client.expect(format!("QUEUED {i}\n").as_bytes());
        }
        let (status, summary) = server.stop();
        assert!(status.success(), "{}: exit {status}", model.name);
        assert_eq!(summary.count("accepted"), BURST as u64, "{}", model.name);
    }
}

#[test]
fn every_event_driven_model_holds_5000_connections() {
    if !util::descriptors_for("every_event_driven_model_holds_5000_connections", 5000) {
        return;
    }
    for model in event_driven().filter(|m| m.fd_limit.is_none()) {
        let server = Server::start(model.name, &[]);
        hold_many(&server, 5000);
        let (status, summary) = server.stop();
        assert!(status.success(), "{}: exit {status}", model.name);
        assert!(
            summary.count("peak_conns") >= 5000,
            "{}: peak_conns {}",
            model.name,
            summary.count("peak_conns")
        );
    }
}

#[test]
fn select_serves_up_to_its_limit_and_turns_away_descriptors_past_it() {
    let server = Server::start("select", &[]);
    // The server's own descriptors (stdio, listener, eventfd, spare) take
    // the lowest numbers, so about 1,016 connections fit below 1,024.
    let mut served = Vec::new();
    let mut turned_away = 0;
    for i in 0..1100 {
        let mut client = server.client();
        let line = format!("client {i}\n");
        client.send(line.as_bytes());
        let mut answer = read_up_to(&mut client, line.len());
        if answer.starts_with(b"error") {
            answer.extend(client.read_to_end_within(IO_TIMEOUT));
            assert_eq!(answer, ERR_TOO_MANY_CONNS, "client {i}");
            turned_away += 1;
        } else {
            assert_eq!(answer, util::upper(line.as_bytes()), "client {i}");
            served.push(client);
        }
    }
    assert!(
        (1000..1024).contains(&served.len()),
        "served {} connections",
        served.len()
    );
    assert_eq!(served.len() + turned_away, 1100);
    // The connections below the limit are untouched.
    for (i, client) in served.iter_mut().enumerate().step_by(50) {
        client.roundtrip(format!("still here {i}\n").as_bytes());
    }
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn out_of_descriptors_the_server_neither_spins_nor_dies_and_recovers() {
    for model in event_driven() {
        let server = Server::start(model.name, &[]);
        let mut first = server.client();
        first.roundtrip(b"before\n");
        // Room for a handful more connections, then EMFILE.
        let limit = open_fds(server.pid()) + 5;
        set_limit(server.pid(), libc::RLIMIT_NOFILE, limit);

        // Far more clients than descriptors: each is served, turned away
        // with the error line, or left waiting in the queue.
        let crowd: Vec<Client> = (0..40).map(|_| server.client()).collect();
        first.roundtrip(b"while saturated\n");

        // Saturated for a second: the loop must be asleep, not spinning.
        // (Except the non-blocking sweep, which never sleeps: that is the
        // lesson of that model, and it spins just the same when idle.)
        if model.name != "nonblocking" {
            let before = cpu_seconds(server.pid());
            std::thread::sleep(Duration::from_secs(1));
            let used = cpu_seconds(server.pid()) - before;
            assert!(
                used < 0.5,
                "{}: {used:.2} s of CPU in 1 s while out of descriptors",
                model.name
            );
        }
        first.roundtrip(b"still answering\n");

        // Clients leave; new ones are served again.
        drop(crowd);
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let mut client = server.client();
            let line = b"after the crowd left\n";
            client.send(line);
            let mut answer = read_up_to(&mut client, line.len());
            if answer == util::upper(line) {
                break;
            }
            answer.extend(client.read_to_end_within(IO_TIMEOUT));
            assert_eq!(
                answer, ERR_TOO_MANY_CONNS,
                "{}: unexpected answer",
                model.name
            );
            assert!(
                Instant::now() < deadline,
                "{}: never accepted again",
                model.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, _) = server.stop();
        assert!(status.success(), "{}: exit {status}", model.name);
    }
}

#[test]
fn sigio_loses_nothing_when_the_signal_queue_overflows() {
    let server = Server::start("sigio", &[]);
    // A queue of 4 realtime signals overflows at once under load: the
    // kernel then sends SIGIO and the model must fall back to poll(2).
    set_limit(server.pid(), libc::RLIMIT_SIGPENDING, 4);
    let addr = server.addr.to_string();
    let load = util::run_lab(&[
        "load",
        &addr,
        "--conns",
        "50",
        "--depth",
        "8",
        "--duration",
        "2",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(
        load.status.success(),
        "lab load failed: {}\n{}",
        load.stdout,
        load.stderr
    );
    let report: serde_json::Value =
        serde_json::from_str(&load.stdout).expect("load report is JSON");
    assert_eq!(report["errors"], 0, "{}", load.stdout);
    assert!(
        report["requests"].as_u64().unwrap_or(0) > 1000,
        "{}",
        load.stdout
    );
    let (status, summary) = server.stop();
    assert!(status.success());
    assert!(
        summary.count("overflows") > 0,
        "the queue never overflowed: {}",
        summary.json
    );
}
