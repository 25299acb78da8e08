//! Graceful shutdown on SIGINT, SIGTERM and SIGHUP, for every model.
//!
//! **What each signal does.** A server meets signals it did not ask for:
//! Ctrl-C (`SIGINT`), a service manager's `SIGTERM`, the `SIGHUP` a
//! terminal sends when its window closes, a stray `kill -USR1`. Their
//! default action is to kill the process on the spot — no drain, no
//! summary, clients cut off mid-answer. So:
//!
//! | signal | what `lab` does |
//! | --- | --- |
//! | `SIGINT`, `SIGTERM`, `SIGHUP` | drain and exit 0 ([`STOP_SIGNALS`]) |
//! | `SIGPIPE`, `SIGUSR1`, `SIGUSR2` | ignored ([`IGNORED_SIGNALS`]): a write to a gone client fails with `EPIPE` instead; the user signals mean nothing here |
//! | `SIGQUIT` (Ctrl-\\) | left at its default: stop *now* and dump core, the escape hatch for a server that will not drain |
//! | `SIGKILL`, `SIGSTOP` | cannot be caught; a stopped server carries on where it was when continued |
//!
//! (nginx gives `SIGHUP` the meaning "reload the configuration"; the lab has
//! no configuration file to reload, and a terminal closing is the `SIGHUP`
//! a student meets.)
//!
//! docs/src/protocol.md asks a server that is told to stop to stop accepting,
//! answer every complete line it already holds, flush, close and exit 0, all
//! within the drain timeout. The hard part is *waking* code that is blocked
//! in a system call, and doing it without a race: a flag checked just before
//! a blocking call can be set just after the check, and the call then sleeps
//! forever.
//!
//! The signal handler therefore does not only set a flag. It also acts on the
//! sockets, with calls that are async-signal-safe and whose effect *lasts*,
//! so that it does not matter whether the blocked call has started yet:
//!
//! - every watched **listener** is `shutdown(2)`: a blocked or future
//!   `accept` fails at once with `EINVAL`, and the accept loop ends. This
//!   is Linux's behaviour, not POSIX's (which specifies `shutdown` for
//!   connected sockets only), and the design relies on it: on Linux,
//!   shutting down a listening socket's read side stops it listening and
//!   wakes every thread blocked in its `accept`;
//! - the **connection the current thread is serving** (single-threaded
//!   servers: `blocking`, each `fork` child, each `prefork` worker) gets its
//!   read side shut down: `read` returns the bytes already received, then 0,
//!   which the handler treats as the end of input; and its send timeout
//!   becomes the drain timeout, so flushing to a client that does not read
//!   gives up in time;
//! - an **eventfd** becomes readable, so loops that wait in `poll`, `epoll`,
//!   `select` or io_uring wake up by watching it like any other descriptor.
//!
//! Multi-threaded servers keep their connections in [`Connections`] and shut
//! their read sides down from the main thread once `accept` has failed.
//!
//! The handler is installed without `SA_RESTART`, so a blocked call is also
//! interrupted with `EINTR`; the wrappers treat that as "look again".

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::sys;

/// The signals that ask for a graceful stop.
pub const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The signals a server ignores instead of dying of them.
pub const IGNORED_SIGNALS: [Signal; 3] = [Signal::SIGPIPE, Signal::SIGUSR1, Signal::SIGUSR2];

static REQUESTED: AtomicBool = AtomicBool::new(false);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The connection this (single-threaded) process is serving, or -1.
static SERVING: AtomicI32 = AtomicI32::new(-1);
/// The drain timeout, for the signal handler (which cannot read the config).
static DRAIN_MICROS: AtomicU64 = AtomicU64::new(5_000_000);
/// Listeners to shut down on a signal; -1 marks a free slot.
static LISTENERS: [AtomicI32; MAX_LISTENERS] = [const { AtomicI32::new(-1) }; MAX_LISTENERS];
const MAX_LISTENERS: usize = 256;

/// Installs the handlers. Call once, before any thread or child is started.
///
/// Also ignores [`IGNORED_SIGNALS`]: `SIGPIPE`, so a write to a client
/// that has gone away fails with `EPIPE`, which the connection's code
/// handles, instead of killing the server; and the two user signals.
pub fn install(drain_timeout: Duration) -> io::Result<()> {
    set_drain_timeout(drain_timeout);
    // SAFETY: plain eventfd(2) call; we own the returned descriptor for the
    // life of the process (it is never closed, like a static).
    let fd = unsafe { sys::syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)) }?;
    WAKE_FD.store(fd, SeqCst);
    let stop = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for signal in STOP_SIGNALS {
        // SAFETY: `on_signal` only touches atomics and makes
        // async-signal-safe system calls (write, shutdown), and it saves
        // and restores errno.
        unsafe { signal::sigaction(signal, &stop) }?;
    }
    for signal in IGNORED_SIGNALS {
        // SAFETY: ignoring a signal installs no code of ours.
        unsafe { signal::sigaction(signal, &ignore) }?;
    }
    Ok(())
}

extern "C" fn on_signal(_signal: libc::c_int) {
    sys::with_errno_preserved(stop_from_signal);
}

/// The stop signal's work: only atomics and async-signal-safe calls.
fn stop_from_signal() {
    REQUESTED.store(true, SeqCst);
    let wake = WAKE_FD.load(SeqCst);
    if wake >= 0 {
        sys::signal_eventfd(wake);
    }
    for slot in &LISTENERS {
        let fd = slot.load(SeqCst);
        if fd >= 0 {
            sys::shutdown_read(fd);
        }
    }
    let serving = SERVING.load(SeqCst);
    if serving >= 0 {
        sys::shutdown_read(serving);
        // The thread may be about to block in `send` to a client that does
        // not read, with the idle timeout as its limit: from now on a send
        // may wait only the drain timeout. (A send already blocked returns
        // EINTR, and the next one sees the new limit.)
        sys::set_send_timeout_raw(serving, DRAIN_MICROS.load(SeqCst));
    }
}

/// How long a drain may take in this process.
pub fn drain_timeout() -> Duration {
    Duration::from_micros(DRAIN_MICROS.load(SeqCst))
}

/// Sets how long a drain may take in this process (a forked child gives
/// itself less than its parent: see `models::process`). The signal handler
/// and [`crate::server::handler`]'s writes both use it.
pub fn set_drain_timeout(drain_timeout: Duration) {
    let micros = u64::try_from(drain_timeout.as_micros()).unwrap_or(u64::MAX);
    DRAIN_MICROS.store(micros, SeqCst);
}

/// When the drain must be over, once a stop signal has come: the drain
/// timeout counted from the first time anyone asked after the signal (the
/// handler itself cannot read a clock it may keep).
pub fn drain_deadline() -> Option<Instant> {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    requested().then(|| *STARTED.get_or_init(Instant::now) + drain_timeout())
}

/// Requests shutdown from code, as a stop signal would (for a model that
/// takes its signals synchronously, like `sigio`): sets the flag and wakes
/// the loops watching [`wake_fd`].
pub fn request() {
    REQUESTED.store(true, SeqCst);
    sys::signal_eventfd(wake_fd().as_raw_fd());
}

/// A handle on "has a stop been requested?", for code that should not read
/// the process-wide flag itself: a loop given one can be driven by a unit
/// test that raises its own flag (as mini-redis hands its connections a
/// `Shutdown`).
#[derive(Clone, Copy, Debug)]
pub struct StopFlag(&'static AtomicBool);

impl StopFlag {
    /// The process's flag, which the stop signals raise.
    pub fn process() -> StopFlag {
        StopFlag(&REQUESTED)
    }

    /// A flag of its own, raised only by [`StopFlag::raise`] (for tests; it
    /// is leaked, a few bytes each).
    pub fn detached() -> StopFlag {
        StopFlag(Box::leak(Box::new(AtomicBool::new(false))))
    }

    /// Whether a stop was requested.
    pub fn requested(self) -> bool {
        self.0.load(SeqCst)
    }

    /// Requests the stop (a detached flag's only way to be raised).
    pub fn raise(self) {
        self.0.store(true, SeqCst);
    }
}

/// Whether a stop signal ([`STOP_SIGNALS`]) has arrived.
pub fn requested() -> bool {
    REQUESTED.load(SeqCst)
}

/// A descriptor that becomes readable when shutdown is requested, for loops
/// that wait on many descriptors. (Nobody reads it, so it stays readable.)
pub fn wake_fd() -> BorrowedFd<'static> {
    let fd = WAKE_FD.load(SeqCst);
    assert!(fd >= 0, "shutdown::install was not called");
    // SAFETY: the eventfd is opened once in `install` and never closed.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Shuts `listener` down when a stop signal arrives (see the module doc),
/// for as long as the returned [`ListenerWatch`] lives. Drop the watch
/// *before* the listener closes — [`crate::server::listener::Acceptor`] holds it in
/// a field declared before the listener's, so it does — or a signal could
/// shut down whatever socket reuses the descriptor number (reachable with
/// `--workers N`, where one worker's listener may close before the others).
#[must_use = "the listener is watched only while the watch lives"]
pub fn watch_listener(listener: &impl AsRawFd) -> ListenerWatch {
    let fd = listener.as_raw_fd();
    for (index, slot) in LISTENERS.iter().enumerate() {
        if slot.compare_exchange(-1, fd, SeqCst, SeqCst).is_ok() {
            if requested() {
                // The signal came before we were watching: act for it.
                sys::shutdown_read(fd);
            }
            return ListenerWatch { index, fd };
        }
    }
    panic!("more than {MAX_LISTENERS} listeners watched");
}

/// A listener watched for the stop signals; unwatched on drop.
#[derive(Debug)]
pub struct ListenerWatch {
    index: usize,
    fd: RawFd,
}

impl Drop for ListenerWatch {
    fn drop(&mut self) {
        // Only if it is still ours: a forked child forgets them all.
        let _ = LISTENERS[self.index].compare_exchange(self.fd, -1, SeqCst, SeqCst);
    }
}

/// Whether `fd` is watched for the stop signals now.
pub fn is_watched(fd: RawFd) -> bool {
    LISTENERS.iter().any(|slot| slot.load(SeqCst) == fd)
}

/// Stops watching every listener: a forked child calls this so that a
/// signal sent to the child alone never shuts the parent's listener.
pub fn forget_listeners() {
    for slot in &LISTENERS {
        slot.store(-1, SeqCst);
    }
}

/// The connection this single-threaded process is serving, marked so that a
/// stop signal shuts down its read side. Like [`Registered`] it owns the
/// socket: dropping it unmarks first and closes after, so the handler can
/// never shut down a descriptor number that has been reused.
pub struct Serving<S: AsRawFd> {
    conn: std::mem::ManuallyDrop<S>,
}

impl<S: AsRawFd> Serving<S> {
    /// Marks `conn` as served by this process. Only for processes that serve
    /// one connection at a time on their main thread.
    pub fn mark(conn: S) -> Serving<S> {
        SERVING.store(conn.as_raw_fd(), SeqCst);
        if requested() {
            sys::shutdown_read(conn.as_raw_fd());
        }
        Serving {
            conn: std::mem::ManuallyDrop::new(conn),
        }
    }
}

impl<S: AsRawFd> std::ops::Deref for Serving<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.conn
    }
}

impl<S: AsRawFd> std::ops::DerefMut for Serving<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.conn
    }
}

impl<S: AsRawFd> Drop for Serving<S> {
    fn drop(&mut self) {
        SERVING.store(-1, SeqCst);
        // SAFETY: `conn` is dropped exactly once, here, and never used again.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.conn) };
    }
}

/// Blocks every signal in the calling thread while `f` spawns threads,
/// which inherit the mask. Signals sent to the process are then always
/// delivered to the main thread: the stop signals, whose blocked `accept`
/// they must interrupt, `SIGCHLD`, and the IO signals of `sigio`.
pub fn spawn_without_signals<T>(f: impl FnOnce() -> T) -> T {
    let mask = SigSet::all();
    let mut old = SigSet::empty();
    // pthread_sigmask fails only for an invalid `how`, which this is not.
    let _ = signal::pthread_sigmask(signal::SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old));
    let result = f();
    let _ = signal::pthread_sigmask(signal::SigmaskHow::SIG_SETMASK, Some(&old), None);
    result
}

/// Spawns a named thread that never receives the stop signals.
pub fn spawn_thread<F>(name: String, f: F) -> io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    spawn_without_signals(|| std::thread::Builder::new().name(name).spawn(f))
}

/// The open connections of a multi-threaded server, so that the main thread
/// can wake the threads serving them at shutdown.
///
/// A thread registers its socket when it takes the connection and
/// deregisters it *before closing it*, under the same lock that the main
/// thread holds while shutting sockets down, so the main thread can never
/// act on a descriptor number that has been closed and reused.
#[derive(Default)]
pub struct Connections {
    open: Mutex<Registry>,
    changed: Condvar,
}

#[derive(Default)]
struct Registry {
    fds: HashMap<u64, RawFd>,
    next_id: u64,
    stopping: bool,
}

/// A connection registered in [`Connections`]. It owns the socket, so the
/// order that makes the registry safe is enforced by the type: dropping it
/// deregisters first and closes the socket after.
pub struct Registered<'a, S: AsRawFd> {
    connections: &'a Connections,
    id: u64,
    conn: std::mem::ManuallyDrop<S>,
}

impl<S: AsRawFd> std::ops::Deref for Registered<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.conn
    }
}

impl<S: AsRawFd> std::ops::DerefMut for Registered<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.conn
    }
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A thread that panicked while holding the lock left the map in a
        // consistent state (each operation is one insert or remove).
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `conn`. If shutdown has begun, its read side is shut down
    /// at once, so a connection taken from a queue late still drains.
    pub fn register<S: AsRawFd>(&self, conn: S) -> Registered<'_, S> {
        let mut registry = self.lock();
        let id = registry.next_id;
        registry.next_id += 1;
        registry.fds.insert(id, conn.as_raw_fd());
        if registry.stopping {
            sys::shutdown_read(conn.as_raw_fd());
        }
        Registered {
            connections: self,
            id,
            conn: std::mem::ManuallyDrop::new(conn),
        }
    }

    /// How many connections are registered.
    pub fn len(&self) -> usize {
        self.lock().fds.len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Begins the drain: shuts down the read side of every connection (and
    /// of any registered later), then waits until all have deregistered or
    /// `drain_timeout` has passed, and then [`force_close`](Self::force_close)s
    /// any that remain.
    pub fn drain(&self, drain_timeout: Duration) {
        let deadline = Instant::now() + drain_timeout;
        self.begin_drain();
        let mut registry = self.lock();
        while !registry.fds.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                drop(registry);
                return self.force_close();
            }
            registry = match self.changed.wait_timeout(registry, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Shuts down the read side of every connection, now and as they
    /// register: each reads what is buffered, then end of stream.
    pub fn begin_drain(&self) {
        let mut registry = self.lock();
        registry.stopping = true;
        for &fd in registry.fds.values() {
            sys::shutdown_read(fd);
        }
    }

    /// Shuts down both sides of every connection still registered, so that
    /// their pending and future reads and writes fail at once (the drain
    /// timeout ran out: clients that do not read are not waited for).
    pub fn force_close(&self) {
        for &fd in self.lock().fds.values() {
            sys::shutdown_both(fd);
        }
    }
}

impl<S: AsRawFd> Drop for Registered<'_, S> {
    fn drop(&mut self) {
        let mut registry = self.connections.lock();
        registry.fds.remove(&self.id);
        drop(registry);
        // SAFETY: `conn` is dropped exactly once, here, and never used again.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.conn) };
        self.connections.changed.notify_all();
    }
}
