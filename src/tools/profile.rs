//! `lab profile MODEL`: where a model's CPU goes under load, as a flame
//! graph.
//!
//! The model runs as its own process ([`ServerProcess`], pinned to CPU 0
//! when there are two, as in `lab bench`); this process drives it with the
//! lab's load generator from CPU 1 and, once the warm-up is over, runs
//!
//! ```text
//! perf record -g -e cpu-clock -F 999 -p SERVER_PIDS -o DIR/perf.data -- sleep DURATION
//! ```
//!
//! `cpu-clock` is the kernel's software timer event: it works in a VM
//! where the hardware counters (`cycles`) are not passed through, and it
//! samples only while the server is on a CPU, so idle time costs no
//! samples. `perf script` then turns the samples into stacks, which the
//! `inferno` crate folds (one line per distinct stack, with its count:
//! `DIR/stacks.folded`) and draws (`DIR/flamegraph.svg`).
//!
//! The split printed at the end asks of every sample one question: in
//! which code was the CPU when the timer fired? The answer is the
//! innermost frame's object, which `perf script` prints beside each
//! frame: `[kernel.kallsyms]` is the kernel; the `lab` executable is the
//! lab's own code when the symbol is in the `iolab` (or `lab`) crate, and
//! the Rust standard library or another crate linked into it otherwise;
//! anything else (libc, the dynamic loader, the vDSO, an address perf
//! could not name) is "libc and other". The innermost frame is right even
//! when the stack above it is not: `-g` unwinds with frame pointers, which
//! a Rust release build omits, so the user-space part of a stack may be
//! cut short (`--call-graph dwarf` unwinds it fully, at a far larger
//! `perf.data`), while kernel stacks are always whole.
//!
//! A second line divides the kernel's samples by what the kernel was
//! doing — TCP/IP and sockets, system-call entry, epoll, io_uring, sleeping
//! and waking — read from the names of the functions on each sample's
//! stack ([`KernelWork`]). It is the line that compares models: the TCP
//! work is the same whoever asks for it, and what differs is the cost of
//! asking.
//!
//! Without `perf`, or where the kernel forbids it
//! (`/proc/sys/kernel/perf_event_paranoid` above 1 for a user without
//! `CAP_PERFMON` hides kernel frames), the command says what to install
//! or set and fails before starting anything. Where the kernel hides its
//! symbols' addresses (`/proc/sys/kernel/kptr_restrict`), it warns and goes
//! on: the kernel's frames will be addresses, not names.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::server::stats::Summary;
use crate::tools::bench::{commit, machine, now_utc, Machine};
use crate::tools::child::{descendants, pin_self, ServerProcess};
use crate::tools::load::{self, LoadArgs, LoadReport};

/// What to profile, and how.
#[derive(Clone, Debug)]
pub struct ProfileArgs {
    /// The model and its flags, as `lab MODEL FLAGS...` takes them.
    pub model: Vec<String>,
    /// Busy connections.
    pub conns: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Connections held open and silent.
    pub idle: usize,
    /// Seconds sampled.
    pub duration: Duration,
    /// Seconds of load before sampling starts.
    pub warmup: Duration,
    /// Samples per second.
    pub freq: u32,
    /// perf's `--call-graph` mode: `fp` (what `-g` means) or `dwarf`.
    pub call_graph: String,
    /// Where everything goes.
    pub out: PathBuf,
    /// The command line, for the report.
    pub command: String,
    /// The `lab` executable to start the model with.
    pub lab: PathBuf,
}

/// Where the samples fell: see the module documentation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Split {
    /// Samples in all.
    pub samples: u64,
    /// Innermost frame in the kernel.
    pub kernel: u64,
    /// Innermost frame in the `iolab` crate (or the `lab` binary's main).
    pub lab: u64,
    /// Innermost frame elsewhere in the `lab` executable: the Rust standard
    /// library and the crates linked in.
    pub rust_other: u64,
    /// Innermost frame in libc, the loader, the vDSO or an unknown object.
    pub libc_other: u64,
    /// The kernel's samples again, by what the kernel was doing (reports
    /// before 2026-12-06's second profiles did not have it).
    #[serde(default)]
    pub in_kernel: KernelWork,
}

/// The kernel's samples by what the kernel was doing, judged from the
/// names of the functions on the stack: from the innermost frame outward,
/// the first function whose name belongs to a family decides. So a copy
/// under `tcp_recvmsg` is TCP's, a lock released in `try_to_wake_up` is
/// waking, and `io_recv`'s own time, before it calls into TCP, is
/// io_uring's. It is a reading of names, not an accounting the kernel
/// keeps: a function the families do not know falls to its caller, and a
/// stack that names no family is `other`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KernelWork {
    /// TCP, IP, sockets, the loopback device and their buffers: the work
    /// any model asks for.
    pub network: u64,
    /// Entering and leaving system calls, finding a descriptor's file.
    pub syscall_entry: u64,
    /// epoll's own functions (`ep_*`, `do_epoll_wait`).
    pub epoll: u64,
    /// io_uring's own functions (`io_*`): submitting, completing, task work.
    pub io_uring: u64,
    /// Sleeping, waking and switching threads.
    pub scheduler: u64,
    /// Kernel stacks naming none of the above (timers, page faults…).
    pub other: u64,
}

impl KernelWork {
    fn add(&mut self, family: Family) {
        *match family {
            Family::Network => &mut self.network,
            Family::SyscallEntry => &mut self.syscall_entry,
            Family::Epoll => &mut self.epoll,
            Family::IoUring => &mut self.io_uring,
            Family::Scheduler => &mut self.scheduler,
            Family::Other => &mut self.other,
        } += 1;
    }
}

impl Split {
    fn add(&mut self, class: Class) {
        self.samples += 1;
        match class {
            Class::Kernel => self.kernel += 1,
            Class::Lab => self.lab += 1,
            Class::RustOther => self.rust_other += 1,
            Class::LibcOther => self.libc_other += 1,
        }
    }

    fn percent(&self, part: u64) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            part as f64 * 100.0 / self.samples as f64
        }
    }

    /// The kernel's share by what it was doing, as one line of text, in
    /// percent of all samples; `None` for reports that did not keep it.
    pub fn kernel_line(&self) -> Option<String> {
        let k = &self.in_kernel;
        (k != &KernelWork::default()).then(|| {
            format!(
                "in the kernel: TCP/IP and sockets {:.1} % | system-call entry {:.1} % | \
                 epoll {:.1} % | io_uring {:.1} % | sleeping and waking {:.1} % | other {:.1} %",
                self.percent(k.network),
                self.percent(k.syscall_entry),
                self.percent(k.epoll),
                self.percent(k.io_uring),
                self.percent(k.scheduler),
                self.percent(k.other),
            )
        })
    }

    /// The split as one line of text.
    pub fn line(&self) -> String {
        format!(
            "kernel {:.1} % | lab's own code {:.1} % | Rust std and crates {:.1} % | \
             libc and other {:.1} % ({} samples)",
            self.percent(self.kernel),
            self.percent(self.lab),
            self.percent(self.rust_other),
            self.percent(self.libc_other),
            self.samples
        )
    }
}

#[derive(Clone, Copy)]
enum Class {
    Kernel,
    Lab,
    RustOther,
    LibcOther,
}

/// Everything `lab profile` writes to `profile.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileReport {
    /// How it was invoked.
    pub command: String,
    /// The perf command that sampled.
    pub perf_command: String,
    /// When (UTC).
    pub date: String,
    /// `git describe` of the source.
    pub commit: String,
    /// Where it ran.
    pub machine: Machine,
    /// How server and generator were placed on CPUs.
    pub pinning: String,
    /// The model and its flags.
    pub model: String,
    /// The load, as the generator measured it (warm-up excluded).
    pub load: LoadReport,
    /// The server's summary line: requests, syscalls, CPU by getrusage.
    pub summary: Summary,
    /// Where the samples fell.
    pub split: Split,
    /// The same, as the line printed.
    pub split_line: String,
    /// Server CPU (user and system, by getrusage, warm-up included) per
    /// request answered, in µs.
    pub cpu_us_per_request: f64,
}

/// What to tell a user whose machine cannot profile, or `None` if it can
/// (as far as can be told without trying).
pub fn perf_problem() -> Option<String> {
    let Some(_) = find_in_path("perf") else {
        return Some(
            "perf is not installed (not found in PATH). Install it: \
             `apt-get install linux-perf` on Debian, \
             `apt-get install linux-tools-common linux-tools-$(uname -r)` on Ubuntu, \
             `dnf install perf` on Fedora."
                .into(),
        );
    };
    let root = effective_root();
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    match paranoid {
        None => Some(
            "this kernel has no /proc/sys/kernel/perf_event_paranoid: it was built without \
             perf events (CONFIG_PERF_EVENTS), so it cannot be profiled."
                .into(),
        ),
        Some(level) if level > 1 && !root => Some(format!(
            "perf may not sample the kernel: /proc/sys/kernel/perf_event_paranoid is {level}, \
             and a flame graph without kernel frames would hide most of the time. Run as root, \
             or allow it until the next boot with `sudo sysctl kernel.perf_event_paranoid=1`."
        )),
        Some(_) => None,
    }
}

/// Whether we run as root: the effective user id is the second field of
/// `Uid:` in /proc/self/status.
fn effective_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            Some(line.split_whitespace().nth(2)? == "0")
        })
        .unwrap_or(false)
}

/// A warning for a machine whose kernel hides its symbols' addresses
/// (`/proc/sys/kernel/kptr_restrict`): perf then cannot name kernel
/// functions, the kernel's frames are bare addresses that the split
/// cannot tell from user space's, and "kernel" reads 0 % (seen with
/// `kptr_restrict` at 2: 95.9 % "libc and other").
/// At 1 only a user without `CAP_SYSLOG` is refused (root has it); at 2
/// everyone is.
fn kernel_symbols_hidden(kptr_restrict: Option<i32>, root: bool) -> Option<String> {
    match kptr_restrict {
        Some(level) if level >= 2 || (level == 1 && !root) => Some(format!(
            "warning: /proc/sys/kernel/kptr_restrict is {level}: perf cannot name kernel \
             functions, so the kernel's frames will be bare addresses, counted under \
             \"libc and other\" rather than \"kernel\". Allow it until the next boot with \
             `sudo sysctl kernel.kptr_restrict=0`."
        )),
        _ => None,
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Profiles the model under load and writes `flamegraph.svg`,
/// `stacks.folded`, `perf.data`, `profile.json` and `profile.md` into
/// `args.out`.
pub fn run(args: &ProfileArgs) -> io::Result<ProfileReport> {
    if let Some(problem) = perf_problem() {
        return Err(io::Error::other(problem));
    }
    let kptr_restrict = std::fs::read_to_string("/proc/sys/kernel/kptr_restrict")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(warning) = kernel_symbols_hidden(kptr_restrict, effective_root()) {
        eprintln!("lab profile: {warning}");
    }
    let model = args.model.join(" ");
    // Before anything is written: `--out` may be inside the repository, and
    // the profile's own files would make `git describe` say `-dirty`.
    let commit = commit();
    std::fs::create_dir_all(&args.out)?;
    // Read the machine before pinning ourselves to one CPU, after which
    // `available_parallelism` says 1.
    let machine = machine();
    let pin = machine.cores >= 2;
    let pinning = if pin {
        pin_self(1);
        "server on CPU 0; load generator and perf on CPU 1".to_string()
    } else {
        "not pinned (one CPU)".to_string()
    };
    let flags: Vec<&str> = args.model.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(&args.lab, &flags, pin)?;
    let data = args.out.join("perf.data");
    let load_args = LoadArgs {
        warmup: args.warmup,
        idle: args.idle,
        ..LoadArgs::closed_loop(&server.addr, args.conns, args.depth, args.duration)
    };
    let pid = server.pid();
    // Sampling covers the load's measured window, from the end of the
    // warm-up, so that it sees the connections open (the processes of
    // `fork` and `prefork`, the threads of `threads`) and the load steady.
    let perf = std::sync::Mutex::new(None);
    let load = load::run_observed(&load_args, |from, _| {
        std::thread::sleep(from.saturating_duration_since(std::time::Instant::now()));
        let pids: Vec<String> = std::iter::once(pid)
            .chain(descendants(pid))
            .map(|p| p.to_string())
            .collect();
        let perf_args = perf_record_args(args, &pids.join(","), &data);
        let line = format!("perf {}", perf_args.join(" "));
        let output = Command::new("perf")
            .args(&perf_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        *perf.lock().unwrap_or_else(|e| e.into_inner()) = Some((line, output));
    });
    let perf = perf.into_inner().unwrap_or_else(|e| e.into_inner());
    let summary = server.stop();
    let (perf_command, output) =
        perf.ok_or_else(|| io::Error::other("the load ended before sampling began"))?;
    let output = output.map_err(|e| io::Error::other(format!("cannot run perf: {e}")))?;
    if !output.status.success() || !data.exists() {
        return Err(io::Error::other(format!(
            "`{perf_command}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let load = load?;
    let summary = summary?;

    let idle = match args.idle {
        0 => String::new(),
        idle => format!(" (+{idle} idle)"),
    };
    let title = format!(
        "lab {model}, {} connections{idle}, depth {}: where the CPU goes",
        args.conns, args.depth
    );
    let split = fold_and_draw(&data, &args.out, &title, &args.lab)?;
    let report = ProfileReport {
        command: args.command.clone(),
        perf_command,
        date: now_utc(),
        commit,
        machine,
        pinning,
        model,
        load,
        cpu_us_per_request: (summary.cpu_user_s + summary.cpu_sys_s) * 1e6
            / summary.requests.max(1) as f64,
        summary,
        split_line: split.line(),
        split,
    };
    std::fs::write(
        args.out.join("profile.json"),
        serde_json::to_string_pretty(&report).map_err(io::Error::other)?,
    )?;
    std::fs::write(args.out.join("profile.md"), report.markdown())?;
    Ok(report)
}

fn perf_record_args(args: &ProfileArgs, pids: &str, data: &Path) -> Vec<String> {
    let graph = match args.call_graph.as_str() {
        "fp" => vec!["-g".to_string()],
        mode => vec!["--call-graph".to_string(), mode.to_string()],
    };
    let mut perf_args = vec!["record".to_string()];
    perf_args.extend(graph);
    perf_args.extend(
        [
            "-e",
            "cpu-clock",
            "-F",
            &args.freq.to_string(),
            "-p",
            pids,
            "-o",
            &data.display().to_string(),
            "--",
            "sleep",
            &format!("{}", args.duration.as_secs_f64()),
        ]
        .map(String::from),
    );
    perf_args
}

/// `perf script` on the samples, classified ([`Split`]) and folded on the
/// way through, then drawn.
fn fold_and_draw(data: &Path, out: &Path, title: &str, lab: &Path) -> io::Result<Split> {
    let mut script = Command::new("perf")
        .args(["script", "-i"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot run perf script: {e}")))?;
    let text = io::read_to_string(script.stdout.take().expect("stdout is piped"))?;
    let status = script.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!("perf script failed ({status})")));
    }
    let exe = lab.file_name().and_then(|n| n.to_str()).unwrap_or("lab");
    let split = split(&text, exe);

    use inferno::collapse::Collapse;
    let mut options = inferno::collapse::perf::Options::default();
    // Kernel frames get a `_[k]` suffix, which the palette draws orange.
    options.annotate_kernel = true;
    let mut folded = Vec::new();
    inferno::collapse::perf::Folder::from(options).collapse(text.as_bytes(), &mut folded)?;
    std::fs::write(out.join("stacks.folded"), &folded)?;

    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.subtitle = Some(split.line());
    options.colors =
        inferno::flamegraph::color::Palette::Multi(inferno::flamegraph::color::MultiPalette::Java);
    // perf weighs each cpu-clock sample by its period, in nanoseconds.
    options.count_name = "ns".into();
    let svg = std::fs::File::create(out.join("flamegraph.svg"))?;
    let lines = BufReader::new(folded.as_slice())
        .lines()
        .collect::<io::Result<Vec<_>>>()?;
    inferno::flamegraph::from_lines(
        &mut options,
        lines.iter().map(String::as_str),
        io::BufWriter::new(svg),
    )
    .map_err(|e| io::Error::other(format!("drawing the flame graph: {e}")))?;
    Ok(split)
}

/// Classifies every sample of `perf script`'s output by its innermost
/// frame; `exe` is the file name of the lab executable.
///
/// A sample is a header line (`lab 1234 ... cpu-clock:`) followed by its
/// frames, innermost first, one per line: `ADDR SYMBOL+OFF (OBJECT)`, and
/// a blank line.
pub fn split(script: &str, exe: &str) -> Split {
    let mut split = Split::default();
    let mut frames: Vec<&str> = Vec::new();
    let mut in_sample = false;
    let finish = |frames: &mut Vec<&str>, split: &mut Split| {
        let class = frames
            .first()
            .map_or(Class::LibcOther, |f| classify(f, exe));
        split.add(class);
        if let Class::Kernel = class {
            split.in_kernel.add(kernel_family(frames));
        }
        frames.clear();
    };
    for line in script.lines() {
        if line.trim().is_empty() {
            if in_sample {
                finish(&mut frames, &mut split);
            }
            in_sample = false;
        } else if line.starts_with(char::is_whitespace) {
            if in_sample {
                frames.push(line.trim());
            }
        } else {
            // A new sample's header (`lab 1234 ... cpu-clock:`); one
            // without a blank line before it ends the previous sample.
            if in_sample {
                finish(&mut frames, &mut split);
            }
            in_sample = true;
        }
    }
    if in_sample {
        finish(&mut frames, &mut split);
    }
    split
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Network,
    SyscallEntry,
    Epoll,
    IoUring,
    Scheduler,
    Other,
}

/// What a kernel stack (innermost frame first) was doing: see [`KernelWork`].
fn kernel_family(frames: &[&str]) -> Family {
    frames
        .iter()
        .map(|frame| frame_symbol(frame))
        .find_map(function_family)
        .unwrap_or(Family::Other)
}

/// `ADDR SYMBOL+OFF (OBJECT)` → `SYMBOL`.
fn frame_symbol(frame: &str) -> &str {
    let symbol = frame.split_once(' ').map_or("", |(_, rest)| rest);
    let symbol = symbol.rfind(" (").map_or(symbol, |i| &symbol[..i]);
    symbol.split('+').next().unwrap_or(symbol)
}

fn function_family(name: &str) -> Option<Family> {
    const SCHEDULER: &[&str] = &[
        "schedule",
        "__schedule",
        "try_to_wake_up",
        "ttwu_",
        "wake_up",
        "__wake_up",
        "finish_task_switch",
        "pick_next",
        "pick_task",
        "__pick_next",
        "dequeue_",
        "enqueue_",
        "update_curr",
        "update_load_avg",
        "update_cfs",
        "select_task_rq",
        "psi_",
        "__switch_to",
        "switch_mm",
        "activate_task",
        "sched_",
        "set_next_entity",
        "put_prev_",
        "prepare_task_switch",
        "resched_",
        "check_preempt",
        "wakeup_preempt",
        "native_smp_send_reschedule",
        "raw_spin_rq_lock",
    ];
    const ENTRY: &[&str] = &[
        "entry_SYSCALL",
        "do_syscall_64",
        "syscall_",
        "__x64_sys_",
        "x64_sys_call",
        "__sys_",
        "__do_sys_",
        "fdget",
        "__fdget",
        "fget",
        "__fget",
        "fput",
        "__fput_sync",
        "sockfd_lookup",
        "exit_to_user_mode",
        "__rseq",
        "rseq_",
        "arch_exit_to_user",
    ];
    const NETWORK: &[&str] = &[
        "ip_",
        "__ip_",
        "ipv4_",
        "inet",
        "__inet",
        "sk_",
        "__sk_",
        "sock_",
        "__sock",
        "lock_sock",
        "release_sock",
        "__release_sock",
        "net_",
        "__net",
        "netif",
        "dev_",
        "__dev_",
        "loopback",
        "bbr_",
        "process_backlog",
        "napi",
        "__napi",
        "validate_xmit",
        "raw_v4",
        "security_sock",
    ];
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    if starts(SCHEDULER) {
        Some(Family::Scheduler)
    } else if starts(ENTRY) {
        Some(Family::SyscallEntry)
    } else if name.starts_with("ep_") || name.starts_with("__ep_") || name.contains("epoll") {
        Some(Family::Epoll)
    } else if name.starts_with("io_") || name.starts_with("__io_") || name.contains("io_uring") {
        Some(Family::IoUring)
    } else if name.contains("tcp") || name.contains("skb") || starts(NETWORK) {
        Some(Family::Network)
    } else {
        None
    }
}

fn classify(frame: &str, exe: &str) -> Class {
    // `ADDR SYMBOL+OFF (OBJECT)`: the object is in the last parentheses.
    let object = frame
        .rfind(" (")
        .map(|i| frame[i + 2..].trim_end_matches(')'))
        .unwrap_or("");
    if object.starts_with("[kernel") || object.ends_with(".ko") {
        return Class::Kernel;
    }
    let file = object.rsplit('/').next().unwrap_or(object);
    if file != exe {
        return Class::LibcOther;
    }
    let symbol = frame
        .split_once(' ')
        .map_or("", |(_, rest)| rest)
        .trim_start_matches(['<', '&']);
    if symbol.starts_with("iolab::") || symbol.starts_with("lab::") {
        Class::Lab
    } else {
        Class::RustOther
    }
}

impl ProfileReport {
    /// `profile.md`: what was run, where, with what load, and the split.
    pub fn markdown(&self) -> String {
        format!(
            "# lab profile {model}\n\n\
             - command: `{command}`\n\
             - perf: `{perf}`\n\
             - date: {date}, commit {commit}\n\
             - machine: {cpu_name}, {cores} CPUs, Linux {kernel}; {pinning}\n\
             - load: {conns} connections, depth {depth}, {idle} idle, {secs:.1} s measured: \
             {rps:.0} requests/s, p50 {p50:.0} µs, p99 {p99:.0} µs, {errors} errors\n\
             - server CPU by getrusage over its whole life (warm-up included): user {user:.2} s, \
             system {sys:.2} s, {per:.2} µs per request\n\n\
             ## Where the samples fell (innermost frame)\n\n\
             {line}\n\n\
             {kernel_work}\
             ![flame graph](flamegraph.svg)\n",
            model = self.model,
            command = self.command,
            perf = self.perf_command,
            date = self.date,
            commit = self.commit,
            cpu_name = self.machine.cpu,
            cores = self.machine.cores,
            kernel = self.machine.kernel,
            pinning = self.pinning,
            conns = self.load.conns,
            depth = self.load.depth,
            idle = self.load.idle,
            secs = self.load.duration_s,
            rps = self.load.requests_per_s,
            p50 = self.load.latency_us.p50,
            p99 = self.load.latency_us.p99,
            errors = self.load.errors,
            user = self.summary.cpu_user_s,
            sys = self.summary.cpu_sys_s,
            per = self.cpu_us_per_request,
            line = self.split.line(),
            kernel_work = self
                .split
                .kernel_line()
                .map_or(String::new(), |line| format!("{line}\n\n")),
        )
    }
}

/// Prints the report's summary lines to `to`.
pub fn print(report: &ProfileReport, out: &Path, mut to: impl Write) -> io::Result<()> {
    writeln!(
        to,
        "{}: {:.0} requests/s over {} connections, {} errors",
        report.model, report.load.requests_per_s, report.load.conns, report.load.errors
    )?;
    writeln!(to, "{}", report.split.line())?;
    if let Some(line) = report.split.kernel_line() {
        writeln!(to, "{line}")?;
    }
    writeln!(
        to,
        "flame graph: {}; stacks: {}; samples: {}",
        out.join("flamegraph.svg").display(),
        out.join("stacks.folded").display(),
        out.join("perf.data").display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hidden kernel symbols are warned of exactly when perf could not
    /// read them: at 2 for everyone, at 1 for all but root.
    #[test]
    fn hidden_kernel_symbols_are_warned_of() {
        assert!(kernel_symbols_hidden(Some(2), true).is_some());
        assert!(kernel_symbols_hidden(Some(1), false).is_some());
        assert!(kernel_symbols_hidden(Some(1), true).is_none());
        assert!(kernel_symbols_hidden(Some(0), false).is_none());
        assert!(kernel_symbols_hidden(None, false).is_none());
    }

    #[test]
    fn split_classifies_by_innermost_frame() {
        let script = "\
lab 10 100.0: 1001001 cpu-clock:
\tffffffff81000000 tcp_sendmsg+0x10 ([kernel.kallsyms])
\t7f0000000000 __send+0x20 (/usr/lib/x86_64-linux-gnu/libc.so.6)

lab 10 100.1: 1001001 cpu-clock:
\t55000000 iolab::server::codec::decode+0x5 (/work/target/release/lab)
\t55000100 main+0x5 (/work/target/release/lab)

lab 10 100.2: 1001001 cpu-clock:
\t55000000 core::slice::memchr::memchr_aligned+0x5 (/work/target/release/lab)

lab 10 100.3: 1001001 cpu-clock:
\t7f0000000000 __send+0x20 (/usr/lib/x86_64-linux-gnu/libc.so.6)

lab 10 100.4: 1001001 cpu-clock:
\t7f0000000000 <iolab::x as y>::z+0x20 (/work/target/release/lab)
";
        let split = split(script, "lab");
        assert_eq!(
            split,
            Split {
                samples: 5,
                kernel: 1,
                lab: 2,
                rust_other: 1,
                libc_other: 1,
                in_kernel: KernelWork {
                    network: 1,
                    ..KernelWork::default()
                },
            }
        );
        assert!(split
            .line()
            .starts_with("kernel 20.0 % | lab's own code 40.0 %"));
    }

    #[test]
    fn kernel_samples_go_to_the_innermost_family_on_their_stack() {
        let script = "\
lab 10 100.0: 1001001 cpu-clock:
\tffffffff81000000 _raw_spin_unlock_irqrestore+0x1 ([kernel.kallsyms])
\tffffffff81000000 try_to_wake_up+0x1 ([kernel.kallsyms])
\tffffffff81000000 ep_poll_callback+0x1 ([kernel.kallsyms])
\tffffffff81000000 tcp_v4_rcv+0x1 ([kernel.kallsyms])

lab 10 100.1: 1001001 cpu-clock:
\tffffffff81000000 _copy_to_iter+0x1 ([kernel.kallsyms])
\tffffffff81000000 skb_copy_datagram_iter+0x1 ([kernel.kallsyms])
\tffffffff81000000 tcp_recvmsg+0x1 ([kernel.kallsyms])
\tffffffff81000000 io_recv+0x1 ([kernel.kallsyms])

lab 10 100.2: 1001001 cpu-clock:
\tffffffff81000000 io_recv+0x1 ([kernel.kallsyms])
\tffffffff81000000 io_issue_sqe+0x1 ([kernel.kallsyms])

lab 10 100.3: 1001001 cpu-clock:
\tffffffff81000000 ep_send_events+0x1 ([kernel.kallsyms])
\tffffffff81000000 do_epoll_wait+0x1 ([kernel.kallsyms])
\tffffffff81000000 do_syscall_64+0x1 ([kernel.kallsyms])

lab 10 100.4: 1001001 cpu-clock:
\tffffffff81000000 fdget+0x1 ([kernel.kallsyms])
\tffffffff81000000 __sys_sendto+0x1 ([kernel.kallsyms])

lab 10 100.5: 1001001 cpu-clock:
\tffffffff81000000 clear_page_erms+0x1 ([kernel.kallsyms])
\tffffffff81000000 asm_exc_page_fault+0x1 ([kernel.kallsyms])

lab 10 100.6: 1001001 cpu-clock:
\t55000000 iolab::server::codec::decode+0x5 (/work/target/release/lab)
";
        let split = split(script, "lab");
        assert_eq!(split.kernel, 6);
        assert_eq!(
            split.in_kernel,
            KernelWork {
                network: 1,
                syscall_entry: 1,
                epoll: 1,
                io_uring: 1,
                scheduler: 1,
                other: 1,
            }
        );
        assert_eq!(
            split.kernel_line().unwrap(),
            "in the kernel: TCP/IP and sockets 14.3 % | system-call entry 14.3 % | epoll 14.3 % \
             | io_uring 14.3 % | sleeping and waking 14.3 % | other 14.3 %"
        );
    }
}
