//! The `async` model's two teaching numbers, checked over real sockets
//! (its protocol conformance is in tests/conformance.rs, as every
//! model's):
//!
//! - an idle connection costs its task, not a stack: under 1 KiB of the
//!   server's memory each, at 10,000;
//! - a task that does not await stalls every other task of its thread: a
//!   client behind another's slow batch waits for all of it.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::{Server, IO_TIMEOUT};

/// Both tests measure (memory, time): run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const IDLE: usize = 10_000;

/// The server's PSS, in KiB.
fn pss_kib(pid: i32) -> u64 {
    iolab::tools::child::tree_memory_kib(pid)
}

/// 10,000 connections each send one 64-byte line, read its answer, and
/// stay open, silent: the server's PSS grows by what it keeps per idle
/// connection. The threshold is the chapter's claim: a task, a slab slot,
/// a reactor source and a registry entry, under a kibibyte.
#[test]
fn ten_thousand_idle_connections_cost_under_a_kib_each() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !util::descriptors_for("10,000 idle connections", IDLE) {
        return;
    }
    let server = Server::start("async", &["--max-conns", "20000"]);
    // Let the executor settle before the baseline.
    std::thread::sleep(Duration::from_millis(200));
    let baseline = pss_kib(server.pid());
    let line = [b"x".repeat(63).as_slice(), b"\n"].concat();
    let mut open = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let mut conn = TcpStream::connect(server.addr).expect("connect");
        conn.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        conn.write_all(&line).expect("send");
        let mut answer = [0u8; 64];
        conn.read_exact(&mut answer).expect("the answer");
        assert_eq!(answer[..63], [b'X'; 63]);
        open.push(conn);
    }
    // As the c10k measurements do: let the allocator settle.
    std::thread::sleep(Duration::from_secs(2));
    let loaded = pss_kib(server.pid());
    let per_conn = (loaded as f64 - baseline as f64) / IDLE as f64;
    println!(
        "async: PSS {baseline} KiB -> {loaded} KiB with {IDLE} idle connections: \
         {per_conn:.3} KiB per connection"
    );
    assert!(
        per_conn <= 1.0,
        "an idle async connection costs {per_conn:.3} KiB (baseline {baseline} KiB, \
         loaded {loaded} KiB)"
    );
    drop(open);
}

/// `lab demo head-of-line`: the hog's 500 requests take 1 ms of CPU each
/// (`--work-us 1000`, standing in for a blocking call or a computation
/// inside a task). Under `async` the probe waits behind them, as under
/// `coro` and `epoll`; under `threadpool` another thread answers it.
#[test]
fn a_task_that_does_not_await_stalls_every_other_task() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let done = util::run_lab_within(
        &[
            "demo",
            "head-of-line",
            "--json",
            "--model",
            "async",
            "--model",
            "threadpool",
        ],
        Duration::from_secs(120),
    );
    assert!(
        done.status.success(),
        "{}\n{}\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    let report: Value = serde_json::from_str(&done.stdout).expect("the report is JSON");
    let probe_ms = |model: &str| {
        report["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .find(|run| run["model"] == model)
            .and_then(|run| run["facts"]["probe_ms"].as_f64())
            .unwrap_or_else(|| panic!("no probe_ms for {model}: {report}"))
    };
    // 500 ms of work, queued 50 ms before the probe asked.
    assert!(probe_ms("async") > 250.0, "{report}");
    assert!(probe_ms("threadpool") < 250.0, "{report}");
    assert!(started.elapsed() < Duration::from_secs(120));
}
