//! # `prefork` — a pool of processes that all accept
//!
//! `fork` pays for a process on every connection. A preforking server (Apache
//! `prefork`, PHP-FPM, gunicorn's sync workers) pays up front: the parent
//! binds the listener and forks `--workers` processes that each loop over
//! `accept` → serve → `accept` on that *shared* listener. The kernel hands
//! each new connection to one of the workers blocked in `accept` (since
//! Linux 2.6 only one is woken: no thundering herd for blocking `accept`).
//! The parent only watches: it replaces a worker that dies and, at shutdown,
//! stops them all.
//!
//! ## One request, step by step
//!
//! ```text
//! parent                worker 1                 worker 2              client
//! fork() x N            accept() .. blocks ..    accept() .. blocks ..
//! sigsuspend() ..                                                      connect()
//!                               returns fd
//!                       read(fd) .. blocks ..                          "hi\n"
//!                       write(fd, "HI\n")
//!                       read(fd) → 0, close(fd)
//!                       accept() .. blocks ..
//! ```
//!
//! ## Costs
//!
//! - **Syscalls per request:** `read` + `write`, as in `blocking`; no `fork`
//!   per connection.
//! - **Memory:** N processes whatever the load; an idle pool costs as much
//!   as a busy one.
//! - **At 10,000 clients:** N are served, the rest wait in the accept queue.
//!   Concurrency is capped at the pool size: N slow clients stall everyone.
//!
//! ## Failure modes, and what the code does
//!
//! - *A worker dies* (crash, `kill -9`): the `SIGCHLD` handler reaps it and
//!   gives back the `MAX_CONNS` place it held; the parent, woken by the
//!   signal, forks a replacement.
//! - *`MAX_CONNS`*: the open-connection count lives in the shared counters
//!   page, which every worker updates with atomics; each worker also marks,
//!   in a shared page of its own, whether it holds a place, so that the
//!   parent can give back the place of a worker that died holding one.
//! - *Pool exhausted*: with every worker busy, new clients wait in the
//!   kernel's queue (not an error; try `--workers 2` with three clients).
//! - *The parent is killed* (`kill -9`): each worker asked the kernel for
//!   SIGTERM when its parent dies (`PR_SET_PDEATHSIG`), so none is left
//!   accepting on the orphaned listener.
//! - *Shutdown*: the parent's signal handler shuts the listener down, which
//!   fails every worker's `accept` with `EINVAL`; the parent sends each
//!   worker `SIGTERM` so it drains its current connection, and `SIGKILL`s
//!   those still alive at the drain timeout.
//!
//! Next, `threads` trades processes for threads: cheaper to start, sharing
//! memory, but no longer isolated from each other's crashes.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::OnceLock;

use crate::server::config::Config;
use crate::server::handler;
use crate::server::listener::Acceptor;
use crate::server::shutdown;
use crate::sys::{counters, Blocking, SharedMem, Stream};

use super::process;

/// The most workers the pool may have.
pub const MAX_WORKERS: usize = 1024;

/// Per worker slot: whether that worker holds a `MAX_CONNS` place.
static HOLDS_PLACE: OnceLock<SharedMem<[AtomicBool; MAX_WORKERS]>> = OnceLock::new();

/// Gives back the place of the worker in `slot`, exactly once whether the
/// worker does it or the parent does after the worker died.
fn give_back(slot: usize) {
    if let Some(holds) = HOLDS_PLACE.get() {
        if holds[slot].swap(false, SeqCst) {
            counters::close_conn();
        }
    }
}

/// Forks `--workers` processes that accept and serve; the calling process
/// supervises them.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    if config.workers > MAX_WORKERS {
        return Err(io::Error::other(format!(
            "prefork: at most {MAX_WORKERS} workers"
        )));
    }
    // SAFETY: an array of atomic booleans: all-zero bytes are `false`, and
    // atomics work across processes in shared memory.
    let holds = unsafe { SharedMem::zeroed() }?;
    let _ = HOLDS_PLACE.set(holds);
    process::install(config.workers, give_back)?;
    let mut acceptor = Acceptor::new(listener, Blocking::Yes, config.max_conns)?.stop_on_signal();

    // Keep the pool full until a stop signal, sleeping in between.
    loop {
        while process::live() < config.workers && !shutdown::requested() {
            // Each worker inherits its own copy of the acceptor (and so of
            // the listening socket) through the fork.
            process::spawn(|slot| worker(slot, &mut acceptor, config))?;
        }
        if shutdown::requested() {
            break;
        }
        process::wait_for_signal_unless(|| {
            shutdown::requested() || process::live() < config.workers
        });
    }
    process::stop_all(config.drain_timeout);
    Ok(())
}

/// A worker's life: accept, serve, repeat, until the listener is shut down.
fn worker(slot: usize, acceptor: &mut Acceptor, config: &Config) {
    let holds = HOLDS_PLACE.get().expect("set before any worker is forked");
    while let Ok(Some(conn)) = handler::accept_next(acceptor) {
        let (fd, place) = conn.into_parts();
        // From here the shared page, not `place`, says who gives it back.
        holds[slot].store(true, SeqCst);
        place.keep();
        let mut stream = shutdown::Serving::mark(Stream::new(fd));
        handler::handle(&mut *stream, config);
        drop(stream);
        give_back(slot);
    }
}
