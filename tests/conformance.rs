//! The conformance suite: every clause of the protocol (docs/src/protocol.md,
//! the one normative spec), checked over real sockets, byte for byte,
//! against every model in `iolab::models::all()` and every extra argument set
//! (variant) a model declares.
//!
//! One trial per (model, variant, clause), named `MODEL::clause` or
//! `MODEL[ARGS]::clause`, so `cargo test --test conformance -- threads::`
//! runs one model and `-- ::half_close` one clause. Each trial starts its own
//! server on port 0 and talks to it as a client would. A clause a model
//! cannot do by its nature is listed as an ignored trial whose kind says why.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Trial};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use util::{assert_bytes, numbered_lines, show, upper, Client, FloodEnd, Server, IO_TIMEOUT};

/// What a trial needs to know about the model under test.
struct Target {
    model: &'static str,
    /// Extra arguments of the variant under test (empty for the default run).
    variant: &'static [&'static str],
    /// False for an iterative server, which serves one client at a time.
    concurrent: bool,
    /// Whether the model takes `--workers` (pools and multi-loop models).
    takes_workers: bool,
    /// Whether its syscalls are counted (not so for tokio, whose IO
    /// happens inside the runtime).
    counts_syscalls: bool,
}

impl Target {
    /// Starts the model with the variant's arguments plus the clause's own.
    fn start(&self, args: &[&str]) -> Server {
        let all: Vec<&str> = self
            .variant
            .iter()
            .copied()
            .chain(args.iter().copied())
            .collect();
        Server::start(self.model, &all)
    }
}

/// A clause of the protocol and the test that checks it.
struct Clause {
    name: &'static str,
    /// The clause needs two clients served at the same time.
    needs_concurrency: bool,
    test: fn(&Target),
}

impl Clause {
    /// A clause every model must keep.
    const fn any(name: &'static str, test: fn(&Target)) -> Clause {
        Clause {
            name,
            needs_concurrency: false,
            test,
        }
    }

    /// A clause only a model serving clients side by side can keep.
    const fn concurrent(name: &'static str, test: fn(&Target)) -> Clause {
        Clause {
            name,
            needs_concurrency: true,
            test,
        }
    }
}

const CLAUSES: &[Clause] = &[
    Clause::any("basic_lines", basic_lines),
    Clause::any("binary_bytes", binary_bytes),
    Clause::any("random_streams", random_streams),
    Clause::any("pipelined_5000", pipelined_5000),
    Clause::any("dribbled_line", dribbled_line),
    Clause::any("half_close_tail", half_close_tail),
    Clause::any("line_limit", line_limit),
    Clause::any("default_line_limit", default_line_limit),
    Clause::concurrent("interleaved_clients", interleaved_clients),
    Clause::any("reset_clients", reset_clients),
    Clause::any("vanishing_writer", vanishing_writer),
    Clause::concurrent("max_conns", max_conns),
    Clause::any("idle_timeout", idle_timeout),
    Clause::any("backpressure_memory", backpressure_memory),
    Clause::concurrent("backpressure_others_served", backpressure_others_served),
    Clause::any("shutdown_drains", shutdown_drains),
    Clause::any("shutdown_idle_client", shutdown_idle_client),
    Clause::any("shutdown_stuck_reader", shutdown_stuck_reader),
    Clause::any("summary_counters", summary_counters),
];

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for model in iolab::models::all() {
        let no_variant: &'static [&'static str] = &[];
        for &variant in std::iter::once(&no_variant).chain(model.variants) {
            let prefix = if variant.is_empty() {
                model.name.to_string()
            } else {
                format!("{}[{}]", model.name, variant.join(" "))
            };
            for clause in CLAUSES {
                let target = Target {
                    model: model.name,
                    variant,
                    concurrent: model.concurrent,
                    takes_workers: model.default_workers().is_some(),
                    counts_syscalls: model.counts_syscalls,
                };
                let test = clause.test;
                let trial = Trial::test(format!("{prefix}::{}", clause.name), move || {
                    test(&target);
                    Ok(())
                });
                trials.push(if clause.needs_concurrency && !model.concurrent {
                    trial
                        .with_ignored_flag(true)
                        .with_kind("skip: iterative server serves one client at a time")
                } else {
                    trial
                });
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

// ---------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------

/// Wire format, Examples: each request line comes back upper-cased, bytes
/// outside a..z (UTF-8 included) unchanged; several lines in one write are
/// answered in order; an empty line is a line.
fn basic_lines(t: &Target) {
    let server = t.start(&[]);
    let mut c = server.client();
    c.send(b"hello\n");
    c.expect(b"HELLO\n");
    c.send("MiXeD 123 äß\n".as_bytes());
    c.expect("MIXED 123 äß\n".as_bytes());
    c.send(b"a\nb\nc\n");
    c.expect(b"A\nB\nC\n");
    c.send(b"\n");
    c.expect(b"\n");
    c.send(b"ALREADY UPPER, digits 0123456789 and `{|}~ @[\\]^_\n");
    c.expect(b"ALREADY UPPER, DIGITS 0123456789 AND `{|}~ @[\\]^_\n");
}

/// Wire format: any byte but LF may be in a line (CR, NUL, non-UTF-8), and
/// only a..z change.
fn binary_bytes(t: &Target) {
    let server = t.start(&[]);
    let mut c = server.client();
    let line: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').chain([b'\n']).collect();
    let want: Vec<u8> = line
        .iter()
        .map(|&b| if b.is_ascii_lowercase() { b - 0x20 } else { b })
        .collect();
    c.send(&line);
    c.expect(&want);
    // The same bytes backwards, so that CR and NUL also sit next to the LF.
    let mut back: Vec<u8> = line[..line.len() - 1].iter().rev().copied().collect();
    back.push(b'\n');
    c.roundtrip(&back);
}

/// Wire format, "It follows that...": for any input with no over-long line,
/// however it is split into writes, the server sends exactly its
/// upper-case, ending with the unterminated tail after a half-close.
fn random_streams(t: &Target) {
    let server = t.start(&[]);
    // Bytes with about one LF in nine, and the split points of the writes.
    let byte = prop_oneof![1 => Just(b'\n'), 8 => any::<u8>()];
    let input = (
        proptest::collection::vec(byte, 0..3000),
        proptest::collection::vec(1usize..400, 1..30),
    );
    // Shrinking is bounded: against a server that hangs, every case waits
    // out a timeout.
    let config = Config {
        cases: 32,
        failure_persistence: None,
        max_shrink_iters: 64,
        max_shrink_time: 20_000,
        ..Config::default()
    };
    let result = TestRunner::new(config).run(&input, |(bytes, cuts)| {
        let mut c = server.client();
        let mut rest = &bytes[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*cut).min(rest.len()));
            c.send(now);
            rest = later;
        }
        c.shutdown_write();
        let got = c.read_to_end_within(IO_TIMEOUT);
        if got != upper(&bytes) {
            return Err(TestCaseError::fail(format!(
                "sent {} in writes of {cuts:?}, got {}",
                show(&bytes),
                show(&got)
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Wire format, Pipelining and Order: 5000 lines in one write are all
/// answered, in order. A reader thread drains the answers meanwhile, so the
/// test cannot deadlock on full socket buffers.
fn pipelined_5000(t: &Target) {
    let server = t.start(&[]);
    let mut c = server.client();
    let request = numbered_lines("pipelined", 5000);
    let want = upper(&request);
    let mut reader = c.try_clone();
    let len = want.len();
    let answers = thread::spawn(move || reader.read_exact_within(len, Duration::from_secs(30)));
    c.send(&request);
    let got = answers
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_bytes("5000 pipelined answers", &got, &want);
    c.shutdown_write();
    c.expect_eof();
}

/// Wire format: "The server never sends part of a line's response before
/// that line's LF has arrived."
fn dribbled_line(t: &Target) {
    let server = t.start(&[]);
    let mut c = server.client();
    for line in [&b"dribble Me\n"[..], b"and again\n"] {
        for &byte in &line[..line.len() - 1] {
            c.send(&[byte]);
            // This short read timeout is also the pause between two bytes.
            c.expect_silence(Duration::from_millis(30));
        }
        c.send(b"\n");
        c.expect(&upper(line));
    }
}

/// End of stream: after a half-close the server answers every complete line,
/// sends the unterminated tail upper-cased with no LF added, then closes.
fn half_close_tail(t: &Target) {
    let server = t.start(&[]);
    for (request, want) in [
        (&b"a\nb\ntail-without-lf"[..], &b"A\nB\nTAIL-WITHOUT-LF"[..]),
        (b"only complete lines\n", b"ONLY COMPLETE LINES\n"),
        (b"just a tail", b"JUST A TAIL"),
        (b"", b""),
    ] {
        let mut c = server.client();
        c.send(request);
        c.shutdown_write();
        c.expect(want);
        c.expect_eof();
    }
}

// ---------------------------------------------------------------------------
// Errors: MAX_LINE
// ---------------------------------------------------------------------------

/// Errors, MAX_LINE (1024 here): a line of exactly MAX_LINE bytes with its LF
/// is answered; MAX_LINE bytes with no LF among them get the responses to
/// the earlier lines, then `error: line too long\n`, then a close; whether
/// the limit is crossed in one big write or across many small ones.
fn line_limit(t: &Target) {
    let server = t.start(&["--max-line", "1024"]);
    let too_long = b"error: line too long\n";

    // 1023 bytes + LF = 1024: the longest line allowed.
    let mut c = server.client();
    let mut longest = b"x".repeat(1023);
    longest.push(b'\n');
    c.roundtrip(&longest);
    c.roundtrip(b"still open\n");
    drop(c);

    // A line that never ends.
    let mut c = server.client();
    let mut request = b"ok\n".to_vec();
    request.extend(b"y".repeat(2000));
    // The server may close before reading all of it, failing the write.
    let _ = c.try_send(&request);
    c.expect(b"OK\n");
    c.expect(too_long);
    c.expect_eof();
    drop(c);

    // 1024 bytes with no LF among them are over the limit even when the LF
    // is the very next byte, here in the middle of one write.
    let mut c = server.client();
    let mut request = b"ok\n".to_vec();
    request.extend(b"z".repeat(1024));
    request.extend(b"\nnever answered\n");
    let _ = c.try_send(&request);
    c.expect(b"OK\n");
    c.expect(too_long);
    c.expect_eof();
    drop(c);

    // The limit crossed across many small writes.
    let mut c = server.client();
    c.roundtrip(b"ok\n");
    let mut sent = 0;
    while sent < 1100 {
        match c.try_send(&[b'w'; 10]) {
            Ok(()) => sent += 10,
            Err(_) if sent >= 1024 => break,
            Err(e) => panic!("write failed after only {sent} bytes of the long line: {e}"),
        }
    }
    c.expect(too_long);
    c.expect_eof();
    drop(c);

    // The server goes on serving.
    server
        .client()
        .roundtrip(b"a new client after the errors\n");
}

/// Errors and Examples: the default MAX_LINE is 65536 bytes including the
/// LF; "70000 bytes with no LF" gets `error: line too long\n`, then a close.
fn default_line_limit(t: &Target) {
    let server = t.start(&[]);
    let mut c = server.client();
    let mut longest = b"q".repeat(65535);
    longest.push(b'\n');
    let mut reader = c.try_clone();
    let answer = thread::spawn(move || reader.read_exact_within(65536, IO_TIMEOUT));
    c.send(&longest);
    let got = answer
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_bytes("answer to a 65536-byte line", &got, &upper(&longest));
    drop(c);

    let mut c = server.client();
    let _ = c.try_send(&b"r".repeat(70000));
    c.expect(b"error: line too long\n");
    c.expect_eof();
}

// ---------------------------------------------------------------------------
// Many clients, resets, clients that vanish
// ---------------------------------------------------------------------------

/// Transport: one connection per client, served side by side: 20 clients
/// take turns sending one line each and reading its answer.
fn interleaved_clients(t: &Target) {
    let server = t.start(&[]);
    let mut clients: Vec<Client> = (0..20).map(|_| server.client()).collect();
    for round in 0..50 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.roundtrip(format!("client {i:02} round {round:02} says hi\n").as_bytes());
        }
    }
}

/// End of stream: "When the client resets the connection, the server drops
/// that connection's state and goes on serving everyone else."
fn reset_clients(t: &Target) {
    let server = t.start(&[]);
    // A bystander, connected throughout (only where two clients can be
    // served at once).
    let mut bystander = t.concurrent.then(|| server.client());
    if let Some(b) = &mut bystander {
        b.roundtrip(b"before the resets\n");
    }
    for i in 0..10 {
        let mut c = server.client();
        c.send(b"full one\nfull two\npartial line with no e");
        // Half of them wait for their answers, half reset with answers in
        // flight.
        if i % 2 == 0 {
            c.expect(b"FULL ONE\nFULL TWO\n");
        }
        c.reset();
    }
    if let Some(b) = &mut bystander {
        b.roundtrip(b"after the resets\n");
    }
    drop(bystander);
    server
        .client()
        .roundtrip(b"a new client after the resets\n");
    let (status, _) = server.stop();
    assert!(status.success(), "exit status after the resets: {status}");
}

/// End of stream: the server never dies of a client that stops reading: a
/// client writes ~4 MiB of lines and closes without reading any answer, so
/// the server's writes fail with EPIPE or ECONNRESET (and raise SIGPIPE
/// unless it is ignored).
fn vanishing_writer(t: &Target) {
    let mut server = t.start(&[]);
    for _ in 0..3 {
        let mut c = server.client();
        let (written, end) = c.flood(4 << 20, Duration::from_secs(1));
        assert!(
            matches!(end, FloodEnd::Done | FloodEnd::Stalled),
            "the server closed a client that was only writing: {end:?} after {written} bytes"
        );
        // Closing with answers unread makes the kernel reset the connection.
        drop(c);
    }
    // Clients that close at once after a burst of lines: the answers meet a
    // closed socket, and a second write after the reset fails with EPIPE.
    for _ in 0..5 {
        let mut c = server.client();
        c.send(&numbered_lines("gone", 2000));
        drop(c);
    }
    server.assert_running();
    server.client().roundtrip(b"anyone still there?\n");
    let (status, _) = server.stop();
    assert!(
        status.success(),
        "exit status after vanishing writers: {status}"
    );
}

// ---------------------------------------------------------------------------
// Errors: MAX_CONNS, IDLE_TIMEOUT
// ---------------------------------------------------------------------------

/// Errors, MAX_CONNS (3 here): every connection beyond the limit (three
/// in a row here) gets exactly `error: too many connections\n` and is
/// closed, while the three admitted ones stay open; they are untouched;
/// once one of them leaves, a new connection is served again.
fn max_conns(t: &Target) {
    // Four workers, more than the limit, so that a pool model is not what
    // turns the fourth client away; unless the variant sets its own count
    // or the model has no workers to set.
    let workers: &[&str] = if t.variant.contains(&"--workers") || !t.takes_workers {
        &[]
    } else {
        &["--workers", "4"]
    };
    let args: Vec<&str> = ["--max-conns", "3"]
        .iter()
        .chain(workers)
        .copied()
        .collect();
    let server = t.start(&args);
    let mut open: Vec<Client> = (0..3).map(|_| server.client()).collect();
    for (i, c) in open.iter_mut().enumerate() {
        c.roundtrip(format!("connection {i}\n").as_bytes());
    }

    // Every connection over the limit is refused, not only the first: a
    // refusal must not give back a place it never took (which let every
    // second extra connection in).
    for _ in 0..3 {
        let mut extra = server.client();
        extra.expect(b"error: too many connections\n");
        extra.expect_eof();
    }

    for (i, c) in open.iter_mut().enumerate() {
        c.roundtrip(format!("connection {i} is untouched\n").as_bytes());
    }

    // After one leaves, the server may take a moment to notice: poll until
    // a new connection is answered instead of refused.
    drop(open.remove(0));
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut admitted = None;
    while admitted.is_none() && Instant::now() < deadline {
        let mut c = server.client();
        // A refused connection may be closed before this arrives.
        let _ = c.try_send(b"let me in\n");
        let first = c.read_exact_within(1, IO_TIMEOUT);
        if first == b"L" {
            c.expect(b"ET ME IN\n");
            admitted = Some(c);
        } else {
            let mut refusal = first;
            refusal.extend(c.read_to_end_within(IO_TIMEOUT));
            assert_bytes(
                "a refused connection",
                &refusal,
                b"error: too many connections\n",
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    let mut c = admitted.expect("no connection admitted after one of the three closed");
    c.roundtrip(b"served\n");
    for c in &mut open {
        c.roundtrip(b"still here\n");
    }
    drop((c, open));
    // The summary's peak is what was really open at once: the limit.
    let (_, summary) = server.stop();
    assert_eq!(
        summary.count("peak_conns"),
        3,
        "peak_conns under --max-conns 3"
    );
}

/// Errors, IDLE_TIMEOUT (0.5 s here): a client that sends nothing for that
/// long gets `error: idle timeout\n` and is closed, after the answers to its
/// complete lines; a client that keeps sending is not cut off.
fn idle_timeout(t: &Target) {
    let server = t.start(&["--idle-timeout", "0.5"]);

    let mut idle = server.client();
    idle.expect(b"error: idle timeout\n");
    idle.expect_eof();
    drop(idle);

    let mut partial = server.client();
    partial.send(b"done\npartial");
    partial.expect(b"DONE\n");
    partial.expect(b"error: idle timeout\n");
    partial.expect_eof();
    drop(partial);

    // A line every 0.2 s for 1.5 s: never 0.5 s without a byte. The sends
    // keep to a fixed schedule, however long each answer takes to come.
    let mut busy = server.client();
    let start = Instant::now();
    for i in 0..8 {
        busy.roundtrip(format!("keep-alive {i}\n").as_bytes());
        let next = start + Duration::from_millis(200) * (i + 1);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    busy.roundtrip(b"last word\n");
    // And once it falls silent, it times out too.
    busy.expect(b"error: idle timeout\n");
    busy.expect_eof();
}

// ---------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------

/// How far the server's memory may grow while one client floods it without
/// reading. A server that keeps at most MAX_PENDING (64 KiB here) of answers
/// and one line per connection needs well under a megabyte; one that keeps
/// reading would hold most of the 32 MiB, since the kernel's buffers for a
/// client that never reads stay small.
const MEMORY_BOUND_KB: u64 = 16 * 1024;

/// A client that writes 32 MiB of lines and never reads, on its own thread,
/// until it is done, stalls for a second (TCP flow control), or 30 s pass.
/// Returns the connection (to keep it open), bytes written and how it ended.
fn spawn_flood(
    server: &Server,
    done: Arc<AtomicBool>,
) -> thread::JoinHandle<(Client, usize, FloodEnd)> {
    const TOTAL: usize = 32 << 20;
    let mut c = server.client();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut written = 0;
        let mut end = FloodEnd::Done;
        // A MiB at a time, to look at the clock now and then.
        while written < TOTAL && Instant::now() < deadline {
            let (n, e) = c.flood((TOTAL - written).min(1 << 20), Duration::from_secs(1));
            written += n;
            end = e;
            if end != FloodEnd::Done {
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
        (c, written, end)
    })
}

/// Backpressure: while a client writes without ever reading, the server's
/// memory (summed over its processes) stays bounded.
fn backpressure_memory(t: &Target) {
    let server = t.start(&["--max-pending", "65536"]);
    let baseline = iolab::tools::child::tree_memory_kib(server.pid());
    let done = Arc::new(AtomicBool::new(false));
    let flood = spawn_flood(&server, Arc::clone(&done));
    // Sample while the client writes and for a second after it stops.
    let mut peak = baseline;
    let mut stopped: Option<Instant> = None;
    loop {
        peak = peak.max(iolab::tools::child::tree_memory_kib(server.pid()));
        match stopped {
            None if done.load(Ordering::SeqCst) => stopped = Some(Instant::now()),
            Some(at) if at.elapsed() > Duration::from_secs(1) => break,
            _ => {}
        }
        thread::sleep(Duration::from_millis(25));
    }
    let (_c, written, end) = flood
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(
        !matches!(end, FloodEnd::Failed(_)),
        "the server closed a client that was only writing: {end:?} after {written} bytes"
    );
    assert!(
        peak.saturating_sub(baseline) < MEMORY_BOUND_KB,
        "server memory grew from {baseline} KiB to {peak} KiB (bound: +{MEMORY_BOUND_KB} KiB) \
         while a client wrote {written} bytes without reading ({end:?})"
    );
}

/// Backpressure: "Other connections keep being served" while one client
/// floods the server without reading.
fn backpressure_others_served(t: &Target) {
    let server = t.start(&["--max-pending", "65536"]);
    let done = Arc::new(AtomicBool::new(false));
    let flood = spawn_flood(&server, Arc::clone(&done));
    // Ask while the flood is at its height, or just after it stalled.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let mut other = server.client();
    let request = b"is anyone else served?\n";
    other.send(request);
    let got = other.read_exact_within(request.len(), Duration::from_secs(5));
    assert_bytes(
        "another client's answer during a flood",
        &got,
        &upper(request),
    );
    let (_c, _, end) = flood
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(
        !matches!(end, FloodEnd::Failed(_)),
        "the flooding client was cut off: {end:?}"
    );
}

// ---------------------------------------------------------------------------
// Shutdown and the summary
// ---------------------------------------------------------------------------

/// The keys the `summary {JSON}` line must have.
fn check_summary_keys(model: &str, summary: &util::Summary) {
    let json = &summary.json;
    assert_eq!(
        json.get("model").and_then(|m| m.as_str()),
        Some(model),
        "summary model: {json}"
    );
    for key in [
        "accepted",
        "requests",
        "bytes_in",
        "bytes_out",
        "peak_conns",
        "max_rss_kb",
    ] {
        summary.count(key);
    }
    for key in ["cpu_user_s", "cpu_sys_s"] {
        assert!(
            json.get(key).is_some_and(|v| v.as_f64().is_some()),
            "summary has no number {key:?}: {json}"
        );
    }
    let syscalls = json.get("syscalls").and_then(|s| s.as_object());
    let syscalls = syscalls.unwrap_or_else(|| panic!("summary has no \"syscalls\" object: {json}"));
    assert!(
        syscalls.values().all(|v| v.as_u64().is_some()),
        "syscall counts must be integers: {json}"
    );
}

/// Shutdown: on SIGTERM the server answers every complete line it has
/// received, flushes, closes, and exits 0 within DRAIN_TIMEOUT, printing
/// its summary last.
fn shutdown_drains(t: &Target) {
    let server = t.start(&["--drain-timeout", "2"]);
    let mut c = server.client();
    let request: Vec<u8> = (0..100)
        .flat_map(|i| format!("drain line {i:03}\n").into_bytes())
        .collect();
    let want = upper(&request);
    let line = want.iter().position(|&b| b == b'\n').expect("a line") + 1;
    c.send(&request);
    c.expect(&want[..line]);
    server.terminate();
    c.expect(&want[line..]);
    c.expect_eof();
    let (status, summary) = server.wait_exit(Duration::from_secs(2) + Duration::from_secs(8));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    check_summary_keys(t.model, &summary);
    assert!(
        summary.count("requests") >= 100,
        "summary after 100 requests: {}",
        summary.json
    );
}

/// Shutdown: a connected client with nothing pending is closed, and the
/// server exits 0 at once, without waiting for the (here long) drain timeout.
fn shutdown_idle_client(t: &Target) {
    let server = t.start(&["--drain-timeout", "60"]);
    let mut c = server.client();
    c.roundtrip(b"then nothing\n");
    server.terminate();
    c.expect_eof();
    let (status, summary) = server.wait_exit(IO_TIMEOUT);
    assert!(
        status.success(),
        "exit status after SIGTERM with an idle client: {status}"
    );
    check_summary_keys(t.model, &summary);
}

/// Shutdown: "a connection still unflushed when the timeout runs out is
/// closed all the same": a client that never reads does not hold the exit
/// past DRAIN_TIMEOUT (2 s here, plus slack for a busy machine).
fn shutdown_stuck_reader(t: &Target) {
    let server = t.start(&["--drain-timeout", "2"]);
    let mut c = server.client();
    let (written, end) = c.flood(8 << 20, Duration::from_millis(500));
    assert!(
        !matches!(end, FloodEnd::Failed(_)),
        "flooding client cut off: {end:?} after {written} bytes"
    );
    server.terminate();
    let (status, summary) = server.wait_exit(Duration::from_secs(2) + Duration::from_secs(6));
    assert!(
        status.success(),
        "exit status after SIGTERM with a stuck reader: {status}"
    );
    check_summary_keys(t.model, &summary);
    drop(c);
}

/// Start-up contract, summary: the counters count what happened on the
/// wire: requests, bytes each way, connections accepted, and real syscalls.
fn summary_counters(t: &Target) {
    let server = t.start(&[]);
    let mut requests = 0;
    let mut bytes = 0;
    for i in 0..3 {
        let mut c = server.client();
        let mut request = numbered_lines(&format!("client {i}"), 10 + i);
        request.extend_from_slice(b"\n");
        c.send(&request);
        c.shutdown_write();
        // Read to the close: the server is done with this connection.
        let got = c.read_to_end_within(IO_TIMEOUT);
        assert_bytes("answers", &got, &upper(&request));
        requests += 10 + i + 1;
        bytes += request.len();
    }
    // A fourth client is still connected when the server stops: what it
    // was served counts too.
    let mut last = server.client();
    let line = b"still connected at the end\n";
    last.roundtrip(line);
    requests += 1;
    bytes += line.len();
    let (status, summary) = server.stop();
    last.expect_eof();
    assert!(status.success(), "exit status: {status}");
    check_summary_keys(t.model, &summary);
    let json = &summary.json;
    assert_eq!(
        summary.count("requests"),
        requests as u64,
        "requests in {json}"
    );
    assert_eq!(
        summary.count("bytes_in"),
        bytes as u64,
        "bytes_in in {json}"
    );
    assert_eq!(
        summary.count("bytes_out"),
        bytes as u64,
        "bytes_out in {json}"
    );
    assert_eq!(summary.count("accepted"), 4, "accepted in {json}");
    let peak = summary.count("peak_conns");
    assert!((1..=4).contains(&peak), "peak_conns in {json}");
    if t.counts_syscalls {
        // A completion model's receives and accepts are operations the
        // kernel carried out, under "operations", not syscalls of its own.
        let operation = |name: &str| summary.json["operations"][name].as_u64().unwrap_or(0);
        assert!(
            summary.syscalls(&["read", "recv", "readv", "recvfrom", "recvmsg"]) + operation("recv")
                > 0,
            "no reads counted in {json}"
        );
        assert!(
            summary.syscalls(&["accept", "accept4"]) + operation("accept") > 0,
            "no accepts counted in {json}"
        );
    }
}
