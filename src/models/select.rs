//! # `select` — the first multiplexer
//!
//! The non-blocking sweep asks every socket "anything for me?" and burns a
//! core doing it. `select(2)` (4.2BSD, 1983) moves the question into the
//! kernel: hand it sets of descriptors, and it puts the thread to sleep
//! until at least one of them can read or write without blocking. One
//! thread now serves every connection, and sleeps when none has anything.
//!
//! ## One request, step by step
//!
//! ```text
//! loop                                          kernel           client
//! FD_ZERO, FD_SET(wake, listener, c1..cn)
//! select(n+1, &read, &write, ...) .. blocks ..                   "hi\n"
//!                                               checks all n
//!         returns 1; the sets now hold only the ready descriptors
//! for each connection: FD_ISSET(ci, &read)?  → c7
//! read(c7)  → "hi\n"
//! write(c7, "HI\n")
//! rebuild the sets from scratch (select overwrote them)
//! ```
//!
//! ## The 1,024 limit
//!
//! An `fd_set` is a bitmap of `FD_SETSIZE` = 1,024 bits, fixed when glibc
//! was compiled. A descriptor numbered 1,024 or more *cannot be put in one*:
//! `FD_SET(1500, &set)` writes past the end of the bitmap, corrupting
//! whatever lies after it — undefined behaviour that real servers have
//! shipped. This model checks every descriptor it accepts; one that is too
//! high gets `error: too many connections` and is closed (the test suite
//! checks it). So `select` serves at most about 1,016 clients (the server's
//! own descriptors take the lowest numbers), however high `ulimit -n` is. The [`FdSet`] wrapper refuses such a descriptor too.
//!
//! ## Costs
//!
//! - **Syscalls per request:** `select` + `read` + `write`.
//! - **Work per wakeup:** O(highest descriptor): the sets are rebuilt before
//!   every call (select overwrites them), copied into the kernel, checked bit
//!   by bit, copied back, and scanned by us.
//! - **At 10,000 clients:** impossible (the limit above).
//!
//! Next, `poll` replaces the bitmaps with an array: no limit, no rebuild.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use crate::server::config::Config;
use crate::server::driver::{Driver, Ready, Token, Trigger};
use crate::server::listener::Acceptor;
use crate::server::shutdown;
use crate::sys::readiness::{select, FdSet, FD_SETSIZE};
use crate::sys::Blocking;

/// Serves every connection from one thread with `select(2)`.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let listener_fd = listener.as_raw_fd();
    let wake_fd = shutdown::wake_fd().as_raw_fd();
    if listener_fd.max(wake_fd) as usize >= FD_SETSIZE {
        return Err(io::Error::other(
            "the listener's descriptor does not fit in an fd_set",
        ));
    }
    // A connection whose descriptor would not fit is turned away at accept.
    let acceptor =
        Acceptor::new(listener, Blocking::No, config.max_conns)?.with_fd_limit(FD_SETSIZE);
    let mut driver = Driver::new(acceptor, config, Trigger::Level);
    let mut wake_seen = false;
    let mut candidates: Vec<(Token, i32)> = Vec::new();

    loop {
        let timeout = driver.tick();
        // select rebuilds its sets every time, so there is nothing to
        // mirror: the changes are simply dropped.
        driver.changes().for_each(drop);
        if driver.finished() {
            return Ok(());
        }

        let (mut read, mut write) = (FdSet::new(), FdSet::new());
        let mut highest = -1;
        let mut watch = |set: &mut FdSet, fd: i32| {
            set.insert(fd);
            highest = highest.max(fd);
        };
        if !wake_seen {
            watch(&mut read, wake_fd);
        }
        if let Some(fd) = driver.listener_fd() {
            watch(&mut read, fd);
        }
        for (_, fd, interest) in driver.conns() {
            if interest.read {
                watch(&mut read, fd);
            }
            if interest.write {
                watch(&mut write, fd);
            }
        }

        match select(highest + 1, &mut read, &mut write, timeout) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        wake_seen |= read.contains(wake_fd);
        // The connections to look at are those open *before* accepting:
        // a newly accepted descriptor was not in the sets.
        candidates.clear();
        candidates.extend(driver.conns().map(|(token, fd, _)| (token, fd)));
        if driver.listener_fd().is_some_and(|fd| read.contains(fd)) {
            // Level-triggered: if the budget left some, we hear again.
            driver.accept_ready()?;
        }
        for &(token, fd) in &candidates {
            let ready = Ready {
                readable: read.contains(fd),
                writable: write.contains(fd),
                read_closed: false, // level-triggered: not needed
            };
            if ready.readable || ready.writable {
                driver.service(token, ready);
            }
        }
    }
}
