//! A short profile of `lab bench`: two models, the request/response and
//! pipeline scenarios, one second per run. `cargo bench --bench models`.
//!
//! This is the same runner as `lab bench` (see `src/tools/bench/mod.rs`), cut short
//! so that `cargo bench` finishes in about a minute; the full comparison is
//! `cargo run --release --bin lab -- bench`. The report lands in
//! `target/tmp/bench-profile/`.

use std::path::PathBuf;
use std::time::Duration;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and expects a quick exit.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let args = iolab::tools::bench::BenchArgs {
        models: vec!["epoll".into(), "tokio".into()],
        scenarios: vec!["rr".into(), "pipeline".into()],
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(500),
        out: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-profile"),
        repeat: 1,
        command: "cargo bench --bench models".into(),
        lab: PathBuf::from(env!("CARGO_BIN_EXE_lab")),
        saturate: false,
    };
    match iolab::tools::bench::run(&args) {
        Ok(_) => println!("report: {}", args.out.display()),
        Err(e) => {
            eprintln!("bench profile failed: {e}");
            std::process::exit(1);
        }
    }
}
