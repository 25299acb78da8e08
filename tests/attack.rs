//! `lab attack` passes a correct server and fails a broken one.
//!
//! A verdict tool is only worth its FAILs: each test below that points it
//! at a deliberately broken server (a tiny one written here, on real
//! sockets) asserts that the verdict it cares about is FAIL and that the
//! exit status says so. The assertions read the verdicts from `--json`,
//! never their wording, and no test asserts a time.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Runs `lab attack ARGS --json` and returns its exit status and its
/// verdicts.
fn attack(args: &[&str]) -> (bool, Vec<Value>) {
    let mut all = vec!["attack"];
    all.extend_from_slice(args);
    all.push("--json");
    let done = util::run_lab_within(&all, Duration::from_secs(180));
    let report: Value = serde_json::from_str(&done.stdout).unwrap_or_else(|e| {
        panic!(
            "lab {all:?}: no JSON report ({e}); status {}\nstdout: {}\nstderr: {}",
            done.status, done.stdout, done.stderr
        )
    });
    let verdicts = report["verdicts"].as_array().expect("verdicts").clone();
    (done.status.success(), verdicts)
}

/// The outcome of `scenario` among `verdicts`: "pass", "FAIL" or "n/a".
fn outcome<'a>(verdicts: &'a [Value], scenario: &str) -> &'a str {
    verdicts
        .iter()
        .find(|v| v["scenario"] == scenario)
        .and_then(|v| v["outcome"].as_str())
        .unwrap_or_else(|| panic!("no verdict for {scenario} in {verdicts:#?}"))
}

/// A server for the tests to break: a thread per connection that answers
/// whatever arrives with `reply(bytes)`, and has no limit of any kind.
fn fake_server(reply: fn(&[u8]) -> Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, reply));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, reply: fn(&[u8]) -> Vec<u8>) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        if stream.write_all(&reply(&buf[..n])).is_err() {
            return;
        }
    }
}

#[test]
fn a_correct_model_passes_max_conns_odd_bytes_and_pause() {
    let (ok, verdicts) = attack(&[
        "--model",
        "epoll",
        "--scenario",
        "max-conns,odd-bytes,pause",
        "--quick",
    ]);
    for scenario in ["max-conns", "odd-bytes", "pause"] {
        assert_eq!(outcome(&verdicts, scenario), "pass", "{verdicts:#?}");
    }
    assert!(ok, "every verdict passed, yet the exit status is a failure");
}

#[test]
fn a_server_that_admits_everyone_fails_max_conns() {
    // Upper-cases correctly, so every admitted client is served; it just
    // never turns anyone away.
    let addr = fake_server(<[u8]>::to_ascii_uppercase).to_string();
    let (ok, verdicts) = attack(&[&addr, "--scenario", "max-conns", "--max-conns", "4"]);
    assert_eq!(outcome(&verdicts, "max-conns"), "FAIL", "{verdicts:#?}");
    assert!(!ok, "a FAIL must make the exit status a failure");
}

#[test]
fn a_server_that_echoes_without_upper_casing_fails_odd_bytes() {
    let addr = fake_server(<[u8]>::to_vec).to_string();
    let (ok, verdicts) = attack(&[&addr, "--scenario", "odd-bytes", "--quick"]);
    assert_eq!(outcome(&verdicts, "odd-bytes"), "FAIL", "{verdicts:#?}");
    assert!(!ok);
}

#[test]
fn what_cannot_be_run_is_n_a_with_a_reason_and_no_failure() {
    // The iterative server holds one client, so it cannot be filled to a
    // limit of 16; a server someone else runs cannot be paused without
    // its pid, nor stopped and watched without being the tool's child.
    let (ok, verdicts) = attack(&["--model", "blocking", "--scenario", "max-conns", "--quick"]);
    assert_eq!(outcome(&verdicts, "max-conns"), "n/a", "{verdicts:#?}");
    assert!(ok, "n/a is not a failure");
    let addr = fake_server(<[u8]>::to_ascii_uppercase).to_string();
    let (ok, verdicts) = attack(&[&addr, "--scenario", "pause,shutdown", "--quick"]);
    assert_eq!(outcome(&verdicts, "pause"), "n/a", "{verdicts:#?}");
    assert_eq!(outcome(&verdicts, "shutdown"), "n/a", "{verdicts:#?}");
    for verdict in &verdicts {
        assert!(
            !verdict["says"].as_str().unwrap_or_default().is_empty(),
            "an n/a without a reason: {verdict}"
        );
    }
    assert!(ok);
}

#[test]
fn unknown_scenarios_and_limits_inside_a_model_are_refused() {
    let unknown = util::run_lab(&["attack", "--model", "epoll", "--scenario", "nosuch"]);
    assert!(!unknown.status.success());
    assert!(unknown.stderr.contains("no scenario"), "{}", unknown.stderr);
    let inside = util::run_lab(&["attack", "--model", "epoll --max-conns 3"]);
    assert!(!inside.status.success());
    assert!(inside.stderr.contains("--max-conns"), "{}", inside.stderr);
}
