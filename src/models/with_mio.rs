//! # `mio` — the same loop on the crate tokio stands on
//!
//! [mio](https://docs.rs/mio) is the thin, portable layer between tokio and
//! epoll (kqueue on the BSDs, IOCP on Windows). A `mio::Poll` is an epoll
//! instance; `Registry::register` is `epoll_ctl(ADD)`; `Poll::poll` is
//! `epoll_wait`. mio registers everything **edge-triggered**, always, which
//! is why its users read and write until `WouldBlock`.
//!
//! This model is the `epoll --edge` loop with mio doing the waiting, and
//! nothing else changed: the same [`Driver`] advances the same connection
//! state machines. So comparing `mio` with `epoll --edge` measures what
//! mio's abstraction costs (the answer: next to nothing), not a difference
//! in how two people wrote a parser. (`lab bench` runs `epoll`
//! level-triggered only; the comparison with `--edge` is made by hand.)
//!
//! Syscalls made inside mio are counted here, one `epoll_wait` per
//! `Poll::poll` and one `epoll_ctl` per `register`/`deregister`, which is
//! exactly what mio does on Linux; the reads and writes go through
//! [`crate::sys`] as in every model.
//!
//! The differences from our own `epoll` model are mio's, and instructive:
//! mio asks for deregistration before a socket is closed (the driver hands
//! closed sockets over still open for that), and its listener is
//! edge-triggered too, so an accept that stops at its budget must try again
//! without waiting for another event.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};

use crate::server::config::Config;
use crate::server::driver::{Change, Driver, Ready, Token, Trigger};
use crate::server::listener::Acceptor;
use crate::server::shutdown;
use crate::sys::counters::{bump, Counter};
use crate::sys::Blocking;

const LISTENER: mio::Token = mio::Token(usize::MAX);
const WAKE: mio::Token = mio::Token(usize::MAX - 1);

/// Serves every connection from one thread, waiting with mio.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let registry = poll.registry().try_clone()?;
    bump(Counter::EpollCtl);
    registry.register(
        &mut SourceFd(&listener.as_raw_fd()),
        LISTENER,
        Interest::READABLE,
    )?;
    bump(Counter::EpollCtl);
    registry.register(
        &mut SourceFd(&shutdown::wake_fd().as_raw_fd()),
        WAKE,
        Interest::READABLE,
    )?;
    let acceptor = Acceptor::new(listener, Blocking::No, config.max_conns)?;
    // Edge-triggered listener: connections queued beyond the accept budget
    // raise no new event; the driver keeps that as deferred work. Those
    // queued before registration are taken now, before the first wait.
    let mut driver = Driver::new(acceptor, config, Trigger::Edge);
    driver.accept_ready()?;

    loop {
        let timeout = driver.tick();
        for change in driver.changes() {
            if !matches!(change, Change::Interest { .. }) {
                bump(Counter::EpollCtl); // register or deregister
            }
            match change {
                Change::Opened { token, fd, .. } => {
                    let token = mio::Token(token.0 as usize);
                    registry.register(
                        &mut SourceFd(&fd),
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                }
                Change::Closed { socket, .. } => {
                    registry.deregister(&mut SourceFd(&socket.as_raw_fd()))?
                }
                Change::ListenerClosed { listener } => {
                    registry.deregister(&mut SourceFd(&listener.as_raw_fd()))?
                }
                // Registered for both directions once: interest never changes.
                Change::Interest { .. } => {}
            }
        }
        if driver.finished() {
            return Ok(());
        }
        bump(Counter::EpollWait);
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            match event.token() {
                LISTENER => driver.accept_ready()?,
                WAKE => {} // `tick` sees the request
                token => {
                    let trouble = event.is_error();
                    let ready = Ready {
                        readable: trouble || event.is_readable() || event.is_read_closed(),
                        writable: trouble || event.is_writable() || event.is_write_closed(),
                        read_closed: trouble || event.is_read_closed(),
                    };
                    driver.service(Token(token.0 as u64), ready);
                }
            }
        }
        driver.run_deferred()?;
    }
}
