//! `lab uring` in each of its configurations holds 10,000 connections at
//! once: direct descriptors (the default), ordinary ones, single-shot
//! operations, a submission-polling kernel thread, no receive bundles,
//! zero-copy sends and the bounded wait after answers.

mod util;

#[test]
fn every_uring_variant_holds_10000_concurrent_connections() {
    for variant in [
        &[][..],
        &["--no-fixed-files"],
        &["--no-multishot"],
        &["--sqpoll"],
        &["--no-bundle"],
        &["--send-zc", "1"],
        &["--min-wait-us", "50"],
    ] {
        util::assert_holds_ten_thousand("uring", variant);
    }
}

/// The submission-polling thread's CPU is the server's cost, and the
/// summary counts it: the kernel makes that thread (`iou-sqp-PID`) a
/// thread of the server's process, so `getrusage(RUSAGE_SELF)` includes
/// it. Read from `/proc` while the server runs, its CPU time must be
/// within what the summary reports for the whole process.
#[test]
fn the_summary_counts_the_submission_polling_threads_cpu() {
    let server = util::Server::start("uring", &["--sqpoll"]);
    let mut client = server.client();
    for i in 0..2_000 {
        client.roundtrip(format!("poll {i}\n").as_bytes());
    }
    let ticks_per_s = 100.0; // USER_HZ, fixed by the kernel ABI on x86_64 and arm64
    let mut polling_thread_s = None;
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).expect("/proc");
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("iou-sqp") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).expect("stat");
        // Fields after the command's closing parenthesis: utime and stime
        // are the 12th and 13th (fields 14 and 15 of proc(5)).
        let fields: Vec<&str> = stat[stat.rfind(')').expect(")") + 2..].split(' ').collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        polling_thread_s = Some(ticks / ticks_per_s);
    }
    let polling_thread_s = polling_thread_s.expect("an iou-sqp thread in /proc/PID/task");
    drop(client);
    let (status, summary) = server.stop();
    assert!(status.success());
    let cpu = |key: &str| summary.json[key].as_f64().expect(key);
    let process_s = cpu("cpu_user_s") + cpu("cpu_sys_s");
    assert!(
        polling_thread_s > 0.0 && process_s + 0.011 >= polling_thread_s,
        "the polling thread used {polling_thread_s} s, the summary says {process_s} s for the process"
    );
}
