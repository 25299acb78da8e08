//! `lab attack`: hostile clients, and a verdict on how a server stood up
//! to them.
//!
//! `lab load` is a polite crowd: every client sends whole lines, reads every
//! answer and leaves properly. The clients a server meets on a network are
//! not all like that. Some hold a connection open and send one byte every
//! few hundred milliseconds; some connect and vanish thousands of times a
//! second; some reset in the middle of a line; some send megabytes and
//! never read; some send bytes nobody expected. And the server's own world
//! is not polite either: it gets stopped by a debugger or a busy host, and
//! told to shut down while it is busy. docs/src/protocol.md says what a
//! server must do in each case. This tool plays those clients and checks:
//!
//! | scenario | the clients | what the server must do |
//! | --- | --- | --- |
//! | `slowloris` | 2,000 connections, each a partial line dribbled a byte at a time | still answer an honest client within 2 s, and never answer a line before its LF |
//! | `churn` | 20,000 connect, ask, close rounds | answer every one exactly; give every descriptor back |
//! | `resets` | resets mid-line, right after a line, mid-answer | go on serving the honest clients beside them, byte for byte |
//! | `hogs` | 200 clients pushing MiBs without reading | bound its memory per hog by `MAX_PENDING`, give it back after, serve the others |
//! | `max-conns` | `MAX_CONNS` clients, then more | turn away *every* extra one with `error: too many connections`, admit again once one leaves |
//! | `odd-bytes` | every byte value, overlong lines, a million empty lines | answer exactly what the spec says, byte for byte |
//! | `pause` | lines sent while the server is stopped (SIGSTOP) past its idle timeout | answer them after SIGCONT, not time them out |
//! | `shutdown` | SIGTERM in the middle of pipelined load | answer every line sent before the signal, exit 0 within the drain timeout, print its summary |
//!
//! Each scenario is one file in this folder, opening with what it does and
//! why; they share the runner here and the checked socket calls in
//! [`wire`]. A scenario is bounded in time and in count (`--scale` and
//! `--quick` shrink it), and ends in a [`Verdict`]: pass, FAIL with what
//! went wrong, or n/a with the reason it could not be run.
//!
//! **Targets.** `lab attack HOST:PORT` attacks any server that speaks the
//! protocol, the lab's or yours; the options `--max-conns`, `--max-line`,
//! `--max-pending`, `--idle-timeout` and `--drain-timeout` tell the tool
//! that server's limits. `lab attack --model M` starts the lab's own model
//! instead (a fresh server per scenario, from this very executable, as the
//! demos do) with the limits the scenario needs: a small `--max-conns` (16)
//! for `max-conns`, `--max-pending 65536` for `hogs`, `--idle-timeout 2`
//! for `pause`; the same options, given, override them. What needs the
//! server's process runs only when the tool knows it: reading `/proc` and
//! sending signals need its pid (`--model`, or `--pid`), and `shutdown`
//! needs its exit status, so only a server the tool started.
//!
//! **n/a is not a pass.** A model that by its nature cannot hold the
//! connections a scenario needs (the iterative server holds one; a pool
//! holds its workers; `select` stops at 1,024 descriptors) is reported n/a
//! with that reason, decided from the model table ([`Model::capacity`]) as
//! `lab bench` decides it. For `slowloris` that n/a *is* the lesson: a
//! server that gives each connection a worker is taken down by as many
//! slow clients as it has workers.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::models::{self, Capacity, Model};
use crate::server::config::Config;
use crate::server::stats::Summary;
use crate::tools::child::ServerProcess;

mod churn;
mod hogs;
mod max_conns;
mod odd_bytes;
mod pause;
mod report;
mod resets;
mod shutdown;
mod slowloris;
pub mod wire;

pub use report::{Outcome, Report, Verdict};

/// Named numbers a scenario measured, for `--json`.
pub type Facts = Map<String, Value>;

/// One kind of hostile client.
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// What the server must do, in one sentence.
    pub must: &'static str,
    /// Connections it holds open at once under these limits: a model that
    /// can hold fewer makes it n/a.
    pub conns: fn(&Plan, &Limits) -> usize,
    /// What it needs of the server's process.
    pub process: Process,
    /// The limits a server started for it gets (the user's own options are
    /// applied afterwards and win).
    pub tune: fn(&mut Limits),
    /// The attack itself.
    pub run: fn(&mut Target, &Plan) -> Result<Finding, Halt>,
}

/// What a scenario needs of the server's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// Nothing: sockets are enough (it reads `/proc` too when it can).
    Any,
    /// Its pid, to send it signals.
    Pid,
    /// To be its parent, to read its exit status and summary.
    Child,
}

static SCENARIOS: [&Scenario; 8] = [
    &slowloris::SCENARIO,
    &churn::SCENARIO,
    &resets::SCENARIO,
    &hogs::SCENARIO,
    &max_conns::SCENARIO,
    &odd_bytes::SCENARIO,
    &pause::SCENARIO,
    &shutdown::SCENARIO,
];

/// Every scenario, in the order they run.
pub fn all() -> &'static [&'static Scenario] {
    &SCENARIOS
}

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    all().iter().copied().find(|s| s.name == name)
}

/// How big and how long, and what the user said of the server's limits.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Multiplies every scenario's counts (connections, rounds, lines).
    pub scale: f64,
    /// Shorter phases and fewer rounds, for tests and a first look.
    pub quick: bool,
    /// `--max-conns`, if given.
    pub max_conns: Option<usize>,
    /// `--max-pending`, if given.
    pub max_pending: Option<usize>,
    /// `--max-line`, if given.
    pub max_line: Option<usize>,
    /// `--idle-timeout`, if given.
    pub idle_timeout: Option<Duration>,
    /// `--drain-timeout`, if given.
    pub drain_timeout: Option<Duration>,
}

impl Plan {
    /// `full` times the scale, and at least 1.
    pub fn count(&self, full: usize) -> usize {
        ((full as f64 * self.scale).round() as usize).max(1)
    }

    /// `full` in a normal run, `quick` with `--quick`.
    pub fn phase(&self, full: Duration, quick: Duration) -> Duration {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// The server's limits, as the attack knows them.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `MAX_CONNS`, if known.
    pub max_conns: Option<usize>,
    /// `MAX_PENDING` in bytes.
    pub max_pending: usize,
    /// `MAX_LINE` in bytes, the LF counted.
    pub max_line: usize,
    /// `IDLE_TIMEOUT`, if known and on.
    pub idle_timeout: Option<Duration>,
    /// `DRAIN_TIMEOUT`.
    pub drain_timeout: Duration,
}

impl Limits {
    /// A server someone else started: the user's word, or the protocol's
    /// defaults (an unknown connection limit stays unknown: guessing 10,000
    /// would mean opening ten thousand connections on a guess).
    fn of_remote(plan: &Plan) -> Limits {
        let mut limits = Limits::protocol();
        limits.max_conns = None;
        limits.idle_timeout = None;
        limits.apply(plan);
        limits
    }

    /// A server this tool starts: no idle timeout and room for every
    /// connection unless a scenario says otherwise, and a short drain, so
    /// that stopping it after each scenario is quick.
    fn started(scenario: &Scenario, plan: &Plan) -> Limits {
        let mut limits = Limits::protocol();
        limits.max_conns = Some(20_000);
        limits.idle_timeout = None;
        limits.drain_timeout = Duration::from_secs(2);
        (scenario.tune)(&mut limits);
        limits.apply(plan);
        limits
    }

    /// The defaults docs/src/protocol.md gives, from the one place the
    /// server keeps them.
    fn protocol() -> Limits {
        let config = Config::default();
        Limits {
            max_conns: Some(config.max_conns),
            max_pending: config.max_pending,
            max_line: config.max_line,
            idle_timeout: config.idle_timeout(),
            drain_timeout: config.drain_timeout,
        }
    }

    fn apply(&mut self, plan: &Plan) {
        self.max_conns = plan.max_conns.or(self.max_conns);
        self.max_pending = plan.max_pending.unwrap_or(self.max_pending);
        self.max_line = plan.max_line.unwrap_or(self.max_line);
        self.idle_timeout = plan.idle_timeout.or(self.idle_timeout);
        self.drain_timeout = plan.drain_timeout.unwrap_or(self.drain_timeout);
    }

    /// The options that start a server with these limits.
    fn args(&self) -> Vec<String> {
        let secs = |d: Duration| d.as_secs_f64().to_string();
        vec![
            "--max-conns".into(),
            self.max_conns.unwrap_or(20_000).to_string(),
            "--max-pending".into(),
            self.max_pending.to_string(),
            "--max-line".into(),
            self.max_line.to_string(),
            "--idle-timeout".into(),
            secs(self.idle_timeout.unwrap_or(Duration::ZERO)),
            "--drain-timeout".into(),
            secs(self.drain_timeout),
        ]
    }
}

/// The options the limits are given by: they go on `lab attack`, not in a
/// `--model` string, where they would be given twice.
const LIMIT_OPTIONS: [&str; 6] = [
    "--addr",
    "--max-conns",
    "--max-pending",
    "--max-line",
    "--idle-timeout",
    "--drain-timeout",
];

/// The server under attack.
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id, when known.
    pub pid: Option<i32>,
    /// The server, when this tool started it.
    pub server: Option<ServerProcess>,
    /// How many connections it can hold at once (`usize::MAX`: as many as
    /// asked, as far as the tool knows).
    pub room: usize,
    /// Its limits.
    pub limits: Limits,
}

impl Target {
    /// Checks that the server is still there and still serving: its process
    /// has not died (when the tool knows it), and a new honest client is
    /// answered exactly. Every scenario ends with this.
    pub fn alive(&mut self, finding: &mut Finding) {
        if let Some(server) = &mut self.server {
            if let Some(status) = server.exited() {
                finding.fail(format!("the server died ({status}){}", server.said()));
                return;
            }
        } else if let Some(pid) = self.pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                finding.fail(format!("process {pid} is gone"));
                return;
            }
        }
        // Clients the scenario has just closed may still count against the
        // server's limit for a moment (it learns of a close when it next
        // reads), so a refusal is retried for a while before it counts.
        let since = Instant::now();
        while let Err(e) = wire::honest(self.addr, 0, wire::HONEST_WITHIN) {
            if since.elapsed() > wire::PATIENCE {
                finding.fail(format!("afterwards, {e}"));
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops a server this tool started (SIGTERM) and returns its summary;
    /// `Ok(None)` for a server someone else runs. A server that does not
    /// exit 0 with a summary within its drain timeout (and some slack) is
    /// an error.
    pub fn stop(&mut self) -> Result<Option<Summary>, String> {
        let Some(mut server) = self.server.take() else {
            return Ok(None);
        };
        if let Some(status) = server.exited() {
            return Err(format!("the server had died ({status}){}", server.said()));
        }
        signal(server.pid(), nix::sys::signal::Signal::SIGTERM)
            .map_err(|e| format!("SIGTERM: {e}"))?;
        let exit = server.wait_exit(self.limits.drain_timeout + Duration::from_secs(5));
        match (exit.status, exit.summary) {
            (Some(status), Some(summary)) if status.success() => Ok(Some(summary)),
            (Some(status), summary) => Err(format!(
                "stopped with SIGTERM, it exited with {status}{}{}",
                if summary.is_none() {
                    ", no summary"
                } else {
                    ""
                },
                server.said()
            )),
            (None, _) => Err(format!(
                "still running {:.1} s after SIGTERM (killed)",
                exit.took.as_secs_f64()
            )),
        }
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: i32, signal: nix::sys::signal::Signal) -> io::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(io::Error::from)
}

/// What a scenario found.
#[derive(Debug, Default)]
pub struct Finding {
    /// What was done and measured, in one line.
    pub says: String,
    /// Every expectation that did not hold, in words; none means a pass.
    pub failures: Vec<String>,
    /// The measured numbers.
    pub facts: Facts,
}

impl Finding {
    /// Records a failed expectation.
    pub fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }

    /// Records a failure, `why`, unless `ok`.
    pub fn check(&mut self, ok: bool, why: impl FnOnce() -> String) {
        if !ok {
            self.fail(why());
        }
    }

    /// Records a measured number or flag.
    pub fn fact(&mut self, key: &str, value: impl Into<Value>) {
        self.facts.insert(key.into(), value.into());
    }
}

/// Why a scenario stopped before its verdict.
#[derive(Debug)]
pub enum Halt {
    /// It cannot be run against this server, for this reason.
    NotApplicable(String),
    /// Something the server did (or did not do) ended it: a FAIL.
    Failed(String),
}

impl From<io::Error> for Halt {
    fn from(e: io::Error) -> Halt {
        Halt::Failed(e.to_string())
    }
}

impl From<String> for Halt {
    fn from(why: String) -> Halt {
        Halt::Failed(why)
    }
}

/// What to attack, and how.
#[derive(Clone, Debug, Default)]
pub struct AttackArgs {
    /// A server someone else runs, if no `models`.
    pub addr: Option<String>,
    /// Models to start, each with its flags (`epoll --edge`), or `all`.
    pub models: Vec<String>,
    /// The process id of the server at `addr`, if the user gave it.
    pub pid: Option<i32>,
    /// Scenario names; empty means every one.
    pub scenarios: Vec<String>,
    /// Sizes, phases and limits.
    pub plan: Plan,
    /// The command line, for the report.
    pub command: String,
    /// The `lab` executable, to start models with.
    pub lab: PathBuf,
    /// Print the verdict lines on stderr instead of stdout.
    pub quiet_stdout: bool,
}

/// Runs every chosen scenario against every chosen target, printing a
/// verdict line as each ends, and returns them all.
pub fn run(args: &AttackArgs) -> Result<Report, String> {
    let scenarios: Vec<&Scenario> = if args.scenarios.is_empty() {
        all().to_vec()
    } else {
        args.scenarios
            .iter()
            .map(|name| {
                find(name).ok_or_else(|| {
                    let names: Vec<&str> = all().iter().map(|s| s.name).collect();
                    format!("no scenario `{name}` (there are: {})", names.join(", "))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let models = chosen_models(&args.models)?;
    if !models.is_empty() && (args.addr.is_some() || args.pid.is_some()) {
        return Err("give either HOST:PORT (and --pid) or --model, not both".into());
    }
    // Thousands of sockets; the soft limit is often 1,024. A server started
    // here inherits the raised limit.
    crate::sys::raise_open_files_limit();

    let say = |verdict: &Verdict| {
        let line = verdict.line();
        if args.quiet_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let mut verdicts = Vec::new();
    if models.is_empty() {
        let text = args.addr.as_deref().unwrap_or("127.0.0.1:7878");
        let addr = text
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("cannot resolve {text}"))?;
        for scenario in &scenarios {
            let verdict = attack_remote(addr, text, args.pid, scenario, &args.plan);
            say(&verdict);
            verdicts.push(verdict);
        }
    } else {
        for (spec, model) in &models {
            for scenario in &scenarios {
                let verdict = attack_model(&args.lab, spec, model, scenario, &args.plan);
                say(&verdict);
                verdicts.push(verdict);
            }
        }
    }
    Ok(Report::new(args, verdicts))
}

/// The `--model` arguments resolved to the model table: `all` is every
/// model; a model's flags stay with it.
fn chosen_models(specs: &[String]) -> Result<Vec<(String, &'static Model)>, String> {
    let mut chosen = Vec::new();
    for spec in specs {
        if spec == "all" {
            chosen.extend(models::all().iter().map(|m| (m.name.to_string(), m)));
            continue;
        }
        let mut words = spec.split_whitespace();
        let name = words.next().unwrap_or_default();
        let model = models::find(name)
            .ok_or_else(|| format!("no model `{name}`; `lab list` names them"))?;
        if let Some(option) = words.find(|w| LIMIT_OPTIONS.contains(w)) {
            return Err(format!(
                "`{option}` goes on `lab attack` itself, not in --model '{spec}'"
            ));
        }
        chosen.push((spec.clone(), model));
    }
    Ok(chosen)
}

/// One scenario against a server someone else runs.
fn attack_remote(
    addr: SocketAddr,
    text: &str,
    pid: Option<i32>,
    scenario: &Scenario,
    plan: &Plan,
) -> Verdict {
    let started = Instant::now();
    let missing = match (scenario.process, pid) {
        (Process::Child, _) => Some("needs a server the tool starts itself (--model)"),
        (Process::Pid, None) => Some("needs the server's process: --pid PID, or --model"),
        _ => None,
    };
    if let Some(why) = missing {
        return Verdict::not_applicable(text, scenario, why.into());
    }
    let mut target = Target {
        addr,
        pid,
        server: None,
        room: usize::MAX,
        limits: Limits::of_remote(plan),
    };
    let outcome = (scenario.run)(&mut target, plan);
    Verdict::of(text, scenario, outcome, started)
}

/// One scenario against a fresh server of `model`, started for it.
fn attack_model(
    lab: &Path,
    spec: &str,
    model: &Model,
    scenario: &Scenario,
    plan: &Plan,
) -> Verdict {
    let started = Instant::now();
    let limits = Limits::started(scenario, plan);
    let words: Vec<&str> = spec.split_whitespace().collect();
    let workers = words
        .iter()
        .position(|w| *w == "--workers")
        .and_then(|i| words.get(i + 1)?.parse().ok())
        .or(model.default_workers())
        .unwrap_or(1);
    let conns = (scenario.conns)(plan, &limits);
    let mut room = usize::MAX;
    if let Capacity::AtMost(most, why) = model.capacity(workers) {
        if conns > most {
            return Verdict::not_applicable(
                spec,
                scenario,
                format!("needs {conns} connections at once, it holds at most {most} ({why})"),
            );
        }
        room = most;
    }
    let limit_args = limits.args();
    let args: Vec<&str> = words
        .iter()
        .copied()
        .chain(limit_args.iter().map(String::as_str))
        .collect();
    let server = match ServerProcess::start(lab, &args, false) {
        Ok(server) => server,
        Err(e) => {
            let outcome = Err(Halt::Failed(format!("the server did not start: {e}")));
            return Verdict::of(spec, scenario, outcome, started);
        }
    };
    settle(server.pid());
    let addr = match server.addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            let outcome = Err(Halt::Failed(format!("bad address {}: {e}", server.addr)));
            return Verdict::of(spec, scenario, outcome, started);
        }
    };
    let mut target = Target {
        addr,
        pid: Some(server.pid()),
        server: Some(server),
        room,
        limits,
    };
    let mut outcome = (scenario.run)(&mut target, plan);
    // Whatever the scenario left running is stopped, and a server that
    // does not stop cleanly is part of the verdict.
    if target.server.is_some() {
        let stopped = target.stop();
        if let (Ok(finding), Err(why)) = (&mut outcome, stopped) {
            finding.fail(format!("afterwards, {why}"));
        }
    }
    Verdict::of(spec, scenario, outcome, started)
}

/// Waits (up to 3 s) until the process tree under `pid` holds still: a
/// server prints its address before it forks its workers, and a count of
/// descriptors or memory taken while it is still forking them is no
/// baseline.
fn settle(pid: i32) {
    let since = Instant::now();
    let (mut last, mut same) = (usize::MAX, 0);
    while same < 3 && since.elapsed() < Duration::from_secs(3) {
        let now = crate::tools::child::descendants(pid).len();
        same = if now == last { same + 1 } else { 0 };
        last = now;
        std::thread::sleep(Duration::from_millis(50));
    }
}
