//! `lab`: run a model, list them, or talk to one.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

use iolab::config::Config;
use iolab::config::{parse_positive, parse_secs};
use iolab::load::{self, LoadArgs};
use iolab::models::{self, Model, ModelOption};
use iolab::{client, listener, shutdown, stats, sys};

/// `lab bench`'s options.
#[derive(clap::Args, Debug)]
struct BenchCli {
    /// Models to compare, comma-separated [default: every model]
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Scenarios: rr (1, 100, 1000 conns), pipeline (100 conns, depth 16), c10k
    #[arg(long, value_delimiter = ',', default_value = "rr,pipeline,c10k")]
    scenarios: Vec<String>,
    /// Seconds measured per run.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    duration: std::time::Duration,
    /// Seconds of load before measuring, per run.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    warmup: std::time::Duration,
    /// Where to write report.json, report.md and the SVG charts.
    #[arg(long, default_value = "bench-report")]
    out: std::path::PathBuf,
    /// Redraw report.md and the charts of an earlier run from its
    /// report.json, without measuring anything.
    #[arg(long, value_name = "DIR")]
    rerender: Option<std::path::PathBuf>,
    /// Repeat each run this many times and report the median and spread.
    #[arg(long, default_value = "1", value_parser = parse_positive)]
    repeat: usize,
}

fn bench(args: &ArgMatches) -> Result<(), String> {
    let cli = BenchCli::from_arg_matches(args).map_err(|e| e.to_string())?;
    if let Some(dir) = &cli.rerender {
        iolab::bench::rerender(dir).map_err(|e| format!("rerender {}: {e}", dir.display()))?;
        println!("report and charts redrawn in {}", dir.display());
        return Ok(());
    }
    let models = if cli.models.is_empty() {
        models::all().iter().map(|m| m.name.to_string()).collect()
    } else {
        cli.models
    };
    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>();
    let args = iolab::bench::BenchArgs {
        models,
        scenarios: cli.scenarios,
        duration: cli.duration,
        warmup: cli.warmup,
        out: cli.out,
        repeat: cli.repeat,
        command: command.join(" "),
        lab: std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?,
    };
    let report = iolab::bench::run(&args).map_err(|e| format!("bench: {e}"))?;
    let failed = report.rows.iter().filter(|r| r.errors > 0).count();
    println!("report written to {}", args.out.display());
    if failed > 0 {
        return Err(format!("{failed} runs had errors"));
    }
    Ok(())
}

/// `lab load`'s options.
#[derive(clap::Args, Debug)]
struct LoadCli {
    /// The server to load.
    #[arg(default_value = "127.0.0.1:7878", value_name = "HOST:PORT")]
    addr: String,
    /// Connections that send requests.
    #[arg(long, default_value = "100", value_parser = parse_positive)]
    conns: usize,
    /// Requests each connection keeps in flight (closed loop).
    #[arg(long, default_value = "1", value_parser = parse_positive)]
    depth: usize,
    /// Bytes per request line, the LF included.
    #[arg(long, default_value = "64", value_parser = parse_positive)]
    size: usize,
    /// Seconds to measure.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    duration: std::time::Duration,
    /// Seconds to run before measuring.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    warmup: std::time::Duration,
    /// Total requests per second, sent on schedule (open loop); latency is
    /// measured from the scheduled time.
    #[arg(long, value_name = "REQ_PER_S")]
    rate: Option<f64>,
    /// Extra connections held open and silent.
    #[arg(long, default_value = "0")]
    idle: usize,
    /// Generator threads.
    #[arg(long, default_value = "1", value_parser = parse_positive)]
    threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn load(args: &ArgMatches) -> Result<(), String> {
    let cli = LoadCli::from_arg_matches(args).map_err(|e| e.to_string())?;
    if cli.rate.is_some_and(|rate| rate.is_nan() || rate <= 0.0) {
        return Err("--rate must be a positive number of requests per second".into());
    }
    let args = LoadArgs {
        addr: cli.addr,
        conns: cli.conns,
        depth: cli.depth,
        size: cli.size,
        duration: cli.duration,
        warmup: cli.warmup,
        rate: cli.rate,
        idle: cli.idle,
        threads: cli.threads,
    };
    let report = load::run(&args).map_err(|e| format!("load {}: {e}", args.addr))?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report.render());
    }
    if report.errors > 0 {
        return Err(format!("{} errors", report.errors));
    }
    Ok(())
}

fn cli() -> Command {
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
        command = command.arg(match option {
            ModelOption::Workers { default } => Arg::new("workers")
                .long("workers")
                .value_name("N")
                .value_parser(clap::value_parser!(u64).range(1..))
                .help(format!(
                    "Workers: threads, processes or event loops [default: {default}]"
                )),
            ModelOption::Edge => Arg::new("edge")
                .long("edge")
                .action(clap::ArgAction::SetTrue)
                .help("Edge-triggered readiness (EPOLLET) instead of level-triggered"),
            ModelOption::SpinSleep => Arg::new("spin-sleep-us")
                .long("spin-sleep-us")
                .value_name("MICROS")
                .value_parser(clap::value_parser!(u64))
                .help("Sleep this long after each sweep [default: 0, never sleep]"),
            ModelOption::NoMultishot => Arg::new("no-multishot")
                .long("no-multishot")
                .action(clap::ArgAction::SetTrue)
                .help("Single-shot accept and recv with per-connection buffers"),
            ModelOption::SqPoll => Arg::new("sqpoll")
                .long("sqpoll")
                .action(clap::ArgAction::SetTrue)
                .help("A kernel thread polls the submission queue (IORING_SETUP_SQPOLL)"),
        });
    }
    command
}

fn main() -> ExitCode {
    let matches = match cli().try_get_matches() {
        Ok(matches) => matches,
        Err(err) => return clap_error(err),
    };
    let result = match matches.subcommand() {
        Some(("list", _)) => {
            list();
            Ok(())
        }
        Some(("load", args)) => load(args),
        Some(("bench", args)) => bench(args),
        Some(("client", args)) => {
            let addr = args.get_one::<String>("addr").expect("has a default");
            client::run(addr).map_err(|e| format!("cannot talk to {addr}: {e}"))
        }
        Some((name, args)) => {
            let model = models::find(name).expect("clap only accepts known models");
            serve(model, args)
        }
        None => unreachable!("clap requires a subcommand"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("lab: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version go out whole; a usage error is cut to its first line,
/// as PROTOCOL.md asks of the binary.
fn clap_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind::*;
    if matches!(err.kind(), DisplayHelp | DisplayVersion) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    if err.kind() == DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = err.print();
        return ExitCode::from(2);
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    eprintln!("lab: {}", first.trim_start_matches("error: "));
    ExitCode::from(2)
}

fn list() {
    let mut family = None;
    let width = models::all()
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(0);
    for model in models::all() {
        if family != Some(model.family) {
            if family.is_some() {
                println!();
            }
            println!("# {}", model.family.heading());
            family = Some(model.family);
        }
        println!("{:width$}  {}", model.name, model.summary);
    }
}

fn serve(model: &Model, args: &ArgMatches) -> Result<(), String> {
    let mut config = Config::from_arg_matches(args).map_err(|e| e.to_string())?;
    if let Some(default) = model.default_workers() {
        config.workers = args
            .get_one::<u64>("workers")
            .map_or(default, |&n| n as usize);
    }
    for option in model.options {
        match option {
            ModelOption::Workers { .. } => {}
            ModelOption::Edge => config.tuning.edge = args.get_flag("edge"),
            ModelOption::SpinSleep => {
                let micros = args.get_one::<u64>("spin-sleep-us").copied().unwrap_or(0);
                config.tuning.spin_sleep = std::time::Duration::from_micros(micros);
            }
            ModelOption::NoMultishot => config.tuning.no_multishot = args.get_flag("no-multishot"),
            ModelOption::SqPoll => config.tuning.sqpoll = args.get_flag("sqpoll"),
        }
    }
    shutdown::install(config.drain_timeout)
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Map the shared counters now, before any model forks.
    sys::counters::totals();
    let started = Instant::now();

    let reuse_port = model.listener_per_worker && config.workers > 1;
    let listener = listener::bind(&config.addr, reuse_port)
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {local} (model {})", model.name);
    let _ = std::io::stdout().flush();
    if config.stats {
        stats::spawn_status_line().map_err(|e| format!("cannot start the status line: {e}"))?;
    }

    (model.serve)(listener, &config).map_err(|e| format!("model {}: {e}", model.name))?;

    let summary = stats::summary(model.name, started);
    let json = serde_json::to_string(&summary).map_err(|e| e.to_string())?;
    println!("summary {json}");
    let _ = std::io::stdout().flush();
    Ok(())
}
