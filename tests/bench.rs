//! `lab bench`, end to end: the repeats run in interleaved rounds, and each
//! row is the attempt with the median server CPU per request, with the
//! ranges it was chosen from.

mod util;

use std::time::Duration;

use util::run_lab_within;

#[test]
fn repeats_interleave_and_the_row_is_the_median_by_cpu() {
    let out = std::env::temp_dir().join(format!("iolab-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let outdir = out.to_str().expect("a UTF-8 temp path");
    let finished = run_lab_within(
        &[
            "bench",
            "--models",
            "epoll,poll",
            "--scenarios",
            "pipeline",
            "--repeat",
            "3",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--out",
            outdir,
        ],
        Duration::from_secs(120),
    );
    assert!(
        finished.status.success(),
        "lab bench: {}; stderr: {}",
        finished.status,
        finished.stderr
    );
    // Every attempt is printed as it ends: the models take turns, round by
    // round, rather than one model's three repeats back to back, and each
    // round starts with the next model.
    // Columns: model, run, req/s, spread, p50, p99, p99.9, per conn, CPU µs…
    let attempts: Vec<Vec<&str>> = finished
        .stdout
        .lines()
        .take_while(|l| !l.starts_with("medians"))
        .filter(|l| l.contains(" pipeline "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let order: Vec<&str> = attempts.iter().map(|a| a[0]).collect();
    assert_eq!(
        order,
        ["epoll", "poll", "poll", "epoll", "epoll", "poll"],
        "{}",
        finished.stdout
    );
    let cpu_of = |model: &str| -> Vec<f64> {
        let mut cpu: Vec<f64> = attempts
            .iter()
            .filter(|a| a[0] == model)
            .map(|a| a[8].parse().expect("a CPU µs column"))
            .collect();
        cpu.sort_by(f64::total_cmp);
        cpu
    };

    let json = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    let report: iolab::tools::bench::BenchReport =
        serde_json::from_str(&json).expect("report.json parses");
    assert!(report.interleaved && report.repeat == 3);
    assert_eq!(report.rows.len(), 2);
    // Every attempt is kept, in the order it ran, as printed.
    let kept: Vec<(usize, &str)> = report
        .attempts
        .iter()
        .map(|a| (a.round, a.model.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            (1, "epoll"),
            (1, "poll"),
            (2, "poll"),
            (2, "epoll"),
            (3, "epoll"),
            (3, "poll")
        ]
    );
    for (attempt, printed) in report.attempts.iter().zip(&attempts) {
        let cpu = attempt.cpu_us_per_request.expect("CPU measured");
        let shown: f64 = printed[8].parse().expect("a CPU µs column");
        assert!((cpu - shown).abs() < 0.006, "{cpu} printed as {shown}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("Every attempt"), "{md}");
    for row in &report.rows {
        assert_eq!(row.errors, 0, "{row:?}");
        let cpu = row.cpu_us_per_request.expect("CPU per request measured");
        let (low, high) = row.cpu_spread.expect("a CPU range over the repeats");
        assert!(low <= cpu && cpu <= high, "{low} <= {cpu} <= {high}");
        // The middle one of the three attempts printed, and its ends.
        let printed = cpu_of(&row.model);
        let close = |a: f64, b: f64| (a - b).abs() < 0.006;
        assert!(
            close(printed[0], low) && close(printed[1], cpu) && close(printed[2], high),
            "{} row {cpu} ({low}…{high}), attempts {printed:?}",
            row.model
        );
        let (slow, fast) = row.spread.expect("a requests/s range");
        assert!(slow <= row.requests_per_s && row.requests_per_s <= fast);
    }
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("interleaved rounds") && md.contains("| CPU range |"));
    let _ = std::fs::remove_dir_all(&out);
}

/// A contender may name another build of `lab` to serve it (the same model
/// before and after a change, side by side): the bench starts that
/// executable, and the row keeps the entry as given.
#[test]
fn a_contender_can_be_served_by_another_build() {
    let dir = std::env::temp_dir().join(format!("iolab-bench-other-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Another "build": a script that leaves a mark, then becomes this lab.
    let other = dir.join("lab-before");
    let mark = dir.join("served");
    std::fs::write(
        &other,
        format!(
            "#!/bin/sh\necho \"$@\" > '{}'\nexec '{}' \"$@\"\n",
            mark.display(),
            util::lab_bin()
        ),
    )
    .expect("write the script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let entry = format!("{} epoll", other.display());
    let report = quick_bench(&entry, &[], &dir.join("report"));
    let served = std::fs::read_to_string(&mark).expect("the other build was started");
    assert!(served.starts_with("epoll "), "its arguments: {served}");
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.rows[0].model, entry);
    assert_eq!(report.rows[0].errors, 0);

    let missing = format!("{} epoll", dir.join("no-such-lab").display());
    let refused = run_lab_within(
        &["bench", "--models", &missing, "--scenarios", "pipeline"],
        Duration::from_secs(30),
    );
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("no such file"),
        "{}",
        refused.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--saturate` runs a busy loop beside the server, and the report says so
/// where it says how server and generator were placed.
#[test]
fn saturate_shares_the_servers_cpu_and_the_report_says_so() {
    let out = std::env::temp_dir().join(format!("iolab-bench-saturate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let report = quick_bench("epoll", &["--saturate"], &out);
    assert_eq!(report.rows[0].errors, 0);
    if report.machine.cores >= 2 {
        assert!(report.pinning.contains("busy loop"), "{}", report.pinning);
    }
    // The busy loop is not the generator's: its share of its own core
    // stays a share (it read 103-116 % when the loop was its thread).
    let load = report.rows[0].load.as_ref().expect("a load report");
    assert!(
        load.cpu_share < 1.0,
        "generator CPU share {}",
        load.cpu_share
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// A short `lab bench` of `models` under `pipeline` (0.3 s a run), with
/// `extra` options, written to `out`: its report, once it succeeded.
fn quick_bench(
    models: &str,
    extra: &[&str],
    out: &std::path::Path,
) -> iolab::tools::bench::BenchReport {
    let outdir = out.to_str().expect("a UTF-8 temp path");
    let mut args = vec![
        "bench",
        "--models",
        models,
        "--scenarios",
        "pipeline",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--out",
        outdir,
    ];
    args.extend_from_slice(extra);
    let finished = run_lab_within(&args, Duration::from_secs(60));
    assert!(finished.status.success(), "{}", finished.stderr);
    let json = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    serde_json::from_str(&json).expect("report.json parses")
}
