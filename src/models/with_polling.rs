//! # `polling` — the same loop on smol's portable poller
//!
//! [polling](https://docs.rs/polling) is the poller under smol and
//! async-io: one small API over epoll, kqueue, event ports, IOCP and plain
//! `poll(2)`. Its default is *oneshot* interest (each event disarms the
//! source until it is re-armed with `modify`), which suits an async runtime
//! waking one task per event. A server loop that keeps state machines wants
//! interest that stays armed, so we ask for `PollMode::Level` and change a
//! source's interest only when the connection's really changes — exactly
//! what our level-triggered `epoll` model does by hand.
//!
//! As with the `mio` model, the waiting is the crate's and everything else
//! is the shared [`Driver`], so `lab bench` comparing `polling` with
//! `epoll` measures the poller and nothing else. The lab counts one
//! `epoll_wait` per `Poller::wait` and one `epoll_ctl` per
//! `add`/`modify`/`delete`, which is a *lower bound*: with a timeout, polling
//! 3.x on Linux also arms a timerfd (`timerfd_settime`), re-arms it and its
//! notifier in the epoll set (two more `epoll_ctl`s) and reads its eventfd,
//! around five syscalls per wait in all (`strace -c -f` shows them). Those
//! are the crate's, made out of our sight; the reads and writes are ours
//! and exact.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use polling::{Event, Events, PollMode, Poller};

use crate::server::config::Config;
use crate::server::conn::Interest;
use crate::server::driver::{Change, Driver, Ready, Token, Trigger};
use crate::server::listener::Acceptor;
use crate::server::shutdown;
use crate::sys::counters::{bump, Counter};
use crate::sys::Blocking;

/// Keys of the listener and the shutdown eventfd. (polling reserves
/// `usize::MAX`; connection tokens stay far below these.)
const LISTENER: usize = usize::MAX - 1;
const WAKE: usize = usize::MAX - 2;

/// Serves every connection from one thread, waiting with polling.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let poller = Poller::new()?;
    let mut events = Events::new();
    add(&poller, listener.as_fd(), Event::readable(LISTENER))?;
    add(&poller, shutdown::wake_fd(), Event::readable(WAKE))?;
    let acceptor = Acceptor::new(listener, Blocking::No, config.max_conns)?;
    let mut driver = Driver::new(acceptor, config, Trigger::Level);
    let mut wake_seen = false;

    loop {
        let timeout = driver.tick();
        for change in driver.changes() {
            match change {
                Change::Opened {
                    token,
                    fd,
                    interest,
                } => {
                    // SAFETY: the driver keeps the socket open until it
                    // hands it back in `Change::Closed`, and we delete it
                    // from the poller there, before dropping it.
                    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                    add(&poller, fd, event(token, interest))?;
                }
                Change::Interest {
                    token,
                    fd,
                    interest,
                } => {
                    bump(Counter::EpollCtl);
                    // SAFETY: as above: the socket is open until `Closed`.
                    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                    poller.modify_with_mode(fd, event(token, interest), PollMode::Level)?;
                }
                Change::Closed { socket, .. } => {
                    bump(Counter::EpollCtl);
                    poller.delete(&socket)?;
                }
                Change::ListenerClosed { listener } => {
                    bump(Counter::EpollCtl);
                    poller.delete(&listener)?;
                }
            }
        }
        if driver.finished() {
            return Ok(());
        }
        events.clear();
        bump(Counter::EpollWait);
        match poller.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            match ev.key {
                LISTENER => {
                    // Level-triggered: if the budget left some, we hear again.
                    driver.accept_ready()?;
                }
                WAKE if !wake_seen => {
                    // The eventfd stays readable for ever: stop asking.
                    wake_seen = true;
                    bump(Counter::EpollCtl);
                    poller.delete(shutdown::wake_fd())?;
                }
                WAKE => {}
                key => {
                    let trouble = ev.is_err().unwrap_or(false) || ev.is_interrupt();
                    let ready = Ready {
                        readable: trouble || ev.readable,
                        writable: trouble || ev.writable,
                        read_closed: false, // level-triggered: not needed
                    };
                    driver.service(Token(key as u64), ready);
                }
            }
        }
    }
}

fn add(poller: &Poller, fd: BorrowedFd<'_>, event: Event) -> io::Result<()> {
    bump(Counter::EpollCtl);
    // SAFETY: every source added here is deleted before it is closed: the
    // listener and connections in `Change::ListenerClosed`/`Closed`, the
    // shutdown eventfd when it fires (or never closed: it lives as long as
    // the process).
    unsafe { poller.add_with_mode(fd.as_raw_fd(), event, PollMode::Level) }
}

fn event(token: Token, interest: Interest) -> Event {
    let key = token.0 as usize;
    match (interest.read, interest.write) {
        (true, true) => Event::all(key),
        (true, false) => Event::readable(key),
        (false, true) => Event::writable(key),
        (false, false) => Event::none(key),
    }
}
