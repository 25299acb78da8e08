//! # `threads` — a thread per connection
//!
//! Like `fork`, but each client gets a *thread* instead of a process: the
//! main thread accepts, spawns a thread that runs the same blocking handler,
//! and goes back to `accept`. Threads are cheaper to start than processes
//! and share one address space, so the counters are plain memory; in
//! exchange a bug in one connection's code can corrupt (or, if it aborts,
//! kill) them all.
//!
//! ## One request, step by step
//!
//! ```text
//! main thread                     connection thread                client
//! accept() ..... blocks .....                                      connect()
//!          returns fd
//! spawn ──────────────────────►  read(fd) .... blocks .....        "hi\n"
//! accept() ..... blocks .....             returns 3 bytes
//!                                 write(fd, "HI\n")
//!                                 read(fd) .... blocks .....       close()
//!                                          returns 0; thread ends
//! ```
//!
//! The handler is [`handler::handle`], *the same function* that `blocking`,
//! `fork` and `prefork` run, and that the coroutine model runs on a
//! coroutine: the code is written as if it blocks, and here it really does.
//!
//! ## Costs
//!
//! - **Syscalls per request:** `read` + `write`; per connection a `clone`
//!   (a few microseconds: cheaper than `fork`, which copies page tables).
//! - **Memory per connection:** a thread's kernel structures plus its stack.
//!   We ask for [`STACK_SIZE`] of *virtual* stack; only the pages touched
//!   become resident. Measured here: about 22 KiB of resident memory per
//!   connection in all, stack and the handler's buffers included.
//! - **At 10,000 clients:** 10,000 threads. Linux copes (the limits are
//!   `kernel.threads-max`, `kernel.pid_max` and memory), but every context
//!   switch is a trip through the kernel scheduler, and 10,000 runnable
//!   threads on 2 cores spend much of their time being switched.
//!
//! ## Failure modes, and what the code does
//!
//! - *`MAX_CONNS`*: checked before spawning; the place is held by the
//!   thread and given back when it ends.
//! - *Thread creation fails* (`EAGAIN`): the connection, moved into the
//!   thread that could not start, is closed without a word (unlike `fork`,
//!   which can still say `error: too many connections`); others carry on.
//! - *Shutdown*: the stop signal goes to the main thread only (connection
//!   threads are spawned with it blocked), whose `accept` fails because the
//!   listener was shut down. It then shuts down the read side of every open
//!   connection ([`shutdown::Connections`]), so each thread's `read` returns
//!   what is buffered and then 0, and the thread answers and ends; threads
//!   still writing at the drain timeout have their sockets shut down
//!   entirely. Then the scope joins every thread.
//!
//! Next, `threadpool` caps the number of threads and reuses them.

use std::io;
use std::net::TcpListener;

use crate::server::config::Config;
use crate::server::handler;
use crate::server::listener::Acceptor;
use crate::server::shutdown::{self, Connections};
use crate::sys::{counters, Blocking, Stream};

/// Virtual stack per connection thread. The handler keeps its buffers on
/// the heap and needs a few KiB of stack; the std default (2 MiB) only
/// wastes address space.
pub const STACK_SIZE: usize = 256 * 1024;

/// Accepts on the calling thread and spawns a thread per connection.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let mut acceptor = Acceptor::new(listener, Blocking::Yes, config.max_conns)?.stop_on_signal();
    let connections = Connections::default();
    // A scope, so that threads may borrow `config` and `connections`, and
    // so that leaving it joins every thread.
    std::thread::scope(|scope| {
        while let Some(conn) = handler::accept_next(&mut acceptor)? {
            let (fd, place) = conn.into_parts();
            let mut stream = connections.register(Stream::new(fd));
            let spawned = shutdown::spawn_without_signals(|| {
                std::thread::Builder::new()
                    .name("conn".into())
                    .stack_size(STACK_SIZE)
                    .spawn_scoped(scope, move || {
                        handler::handle(&mut *stream, config);
                        drop(place);
                        // Before the thread ends: the scope's join does not
                        // wait for thread-local destructors (see counters).
                        counters::flush();
                    })
            });
            // On failure the closure, and with it the connection, is dropped.
            drop(spawned);
        }
        connections.drain(config.drain_timeout);
        Ok(())
    })
}
