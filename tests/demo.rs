//! Every `lab demo` runs, and says what its chapter claims. The assertions
//! read the facts the demo measured (`--json`), never its wording: if a
//! model stopped behaving as the book says, the demo would report it and
//! these tests would fail.

mod util;

use std::sync::Mutex;

use serde_json::Value;

/// Demos measure time and memory; running two at once on a 2-core box
/// would make each the other's noise.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `lab demo NAME --json` with `models` (`--model` each), asserts
/// that it succeeded, and returns its runs by model.
fn demo(name: &str, models: &[&str]) -> Vec<(String, Value)> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = vec!["demo", name, "--json"];
    for model in models {
        args.extend(["--model", model]);
    }
    let done = util::run_lab_within(&args, std::time::Duration::from_secs(120));
    assert!(
        done.status.success(),
        "lab {args:?}: {}\n{}\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    // The narration is on stderr, with a timestamp per line.
    assert!(
        done.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("0.0")),
        "no timeline: {}",
        done.stderr
    );
    let report: Value = serde_json::from_str(&done.stdout).expect("the report is JSON");
    assert_eq!(report["demo"], name);
    assert!(!report["findings"].as_array().unwrap().is_empty());
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["model"].as_str().unwrap().to_string(),
                run["facts"].clone(),
            )
        })
        .collect()
}

fn facts<'a>(runs: &'a [(String, Value)], model: &str) -> &'a Value {
    &runs
        .iter()
        .find(|(m, _)| m == model)
        .unwrap_or_else(|| panic!("no run of {model} in {runs:?}"))
        .1
}

fn number(facts: &Value, key: &str) -> f64 {
    facts[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {facts}"))
}

#[test]
fn every_model_has_a_demo_that_runs_it_by_default() {
    for model in iolab::models::all() {
        assert!(
            iolab::tools::demo::all().iter().any(|demo| demo
                .default_models
                .iter()
                .any(|spec| spec.split_whitespace().next() == Some(model.name))),
            "no demo runs {}",
            model.name
        );
    }
}

#[test]
fn lab_demo_lists_the_demos_and_refuses_unknown_ones() {
    let listed = util::run_lab(&["demo"]);
    assert!(listed.status.success());
    for demo in iolab::tools::demo::all() {
        assert!(listed.stdout.contains(demo.name), "{}", listed.stdout);
    }
    let unknown = util::run_lab(&["demo", "no-such-demo"]);
    assert!(!unknown.status.success());
    assert!(unknown.stderr.contains("no demo"), "{}", unknown.stderr);
    let bad_model = util::run_lab(&["demo", "busy-poll", "--model", "nosuch"]);
    assert!(!bad_model.status.success());
    assert!(
        bad_model.stderr.contains("no model"),
        "{}",
        bad_model.stderr
    );
}

#[test]
fn second_client_waits_under_blocking_only() {
    let runs = demo("second-client", &[]);
    let blocking = facts(&runs, "blocking");
    assert_eq!(
        blocking["b_answered_while_a_connected"], false,
        "{blocking}"
    );
    // A stays 1.5 s after B asks: B's wait must cover it.
    assert!(number(blocking, "b_wait_ms") >= 1400.0, "{blocking}");
    for model in ["fork", "threads"] {
        let f = facts(&runs, model);
        assert_eq!(f["b_answered_while_a_connected"], true, "{model}: {f}");
    }
}

#[test]
fn a_pool_of_two_makes_the_third_client_wait() {
    let runs = demo("pool-exhaustion", &[]);
    for model in ["threadpool --workers 2", "prefork --workers 2"] {
        let f = facts(&runs, model);
        assert_eq!(f["c_answered_while_a_b_connected"], false, "{model}: {f}");
        assert!(number(f, "c_wait_ms") >= 1400.0, "{model}: {f}");
    }
    // The same demo with a third worker: C is served at once.
    let runs = demo("pool-exhaustion", &["threadpool --workers 3"]);
    let f = facts(&runs, "threadpool --workers 3");
    assert_eq!(f["c_answered_while_a_b_connected"], true, "{f}");
}

#[test]
fn busy_polling_burns_cpu_while_idle_and_epoll_does_not() {
    let runs = demo("busy-poll", &[]);
    let spinning = facts(&runs, "nonblocking");
    let sleeping = facts(&runs, "epoll");
    // The CPU share depends on what else the box runs; the syscall count
    // does not: the sweep calls recv and accept for ever, epoll a dozen times.
    assert!(number(spinning, "cpu_percent") > 20.0, "{spinning}");
    assert!(number(sleeping, "cpu_percent") < 5.0, "{sleeping}");
    assert!(number(spinning, "syscalls") > 10_000.0, "{spinning}");
    assert!(number(sleeping, "syscalls") < 100.0, "{sleeping}");
}

#[test]
fn select_stops_below_descriptor_1024_and_poll_does_not() {
    let runs = demo("select-limit", &[]);
    let select = facts(&runs, "select");
    assert!(number(select, "refused") > 0.0, "{select}");
    assert!(number(select, "served") < 1024.0, "{select}");
    assert!(number(select, "served") > 900.0, "{select}");
    let poll = facts(&runs, "poll");
    assert_eq!(number(poll, "served"), 1100.0, "{poll}");
    assert_eq!(number(poll, "refused"), 0.0, "{poll}");
}

#[test]
fn a_slow_reader_stalls_itself_and_not_the_server() {
    let runs = demo("slow-reader", &["epoll", "uring", "threads"]);
    for (model, f) in &runs {
        assert_eq!(f["hog_stalled"], true, "{model}: {f}");
        // It pushed megabytes the server never held: the kernel's buffers
        // took them, and the server stopped reading at MAX_PENDING.
        // The second hog's growth is what one more costs: bounded by
        // MAX_PENDING (256 KiB) and a read buffer, not by what it sent.
        let second_sent = f["hog_sent_kib"][1].as_f64().unwrap();
        let second_growth = f["hog_growth_kib"][1].as_f64().unwrap();
        assert!(second_sent > 1024.0, "{model}: {f}");
        assert!(second_growth < 1024.0, "{model}: {f}");
        assert_eq!(f["other_client_served"], true, "{model}: {f}");
    }
}

#[test]
fn an_idle_thread_costs_more_than_an_idle_event_loop_connection() {
    let runs = demo("c10k", &[]);
    let per_conn = |model: &str| number(facts(&runs, model), "kib_per_conn");
    for model in ["epoll", "mio", "polling"] {
        assert!(per_conn(model) < 2.0, "{model}: {runs:?}");
        assert!(per_conn("threads") > 4.0 * per_conn(model), "{runs:?}");
    }
    for model in ["uring", "coro", "tokio"] {
        assert!(per_conn(model).is_finite(), "{model}: {runs:?}");
    }
}

#[test]
fn level_triggered_epoll_rearms_and_edge_triggered_does_not() {
    let runs = demo("edge-vs-level", &[]);
    let level = facts(&runs, "epoll");
    let edge = facts(&runs, "epoll --edge");
    for f in [level, edge] {
        assert_eq!(number(f, "load_errors"), 0.0, "{f}");
    }
    assert!(number(level, "epoll_ctl_changes") > 0.0, "{level}");
    assert_eq!(number(edge, "epoll_ctl_changes"), 0.0, "{edge}");
}

#[test]
fn sigio_overflows_a_small_queue_and_loses_nothing() {
    let runs = demo("signal-overflow", &[]);
    let f = facts(&runs, "sigio");
    assert!(number(f, "lowered_overflows") > 0.0, "{f}");
    assert_eq!(
        number(f, "normal_errors") + number(f, "lowered_errors"),
        0.0,
        "{f}"
    );
    assert!(number(f, "lowered_requests") > 1000.0, "{f}");
}

#[test]
fn uring_batches_syscalls_as_load_grows() {
    let runs = demo("batching", &[]);
    let step = |model: &str, i: usize| {
        facts(&runs, model)["steps"][i]["syscalls_per_request"]
            .as_f64()
            .unwrap()
    };
    for model in ["epoll", "uring"] {
        assert!(step(model, 2) < step(model, 0), "{model}: {runs:?}");
    }
    assert!(step("uring", 2) < step("epoll", 2), "{runs:?}");
}

#[test]
fn work_on_one_event_loop_stalls_everyone_and_a_pool_does_not() {
    let runs = demo("head-of-line", &["epoll", "coro", "tokio", "threadpool"]);
    // The hog queued 500 ms of work 50 ms before the probe asked.
    for model in ["epoll", "coro", "tokio"] {
        let f = facts(&runs, model);
        assert!(number(f, "probe_ms") > 250.0, "{model}: {f}");
    }
    let pool = facts(&runs, "threadpool");
    assert!(number(pool, "probe_ms") < 250.0, "{pool}");
}

#[test]
fn a_blocking_call_stalls_one_event_loop_until_it_is_offloaded() {
    let runs = demo("offload", &["epoll", "epoll --offload 4", "threadpool"]);
    // The hog queued 500 ms of CPU work, or of sleep, 50 ms before the
    // probe asked: a loop that pays it itself makes the probe wait for
    // most of it, whether the CPU is busy or idle meanwhile.
    let epoll = facts(&runs, "epoll");
    for key in ["work_probe_ms", "block_probe_ms"] {
        assert!(number(epoll, key) > 250.0, "epoll {key}: {epoll}");
    }
    for model in ["epoll --offload 4", "threadpool"] {
        let f = facts(&runs, model);
        for key in ["work_probe_ms", "block_probe_ms"] {
            assert!(number(f, key) < 250.0, "{model} {key}: {f}");
        }
    }
}

#[test]
fn a_shared_listener_wakes_every_epoll_and_nothing_else_does() {
    let herd = "epoll --workers 4 --one-listener";
    let one = [
        "prefork --workers 4",
        "epoll --workers 4 --one-listener --exclusive",
        "epoll --workers 4",
    ];
    let mut models = vec![herd];
    models.extend(one);
    let runs = demo("herd", &models);
    // Four workers: the herd wakes (nearly) all of them for each
    // connection; the others wake (nearly) one.
    let f = facts(&runs, herd);
    assert_eq!(number(f, "workers"), 4.0, "{f}");
    assert!(number(f, "woken_per_connection") >= 3.0, "{f}");
    for model in one {
        let f = facts(&runs, model);
        assert_eq!(number(f, "workers"), 4.0, "{model}: {f}");
        assert!(number(f, "woken_per_connection") <= 2.0, "{model}: {f}");
    }
    // SO_REUSEPORT's hash spreads 20 connections over more than one worker
    // (all on one would have odds of 4 in 4^20).
    let reuseport = facts(&runs, "epoll --workers 4");
    assert!(
        number(reuseport, "busiest_worker_served") < 20.0,
        "{reuseport}"
    );
    // Closing one SO_REUSEPORT listener resets the connections queued on
    // it (16 split by hash between two: all on one side has odds of 2 in
    // 2^16); the other's stay. Unless the kernel migrates them.
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req");
    if migrate.map_or(true, |v| v.trim() == "0") {
        let (reset, kept) = (
            number(reuseport, "closed_listener_reset"),
            number(reuseport, "open_listener_accepted"),
        );
        assert!(reset > 0.0 && kept > 0.0, "{reuseport}");
        assert_eq!(reset + kept, 16.0, "{reuseport}");
    }
}

#[test]
fn a_shared_counter_loses_updates_only_where_two_sales_can_interleave() {
    let runs = demo(
        "race",
        &["threads", "fork", "prefork", "epoll", "coro", "async"],
    );
    let sold_twice = |model: &str, mode: &str| {
        let f = facts(&runs, model);
        // Every client got an answer to every `ticket` line.
        assert_eq!(number(f, &format!("{mode}_sold")), 2000.0, "{model}: {f}");
        number(f, &format!("{mode}_sold_twice"))
    };
    // Threads: the unlocked read-modify-write loses updates; a lock or an
    // atomic loses none.
    assert!(sold_twice("threads", "racy") > 0.0);
    assert_eq!(sold_twice("threads", "locked"), 0.0);
    assert_eq!(sold_twice("threads", "atomic"), 0.0);
    // Processes: an atomic in memory that fork copied is one counter per
    // process; in a MAP_SHARED page it is one counter.
    for model in ["fork", "prefork"] {
        assert!(sold_twice(model, "atomic") > 0.0, "{model}");
        assert_eq!(sold_twice(model, "shared"), 0.0, "{model}");
    }
    // Under fork every child starts from the parent's 0: each client
    // buys tickets 1 to 250, and nobody ever sells 251.
    assert_eq!(number(facts(&runs, "fork"), "atomic_highest"), 250.0);
    // One thread, no yield inside the sale: nothing to lock.
    for model in ["epoll", "coro", "async"] {
        assert_eq!(sold_twice(model, "racy"), 0.0, "{model}");
    }
    // A coroutine switch between the read and the write brings the race back.
    assert!(sold_twice("coro", "yielding") > 0.0);
}

#[test]
fn a_killed_demo_leaves_no_server_behind() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut demo = std::process::Command::new(util::lab_bin())
        .args(["demo", "busy-poll", "--model", "epoll"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lab demo starts");
    let demo_pid = demo.id() as i32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let server = loop {
        if let Some(&pid) = iolab::tools::child::descendants(demo_pid).first() {
            break util::Proc::live(pid).expect("the server is alive");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo started no server"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // As a test's deadline or `kill -9` would: no chance to clean up.
    demo.kill().unwrap();
    demo.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.is_alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server {} outlived its demo",
            server.pid
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
