//! Helpers shared by the integration tests: start a `lab` server on port 0,
//! talk to it over real sockets, stop it and read its summary.
//!
//! Every wait here has a deadline. A helper that cannot get what the test
//! asked for panics with a message saying what it saw instead; the test
//! runners turn that panic into a failed test, and `Server`'s `Drop` kills
//! the server (and any process it forked) so no test leaks one.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// The process tree, read from `/proc` as `lab bench` and `lab demo` read it.
use iolab::tools::child::descendants;

/// How long any single network wait may take before the test gives up.
/// Generous on purpose: the suite runs on a busy two-core machine.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `Server::stop` waits for the process to exit after SIGTERM:
/// the default drain timeout (5 s) plus slack.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Raises this test process's descriptor limit to its hard limit, as the
/// `lab` binary does for itself (a shell's soft limit is often 1,024), and
/// says whether `sockets` more descriptors fit under it. A test that needs
/// more than even the hard limit allows calls this first and, when it
/// returns `false`, returns at once: it prints why, so the skip is seen,
/// never passed in silence.
#[must_use]
pub fn descriptors_for(test: &str, sockets: usize) -> bool {
    match iolab::sys::descriptors_fit(test, sockets + 256) {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipped: {why}");
            println!("skipped: {test}: not enough descriptors");
            false
        }
    }
}

/// `lab MODEL ARGS` holds 10,000 connections at once: each sends a line
/// while all are open, each gets its answer, and the summary counts 10,000
/// at the peak. Skipped, with the reason printed, where the descriptor limit
/// cannot hold both ends.
pub fn assert_holds_ten_thousand(model: &str, args: &[&str]) {
    let what = format!("lab {model} {} holds 10,000 connections", args.join(" "));
    if !descriptors_for(&what, 10_000) {
        return;
    }
    let mut args = args.to_vec();
    args.extend(["--max-conns", "20000"]);
    let server = Server::start(model, &args);
    let mut clients: Vec<Client> = (0..10_000).map(|_| server.client()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("connection {i}\n").as_bytes());
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.expect(format!("CONNECTION {i}\n").as_bytes());
    }
    let (status, summary) = server.stop();
    assert!(status.success(), "{what}: exit status {status}");
    assert_eq!(summary.count("peak_conns"), 10_000, "{what}");
    assert_eq!(summary.count("requests"), 10_000, "{what}");
}

/// The path of the `lab` binary Cargo built for this test run.
pub fn lab_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lab")
}

// ---------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------

/// The response the protocol requires for `request`: `a`..=`z` upper-cased,
/// every other byte unchanged.
pub fn upper(request: &[u8]) -> Vec<u8> {
    request.to_ascii_uppercase()
}

/// A short, printable rendering of some bytes for failure messages.
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let shown: String = bytes
        .iter()
        .take(MAX)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    if bytes.len() > MAX {
        format!("b\"{shown}\"... ({} bytes)", bytes.len())
    } else {
        format!("b\"{shown}\"")
    }
}

/// Asserts that `got == want`, and if not says where they first differ
/// instead of dumping megabytes of bytes.
#[track_caller]
pub fn assert_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).take_while(|(g, w)| g == w).count();
    let from = at.saturating_sub(20);
    panic!(
        "{what}: got {} bytes, want {}; first difference at byte {at}\n  got  [{from}..]: {}\n  want [{from}..]: {}",
        got.len(),
        want.len(),
        show(&got[from.min(got.len())..]),
        show(&want[from.min(want.len())..]),
    );
}

/// `count` distinct request lines of mixed case, each ending in LF, so that a
/// response out of order or from the wrong line shows up as a byte mismatch.
pub fn numbered_lines(tag: &str, count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        out.extend_from_slice(format!("{tag} line {i:05} of {count}, MiXeD case\n").as_bytes());
    }
    out
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// Sends `signal` to process `pid`.
#[track_caller]
pub fn send_signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        io::Error::last_os_error()
    );
}

/// Spawns a thread that reads `from` to the end and keeps what it read in the
/// returned buffer, so that the child never blocks on a full pipe.
fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut chunk) {
            out.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

/// What a finished command left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `lab` with `args` to completion, killing it if it takes longer than
/// `IO_TIMEOUT`.
#[track_caller]
pub fn run_lab(args: &[&str]) -> Finished {
    run_lab_within(args, IO_TIMEOUT)
}

/// [`run_lab`] with a deadline of its own, for the long-running commands.
#[track_caller]
pub fn run_lab_within(args: &[&str], within: Duration) -> Finished {
    run_lab_env_within(args, &[], within)
}

/// [`run_lab_within`] with environment variables set (or replaced) for
/// the child: `PATH` pointing at an empty directory, say.
#[track_caller]
pub fn run_lab_env_within(args: &[&str], env: &[(&str, &str)], within: Duration) -> Finished {
    let child = Command::new(lab_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => panic!("spawn {} {args:?}: {e}", lab_bin()),
    };
    let stdout = collect(child.stdout.take().expect("stdout was piped"));
    let stderr = collect(child.stderr.take().expect("stderr was piped"));
    let Some(status) = wait_deadline(&mut child, within) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("lab {args:?} still running after {within:?}; killed it")
    };
    Finished {
        status,
        stdout: collected(&stdout, Duration::from_secs(2)),
        stderr: collected(&stderr, Duration::from_secs(2)),
    }
}

/// What a `collect` thread has read so far, after waiting up to `settle`
/// for it to reach the end of the pipe (the pipe ends when the process
/// exits, but the thread may not have seen that yet).
fn collected(buf: &Arc<Mutex<Vec<u8>>>, settle: Duration) -> String {
    let deadline = Instant::now() + settle;
    // The thread holds the other reference until it has read everything.
    while Arc::strong_count(buf) > 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Polls `child` until it exits or `within` has passed.
fn wait_deadline(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => return None,
            Err(e) => panic!("waitpid: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// A running `lab MODEL --addr 127.0.0.1:0 ARGS...` process.
pub struct Server {
    child: Child,
    /// The address from the `listening on` line.
    pub addr: SocketAddr,
    /// What the test asked for, for failure messages.
    pub command: String,
    /// Standard output, one line at a time, from a reader thread.
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The processes under the server when the test signalled it: they must
    /// be gone once it has exited.
    signalled_tree: Mutex<Vec<Proc>>,
}

/// The JSON object of the `summary {JSON}` line a server prints on exit.
#[derive(Debug)]
pub struct Summary {
    pub json: serde_json::Value,
}

impl Summary {
    /// An unsigned counter of the summary; panics if it is missing.
    #[track_caller]
    pub fn count(&self, key: &str) -> u64 {
        match self.json.get(key).and_then(serde_json::Value::as_u64) {
            Some(n) => n,
            None => panic!("summary has no unsigned integer {key:?}: {}", self.json),
        }
    }

    /// The sum of the syscall counters with any of these names (a model may
    /// use `read` or `recv`, `accept` or `accept4`).
    #[track_caller]
    pub fn syscalls(&self, names: &[&str]) -> u64 {
        let Some(table) = self
            .json
            .get("syscalls")
            .and_then(serde_json::Value::as_object)
        else {
            panic!("summary has no \"syscalls\" object: {}", self.json)
        };
        names
            .iter()
            .filter_map(|n| table.get(*n))
            .filter_map(serde_json::Value::as_u64)
            .sum()
    }
}

impl Server {
    /// Starts `lab MODEL --addr 127.0.0.1:0 ARGS...` and waits for its
    /// `listening on HOST:PORT (model MODEL)` line.
    #[track_caller]
    pub fn start(model: &str, args: &[&str]) -> Server {
        // Tests open hundreds of clients: lift the soft limit first.
        iolab::sys::raise_open_files_limit();
        let command = format!("lab {model} --addr 127.0.0.1:0 {}", args.join(" "));
        let child = Command::new(lab_bin())
            .arg(model)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => panic!("{command}: spawn: {e}"),
        };
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = collect(child.stderr.take().expect("stderr was piped"));
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // From here on, Drop cleans up if anything below panics.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            command,
            lines,
            stderr,
            signalled_tree: Mutex::new(Vec::new()),
        };
        let first = match server.lines.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let stderr = server.stderr_settled();
                panic!(
                    "{}: no first stdout line within {START_TIMEOUT:?} ({e}); stderr: {stderr}",
                    server.command
                )
            }
        };
        server.addr = match parse_listening(&first, model) {
            Ok(addr) => addr,
            Err(why) => panic!("{}: first stdout line {first:?}: {why}", server.command),
        };
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A new client connected to this server.
    #[track_caller]
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// What the server wrote on standard error so far.
    pub fn stderr(&self) -> String {
        collected(&self.stderr, Duration::ZERO)
    }

    /// What the server wrote on standard error, for a failure message: if
    /// the process is exiting, all of it.
    fn stderr_settled(&mut self) -> String {
        match wait_deadline(&mut self.child, Duration::from_secs(1)) {
            Some(_) => collected(&self.stderr, Duration::from_secs(1)),
            None => self.stderr(),
        }
    }

    /// Whether the process is still running (it has not exited or died).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics unless the process is still running.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let stderr = self.stderr_settled();
            panic!(
                "{}: server is gone: {status}; stderr: {stderr}",
                self.command
            );
        }
    }

    /// Sends SIGTERM without waiting.
    #[track_caller]
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `signal` to the server, remembering which processes were under
    /// it at that moment.
    #[track_caller]
    pub fn signal(&self, signal: libc::c_int) {
        let tree = descendants(self.pid())
            .into_iter()
            .filter_map(Proc::live)
            .collect();
        *self
            .signalled_tree
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = tree;
        send_signal(self.pid(), signal);
    }

    /// SIGTERM, then waits up to `STOP_TIMEOUT` for the exit status and the
    /// summary line.
    #[track_caller]
    pub fn stop(self) -> (ExitStatus, Summary) {
        self.terminate();
        self.wait_exit(STOP_TIMEOUT)
    }

    /// Waits up to `within` for the process to exit (after a signal the test
    /// sent), then returns its status and its summary, which must be the last
    /// line of its standard output.
    #[track_caller]
    pub fn wait_exit(mut self, within: Duration) -> (ExitStatus, Summary) {
        let Some(status) = wait_deadline(&mut self.child, within) else {
            panic!(
                "{}: still running {within:?} after the signal; stderr: {}",
                self.command,
                self.stderr()
            )
        };
        // Every process under the server goes with it (a worker left behind
        // would hold the listening socket and keep serving).
        let tree = std::mem::take(
            &mut *self
                .signalled_tree
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        while tree.iter().any(Proc::is_alive) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let left = kill_leftovers(&tree);
        assert!(
            left.is_empty(),
            "{}: exited with {status} but left processes {left:?} running (the test killed them)",
            self.command
        );
        // The summary is written before the exit, so it is in the pipe now.
        // Read to the end of the pipe, but do not wait forever for it: a child
        // process left behind could still hold the pipe open.
        let mut rest = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        let last = rest.last().map(String::as_str).unwrap_or("");
        let Some(json) = last.strip_prefix("summary ").filter(|j| j.starts_with('{')) else {
            let stderr = self.stderr_settled();
            panic!(
                "{}: exited with {status}; last stdout line is {last:?}, not `summary {{JSON}}`; stderr: {stderr}",
                self.command
            )
        };
        let json = match serde_json::from_str(json) {
            Ok(json) => json,
            Err(e) => panic!("{}: summary line is not JSON ({e}): {last}", self.command),
        };
        (status, Summary { json })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            let pid = self.pid();
            // Freeze the parent first: a supervisor (prefork) would replace
            // the workers killed below, and once the parent is gone its
            // children can no longer be found through their parent id.
            // SAFETY: kill(2) takes plain integers; an error only means the
            // process already exited.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let live = descendants(pid);
                if live.is_empty() || Instant::now() > deadline {
                    break;
                }
                for child in live {
                    // SAFETY: as above.
                    unsafe { libc::kill(child, libc::SIGKILL) };
                }
                thread::sleep(Duration::from_millis(5));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        kill_leftovers(
            &self
                .signalled_tree
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
    }
}

/// A process: its id and its start time (field 22 of `/proc/PID/stat`), so
/// that a recycled id is not taken for the same process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    start: u64,
}

impl Proc {
    /// The process `pid`, if it is alive (not a zombie).
    pub fn live(pid: i32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after `(comm)`: state is field 3, starttime field 22.
        let rest: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let state = *rest.first()?;
        let start = rest.get(19)?.parse().ok()?;
        (state != "Z" && state != "X").then_some(Proc { pid, start })
    }

    /// Whether this very process is still alive.
    pub fn is_alive(&self) -> bool {
        Proc::live(self.pid) == Some(*self)
    }
}

/// Kills those of `procs` still alive; returns their ids.
fn kill_leftovers(procs: &[Proc]) -> Vec<i32> {
    let left: Vec<i32> = procs
        .iter()
        .filter(|p| p.is_alive())
        .map(|p| p.pid)
        .collect();
    for &p in &left {
        // SAFETY: kill(2) takes plain integers.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    left
}

/// Parses `listening on HOST:PORT (model MODEL)`.
pub fn parse_listening(line: &str, model: &str) -> Result<SocketAddr, String> {
    let rest = line
        .strip_prefix("listening on ")
        .ok_or("does not start with `listening on `")?;
    let (addr, tail) = rest.split_once(' ').ok_or("no space after the address")?;
    if tail != format!("(model {model})") {
        return Err(format!("expected `(model {model})` after the address"));
    }
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?;
    if addr.port() == 0 {
        return Err("port 0 is not the real bound port".into());
    }
    Ok(addr)
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// How a flood of writes ended.
#[derive(Debug, PartialEq, Eq)]
pub enum FloodEnd {
    /// Everything was written.
    Done,
    /// A write made no progress for the stall time: TCP flow control.
    Stalled,
    /// A write failed (the server closed or reset the connection).
    Failed(io::ErrorKind),
}

/// One TCP connection to a server, with a timeout on every operation.
pub struct Client {
    stream: TcpStream,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Client {
    /// Connects to `addr`, with `IO_TIMEOUT` on reads and writes.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(stream) => stream,
            Err(e) => panic!("connect {addr}: {e}"),
        };
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set write timeout");
        // Each send goes out as its own segment: a dribbled byte is not held
        // back by Nagle's algorithm.
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Client { stream }
    }

    /// A second handle on the same connection (for a reader thread).
    #[track_caller]
    pub fn try_clone(&self) -> Client {
        Client {
            stream: self.stream.try_clone().expect("dup socket"),
        }
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes all of `bytes`; panics on error.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send(bytes) {
            panic!("send {}: {e}", show(bytes));
        }
    }

    /// Writes all of `bytes`, returning any error.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Shuts down the write side: the server sees end of stream.
    #[track_caller]
    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write)");
    }

    /// Closes the connection with SO_LINGER 0, which sends a RST instead of
    /// a FIN.
    #[track_caller]
    pub fn reset(self) {
        let socket = socket2::SockRef::from(&self.stream);
        socket
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        drop(self);
    }

    /// Reads exactly `n` bytes within `within`. Panics, saying what did
    /// arrive, on timeout, end of stream or error.
    #[track_caller]
    pub fn read_exact_within(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut got = vec![0u8; n];
        let mut filled = 0;
        while filled < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "read: {filled} of {n} bytes within {within:?}: {}",
                    show(&got[..filled])
                );
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set read timeout");
            match self.stream.read(&mut got[filled..]) {
                Ok(0) => panic!(
                    "read: end of stream after {filled} of {n} bytes: {}",
                    show(&got[..filled])
                ),
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => panic!(
                    "read: {e} after {filled} of {n} bytes: {}",
                    show(&got[..filled])
                ),
            }
        }
        got
    }

    /// Reads `want.len()` bytes and checks they are exactly `want`.
    #[track_caller]
    pub fn expect(&mut self, want: &[u8]) {
        let got = self.read_exact_within(want.len(), IO_TIMEOUT);
        assert_bytes("response", &got, want);
    }

    /// Sends one request and checks the response is its upper-case.
    #[track_caller]
    pub fn roundtrip(&mut self, request: &[u8]) {
        self.send(request);
        self.expect(&upper(request));
    }

    /// Reads until the server closes the connection, within `within`.
    /// A reset after the server's last byte counts as the close: a server
    /// that closes a socket with unread input makes the kernel send a RST.
    #[track_caller]
    pub fn read_to_end_within(&mut self, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "no end of stream within {within:?}; read so far: {}",
                    show(&got)
                );
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return got,
                Ok(k) => got.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
                Err(e) => panic!("read: {e}; read so far: {}", show(&got)),
            }
        }
    }

    /// Checks that the server closes the connection without sending another
    /// byte.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        let rest = self.read_to_end_within(IO_TIMEOUT);
        assert!(
            rest.is_empty(),
            "expected end of stream, got {}",
            show(&rest)
        );
    }

    /// Checks that nothing arrives (and the connection stays open) for
    /// `quiet`.
    #[track_caller]
    pub fn expect_silence(&mut self, quiet: Duration) {
        self.stream
            .set_read_timeout(Some(quiet))
            .expect("set read timeout");
        let mut byte = [0u8; 1024];
        match self.stream.read(&mut byte) {
            Err(e) if is_timeout(&e) => {}
            Ok(0) => panic!("expected silence, got end of stream"),
            Ok(n) => panic!("expected silence, got {}", show(&byte[..n])),
            Err(e) => panic!("expected silence, got error {e}"),
        }
    }

    /// Writes `total` bytes of 64-byte lines, never reading, until all are
    /// written, a write makes no progress for `stall`, or a write fails.
    /// Returns how many bytes were written and how it ended.
    #[track_caller]
    pub fn flood(&mut self, total: usize, stall: Duration) -> (usize, FloodEnd) {
        // 63 bytes + LF, lower case so that every byte is work for the server.
        let line = b"flood of lower-case bytes that the server has to upper-case...\n";
        let chunk: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 1024)
            .collect();
        self.stream
            .set_write_timeout(Some(stall))
            .expect("set write timeout");
        let mut written = 0;
        let end = loop {
            if written >= total {
                break FloodEnd::Done;
            }
            let start = written % chunk.len();
            let end = chunk.len().min(start + total - written);
            match self.stream.write(&chunk[start..end]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => break FloodEnd::Stalled,
                Err(e) => break FloodEnd::Failed(e.kind()),
            }
        };
        self.stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set write timeout");
        (written, end)
    }
}
