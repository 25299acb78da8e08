//! # `coro` — the blocking handler on coroutines
//!
//! Every connection runs [`handler::handle`] — *the same function* that
//! serves a connection on a thread in the `threads` model — but on a
//! coroutine of the lab's own runtime ([`crate::coro`]), whose sockets park
//! the coroutine instead of blocking the thread. One thread serves
//! thousands of connections with code that reads like the iterative
//! server. This is what gevent does for Python, made explicit.
//!
//! ## One request, step by step
//!
//! ```text
//! coroutine (connection A)        scheduler / reactor              client
//! handler::handle: read() ──► recv → EAGAIN (a new socket: asked once)
//!                             park A; run B, C ...
//!                             nothing runnable: epoll_wait ..      "hi\n"
//!                                     A's socket ready (recorded)
//!                             resume A
//!            read() ◄──────── recv → "hi\n" (short: queue empty,
//!                                     marked drained)
//! write_all("HI\n") ────────► send → 3 (no park)
//! read() ───────────────────► drained: park A at once, no recv ...
//! ```
//!
//! ## Costs
//!
//! - **Syscalls per request:** `recv` + `send`, plus a share of
//!   `epoll_wait`. A read that comes back short has emptied the socket, so
//!   the next one parks without asking the kernel to hear `EAGAIN`; the
//!   reactor records every edge, so the next line's edge is not lost. That
//!   is the edge-triggered `epoll` model's count, with code shaped like
//!   `threads`.
//! - **Memory per connection:** the coroutine's stack pages actually
//!   touched (64 KiB reserved, one 4 KiB page resident here; a stack that
//!   once went deeper gives the pages below its stack pointer back after a
//!   second parked, see [`crate::coro::trim`]) plus about 420 bytes of
//!   records: 4.4 KiB of PSS per idle connection, measured at 10,000,
//!   since the handler holds no buffer while it waits (23.7 KiB when it
//!   held its 16 KiB read buffer across the wait). Beyond PSS the
//!   kernel's share is the socket's (about 3.7 KiB), not also a 16 KiB
//!   kernel stack and a scheduler entity per connection; and a switch
//!   costs tens of nanoseconds, not microseconds.
//! - **Switches:** user-space, tens of nanoseconds; no kernel scheduler.
//!
//! ## Failure modes
//!
//! - *A coroutine that never yields* (a long computation) stalls every
//!   other connection of its thread: cooperative scheduling. The handler
//!   parks only when its socket has nothing to read or no room to write.
//! - *Stack overflow* hits a guard page and ends the process with a clear
//!   message (see [`crate::coro::stack`]).
//! - *Shutdown*: the stop signal shuts the listener down; the accept loop
//!   ends, shuts down every connection's read side, waits for the
//!   handlers to finish (at most the drain timeout), then closes what is
//!   left.

use std::cell::Cell;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::coro::{self, net::Registration, net::TcpStream, scheduler::Direction};
use crate::server::config::Config;
use crate::server::handler;
use crate::server::listener::{Accepted, Acceptor};
use crate::server::shutdown::{self, Connections};
use crate::sys::{counters, Blocking};

/// Runs `--workers` schedulers, each on its own thread with its own
/// `SO_REUSEPORT` listener; the calling thread runs the first.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    super::per_worker(listener, config, "coro", run_scheduler)
}

fn run_scheduler(listener: TcpListener, config: &Config) -> io::Result<()> {
    let mut config = config.clone();
    // `--tickets yielding` pauses by switching coroutines, as gevent's
    // patched calls do, not by yielding the thread all of them share.
    config.tickets = config
        .tickets
        .map(|desk| desk.pausing_with(coro::yield_now));
    let config = Rc::new(config);
    let outcome = coro::run(move || accept_loop(listener, config));
    counters::flush();
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err(io::Error::other("the accept loop panicked")),
        Err(deadlock) => Err(deadlock.into()),
    }
}

/// The first coroutine: accept, spawn a coroutine per connection, and at
/// shutdown drain them.
fn accept_loop(listener: TcpListener, config: Rc<Config>) -> io::Result<()> {
    // The stop signal's handler shuts the listener down, which makes it
    // readable (waking us) and fails the next accept with EINVAL.
    let mut acceptor = Acceptor::new(listener, Blocking::No, config.max_conns)?.stop_on_signal();
    let registration = Registration::new(&acceptor.as_raw_fd())?;
    let connections = Rc::new(Connections::default());
    while !shutdown::requested() {
        match acceptor.accept() {
            Ok(Accepted::Conn(admitted)) => {
                let (socket, place) = admitted.into_parts();
                let (config, connections) = (config.clone(), connections.clone());
                // The socket goes through a shared cell, so that if no stack
                // can be had (vm.max_map_count) we can still take it back
                // and turn the client away with the protocol's error line.
                let handover = Rc::new(Cell::new(Some((socket, place))));
                let taken = handover.clone();
                let spawned = coro::try_spawn(move || {
                    let Some((socket, place)) = taken.take() else {
                        return;
                    };
                    let Ok(stream) = TcpStream::new(socket) else {
                        return;
                    };
                    let mut stream = connections.register(stream);
                    // The very function the `threads` model runs on a thread.
                    handler::handle(&mut *stream, &config);
                    drop(stream);
                    drop(place);
                });
                if spawned.is_err() {
                    if let Some((socket, _place)) = handover.take() {
                        crate::server::listener::turn_away(socket);
                    }
                }
            }
            Ok(Accepted::Again) => {}
            Ok(Accepted::Empty) => {
                registration.wait(Direction::Read, None);
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    drop(registration);
    drain(&connections, config.drain_timeout);
    Ok(())
}

/// Shuts down every read side, lets the handlers finish for at most
/// `drain_timeout`, then closes what is left and waits for those too.
fn drain(connections: &Connections, drain_timeout: Duration) {
    let deadline = Instant::now() + drain_timeout;
    connections.begin_drain();
    // Connections accepted just before the signal register themselves when
    // their coroutine first runs: let them, so the loop below sees them
    // (they find the drain begun and shut their read side at once).
    coro::yield_now();
    while !connections.is_empty() && Instant::now() < deadline {
        coro::sleep(Duration::from_millis(5));
    }
    connections.force_close();
    while !connections.is_empty() {
        coro::sleep(Duration::from_millis(5));
    }
}

/// The shared handler's view of a coroutine's socket: timeouts that the
/// socket keeps itself (it parks with a deadline) instead of `SO_RCVTIMEO`.
/// Written here, in the model, so that the runtime knows nothing of the
/// server it runs (the dependency points down).
impl handler::Conn for TcpStream {
    fn set_read_timeout(&mut self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout);
        Ok(())
    }

    fn set_write_timeout(&mut self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout);
        Ok(())
    }
}
