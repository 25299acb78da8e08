//! A `lab MODEL` server run as a child process, and what `/proc` says about
//! it: the piece `lab bench` and `lab demo` share. The server is the real
//! binary (this process's own executable), so what is measured is exactly
//! what a user runs.

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::stats::Summary;

/// A `lab MODEL` child process.
pub struct ServerProcess {
    child: Child,
    /// The address it listens on, from its `listening on` line.
    pub addr: String,
    lines: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `lab ARGS...` (the first argument is the model) on port 0,
    /// with no connection limit to speak of and no idle timeout, and waits
    /// for its `listening on` line. `pin` puts it on CPU 0.
    pub fn start(lab: &Path, args: &[&str], pin: bool) -> io::Result<ServerProcess> {
        let model = args.first().copied().unwrap_or_default();
        let mut command = Command::new(lab);
        command
            .args(args)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--max-conns",
                "20000",
                "--idle-timeout",
                "0",
                "--drain-timeout",
                "2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // The server must not outlive us: a `lab demo` or `lab bench`
        // killed with SIGKILL (by a test's deadline, say) would otherwise
        // leave it serving for ever. (The parent that counts is the thread
        // that spawns, and both spawn from their main thread.)
        let parent = std::process::id() as libc::pid_t;
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure makes only
        // async-signal-safe system calls (prctl, getppid, raise,
        // sched_setaffinity) on values on its own stack; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                crate::sys::die_with_parent(parent);
                if pin {
                    pin_self(0);
                }
                Ok(())
            });
        }
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
        let first = lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| io::Error::other(format!("{model} did not start")))?;
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| io::Error::other(format!("{model} printed {first:?}")))?
            .to_string();
        Ok(ServerProcess { child, addr, lines })
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
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

/// Proportional set size of a process and all its descendants, KiB.
pub fn tree_pss_kib(pid: i32) -> u64 {
    let mut total = 0;
    let mut stack = vec![pid];
    let children = child_map();
    while let Some(p) = stack.pop() {
        total += pss_kib(p);
        if let Some(kids) = children.get(&p) {
            stack.extend(kids);
        }
    }
    total
}

fn pss_kib(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Parent pid → children, from /proc/*/stat.
fn child_map() -> std::collections::HashMap<i32, Vec<i32>> {
    let mut map: std::collections::HashMap<i32, Vec<i32>> = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            map.entry(ppid).or_default().push(pid);
        }
    }
    map
}
