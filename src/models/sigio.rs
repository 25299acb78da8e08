//! # `sigio` — signal-driven IO
//!
//! Stevens' fourth IO model: instead of asking which sockets are ready, ask
//! the kernel to *tell* us, with a signal, when one becomes ready. Each
//! socket is set `O_ASYNC`, owned by this process (`F_SETOWN`), and given a
//! realtime signal (`F_SETSIG`). Realtime signals queue (plain signals do
//! not), and each carries a `siginfo` with the descriptor (`si_fd`) and why
//! it fired (`si_band`: `POLLIN`, `POLLOUT`…) — so the queue of signals *is*
//! a queue of readiness events, the idea epoll later put in a proper API.
//!
//! We never let a handler run: the IO signal is blocked, and the loop takes
//! signals one at a time, synchronously, with `sigtimedwait`, whose timeout
//! comes from the idle timers. (Even the stop signals, SIGINT, SIGTERM and
//! SIGHUP, are taken that way here, so there is no race between checking
//! for shutdown and waiting.)
//!
//! ## One request, step by step
//!
//! ```text
//! loop                                      kernel                client
//! sigtimedwait({SIGRT, SIGIO}) .. blocks ..                        "hi\n"
//!                                           data on c7: queue
//!                                           SIGRT{fd=7, band=POLLIN}
//!         returns that siginfo
//! read(c7) → "hi\n"    read(c7) → EAGAIN   (edge-triggered: drain it)
//! write(c7, "HI\n")
//! sigtimedwait(...) .. blocks ..
//! ```
//!
//! ## Why it fell out of use: the queue overflows
//!
//! The realtime queue is bounded (`RLIMIT_SIGPENDING`, which the kernel
//! sizes from the machine's memory: 96,365 on the lab's machine; it is
//! shared with every other queued signal of the user). When it
//! is full the kernel drops the event and raises plain `SIGIO` instead,
//! which says only "something, somewhere, was lost". The model must then
//! find out for itself: here, one `poll(2)` over the listener and every
//! connection, servicing whatever is ready, and carrying on. Nothing is lost
//! — but a server under load falls back to `poll` exactly when it matters,
//! and signals for closed (and reused) descriptors can still be queued,
//! which is harmless here only because servicing a socket that is not ready
//! costs one `EAGAIN`. The summary's `overflows` counts the fallbacks; the
//! test suite forces them by lowering `RLIMIT_SIGPENDING`.
//!
//! ## Costs
//!
//! - **Syscalls per request:** a `sigtimedwait` per *event* (no batching:
//!   one signal, one syscall), the `read`s to `EAGAIN`, the `write`; plus
//!   four `fcntl`s per connection to make it signal-driven.
//! - **At 10,000 clients:** fine while the queue holds; a burst longer than
//!   the queue falls back to `poll` over all 10,000.
//!
//! Next, io_uring (`uring`) goes further still: not "this socket is ready",
//! but "this read is done".

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use crate::server::config::Config;
use crate::server::driver::{Change, Driver, Ready, Token, Trigger};
use crate::server::listener::Acceptor;
use crate::server::shutdown;
use crate::sys::counters::{self, Counter};
use crate::sys::readiness::{block_signals, poll, set_signal_driven, sigtimedwait, PollFd};
use crate::sys::Blocking;

/// Serves every connection from one thread, woken by realtime signals.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let io_signal = libc::SIGRTMIN();
    let mut signals = vec![io_signal, libc::SIGIO];
    signals.extend(shutdown::STOP_SIGNALS.map(|s| s as libc::c_int));
    let waited = block_signals(&signals)?;
    let listener_fd = listener.as_raw_fd();
    set_signal_driven(listener_fd, io_signal)?;
    let acceptor = Acceptor::new(listener, Blocking::No, config.max_conns)?;
    let mut driver = Driver::new(acceptor, config, Trigger::Edge);
    // Which connection each descriptor number belongs to.
    let mut owner: Vec<Option<Token>> = Vec::new();
    let mut opened: Vec<Token> = Vec::new();
    // Connections queued before the listener was signal-driven raised no
    // signal: accept them now. (An accept that stops at its budget gets no
    // new signal for the rest either, signals being edges; the driver keeps
    // that as deferred work.)
    driver.accept_ready()?;

    loop {
        let timeout = driver.tick();
        // Mirror every change before sleeping. Bytes that arrived before a
        // new socket was made signal-driven raised no signal, so each new
        // connection is serviced once, which may change more: repeat until
        // nothing is left.
        loop {
            for change in driver.changes() {
                match change {
                    Change::Opened { token, fd, .. } => {
                        set_signal_driven(fd, io_signal)?;
                        set_owner(&mut owner, fd, Some(token));
                        opened.push(token);
                    }
                    Change::Closed { socket, .. } => {
                        set_owner(&mut owner, socket.as_raw_fd(), None)
                    }
                    Change::Interest { .. } | Change::ListenerClosed { .. } => {}
                }
            }
            if opened.is_empty() {
                break;
            }
            for token in opened.drain(..) {
                driver.service_unwatched(token);
            }
        }
        if driver.finished() {
            return Ok(());
        }
        // Don't sleep while work is known: connections deferred by the read
        // budget (servicing the new ones above may have added some) or
        // still queued on the listener.
        let timeout = if driver.has_deferred() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        match sigtimedwait(&waited, timeout) {
            Ok(Some(info)) if info.signo == io_signal => {
                if Some(info.fd) == driver.listener_fd() {
                    driver.accept_ready()?;
                } else if let Some(token) = owner.get(info.fd as usize).copied().flatten() {
                    driver.service(token, ready(info.band));
                }
            }
            Ok(Some(info)) if info.signo == libc::SIGIO => {
                counters::bump(Counter::Overflows);
                poll_everything(&mut driver)?;
            }
            Ok(Some(_)) => shutdown::request(), // a stop signal
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        driver.run_deferred()?;
    }
}

/// The realtime queue overflowed and events were lost: ask `poll` about
/// every descriptor once, and service whatever is ready.
fn poll_everything(driver: &mut Driver) -> io::Result<()> {
    let mut fds: Vec<PollFd> = driver
        .conns()
        .map(|(_, fd, _)| PollFd::new(fd, libc::POLLIN | libc::POLLOUT))
        .collect();
    let tokens: Vec<Token> = driver.conns().map(|(token, _, _)| token).collect();
    if let Some(fd) = driver.listener_fd() {
        fds.push(PollFd::new(fd, libc::POLLIN));
    }
    poll(&mut fds, Some(Duration::ZERO))?;
    for (i, &token) in tokens.iter().enumerate() {
        let revents = fds[i].revents();
        if revents != 0 {
            driver.service(token, ready(revents.into()));
        }
    }
    if fds.len() > tokens.len() && fds[tokens.len()].revents() != 0 {
        driver.accept_ready()?;
    }
    Ok(())
}

fn set_owner(owner: &mut Vec<Option<Token>>, fd: RawFd, token: Option<Token>) {
    let fd = fd as usize;
    if owner.len() <= fd {
        owner.resize(fd + 1, None);
    }
    owner[fd] = token;
}

/// `si_band` holds poll bits; an error or hang-up is both directions.
fn ready(band: libc::c_long) -> Ready {
    let band = band as libc::c_short;
    let trouble = band & (libc::POLLERR | libc::POLLHUP) != 0;
    Ready {
        readable: trouble || band & (libc::POLLIN | libc::POLLRDNORM | libc::POLLPRI) != 0,
        writable: trouble || band & (libc::POLLOUT | libc::POLLWRNORM) != 0,
        // A half-close raises its own POLL_IN signal (tcp_fin), so a short
        // read never hides the end of stream here; a full close says HUP.
        read_closed: trouble,
    }
}
