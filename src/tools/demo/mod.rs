//! `lab demo`: scripted experiments that let you *watch* a model's nature.
//!
//! A demo starts the real server (`lab MODEL`, this very executable) as a
//! child process on a free port, drives clients through a scenario, and
//! narrates what happened as a timeline in plain words, with the time each
//! thing happened since the demo started:
//!
//! ```text
//! $ lab demo second-client --model blocking
//!   0.004s  blocking: listening on 127.0.0.1:40313
//!   0.005s  A connects and asks "hello from a"
//!   0.005s  A gets "HELLO FROM A" after 0.2 ms; A stays connected
//!   ...
//! ```
//!
//! Each demo records the *facts* it measured (how long B waited, how much
//! the server's memory grew); `--json` prints them, and `tests/demo.rs` runs
//! every demo and asserts the claim it narrates from those facts. The claim
//! is never computed in advance: if a model stopped behaving as its chapter
//! says, its demo would say so, and the test would fail.
//!
//! One file per demo; each starts with the experiment and what it shows.
//! The pieces they share are here: the [`Stage`] that narrates and starts
//! servers, and [`Peer`], a client that speaks one line at a time.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::models::{self, Model};
use crate::sys::is_timeout;
use crate::tools::child::ServerProcess;

mod batching;
mod busy_poll;
mod c10k;
mod edge_vs_level;
mod head_of_line;
mod herd;
mod offload;
mod pool_exhaustion;
mod race;
mod second_client;
mod select_limit;
mod signal_overflow;
mod slow_reader;

/// What one demo measured under one model: named numbers and flags.
pub type Facts = Map<String, Value>;

/// One scripted experiment.
pub struct Demo {
    /// Its name on the command line.
    pub name: &'static str,
    /// The claim it shows, in one sentence.
    pub claim: &'static str,
    /// The models it runs when no `--model` is given. A model may carry
    /// flags, as in `epoll --edge`.
    pub default_models: &'static [&'static str],
    /// Runs the experiment under one model (already started on the stage).
    pub run: fn(&mut Stage, &Model) -> io::Result<Facts>,
    /// The fact to order the findings by (smallest first), if the order
    /// is the point; otherwise they come in the order the models ran.
    pub rank_by: Option<&'static str>,
    /// Says in one line what a run showed; the findings are these lines,
    /// one per run that did not fail.
    pub finding: fn(&Run) -> String,
}

/// Every demo, in the order of the models they show.
pub fn all() -> &'static [Demo] {
    &DEMOS
}

static DEMOS: [Demo; 13] = [
    second_client::DEMO,
    pool_exhaustion::DEMO,
    busy_poll::DEMO,
    select_limit::DEMO,
    slow_reader::DEMO,
    c10k::DEMO,
    edge_vs_level::DEMO,
    signal_overflow::DEMO,
    batching::DEMO,
    head_of_line::DEMO,
    offload::DEMO,
    race::DEMO,
    herd::DEMO,
];

/// Looks a demo up by name.
pub fn find(name: &str) -> Option<&'static Demo> {
    all().iter().find(|d| d.name == name)
}

/// One model's run of a demo.
#[derive(Debug, Serialize)]
pub struct Run {
    /// The model with its flags, as given (`epoll --edge`).
    pub model: String,
    /// What was measured; empty if the run failed.
    pub facts: Facts,
    /// Why the run failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl Run {
    /// A measured number, or NaN if it is missing.
    pub fn number(&self, key: &str) -> f64 {
        self.facts
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    }

    /// A measured flag (false if missing).
    pub fn flag(&self, key: &str) -> bool {
        self.facts
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// What `lab demo NAME --json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The demo's name.
    pub demo: String,
    /// The claim it set out to show.
    pub claim: String,
    /// One run per model.
    pub runs: Vec<Run>,
    /// What the runs showed, in words.
    pub findings: Vec<String>,
}

/// Runs `demo` under each of `models` (its defaults if empty) and narrates
/// on stdout, or on stderr when `quiet_stdout` (the JSON goes to stdout).
pub fn run(demo: &Demo, models: &[String], quiet_stdout: bool) -> Result<Report, String> {
    let lab = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let chosen: Vec<String> = if models.is_empty() {
        demo.default_models.iter().map(|m| m.to_string()).collect()
    } else {
        models.to_vec()
    };
    // Check every model before starting any: a typo should not cost a run.
    let resolved = chosen
        .iter()
        .map(|spec| {
            let name = spec.split_whitespace().next().unwrap_or_default();
            models::find(name)
                .map(|m| (spec.clone(), m))
                .ok_or_else(|| format!("no model `{name}`; `lab list` names them"))
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Demos open a thousand sockets and more; the soft limit is often 1,024.
    crate::sys::raise_open_files_limit();

    let mut stage = Stage {
        lab,
        started: Instant::now(),
        to_stderr: quiet_stdout,
        server: None,
        spec: String::new(),
    };
    stage.say(format_args!("demo {}: {}", demo.name, demo.claim));
    let mut runs = Vec::new();
    for (spec, model) in resolved {
        stage.spec = spec.clone();
        let outcome = (demo.run)(&mut stage, model);
        // Whatever happened, the server goes (Drop kills it if still up).
        stage.server = None;
        runs.push(match outcome {
            Ok(facts) => Run {
                model: spec,
                facts,
                failed: None,
            },
            Err(e) => {
                stage.say(format_args!("{spec}: the run failed: {e}"));
                Run {
                    model: spec,
                    facts: Facts::new(),
                    failed: Some(e.to_string()),
                }
            }
        });
    }
    let mut measured: Vec<&Run> = runs.iter().filter(|run| run.failed.is_none()).collect();
    if let Some(key) = demo.rank_by {
        measured.sort_by(|a, b| a.number(key).total_cmp(&b.number(key)));
    }
    let findings: Vec<String> = measured.into_iter().map(demo.finding).collect();
    for finding in &findings {
        stage.say(format_args!("=> {finding}"));
    }
    Ok(Report {
        demo: demo.name.into(),
        claim: demo.claim.into(),
        runs,
        findings,
    })
}

/// Where a demo happens: it narrates with timestamps and runs the server.
pub struct Stage {
    lab: PathBuf,
    started: Instant,
    to_stderr: bool,
    server: Option<ServerProcess>,
    /// The model being run, with its flags (`epoll --edge`).
    spec: String,
}

impl Stage {
    /// Prints one line of the timeline: seconds since the demo began, then
    /// the text.
    pub fn say(&self, text: std::fmt::Arguments<'_>) {
        let line = format!("{:8.3}s  {text}", self.started.elapsed().as_secs_f64());
        if self.to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
            let _ = io::stdout().flush();
        }
    }

    /// Starts the run's model with its flags plus `extra`, and returns the
    /// address it listens on.
    pub fn start(&mut self, extra: &[&str]) -> io::Result<String> {
        let mut args: Vec<&str> = self.spec.split_whitespace().collect();
        args.extend_from_slice(extra);
        let server = ServerProcess::start(&self.lab, &args, false)?;
        let addr = server.addr.clone();
        self.say(format_args!("{}: listening on {addr}", args.join(" ")));
        self.server = Some(server);
        Ok(addr)
    }

    /// Whether the run's model was given this flag (`--edge`).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.spec.split_whitespace().any(|word| word == flag)
    }

    /// The running server's process id.
    ///
    /// # Panics
    ///
    /// If no server is running: a pid of 0 would mean "every process" to
    /// the /proc walk and "ourselves" to `prlimit`.
    pub fn server_pid(&self) -> i32 {
        self.server
            .as_ref()
            .map(ServerProcess::pid)
            .expect("server_pid before Stage::start")
    }

    /// Stops the server (SIGTERM, drain) and returns its summary.
    pub fn stop(&mut self) -> io::Result<crate::server::stats::Summary> {
        let mut server = self
            .server
            .take()
            .ok_or_else(|| io::Error::other("no server is running"))?;
        server.stop()
    }
}

/// A client that speaks the protocol a line at a time, as a person at
/// `lab client` would, with a deadline on every wait.
pub struct Peer {
    reader: BufReader<TcpStream>,
}

impl Peer {
    /// Connects. On loopback `connect` returns as soon as the kernel has
    /// finished the handshake, whether or not the server has accepted.
    pub fn connect(addr: &str) -> io::Result<Peer> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Peer {
            reader: BufReader::new(stream),
        })
    }

    /// Connects with a receive buffer of `bytes` (`SO_RCVBUF`, set before
    /// the handshake so the window the kernel advertises stays that small):
    /// a client whose answers back up in the server quickly.
    pub fn connect_with_receive_buffer(addr: &str, bytes: usize) -> io::Result<Peer> {
        use socket2::{Domain, Socket, Type};
        let addr: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_recv_buffer_size(bytes)?;
        socket.connect(&addr.into())?;
        socket.set_nodelay(true)?;
        Ok(Peer {
            reader: BufReader::new(socket.into()),
        })
    }

    /// Sends `text` and an LF.
    pub fn send(&mut self, text: &str) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(text.as_bytes())?;
        stream.write_all(b"\n")
    }

    /// Waits up to `within` for one line; `Ok(None)` if none came in time.
    /// A connection the server closed without a line is an error.
    pub fn line_within(&mut self, within: Duration) -> io::Result<Option<String>> {
        self.reader.get_ref().set_read_timeout(Some(within))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )),
            Ok(_) => Ok(Some(line.trim_end_matches('\n').to_string())),
            Err(e) if is_timeout(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a line and waits up to `within` for its answer; returns the
    /// answer and how long it took.
    pub fn ask(&mut self, text: &str, within: Duration) -> io::Result<Option<(String, Duration)>> {
        let asked = Instant::now();
        self.send(text)?;
        Ok(self
            .line_within(within)?
            .map(|line| (line, asked.elapsed())))
    }

    /// The socket, for demos that need to write without reading.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    /// Reads and discards up to `bytes`, within `within` in all; returns
    /// how many came.
    pub fn drain(&mut self, bytes: usize, within: Duration) -> io::Result<usize> {
        let deadline = Instant::now() + within;
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while got < bytes {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            self.reader.get_ref().set_read_timeout(Some(left))?;
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if is_timeout(&e) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }
}

/// Milliseconds, for facts and narration.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
