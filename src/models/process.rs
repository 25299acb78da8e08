//! Child processes for the process models (`fork`, `prefork`): starting
//! them, reaping them the moment they exit, and stopping them at shutdown.
//!
//! **Reaping.** A child that exits stays a zombie until its parent calls
//! `waitpid`. The parent here spends its life blocked in `accept` (fork) or
//! in `sigsuspend` (prefork), so we reap in the `SIGCHLD` handler itself,
//! looping over `waitpid(-1, WNOHANG)` because several exits may be folded
//! into one signal (Stevens, UNP §5.10). No zombie outlives its signal.
//!
//! **Knowing who is alive.** The handler clears the child's slot in a table
//! of pids and calls the model's `on_reap` hook (which gives the child's
//! `MAX_CONNS` place back). The main thread only adds to the table with
//! `SIGCHLD` blocked, and only signals pids that are in it with `SIGCHLD`
//! blocked too: a pid in the table has not been reaped yet, so it cannot
//! have been reused by an unrelated process.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use crate::sys::{self, counters, Forked};
use crate::{server::shutdown, server::stats};

/// Live children by slot: a pid, or 0 for a free slot.
static SLOTS: OnceLock<Box<[AtomicI32]>> = OnceLock::new();
static LIVE: AtomicUsize = AtomicUsize::new(0);
static ON_REAP: OnceLock<fn(usize)> = OnceLock::new();
/// Set once the parent sends `SIGKILL` to the children left at the drain
/// deadline: deaths by signal from then on are its own doing.
static KILLING: AtomicBool = AtomicBool::new(false);

/// The share of the drain timeout a child gets for its own drain, so that it
/// finishes — answers flushed, counts added to the shared totals — before
/// the parent's deadline, instead of racing the parent's `SIGKILL` to it.
const CHILD_DRAIN_SHARE: f64 = 0.75;

/// Prepares a table for `capacity` children and installs the `SIGCHLD`
/// handler. `on_reap(slot)` runs in the handler after a child is reaped: it
/// must be async-signal-safe (atomics only).
pub fn install(capacity: usize, on_reap: fn(usize)) -> io::Result<()> {
    let slots = (0..capacity).map(|_| AtomicI32::new(0)).collect();
    if SLOTS.set(slots).is_err() || ON_REAP.set(on_reap).is_err() {
        return Err(io::Error::other("process table installed twice"));
    }
    // Before the first fork: a child's panic must not need std's stderr
    // lock, which the `--stats` thread may hold at the instant of a fork
    // (the child would inherit it held, by a thread it does not have).
    std::panic::set_hook(Box::new(sys::panic_message_without_locks));
    // SA_RESTART: a child's exit should not interrupt the parent's `accept`;
    // reaping needs nothing from the main thread.
    let action = SigAction::new(
        SigHandler::Handler(on_sigchld),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: `on_sigchld` calls only waitpid (`sys::reap_child`) and
    // touches only atomics (the `on_reap` hooks promise the same), and it
    // saves and restores errno.
    unsafe { signal::sigaction(Signal::SIGCHLD, &action) }?;
    Ok(())
}

extern "C" fn on_sigchld(_signal: libc::c_int) {
    sys::with_errno_preserved(reap_all);
}

/// Reaps every ended child and frees its slot.
fn reap_all() {
    while let Some(child) = sys::reap_child() {
        let (pid, gauges) = (child.pid, &counters::totals().gauges);
        stats::add_reaped_child(&child);
        if child.by_signal {
            // Killed at the drain deadline by us: not a crash.
            let count = if KILLING.load(SeqCst) {
                &gauges.children_stopped
            } else {
                &gauges.children_crashed
            };
            count.fetch_add(1, SeqCst);
        }
        let Some(slots) = SLOTS.get() else { continue };
        if let Some(slot) = slots.iter().position(|s| s.load(SeqCst) == pid) {
            slots[slot].store(0, SeqCst);
            LIVE.fetch_sub(1, SeqCst);
            if let Some(on_reap) = ON_REAP.get() {
                on_reap(slot);
            }
        }
    }
}

/// Runs `f` with `SIGCHLD` (and the stop signals) blocked, so the handler
/// cannot run in the middle of it. Returns the mask to restore.
fn with_signals_blocked<T>(f: impl FnOnce(&SigSet) -> T) -> T {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for signal in shutdown::STOP_SIGNALS {
        mask.add(signal);
    }
    let mut old = SigSet::empty();
    let _ = signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old));
    let result = f(&old);
    let _ = signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    result
}

/// Forks a child that runs `child(slot)` and exits; returns its slot, or `None`
/// if the table is full. In the child, `child` runs with the parent's
/// signal mask restored and the parent's listeners unwatched; if it panics,
/// the child exits with status 101 instead of unwinding into the parent's
/// code (which, in the child, would make it a second parent).
pub fn spawn(child: impl FnOnce(usize)) -> io::Result<Option<usize>> {
    let slots = SLOTS.get().expect("process::install not called");
    let parent = std::process::id() as libc::pid_t;
    with_signals_blocked(|old_mask| {
        let Some(slot) = slots.iter().position(|s| s.load(SeqCst) == 0) else {
            return Ok(None);
        };
        // SAFETY: we are the main thread. The only other thread is the
        // `--stats` line, which takes two locks a child could want: the
        // allocator's (glibc's `fork` resets them in the child) and std's
        // stderr lock, which nothing in a child takes — it serves its
        // connection without printing, and its panic message goes out
        // through the lock-free hook installed above — before it `_exit`s.
        match unsafe { sys::fork() }? {
            Forked::Parent(pid) => {
                slots[slot].store(pid, SeqCst);
                LIVE.fetch_add(1, SeqCst);
                Ok(Some(slot))
            }
            Forked::Child => {
                sys::die_with_parent(parent);
                let _ = signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old_mask), None);
                shutdown::forget_listeners();
                shutdown::set_drain_timeout(shutdown::drain_timeout().mul_f64(CHILD_DRAIN_SHARE));
                let status = match catch_unwind(AssertUnwindSafe(|| child(slot))) {
                    Ok(()) => 0,
                    Err(_) => 101,
                };
                counters::flush();
                // Not `exit`: the parent's atexit handlers and destructors
                // are the parent's.
                sys::exit_now(status)
            }
        }
    })
}

/// How many children are alive (not yet reaped).
pub fn live() -> usize {
    LIVE.load(SeqCst)
}

/// Sends `signal` to every live child.
fn signal_all(signal: Signal) {
    let slots = SLOTS.get().expect("process::install not called");
    with_signals_blocked(|_| {
        for slot in slots.iter() {
            let pid = slot.load(SeqCst);
            if pid > 0 {
                let _ = signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
        }
    });
}

/// Shutdown: asks every child to drain (`SIGTERM`), waits up to
/// `drain_timeout` for them to exit, then kills those left (`SIGKILL`).
///
/// A child drains in `CHILD_DRAIN_SHARE` of the time (a client that does
/// not read is given up on by then), so it normally exits by itself, its
/// counts flushed. One still alive at the deadline is stuck; it is killed
/// and counted in the summary's `children_stopped`, not as a crash, and the
/// counts it had not flushed (at most `FLUSH_EVERY` bumps) are lost.
pub fn stop_all(drain_timeout: Duration) {
    signal_all(Signal::SIGTERM);
    if !wait_until_none_live(Instant::now() + drain_timeout) {
        KILLING.store(true, SeqCst);
        signal_all(Signal::SIGKILL);
        // SIGKILL cannot be caught: this wait is short.
        wait_until_none_live(Instant::now() + Duration::from_secs(5));
    }
}

/// Waits until every child has been reaped or `deadline` has passed.
///
/// The reaping happens in the `SIGCHLD` handler; here we only look at the
/// count every few milliseconds, which for the few seconds of a shutdown
/// is simpler than waiting for the signal itself.
fn wait_until_none_live(deadline: Instant) -> bool {
    while live() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Waits until a signal handler has run (a child exited, or a stop signal
/// arrived), checking `done` first with the signals blocked so that no
/// signal can slip in between the check and the wait (`sigsuspend(2)`).
pub fn wait_for_signal_unless(done: impl Fn() -> bool) {
    with_signals_blocked(|_| {
        if !done() {
            // `suspend` atomically unblocks every signal and waits for one;
            // it returns (with EINTR) after the handler has run.
            let _ = SigSet::empty().suspend();
        }
    });
}

/// Closes a descriptor the child inherited and will never use (the
/// listener, in a `fork` child).
///
/// # Safety
///
/// Nothing in the child may use or drop the value that owns `fd` afterwards;
/// the child must end with `_exit` (as [`spawn`] does).
pub unsafe fn close_inherited(fd: std::os::fd::RawFd) {
    // The caller guarantees `fd` is not used again in this process; an
    // error (EBADF, EINTR) leaves nothing to do.
    let _ = nix::unistd::close(fd);
}
