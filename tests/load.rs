//! `lab load` must catch a server that answers wrong, late, out of order,
//! or not at all — and report zero errors against a correct one. The
//! broken servers here are deliberately broken, a few lines each, run on
//! threads inside the test.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use util::{run_lab, Server};

/// How a broken server mangles the stream of answers on a connection.
#[derive(Clone, Copy)]
enum Flaw {
    /// Answers correctly (the control).
    None,
    /// Leaves the 50th answer in lower case.
    WrongByte,
    /// Sends the 11th answer before the 10th.
    OutOfOrder,
    /// Stops answering after the 20th request, but keeps the connection.
    Silent,
    /// Waits 100 ms before every answer.
    Late,
}

/// Starts a line server with `flaw` on a free port; returns its address.
fn broken_server(flaw: Flaw) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, flaw));
        }
    });
    addr
}

fn serve(stream: TcpStream, flaw: Flaw) {
    let mut writer = stream.try_clone().expect("clone");
    let mut held: Option<Vec<u8>> = None;
    for (n, line) in BufReader::new(stream).split(b'\n').enumerate() {
        let Ok(mut line) = line else { return };
        line.push(b'\n');
        let mut answer = line.to_ascii_uppercase();
        match flaw {
            Flaw::None => {}
            Flaw::WrongByte if n == 49 => answer = line,
            Flaw::WrongByte => {}
            Flaw::OutOfOrder if n == 9 => {
                held = Some(answer);
                continue;
            }
            Flaw::OutOfOrder => {}
            Flaw::Silent if n >= 20 => continue,
            Flaw::Silent => {}
            Flaw::Late => std::thread::sleep(Duration::from_millis(100)),
        }
        if writer.write_all(&answer).is_err() {
            return;
        }
        if let Some(held) = held.take() {
            let _ = writer.write_all(&held);
        }
    }
}

/// Runs `lab load` for one second; `extra` options replace the defaults
/// (4 connections, depth 2). Returns its exit success and report.
fn load(addr: &str, extra: &[&str]) -> (bool, serde_json::Value) {
    let mut args = vec!["load", addr, "--duration", "1", "--warmup", "0", "--json"];
    for (option, default) in [("--conns", "4"), ("--depth", "2")] {
        if !extra.contains(&option) {
            args.extend([option, default]);
        }
    }
    args.extend_from_slice(extra);
    let finished = run_lab(&args);
    let report = serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}\nstderr: {}",
            finished.stdout, finished.stderr
        )
    });
    (finished.status.success(), report)
}

fn samples(report: &serde_json::Value) -> String {
    report["error_samples"].to_string()
}

#[test]
fn a_correct_server_gets_zero_errors_and_a_clean_exit() {
    let (ok, report) = load(&broken_server(Flaw::None), &[]);
    assert!(ok, "{report}");
    assert_eq!(report["errors"], 0);
    assert!(report["requests"].as_u64().unwrap() > 100, "{report}");
}

#[test]
fn the_real_epoll_model_gets_zero_errors() {
    let server = Server::start("epoll", &[]);
    let (ok, report) = load(
        &server.addr.to_string(),
        &["--conns", "50", "--depth", "16"],
    );
    assert!(ok, "{report}");
    assert_eq!(report["errors"], 0);
    let (status, summary) = server.stop();
    assert!(status.success());
    // The server answered at least what the generator counted.
    assert!(summary.count("requests") >= report["requests"].as_u64().unwrap());
}

#[test]
fn a_wrong_byte_is_an_error_with_its_connection_and_offset() {
    let (ok, report) = load(&broken_server(Flaw::WrongByte), &[]);
    assert!(!ok, "lab load exited 0 on a wrong answer: {report}");
    assert!(report["errors"].as_u64().unwrap() >= 1);
    // The 50th 64-byte answer starts at offset 49 * 64 = 3136.
    let text = samples(&report);
    assert!(text.contains("wrong byte at offset 3136"), "{text}");
}

#[test]
fn answers_out_of_order_are_an_error() {
    let (ok, report) = load(&broken_server(Flaw::OutOfOrder), &[]);
    assert!(!ok, "{report}");
    // The 11th answer arrives where the 10th belongs: offset 9 * 64.
    assert!(
        samples(&report).contains("wrong byte at offset 576"),
        "{}",
        samples(&report)
    );
}

#[test]
fn answers_that_never_come_are_an_error() {
    let (ok, report) = load(&broken_server(Flaw::Silent), &[]);
    assert!(!ok, "{report}");
    assert!(
        samples(&report).contains("never answered"),
        "{}",
        samples(&report)
    );
    // What was answered before it fell silent is still counted, nothing more.
    assert!(report["requests"].as_u64().unwrap() <= 4 * 20);
}

#[test]
fn late_answers_show_in_the_latency_not_as_errors() {
    let (ok, report) = load(&broken_server(Flaw::Late), &["--depth", "1"]);
    assert!(ok, "{report}");
    let p50 = report["latency_us"]["p50"].as_f64().unwrap();
    assert!(p50 >= 100_000.0, "a 100 ms server reported p50 = {p50} µs");
}

#[test]
fn open_loop_charges_a_stalled_server_for_every_request_it_delayed() {
    // At 200 requests/s over 4 connections against a server that takes
    // 100 ms per answer (so at most 10 answers/s per connection), the
    // schedule runs ahead of the server and latency, measured from the
    // scheduled times, keeps growing: far above the 100 ms service time.
    let (_, report) = load(
        &broken_server(Flaw::Late),
        &["--rate", "200", "--depth", "1"],
    );
    let p99 = report["latency_us"]["p99"].as_f64().unwrap();
    assert!(
        p99 > 300_000.0,
        "p99 {p99} µs: coordinated omission hid the stall"
    );
}
