//! # `epoll` — readiness that scales with the number of *ready* sockets
//!
//! `poll` hands the kernel the whole list of descriptors on every call, and
//! the kernel walks it every time, so each wakeup costs O(connections) even
//! when one socket is ready. `epoll(7)` keeps the interest list *in the
//! kernel*: descriptors are registered once with `epoll_ctl`, each socket
//! puts itself on the epoll's ready list when data arrives, and
//! `epoll_wait` only copies out that ready list. A wakeup costs O(ready).
//! This is the model of nginx, Redis, libuv, and of tokio and mio on Linux.
//!
//! ## One request, step by step (level-triggered)
//!
//! ```text
//! loop                                   kernel                     client
//! epoll_wait(ep) ....... blocks ......                              connect()
//!                                        listener ready
//!         returns [listener]
//! accept4() → fd (non-blocking)
//! epoll_ctl(ADD, fd, EPOLLIN)   (once per connection)
//! epoll_wait(ep) ....... blocks ......                              "hi\n"
//!                                        fd on the ready list
//!         returns [fd]
//! read(fd)  → "hi\n"     (copied kernel → user)
//! write(fd, "HI\n")      (copied user → kernel; the send buffer had room,
//!                         so no EPOLLOUT round trip: epoll_ctl only when
//!                         a connection's interest really changes)
//! epoll_wait(ep) ....... blocks ......
//! ```
//!
//! ## Level- or edge-triggered (`--edge`)
//!
//! By default a ready socket is reported on *every* `epoll_wait` until it is
//! drained, so one `read` per report is enough and nothing can be missed.
//! With `--edge` (`EPOLLET`) each socket is registered once for reading
//! *and* writing and reported only when its state changes: the loop must
//! read until `EAGAIN` (or it will never hear of the rest), remember what it
//! knows is ready, and — so one client streaming megabytes cannot starve the
//! others — stop after a budget of reads and come back to the connection
//! after the others have had their turn (see [`crate::server::driver`]). Edge mode
//! never calls `epoll_ctl` after the `ADD`; level mode calls it when a
//! connection starts or stops waiting to write. The summary counts both.
//!
//! ## Costs
//!
//! - **Syscalls per request:** one `epoll_wait` (shared by every connection
//!   ready at that moment), one `recv`, one `send`: about 3 at one request
//!   per wakeup, approaching 2 as wakeups batch more connections. Edge mode
//!   would add a `recv` that returns `EAGAIN`, but a short read already
//!   says the socket is drained (see [`crate::server::driver`]), so it does not.
//! - **Memory per connection:** the [`crate::server::conn::Conn`] state (~100 bytes,
//!   no buffers while idle), a kernel `epitem` (~128 bytes), the socket.
//! - **At 10,000 clients:** fine; 10,000 idle sockets cost memory, not time.
//!
//! ## Failure modes, and what the code does
//!
//! - *A stale event* for a connection closed earlier in the same batch: the
//!   event carries a [`Token`] with a generation, so it
//!   can never reach the connection that reuses the slot.
//! - *Descriptor exhaustion*: the shared acceptor's spare-descriptor trick
//!   (see [`crate::server::listener::Acceptor`]) keeps a full accept queue from
//!   spinning the loop.
//! - *One loop is one core*: `--workers N` runs N loops on N threads, each
//!   with its own epoll and its own `SO_REUSEPORT` listener, so the kernel
//!   spreads connections across them and no lock is shared. With
//!   `--one-listener` they all watch one listener instead, and a new
//!   connection wakes every loop, of which one gets it: the thundering
//!   herd; `--exclusive` (`EPOLLEXCLUSIVE`) wakes one (`lab demo herd`).
//! - *A slow request stalls the loop*, whether it burns CPU or blocks:
//!   `--offload N` hands each request's cost (`--work-us`, `--block-us`)
//!   to a pool of N threads and hears back through an eventfd in the same
//!   epoll set (see [`crate::server::offload`], and `lab demo offload`).
//! - *Shutdown*: the shutdown eventfd is in every epoll set; the loop then
//!   closes its listener and drains (see [`crate::server::driver::Driver::tick`]).
//!
//! Next, `sigio` tries to do without waiting at all: the kernel *signals*
//! readiness. And io_uring (the `uring` model) changes the question from
//! "which sockets are ready?" to "tell me when this read is done".

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use crate::server::config::Config;
use crate::server::conn::Interest;
use crate::server::driver::{Change, Driver, Ready, Token, Trigger};
use crate::server::listener::Acceptor;
use crate::server::offload::Offload;
use crate::server::shutdown;
use crate::sys::counters;
use crate::sys::readiness::{Epoll, EpollEvent};
use crate::sys::Blocking;

/// The `data` word of the listener's registration. Connection tokens never
/// reach it: their low half is a slot index, far below 2³² − 1.
const LISTENER: u64 = u64::MAX;
/// The `data` word of the shutdown eventfd's registration.
const WAKE: u64 = u64::MAX - 1;

/// The `data` word of the offload pool's eventfd (`--offload`).
const OFFLOAD: u64 = u64::MAX - 2;

/// Events one `epoll_wait` may return.
const EVENTS_PER_WAIT: usize = 1024;

/// Runs `--workers` event loops, each on its own thread with its own epoll
/// and its own listener; the calling thread runs the first.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    super::per_worker(listener, config, "epoll", event_loop)
}

/// One event loop: wait, dispatch, repeat, until the drain is over.
fn event_loop(listener: TcpListener, config: &Config) -> io::Result<()> {
    let trigger = if config.tuning.edge {
        Trigger::Edge
    } else {
        Trigger::Level
    };
    let epoll = Epoll::new()?;
    // The listener stays level-triggered in both modes: the accept budget
    // may leave connections queued, and they must be reported again.
    // `--exclusive`: of the loops watching one shared listener, a new
    // connection wakes one (or a few), not all (Linux 4.5).
    let exclusive = if config.tuning.exclusive {
        libc::EPOLLEXCLUSIVE
    } else {
        0
    };
    epoll.add(
        listener.as_raw_fd(),
        (libc::EPOLLIN | exclusive) as u32,
        LISTENER,
    )?;
    // Edge-triggered: the eventfd stays readable for ever once written, and
    // one report is all we need.
    epoll.add(
        shutdown::wake_fd().as_raw_fd(),
        (libc::EPOLLIN | libc::EPOLLET) as u32,
        WAKE,
    )?;
    let acceptor = Acceptor::new(listener, Blocking::No, config.max_conns)?;
    let mut driver = Driver::new(acceptor, config, trigger);
    if config.tuning.offload > 0 {
        let pool = Offload::start(config.tuning.offload)?;
        // Level-triggered: `offload_done` reads the eventfd back to 0.
        epoll.add(pool.fd(), libc::EPOLLIN as u32, OFFLOAD)?;
        driver = driver.with_offload(pool);
    }
    let mut events: Vec<EpollEvent> = Vec::with_capacity(EVENTS_PER_WAIT);

    loop {
        let timeout = driver.tick();
        for change in driver.changes() {
            apply(&epoll, change, trigger)?;
        }
        if driver.finished() {
            // This loop may run on a scoped thread, whose join does not
            // wait for thread-local counts to be flushed.
            counters::flush();
            return Ok(());
        }
        match epoll.wait(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            let (data, bits) = (event.u64, event.events);
            match data {
                LISTENER => {
                    // Level-triggered: if the budget left some, we hear again.
                    driver.accept_ready()?;
                }
                WAKE => {} // `tick` sees the shutdown request
                OFFLOAD => driver.offload_done()?,
                token => driver.service(Token(token), ready(bits)),
            }
        }
        driver.run_deferred()?;
    }
}

/// Mirrors one change of the driver's in the epoll interest list.
fn apply(epoll: &Epoll, change: Change, trigger: Trigger) -> io::Result<()> {
    match (change, trigger) {
        (
            Change::Opened {
                token,
                fd,
                interest,
            },
            Trigger::Level,
        ) => epoll.add(fd, level_events(interest), token.0),
        (Change::Opened { token, fd, .. }, Trigger::Edge) => {
            let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
            epoll.add(fd, events as u32, token.0)
        }
        (
            Change::Interest {
                token,
                fd,
                interest,
            },
            Trigger::Level,
        ) => epoll.modify(fd, level_events(interest), token.0),
        // Edge mode registered both directions once; nothing ever changes.
        (Change::Interest { .. }, Trigger::Edge) => Ok(()),
        // Dropping the socket closes it, which removes it from every epoll
        // set: no EPOLL_CTL_DEL needed.
        (Change::Closed { .. } | Change::ListenerClosed { .. }, _) => Ok(()),
    }
}

fn level_events(interest: Interest) -> u32 {
    let mut events = 0;
    if interest.read {
        events |= libc::EPOLLIN;
    }
    if interest.write {
        events |= libc::EPOLLOUT;
    }
    events as u32
}

/// What an event's bits mean for the connection. An error or hang-up is
/// both: the next `read` or `write` will report it.
fn ready(bits: u32) -> Ready {
    let bits = bits as libc::c_int;
    let trouble = bits & (libc::EPOLLERR | libc::EPOLLHUP) != 0;
    Ready {
        readable: trouble || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) != 0,
        writable: trouble || bits & libc::EPOLLOUT != 0,
        read_closed: trouble || bits & libc::EPOLLRDHUP != 0,
    }
}
