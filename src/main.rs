//! `lab`: run a model, list them, or talk to one.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgMatches, FromArgMatches};

use iolab::models::{self, Model};
use iolab::tools::load::{self, LoadArgs};
use iolab::{server::listener, server::shutdown, server::stats, sys, tools::cli, tools::client};

fn bench(args: &ArgMatches) -> Result<(), String> {
    let cli = cli::BenchCli::from_arg_matches(args).map_err(|e| e.to_string())?;
    if let Some(dir) = &cli.rerender {
        iolab::tools::bench::rerender(dir)
            .map_err(|e| format!("rerender {}: {e}", dir.display()))?;
        println!("report and charts redrawn in {}", dir.display());
        return book(dir, cli.book.as_deref());
    }
    let sweeping = !cli.sweep.is_empty();
    let scenarios = match sweeping {
        true => cli.sweep.iter().map(|s| format!("sweep-{s}")).collect(),
        false => cli.scenarios,
    };
    let models = if !cli.models.is_empty() {
        cli.models
    } else if sweeping {
        // The models the sweeps name, in the lab's teaching order.
        let named: Vec<&str> = scenarios
            .iter()
            .flat_map(|s| iolab::tools::bench::sweep_models(s))
            .copied()
            .collect();
        models::all()
            .iter()
            .filter(|m| named.contains(&m.name))
            .map(|m| m.name.to_string())
            .collect()
    } else {
        models::all().iter().map(|m| m.name.to_string()).collect()
    };
    // The load generator runs in this process: the largest run must fit.
    let largest = scenarios
        .iter()
        .filter_map(|name| iolab::tools::bench::scenario(name))
        .flatten()
        .map(|run| run.conns + run.idle)
        .max()
        .unwrap_or(0);
    sys::descriptors_fit(
        &format!("bench's largest run ({largest} connections)"),
        largest,
    )?;
    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>();
    let args = iolab::tools::bench::BenchArgs {
        models,
        scenarios,
        duration: cli.duration,
        warmup: cli.warmup,
        out: cli.out,
        repeat: cli.repeat,
        command: command.join(" "),
        lab: std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?,
        saturate: cli.saturate,
    };
    let report = iolab::tools::bench::run(&args).map_err(|e| format!("bench: {e}"))?;
    let failed = report.rows.iter().filter(|r| r.errors > 0).count();
    println!("report written to {}", args.out.display());
    book(&args.out, cli.book.as_deref())?;
    if failed > 0 {
        return Err(format!("{failed} runs had errors"));
    }
    Ok(())
}

/// With `--book OUT`: the book's tables from the report in `report_dir`.
fn book(report_dir: &std::path::Path, out: Option<&std::path::Path>) -> Result<(), String> {
    let Some(out) = out else {
        return Ok(());
    };
    let written = iolab::tools::bench::book::write(report_dir, out)
        .map_err(|e| format!("book tables from {}: {e}", report_dir.display()))?;
    println!("{written} book tables written to {}", out.display());
    Ok(())
}

fn load(args: &ArgMatches) -> Result<(), String> {
    let cli = cli::LoadCli::from_arg_matches(args).map_err(|e| e.to_string())?;
    sys::descriptors_fit(
        &format!("load --conns {} --idle {}", cli.conns, cli.idle),
        cli.conns + cli.idle,
    )?;
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

fn attack(args: &ArgMatches) -> Result<(), String> {
    let cli = cli::AttackCli::from_arg_matches(args).map_err(|e| e.to_string())?;
    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>();
    let args = iolab::tools::attack::AttackArgs {
        addr: cli.addr,
        models: cli.models,
        pid: cli.pid,
        scenarios: cli.scenarios,
        plan: iolab::tools::attack::Plan {
            scale: cli.scale.unwrap_or(if cli.quick { 0.1 } else { 1.0 }),
            quick: cli.quick,
            max_conns: cli.max_conns,
            max_pending: cli.max_pending,
            max_line: cli.max_line,
            idle_timeout: cli.idle_timeout,
            drain_timeout: cli.drain_timeout,
        },
        command: command.join(" "),
        lab: std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?,
        quiet_stdout: cli.json,
    };
    let report = iolab::tools::attack::run(&args)?;
    if let Some(table) = report.table() {
        if cli.json {
            eprint!("\n{table}");
        } else {
            print!("\n{table}");
        }
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    }
    if let Some(dir) = &cli.out {
        report
            .write(dir)
            .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
    }
    match report.failed() {
        0 => Ok(()),
        n => Err(format!("{n} verdict(s) FAIL")),
    }
}

fn profile(args: &ArgMatches) -> Result<(), String> {
    let cli = cli::ProfileCli::from_arg_matches(args).map_err(|e| e.to_string())?;
    let model: Vec<String> = cli.model.split_whitespace().map(String::from).collect();
    let name = model.first().map(String::as_str).unwrap_or_default();
    if models::find(name).is_none() {
        return Err(format!("no model `{name}`; `lab list` names them"));
    }
    sys::descriptors_fit(
        &format!("profile --conns {} --idle {}", cli.conns, cli.idle),
        cli.conns + cli.idle,
    )?;
    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>();
    let args = iolab::tools::profile::ProfileArgs {
        model,
        conns: cli.conns,
        depth: cli.depth,
        idle: cli.idle,
        duration: cli.duration,
        warmup: cli.warmup,
        freq: cli.freq,
        call_graph: cli.call_graph,
        out: cli.out,
        command: command.join(" "),
        lab: std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?,
    };
    let report = iolab::tools::profile::run(&args).map_err(|e| format!("profile: {e}"))?;
    iolab::tools::profile::print(&report, &args.out, std::io::stdout().lock())
        .map_err(|e| e.to_string())?;
    if report.load.errors > 0 {
        return Err(format!("{} load errors", report.load.errors));
    }
    Ok(())
}

fn main() -> ExitCode {
    // Before anything opens a descriptor: every subcommand may hold
    // thousands of sockets, and a shell's soft limit is often 1,024.
    sys::raise_open_files_limit();
    let matches = match cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(err) => return clap_error(err),
    };
    let result = match matches.subcommand() {
        Some(("list", _)) => {
            list();
            Ok(())
        }
        Some(("load", args)) => load(args),
        Some(("attack", args)) => attack(args),
        Some(("bench", args)) => bench(args),
        Some(("profile", args)) => profile(args),
        Some(("demo", args)) => demo(args),
        Some(("annotate", args)) => annotate(args),
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
/// as docs/src/protocol.md asks of the binary.
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

fn demo(args: &ArgMatches) -> Result<(), String> {
    let cli = cli::DemoCli::from_arg_matches(args).map_err(|e| e.to_string())?;
    let Some(name) = cli.name else {
        for demo in iolab::tools::demo::all() {
            println!("{:16} {}", demo.name, demo.claim);
            println!("{:16} models: {}", "", demo.default_models.join(", "));
        }
        return Ok(());
    };
    let demo = iolab::tools::demo::find(&name)
        .ok_or_else(|| format!("no demo `{name}`; `lab demo` lists them"))?;
    let report = iolab::tools::demo::run(demo, &cli.models, cli.json)?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    }
    let failed: Vec<_> = report.runs.iter().filter(|r| r.failed.is_some()).collect();
    if !failed.is_empty() {
        return Err(format!("{} run(s) failed", failed.len()));
    }
    Ok(())
}

fn annotate(args: &ArgMatches) -> Result<(), String> {
    let cli = cli::AnnotateCli::from_arg_matches(args).map_err(|e| e.to_string())?;
    let chosen: Vec<&Model> = if cli.models.is_empty() {
        models::all().iter().collect()
    } else {
        cli.models
            .iter()
            .map(|name| models::find(name).ok_or_else(|| format!("no model `{name}`")))
            .collect::<Result<_, _>>()?
    };
    match &cli.out {
        None if chosen.len() == 1 => {
            print!(
                "{}",
                iolab::tools::annotate::page(chosen[0]).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        None => Err("several models: say where with --out DIR".into()),
        Some(dir) => {
            let written = iolab::tools::annotate::write_pages(&chosen, dir)
                .map_err(|e| format!("annotate into {}: {e}", dir.display()))?;
            println!("{written} pages written to {}", dir.display());
            Ok(())
        }
    }
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
    // Counted from here: not the CPU of whatever ran before exec (cargo).
    stats::mark_start();
    let config = cli::config(model, args)?;
    // A server short of descriptors still works (it turns the extra
    // clients away), so this is a warning, not a refusal.
    if let Err(why) = sys::descriptors_fit(
        &format!("--max-conns {}", config.max_conns),
        config.max_conns,
    ) {
        eprintln!("lab: warning: {why}; until then, clients past the limit are turned away with `error: too many connections`");
    }
    shutdown::install(config.drain_timeout)
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Map the shared counters now, before any model forks.
    sys::counters::totals();
    let started = Instant::now();

    if let Some(preflight) = model.preflight {
        preflight(&config).map_err(|e| format!("model {}: {e}", model.name))?;
    }
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
