//! The `lab` command line, defined here in the library so that the tests can
//! parse every command the docs and lab sheets show with the very parser the
//! binary uses (`tests/docs.rs`). `src/main.rs` runs what this parses.

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

use crate::models::{self, Model};
use crate::server::config::Config;
use crate::server::config::{parse_positive, parse_secs};

/// `lab bench`'s options.
#[derive(clap::Args, Debug)]
pub struct BenchCli {
    /// Models to compare, comma-separated, each perhaps with its options
    /// ("epoll,uring --sqpoll"), perhaps after the path of another build of
    /// lab to serve it ("uring,/tmp/lab-before uring") [default: every model]
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Scenarios: rr (1, 100, 1000 conns), pipeline (100 conns, depth 16), c10k
    #[arg(long, value_delimiter = ',', default_value = "rr,pipeline,c10k")]
    pub scenarios: Vec<String>,
    /// Instead of the scenarios, sweep one quantity and draw a measure
    /// against it, comma-separated: idle (100 busy connections beside 0 to
    /// 10,000 idle ones, CPU per request; models nonblocking, poll, epoll,
    /// uring) and load (1 to 1,000 busy connections, syscalls per request;
    /// models epoll, uring). Without --models, every model a sweep names.
    #[arg(long, value_delimiter = ',', value_parser = ["idle", "load"], conflicts_with = "scenarios")]
    pub sweep: Vec<String>,
    /// Seconds measured per run.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub duration: std::time::Duration,
    /// Seconds of load before measuring, per run.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    pub warmup: std::time::Duration,
    /// Where to write report.json, report.md and the SVG charts.
    #[arg(long, default_value = "bench-report")]
    pub out: std::path::PathBuf,
    /// Redraw report.md and the charts of an earlier run from its
    /// report.json, without measuring anything.
    #[arg(long, value_name = "DIR")]
    pub rerender: Option<std::path::PathBuf>,
    /// Repeat each run this many times, in interleaved rounds (every model's
    /// every run once, then again), and report the run with the median
    /// server CPU per request, with the ranges.
    #[arg(long, default_value = "1", value_parser = parse_positive)]
    pub repeat: usize,
    /// Share the server's CPU with a busy loop, so that the server, not the
    /// load generator, sets the pace: CPU per request is then what serving
    /// costs when requests are always waiting, with no sleeps counted.
    #[arg(long)]
    pub saturate: bool,
    /// Also write the book's tables from the report (the one measured, or
    /// the one --rerender reads) into this directory, e.g.
    /// docs/src/generated.
    #[arg(long, value_name = "DIR")]
    pub book: Option<std::path::PathBuf>,
}

/// `lab load`'s options.
#[derive(clap::Args, Debug)]
pub struct LoadCli {
    /// The server to load.
    #[arg(default_value = "127.0.0.1:7878", value_name = "HOST:PORT")]
    pub addr: String,
    /// Connections that send requests.
    #[arg(long, default_value = "100", value_parser = parse_positive)]
    pub conns: usize,
    /// Requests each connection keeps in flight (closed loop).
    #[arg(long, default_value = "1", value_parser = parse_positive)]
    pub depth: usize,
    /// Bytes per request line, the LF included.
    #[arg(long, default_value = "64", value_parser = parse_positive)]
    pub size: usize,
    /// Seconds to measure.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub duration: std::time::Duration,
    /// Seconds to run before measuring.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    pub warmup: std::time::Duration,
    /// Total requests per second, sent on schedule (open loop); latency is
    /// measured from the scheduled time.
    #[arg(long, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,
    /// Extra connections held open and silent.
    #[arg(long, default_value = "0")]
    pub idle: usize,
    /// Generator threads.
    #[arg(long, default_value = "1", value_parser = parse_positive)]
    pub threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `lab attack`'s options.
#[derive(clap::Args, Debug)]
pub struct AttackCli {
    /// The server to attack [default: 127.0.0.1:7878, unless --model].
    #[arg(value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Scenarios, comma-separated [default: every one]: slowloris, churn,
    /// resets, hogs, max-conns, odd-bytes, pause, shutdown.
    #[arg(long = "scenario", value_delimiter = ',', value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Start this model and attack it, a fresh server per scenario; repeat
    /// for more, or `all`. A model's flags go with it, quoted:
    /// --model 'epoll --edge'.
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// The process id of the server at HOST:PORT, for the checks that read
    /// /proc or send it signals.
    #[arg(long)]
    pub pid: Option<i32>,
    /// Multiply every scenario's counts (connections, rounds) by this
    /// [default: 1, or 0.1 with --quick].
    #[arg(long, value_parser = parse_scale)]
    pub scale: Option<f64>,
    /// Small counts and short phases: a first look, and the tests.
    #[arg(long)]
    pub quick: bool,
    /// The server's MAX_CONNS (with --model: start it so) [default with
    /// --model: 16 for max-conns, 20000 otherwise].
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub max_conns: Option<usize>,
    /// The server's MAX_PENDING in bytes [default: 262144; with --model,
    /// 65536 for hogs].
    #[arg(long, value_name = "BYTES", value_parser = parse_positive)]
    pub max_pending: Option<usize>,
    /// The server's MAX_LINE in bytes [default: 65536].
    #[arg(long, value_name = "BYTES", value_parser = parse_positive)]
    pub max_line: Option<usize>,
    /// The server's IDLE_TIMEOUT, which pause stops it past [default with
    /// --model: 2].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub idle_timeout: Option<std::time::Duration>,
    /// The server's DRAIN_TIMEOUT [default: 5; with --model, 2].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub drain_timeout: Option<std::time::Duration>,
    /// Print the report as JSON on stdout; the verdict lines go to stderr.
    #[arg(long)]
    pub json: bool,
    /// Also write attack.json and attack.md into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

fn parse_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(scale) if scale > 0.0 && scale.is_finite() => Ok(scale),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// `lab profile`'s options.
#[derive(clap::Args, Debug)]
pub struct ProfileCli {
    /// The model to profile; its flags go with it, quoted: 'epoll --edge'.
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Connections that send requests.
    #[arg(long, default_value = "100", value_parser = parse_positive)]
    pub conns: usize,
    /// Requests each connection keeps in flight.
    #[arg(long, default_value = "1", value_parser = parse_positive)]
    pub depth: usize,
    /// Extra connections held open and silent.
    #[arg(long, default_value = "0")]
    pub idle: usize,
    /// Seconds sampled.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub duration: std::time::Duration,
    /// Seconds of load before sampling starts.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    pub warmup: std::time::Duration,
    /// Samples per second (perf's -F).
    #[arg(long, default_value = "999", value_parser = clap::value_parser!(u32).range(1..))]
    pub freq: u32,
    /// How perf unwinds stacks: fp (frame pointers, what -g means) or
    /// dwarf (whole user-space stacks, a far larger perf.data).
    #[arg(long, default_value = "fp", value_parser = ["fp", "dwarf"])]
    pub call_graph: String,
    /// Where to write flamegraph.svg, stacks.folded, perf.data,
    /// profile.json and profile.md.
    #[arg(long, default_value = "profile", value_name = "DIR")]
    pub out: std::path::PathBuf,
}

/// `lab demo`'s options.
#[derive(clap::Args, Debug)]
pub struct DemoCli {
    /// The demo to run; without one, list them.
    pub name: Option<String>,
    /// Run under this model instead of the demo's own choice; repeat for
    /// more. A model's flags go with it, quoted: --model 'epoll --edge'.
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// Print what was measured as JSON on stdout; the timeline goes to stderr.
    #[arg(long)]
    pub json: bool,
}

/// `lab annotate`'s options.
#[derive(clap::Args, Debug)]
pub struct AnnotateCli {
    /// Models whose source to render [default: every model].
    #[arg(value_name = "MODEL")]
    pub models: Vec<String>,
    /// Write MODEL.html files into this directory (and an index.html);
    /// without it, the one model's page goes to stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

/// The whole command line: `lab list`, `lab client`, `lab load`,
/// `lab bench`, `lab attack`, `lab profile`, `lab demo`, `lab annotate` and one
/// subcommand per model.
pub fn command() -> Command {
    let mut lab = Command::new("lab")
        .about("A lab of Linux IO models serving the UPPER protocol")
        .long_about(
            "A lab of Linux IO models serving the UPPER protocol: every line a client sends comes \
             back upper-cased. `lab list` names the models; `lab MODEL` serves with one.",
        )
        .subcommand_required(true)
        .subcommand(Command::new("list").about("List every model, in teaching order"))
        .subcommand(
            Command::new("client")
                .about("Send standard input line by line to a server and print the replies")
                .arg(
                    Arg::new("addr")
                        .default_value("127.0.0.1:7878")
                        .value_name("HOST:PORT"),
                ),
        )
        .subcommand(
            BenchCli::augment_args(Command::new("bench"))
                .about("Run every model under the same loads and write a report"),
        )
        .subcommand(
            LoadCli::augment_args(Command::new("load"))
                .about("Drive a server with checked, measured load"),
        )
        .subcommand(
            AttackCli::augment_args(Command::new("attack"))
                .about("Play hostile clients against a server and give a verdict on each"),
        )
        .subcommand(
            ProfileCli::augment_args(Command::new("profile"))
                .about("Sample a model under load with perf and draw a flame graph"),
        )
        .subcommand(
            DemoCli::augment_args(Command::new("demo"))
                .about("Run a scripted experiment and narrate what happens"),
        )
        .subcommand(
            AnnotateCli::augment_args(Command::new("annotate"))
                .about("Render a model's source as a page: its comments beside its code"),
        );
    for model in models::all() {
        lab = lab.subcommand(model_command(model));
    }
    lab
}

fn model_command(model: &Model) -> Command {
    // `augment_args` sets the about text from the options struct's doc
    // comment, so the model's own text goes on afterwards.
    let mut command = Config::augment_args(Command::new(model.name))
        .about(model.summary)
        .long_about(format!("{}\n\n{}", model.summary, model.about));
    for option in model.options {
        command = command.arg(option.arg());
    }
    command
}

/// A model's [`Config`], from its subcommand's arguments: the common
/// options, then the flags that model declares.
pub fn config(model: &Model, args: &ArgMatches) -> Result<Config, String> {
    let mut config = Config::from_arg_matches(args).map_err(|e| e.to_string())?;
    for option in model.options {
        option.apply(args, &mut config);
    }
    Ok(config)
}
