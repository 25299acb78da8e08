//! A `lab MODEL` server run as a child process, and what `/proc` says about
//! it: the piece `lab bench` and `lab demo` share. The server is the real
//! binary (this process's own executable), so what is measured is exactly
//! what a user runs.

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::server::stats::Summary;

/// A `lab MODEL` child process.
pub struct ServerProcess {
    child: Child,
    /// The address it listens on, from its `listening on` line.
    pub addr: String,
    lines: mpsc::Receiver<String>,
    /// The last lines it wrote on standard error (a panic, a refusal to
    /// start), for saying why it died.
    stderr: Arc<Mutex<Vec<String>>>,
}

/// How a server ended after a signal: [`ServerProcess::wait_exit`].
#[derive(Debug)]
pub struct Exit {
    /// Its exit status, or `None` if it was still running at the deadline
    /// (it has been killed since).
    pub status: Option<ExitStatus>,
    /// Its `summary` line, if it printed one.
    pub summary: Option<Summary>,
    /// From the call to its exit (or to the deadline).
    pub took: Duration,
}

/// How many lines of a server's standard error are kept.
const STDERR_LINES: usize = 20;

impl ServerProcess {
    /// Starts `lab ARGS...` (the first argument is the model) on port 0,
    /// with no connection limit to speak of, no idle timeout and a 2 s
    /// drain, each unless `args` sets it, and waits for its `listening on`
    /// line. `pin` puts it on CPU 0.
    pub fn start(lab: &Path, args: &[&str], pin: bool) -> io::Result<ServerProcess> {
        let model = args.first().copied().unwrap_or_default();
        let mut command = Command::new(lab);
        command.args(args);
        // An option given twice is a usage error, so a default goes on only
        // where the caller (`lab attack`'s `--max-conns 16`, say) set none.
        for (option, default) in [
            ("--addr", "127.0.0.1:0"),
            ("--max-conns", "20000"),
            ("--idle-timeout", "0"),
            ("--drain-timeout", "2"),
        ] {
            if !args.contains(&option) {
                command.args([option, default]);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The server must not outlive us: a `lab demo` or `lab bench`
        // killed with SIGKILL (by a test's deadline, say) would otherwise
        // leave it serving for ever.
        tie_to_us(&mut command, pin.then_some(0));
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Standard error is read as it comes (a full pipe would block the
        // server), keeping only the last lines.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == STDERR_LINES {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        let mut server = ServerProcess {
            child,
            addr: String::new(),
            lines,
            stderr,
        };
        let first = match server.lines.recv_timeout(Duration::from_secs(10)) {
            Ok(first) => first,
            Err(_) => {
                // Give a server that refused to start a moment to say why.
                let _ = server.child.try_wait();
                std::thread::sleep(Duration::from_millis(50));
                return Err(io::Error::other(format!(
                    "{model} did not start{}",
                    server.said()
                )));
            }
        };
        server.addr = first
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| io::Error::other(format!("{model} printed {first:?}")))?
            .to_string();
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `Some(status)` once the server has exited (or died).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines the server wrote on standard error, as `: LINE | LINE`
    /// (empty if it wrote none), to append to a message about it.
    pub fn said(&self) -> String {
        let kept = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        if kept.is_empty() {
            String::new()
        } else {
            format!(": {}", kept.join(" | "))
        }
    }

    /// Waits up to `within` for the server to exit (after a signal the
    /// caller sent), reading its summary line; kills it at the deadline.
    pub fn wait_exit(&mut self, within: Duration) -> Exit {
        let started = Instant::now();
        let mut summary = None;
        let mut status = None;
        while status.is_none() && started.elapsed() < within {
            status = self.exited();
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(10)) {
                if let Some(json) = line.strip_prefix("summary ") {
                    summary = serde_json::from_str(json).ok();
                }
            }
        }
        let took = started.elapsed();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // What it printed before exiting is in the pipe; a process it left
        // behind may hold the pipe open, so wait for the rest only briefly.
        while summary.is_none() {
            match self.lines.recv_timeout(Duration::from_millis(500)) {
                Ok(line) => {
                    if let Some(json) = line.strip_prefix("summary ") {
                        summary = serde_json::from_str(json).ok();
                    }
                }
                Err(_) => break,
            }
        }
        Exit {
            status,
            summary,
            took,
        }
    }

    /// SIGTERM, then the summary line.
    pub fn stop(&mut self) -> io::Result<Summary> {
        // Our own child, not yet reaped: the pid cannot belong to another.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(json) = line.strip_prefix("summary ") {
                        let _ = self.child.wait();
                        return serde_json::from_str(json).map_err(io::Error::other);
                    }
                }
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(io::Error::other("the server printed no summary"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Makes the process `command` will start die with this one (SIGTERM when
/// we end, even by SIGKILL), and pins it to `cpu` if given, before it
/// runs anything. (The parent that counts is the thread that spawns: spawn
/// from a thread that lives as long as the child should.)
pub fn tie_to_us(command: &mut Command, cpu: Option<usize>) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure makes only
    // async-signal-safe system calls (prctl, getppid, raise,
    // sched_setaffinity) on values on its own stack; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            crate::sys::die_with_parent(parent);
            if let Some(cpu) = cpu {
                pin_self(cpu);
            }
            Ok(())
        });
    }
}

/// Pins the calling thread (and the threads and processes it creates
/// afterwards) to one CPU. Allocates nothing, so it may run between fork and exec. A machine
/// without that CPU leaves the affinity as it was.
pub fn pin_self(cpu: usize) {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// The ids of every live (not zombie) process descended from `pid`
/// (children, their children, ...), found through the parent id in
/// `/proc/*/stat`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // The process may exit between read_dir and this read: skip it then.
        // A zombie has exited: it holds no memory and no sockets, and has
        // no children.
        let Some(rest) = stat_after_comm(child) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next().and_then(|s| s.parse().ok()));
        if let (Some(state), Some(ppid)) = (state, ppid) {
            if state != "Z" && state != "X" {
                children.entry(ppid).or_default().push(child);
            }
        }
    }
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            found.push(c);
            todo.push(c);
        }
    }
    found
}

/// The memory of one process in KiB: its proportional set size (`Pss` in
/// `/proc/PID/smaps_rollup`), or `VmRSS` where that file is missing.
///
/// PSS rather than RSS because the process models fork: a forked child maps
/// its parent's pages, and summing plain RSS over the tree would count those
/// shared pages once per child. PSS divides each shared page among the
/// processes that map it, while memory a process allocates for itself (a
/// buffer of pending responses) counts in full. Returns 0 if the process is
/// gone.
fn memory_kib(pid: i32) -> u64 {
    let field = |path: String, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    field(format!("/proc/{pid}/smaps_rollup"), "Pss:")
        .or_else(|| field(format!("/proc/{pid}/status"), "VmRSS:"))
        .unwrap_or(0)
}

/// The descriptors open in `pid` and all its descendants (the entries of
/// each `/proc/PID/fd`); a process that is gone counts none.
pub fn tree_descriptors(pid: i32) -> usize {
    std::iter::once(pid)
        .chain(descendants(pid))
        .map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |dir| dir.count()))
        .sum()
}

/// The CPU time of `pid` and its descendants, in seconds: the time the
/// living ones' threads have run, and the time of those that exited and
/// were waited for, which the kernel adds to their parent's account of its
/// children. Without the children's account, a connection's process of
/// `fork` that ended during a measured window took its time with it, and
/// the window's CPU could come out negative. A process that has exited
/// but was not yet waited for (a zombie) is missed until it is.
pub fn tree_cpu_seconds(pid: i32) -> f64 {
    std::iter::once(pid)
        .chain(descendants(pid))
        .map(cpu_seconds)
        .sum()
}

/// A process's CPU time: its threads' (exactly for the living ones, see
/// [`threads_cpu_seconds`]; to the tick with the exited ones) and that of
/// the children it has waited for (`cutime` and `cstime` of
/// `/proc/PID/stat`, in clock ticks of 1/100 s, `USER_HZ` by the kernel's
/// ABI); 0 if it is gone.
fn cpu_seconds(pid: i32) -> f64 {
    let Some(rest) = stat_after_comm(pid) else {
        return 0.0;
    };
    // After the command name, utime, stime, cutime and cstime are the 12th
    // to 15th fields (14 to 17 of proc(5)).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Two counts, each short of the truth in its own way: the living
    // threads' exact time misses threads that have exited, and the
    // process's `utime` + `stime`, which keep those, are whole ticks (a
    // process that has run less than a tick in all reads 0). The larger
    // is the nearer.
    let ticked = (ticks(11) + ticks(12)) / 100.0;
    let own = threads_cpu_seconds(pid).map_or(ticked, |exact| exact.max(ticked));
    own + (ticks(13) + ticks(14)) / 100.0
}

/// The time each of `pid`'s threads has spent on a CPU, from
/// `/proc/PID/task/TID/schedstat` (its first field, in nanoseconds: the
/// scheduler's own exact account), summed; `None` where the kernel has no
/// schedstat. Not `utime` and `stime` of `/proc/PID/stat` alone: they
/// come in whole ticks of 1/100 s, and many processes that each run for
/// moments read as nothing — `fork`'s 1,000 connection processes read
/// 0.0 s over two seconds in which schedstat counted 2.26 s, and `lab
/// bench` reported 0.47 µs per request for them.
fn threads_cpu_seconds(pid: i32) -> Option<f64> {
    let mut nanos = 0u64;
    let mut found = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // A thread may exit between the listing and the read: skip it.
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        nanos += text.split_whitespace().next()?.parse::<u64>().ok()?;
        found = true;
    }
    found.then_some(nanos as f64 / 1e9)
}

/// The fields of `/proc/PID/stat` after `pid (comm)`, starting with the
/// state; `None` if the process is gone. The command name may hold spaces
/// and parentheses, so the fields are counted from the last `)`.
pub fn stat_after_comm(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.rfind(')')? + 1..].to_string())
}

/// The memory of `pid` and all its descendants, in KiB.
pub fn tree_memory_kib(pid: i32) -> u64 {
    std::iter::once(pid)
        .chain(descendants(pid))
        .map(memory_kib)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// A shell whose child burns CPU and exits, waited for by the shell,
    /// which then becomes `sleep`: the child's time must still be the
    /// tree's, as with a connection's process of `fork` that has ended.
    #[test]
    fn a_child_that_exited_and_was_waited_for_keeps_its_cpu_in_the_tree() {
        let mut shell = Command::new("sh")
            .args([
                "-c",
                "(i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done); exec sleep 10",
            ])
            .spawn()
            .expect("sh runs");
        let pid = shell.id() as i32;
        let comm = || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let started = Instant::now();
        while comm().trim() != "sleep" && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let tree = tree_cpu_seconds(pid);
        let _ = shell.kill();
        let _ = shell.wait();
        assert_eq!(comm().trim(), "", "the shell is gone");
        // The busy child is gone and `sleep` has used nothing, so all of
        // it is the child's time, in the shell's account of its children.
        assert!(
            tree >= 0.05,
            "the tree's CPU after the child exited: {tree} s"
        );
    }

    /// Two hundred processes that each run for a few milliseconds and then
    /// sleep: each is charged almost no clock ticks, but the tree's time is
    /// the sum of what they ran.
    #[test]
    fn many_processes_that_each_ran_briefly_add_up() {
        let mut shell = Command::new("sh")
            .args([
                "-c",
                "for n in $(seq 200); do \
                   (i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; exec sleep 30) & \
                 done; wait",
            ])
            .spawn()
            .expect("sh runs");
        let pid = shell.id() as i32;
        let sleeping = || {
            descendants(pid)
                .into_iter()
                .filter(|&p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "sleep")
                })
                .count()
        };
        let started = Instant::now();
        while sleeping() < 200 && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let tree = tree_cpu_seconds(pid);
        for p in descendants(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = shell.kill();
        let _ = shell.wait();
        assert!(tree >= 0.1, "200 processes' busy loops came to {tree} s");
    }

    /// A thread that ran and exited keeps its time in its process's count
    /// (the living threads' schedstat alone would lose it, and a window
    /// across its exit would come out short, even negative).
    #[test]
    fn a_thread_that_exited_keeps_its_cpu_in_the_process() {
        let me = std::process::id() as i32;
        let before = cpu_seconds(me);
        std::thread::spawn(|| {
            let started = Instant::now();
            let mut x = 0u64;
            while started.elapsed() < Duration::from_millis(300) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        })
        .join()
        .expect("the busy thread ran");
        let after = cpu_seconds(me);
        assert!(
            after - before >= 0.2,
            "300 ms of a thread that has exited came to {} s",
            after - before
        );
    }
}
