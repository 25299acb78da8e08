//! The start-up contract of the `lab` binary (docs/src/protocol.md, "Start-up
//! contract"): `lab list`, `--help`, the `listening on` line, and clean
//! one-line failures for bad options, a busy address and unknown models.

mod util;

use std::net::TcpListener;
use std::time::Duration;

use util::{run_lab, Finished, Server};

/// The models every build of the lab has, in the order `lab list` shows them.
const FIRST_FIVE: [&str; 5] = ["blocking", "fork", "prefork", "threads", "threadpool"];

/// The model names of `lab list`, skipping `#` headings and blank lines, and
/// checking each line is `NAME  summary`.
fn listed_names() -> Vec<String> {
    let out = run_lab(&["list"]);
    assert!(
        out.status.success(),
        "lab list: {}; stderr: {}",
        out.status,
        out.stderr
    );
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, summary) = l
                .split_once("  ")
                .unwrap_or_else(|| panic!("not `NAME  summary`: {l:?}"));
            assert!(
                !name.is_empty() && !name.contains(' '),
                "bad model name in {l:?}"
            );
            assert!(!summary.trim().is_empty(), "no summary in {l:?}");
            name.to_string()
        })
        .collect()
}

/// Panics unless `out` is a clean failure: non-zero exit (not a signal),
/// exactly one line on stderr, and no panic or backtrace.
fn assert_clean_failure(what: &str, out: &Finished) -> String {
    assert!(
        !out.status.success(),
        "{what}: exit status {}, want failure",
        out.status
    );
    assert!(
        out.status.code().is_some(),
        "{what}: killed by a signal: {}",
        out.status
    );
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "{what}: panicked: {}",
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.len() == 1 && !lines[0].trim().is_empty(),
        "{what}: want exactly one line on stderr, got {}: {:?}",
        lines.len(),
        out.stderr
    );
    assert!(
        !out.stdout.contains("listening on"),
        "{what}: it started serving: {}",
        out.stdout
    );
    lines[0].to_string()
}

#[test]
fn list_shows_the_five_models_in_order() {
    let names = listed_names();
    let positions: Vec<Option<usize>> = FIRST_FIVE
        .iter()
        .map(|m| names.iter().position(|n| n == m))
        .collect();
    assert!(
        positions.iter().all(Option::is_some),
        "lab list lacks one of {FIRST_FIVE:?}: {names:?}"
    );
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "lab list order: {names:?}"
    );
}

#[test]
fn list_matches_the_registry() {
    let registry: Vec<&str> = iolab::models::all().iter().map(|m| m.name).collect();
    assert_eq!(
        listed_names(),
        registry,
        "lab list and iolab::models::all() disagree"
    );
}

#[test]
fn bad_option_value_fails_with_one_line() {
    let out = run_lab(&[
        "blocking",
        "--addr",
        "127.0.0.1:0",
        "--max-line",
        "nonsense",
    ]);
    assert_clean_failure("lab blocking --max-line nonsense", &out);
}

#[test]
fn unknown_model_fails_cleanly() {
    let out = run_lab(&["no-such-model", "--addr", "127.0.0.1:0"]);
    let line = assert_clean_failure("lab no-such-model", &out);
    assert!(
        line.contains("no-such-model"),
        "the message should name the model: {line:?}"
    );
}

#[test]
fn address_in_use_fails_with_one_line_naming_it() {
    // A plain listener holds the address; every model must refuse it.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = holder.local_addr().expect("local address").to_string();
    for model in iolab::models::all() {
        let out = run_lab(&[model.name, "--addr", &addr]);
        let line =
            assert_clean_failure(&format!("lab {} --addr {addr} (in use)", model.name), &out);
        assert!(
            line.contains(&addr),
            "{}: the message should name {addr}: {line:?}",
            model.name
        );
    }
}

#[test]
fn second_server_on_the_same_address_fails() {
    let first = Server::start("threads", &[]);
    let addr = first.addr.to_string();
    let out = run_lab(&["threads", "--addr", &addr]);
    let line = assert_clean_failure("a second lab threads on the same address", &out);
    assert!(
        line.contains(&addr),
        "the message should name {addr}: {line:?}"
    );
    // The first one is not disturbed.
    first.client().roundtrip(b"still mine\n");
}

#[test]
fn model_help_mentions_the_model() {
    let out = run_lab(&["threads", "--help"]);
    assert!(
        out.status.success(),
        "lab threads --help: {}; stderr: {}",
        out.status,
        out.stderr
    );
    assert!(
        out.stdout.contains("threads"),
        "help does not mention the model: {}",
        out.stdout
    );
}

/// Start-up contract and Shutdown, for every model: the first line is
/// exactly `listening on 127.0.0.1:PORT (model NAME)` with the real port,
/// and SIGINT ends the server with status 0 and a summary that counts the
/// one request it answered. Every model is checked and every failure listed.
#[test]
fn every_model_prints_its_address_and_exits_zero_on_sigint() {
    let mut failures = Vec::new();
    for model in iolab::models::all() {
        let check = std::panic::catch_unwind(|| {
            // Server::start checks the format of the first line.
            let server = Server::start(model.name, &[]);
            assert_eq!(server.addr.ip().to_string(), "127.0.0.1", "bound address");
            let mut c = server.client();
            c.roundtrip(b"hello\n");
            drop(c);
            server.signal(libc::SIGINT);
            let (status, summary) = server.wait_exit(Duration::from_secs(15));
            assert!(status.success(), "exit status after SIGINT: {status}");
            let requests = summary.count("requests");
            assert_eq!(
                requests, 1,
                "requests after one answered line: {}",
                summary.json
            );
        });
        if let Err(panic) = check {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {why}", model.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The summary counts from the server's own start. Linux carries a
/// process's CPU times, and the use of the children it reaped, across
/// `execve`: under `cargo run`, a `lab` that served nothing reported the
/// compiler's 28 s of CPU and 449 MB peak. Here the process that becomes
/// `lab` first burns a second of CPU and reaps a child that touched
/// 256 MiB; none of it may show in the summary.
#[test]
fn the_summary_is_not_charged_for_what_ran_before_exec() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    /// Runs in the forked child before `exec`: only async-signal-safe
    /// calls, no allocation.
    fn burn_and_reap() -> std::io::Result<()> {
        const TOUCHED: usize = 256 << 20;
        // SAFETY: clock_gettime, fork, mmap, writes into our own fresh
        // mapping, _exit and waitpid: no locks, no allocation.
        unsafe {
            let child = libc::fork();
            if child == 0 {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    TOUCHED,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p != libc::MAP_FAILED {
                    for page in (0..TOUCHED).step_by(4096) {
                        *p.cast::<u8>().add(page) = 1;
                    }
                }
                libc::_exit(0);
            }
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
            let mut now: libc::timespec = std::mem::zeroed();
            loop {
                libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now);
                if now.tv_sec >= 1 {
                    break;
                }
            }
        }
        Ok(())
    }

    let mut command = Command::new(util::lab_bin());
    command
        .args(["epoll", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped());
    // SAFETY: `burn_and_reap` is async-signal-safe (see above).
    unsafe { command.pre_exec(burn_and_reap) };
    let mut child = command.spawn().expect("spawn lab");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("listening line");
    assert!(line.starts_with("listening on"), "{line}");
    util::send_signal(child.id() as i32, libc::SIGTERM);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("summary");
    assert!(child.wait().expect("wait").success());
    let json = rest
        .lines()
        .find_map(|l| l.strip_prefix("summary "))
        .unwrap_or_else(|| panic!("no summary in {rest:?}"));
    let summary: serde_json::Value = serde_json::from_str(json).expect("JSON");
    let cpu = summary["cpu_user_s"].as_f64().unwrap() + summary["cpu_sys_s"].as_f64().unwrap();
    assert!(
        cpu < 0.5,
        "charged {cpu} s of CPU burnt before exec: {json}"
    );
    let peak = summary["max_rss_kb"].as_u64().unwrap();
    assert!(
        peak < 100 * 1024,
        "charged a {peak} KiB peak from before exec: {json}"
    );
}
