//! # `threadpool` — a fixed pool of threads fed by a queue
//!
//! `threads` spawns without limit: a burst of 50,000 clients means 50,000
//! threads. A pool caps that. The main thread accepts and *produces*
//! connections into a queue; `--workers` threads *consume* them, each
//! serving one connection at a time with the same blocking handler. This is
//! the producer–consumer pattern, and the shape of Java's classic
//! `ExecutorService` servers and of Python's `ThreadPoolExecutor` ones.
//!
//! ## One request, step by step
//!
//! ```text
//! main thread              queue          worker thread              client
//! accept() .. blocks ..                   take() .. blocks ..        connect()
//!          returns fd                     (a futex, not a socket)
//! put(fd) ──────────────►  [fd] ───────►          returns fd
//! accept() .. blocks ..                   read(fd) .. blocks ..      "hi\n"
//!                                         write(fd, "HI\n")
//!                                         read(fd) → 0, close(fd)
//!                                         recv() .. blocks ..
//! ```
//!
//! ## Costs
//!
//! - **Syscalls per request:** `recv` + `send`, and per connection one
//!   queue hand-off (a futex wake when a worker was waiting).
//! - **Memory:** `--workers` threads, whatever the load, plus a small entry
//!   per queued connection.
//! - **At 10,000 clients:** `--workers` are served; the rest wait *in the
//!   queue* (accepted, counted toward `MAX_CONNS`, but not read). With
//!   long-lived clients the pool is exhausted and latency is the time until
//!   a worker frees up (try `--workers 2` with three `lab client`s).
//!
//! ## Failure modes, and what the code does
//!
//! - *`MAX_CONNS`*: a queued connection holds a place just like a served
//!   one. The queue's bound is therefore `MAX_CONNS` itself: the producer can
//!   never block on a full queue (which, at shutdown, could deadlock it
//!   behind workers stuck on idle clients); connections beyond the limit are
//!   turned away with the protocol's error line instead.
//! - *Shutdown*: as in `threads`. Connections still queued are registered
//!   too, so their read sides are shut down with the rest: a worker that
//!   picks one up late answers its buffered lines and closes it at once.
//!
//! Next, the readiness models drop the idea of one thread per client
//! altogether: one thread asks the kernel which clients are ready.

use std::io;
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::Mutex;

use crate::server::config::Config;
use crate::server::handler;
use crate::server::listener::Acceptor;
use crate::server::shutdown::{self, Connections};
use crate::sys::{counters, Blocking, Stream};

use super::threads::STACK_SIZE;

/// Accepts on the calling thread and queues connections for `--workers`
/// pool threads.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let mut acceptor = Acceptor::new(listener, Blocking::Yes, config.max_conns)?.stop_on_signal();
    let connections = Connections::default();
    // The queue is bounded by MAX_CONNS without a bound of its own: every
    // queued connection holds a place (see the module doc).
    let (queue, jobs) = mpsc::channel();
    let jobs = Mutex::new(jobs);

    std::thread::scope(|scope| {
        for i in 0..config.workers {
            shutdown::spawn_without_signals(|| {
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .stack_size(STACK_SIZE)
                    .spawn_scoped(scope, || worker(&jobs, config))
            })?;
        }
        while let Some(conn) = handler::accept_next(&mut acceptor)? {
            let (fd, place) = conn.into_parts();
            let stream = connections.register(Stream::new(fd));
            // Cannot fail: the receiving end lives in this function. (If
            // every worker had panicked, connections would wait unserved
            // until the drain; a worker's panic is a bug, not a load.)
            let _ = queue.send((stream, place));
        }
        // Closing the queue tells the workers to stop once it is empty.
        drop(queue);
        connections.drain(config.drain_timeout);
        Ok(())
    })
}

type Job<'a> = (
    shutdown::Registered<'a, Stream>,
    crate::server::listener::ConnPermit,
);

/// A pool thread: take the next connection, serve it, repeat.
fn worker(jobs: &Mutex<mpsc::Receiver<Job<'_>>>, config: &Config) {
    loop {
        // Hold the lock only to take a job, not while serving it.
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok((mut stream, place)) = job else { return };
        handler::handle(&mut *stream, config);
        drop(stream);
        drop(place);
        // Now, not at thread exit: the scope's join does not wait for
        // thread-local destructors (see counters), and the status line
        // should see this connection's counts.
        counters::flush();
    }
}
