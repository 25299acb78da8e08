//! `lab profile`: it refuses clearly where perf cannot run, and where perf
//! can, it writes a flame graph whose split adds up.

mod util;

use std::path::PathBuf;
use std::time::Duration;

use util::{run_lab_env_within, run_lab_within};

/// A fresh directory under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iolab-profile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

#[test]
fn without_perf_it_says_what_to_install_and_fails() {
    let empty = scratch("empty-path");
    let out = scratch("no-perf-out").join("profile");
    let path = empty.to_str().expect("a UTF-8 temp path");
    let outdir = out.to_str().expect("a UTF-8 temp path");
    let finished = run_lab_env_within(
        &["profile", "epoll", "--out", outdir],
        &[("PATH", path)],
        Duration::from_secs(10),
    );
    assert!(
        !finished.status.success(),
        "lab profile without perf succeeded: {}",
        finished.stdout
    );
    assert!(
        finished.stderr.contains("perf is not installed")
            && finished.stderr.contains("apt-get install linux-perf"),
        "stderr does not say what to install: {}",
        finished.stderr
    );
    assert!(
        !out.join("flamegraph.svg").exists(),
        "a flame graph was written without perf"
    );
    let _ = std::fs::remove_dir_all(&empty);
    let _ = std::fs::remove_dir_all(out.parent().expect("out has a parent"));
}

#[test]
fn an_unknown_model_is_refused_before_anything_runs() {
    let finished = run_lab_within(&["profile", "no-such-model"], Duration::from_secs(10));
    assert!(!finished.status.success());
    assert!(
        finished.stderr.contains("no model `no-such-model`"),
        "stderr: {}",
        finished.stderr
    );
}

#[test]
fn epoll_under_load_gives_a_flame_graph_and_a_split_that_adds_up() {
    if let Some(problem) = iolab::tools::profile::perf_problem() {
        println!("skipped: perf cannot run here: {problem}");
        return;
    }
    let out = scratch("epoll");
    let outdir = out.to_str().expect("a UTF-8 temp path");
    let finished = run_lab_within(
        &[
            "profile",
            "epoll",
            "--conns",
            "10",
            "--warmup",
            "0.5",
            "--duration",
            "1",
            "--out",
            outdir,
        ],
        Duration::from_secs(60),
    );
    if !finished.status.success() && finished.stderr.contains("` failed (") {
        // perf is installed and allowed, but the kernel refused it anyway
        // (a container's seccomp filter, say): nothing this code can mend.
        println!("skipped: perf record failed: {}", finished.stderr);
        return;
    }
    assert!(
        finished.status.success(),
        "lab profile epoll: {}; stderr: {}",
        finished.status,
        finished.stderr
    );
    assert!(
        finished.stdout.contains("kernel ") && finished.stdout.contains("lab's own code"),
        "no split line: {}",
        finished.stdout
    );
    let svg = std::fs::read_to_string(out.join("flamegraph.svg")).expect("flamegraph.svg");
    assert!(svg.contains("<svg"), "flamegraph.svg is not an SVG");
    let folded = std::fs::read_to_string(out.join("stacks.folded")).expect("stacks.folded");
    assert!(
        folded.lines().any(|l| l.contains("_[k]")),
        "no kernel frame in the folded stacks"
    );
    let json = std::fs::read_to_string(out.join("profile.json")).expect("profile.json");
    let report: iolab::tools::profile::ProfileReport =
        serde_json::from_str(&json).expect("profile.json parses");
    let split = &report.split;
    assert!(split.samples > 0, "no samples: {json}");
    assert_eq!(
        split.kernel + split.lab + split.rust_other + split.libc_other,
        split.samples,
        "the split does not add up: {split:?}"
    );
    // The kernel's samples, again by what the kernel did: they add up to
    // the kernel's share, and an epoll server under load spends most of
    // them in TCP, some entering system calls and some in epoll — and
    // none in io_uring, which it does not use.
    let k = &split.in_kernel;
    assert_eq!(
        k.network + k.syscall_entry + k.epoll + k.io_uring + k.scheduler + k.other,
        split.kernel,
        "the kernel's samples do not add up: {k:?}"
    );
    assert!(k.network > split.kernel / 2, "TCP is not most of it: {k:?}");
    assert!(
        k.syscall_entry > 0 && k.epoll > 0,
        "no cost of asking: {k:?}"
    );
    assert_eq!(k.io_uring, 0, "epoll ran io_uring code: {k:?}");
    assert!(
        finished
            .stdout
            .contains("in the kernel: TCP/IP and sockets"),
        "no kernel line: {}",
        finished.stdout
    );
    // The folded stacks carry the same samples, each weighed by its
    // period in nanoseconds.
    let folded_ns: u64 = folded
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert!(folded_ns > 0, "the folded stacks count nothing");
    assert!(out.join("profile.md").exists());
    let _ = std::fs::remove_dir_all(&out);
}
