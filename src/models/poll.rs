//! # `poll` — readiness without the 1,024 ceiling
//!
//! `select` passes three bitmaps capped at 1,024 descriptors and destroys
//! them on return. `poll(2)` (System V, 1986) passes an *array* of
//! `pollfd { fd, events, revents }`: any number of descriptors, what we want
//! in `events`, what happened in `revents`, so the array survives the call
//! and is reused as it is. That fixes `select`'s limit and its rebuild.
//!
//! What it does not fix: every call still copies the whole array into the
//! kernel, which polls every descriptor in it, and the loop then scans the
//! whole array for the few `revents` that are set. With 10,000 mostly idle
//! connections, each wakeup is 10,000 checks to find one ready socket.
//! `epoll` fixes that.
//!
//! ## One request, step by step
//!
//! ```text
//! loop                                        kernel              client
//! poll([wake, listener, c1..cn]) .. blocks ..                    "hi\n"
//!                                             checks all n+2
//!         returns 1
//! scan the array: c7.revents = POLLIN
//! read(c7)  → "hi\n"
//! write(c7, "HI\n")
//! poll([...]) ......... blocks ........
//! ```
//!
//! ## Keeping the array in step
//!
//! The array holds the shutdown eventfd, the listener, then one entry per
//! connection. A connection's position is kept in `position` (indexed by
//! its slot), so changing its interest is O(1); a closed connection's entry
//! is replaced by the last one (`swap_remove`), which is O(1) too, at the
//! price of fixing the moved entry's position.
//!
//! ## Costs
//!
//! - **Syscalls per request:** `poll` + `read` + `write`, like `epoll`; but
//!   each `poll` costs O(connections) in the kernel and in our scan.
//! - **Memory per connection:** an 8-byte `pollfd`, its token and its
//!   position, plus the shared [`Conn`](crate::server::conn::Conn) state.
//! - **At 10,000 clients:** it works, and every wakeup walks 10,000 entries.
//!
//! ## Failure modes
//!
//! As `epoll` (the [`Driver`] handles them), plus one of its own: the cost
//! of a wakeup grows with the number of idle connections.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use crate::server::config::Config;
use crate::server::conn::Interest;
use crate::server::driver::{Change, Driver, Ready, Token, Trigger};
use crate::server::listener::Acceptor;
use crate::server::shutdown;
use crate::sys::readiness::{poll, PollFd};
use crate::sys::Blocking;

/// Fixed positions in the array.
const WAKE: usize = 0;
const LISTENER: usize = 1;
const FIRST_CONN: usize = 2;

/// The `pollfd` array and what each entry belongs to.
struct PollSet {
    fds: Vec<PollFd>,
    /// The token of the connection at each position (from `FIRST_CONN`).
    tokens: Vec<Token>,
    /// The position of each slot's connection in `fds`.
    position: Vec<usize>,
}

/// Serves every connection from one thread with `poll(2)`.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let mut set = PollSet {
        fds: vec![
            PollFd::new(shutdown::wake_fd().as_raw_fd(), libc::POLLIN),
            PollFd::new(listener.as_raw_fd(), libc::POLLIN),
        ],
        tokens: vec![Token(0), Token(0)],
        position: Vec::new(),
    };
    let acceptor = Acceptor::new(listener, Blocking::No, config.max_conns)?;
    let mut driver = Driver::new(acceptor, config, Trigger::Level);

    loop {
        let timeout = driver.tick();
        for change in driver.changes() {
            set.apply(change);
        }
        if driver.finished() {
            return Ok(());
        }
        match poll(&mut set.fds, timeout) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if set.fds[WAKE].revents() != 0 {
            // The eventfd stays readable; stop asking (`tick` saw the request).
            set.fds[WAKE].set_fd(-1);
        }
        if set.fds[LISTENER].revents() != 0 {
            // Level-triggered: if the budget left some, we hear again.
            driver.accept_ready()?;
        }
        // Only entries present before this wakeup have `revents`; entries
        // appended by `accept_ready` above are not in the array yet.
        for i in FIRST_CONN..set.fds.len() {
            let revents = set.fds[i].revents();
            if revents != 0 {
                driver.service(set.tokens[i], ready(revents));
            }
        }
    }
}

impl PollSet {
    /// Mirrors one change of the driver's in the array.
    fn apply(&mut self, change: Change) {
        match change {
            Change::Opened {
                token,
                fd,
                interest,
            } => {
                let slot = token.index();
                if self.position.len() <= slot {
                    self.position.resize(slot + 1, 0);
                }
                self.position[slot] = self.fds.len();
                self.fds.push(PollFd::new(fd, events(interest)));
                self.tokens.push(token);
            }
            Change::Interest {
                token, interest, ..
            } => {
                let at = self.position[token.index()];
                self.fds[at].set_events(events(interest));
            }
            Change::Closed { token, .. } => {
                let at = self.position[token.index()];
                self.fds.swap_remove(at);
                self.tokens.swap_remove(at);
                if let Some(moved) = self.tokens.get(at) {
                    self.position[moved.index()] = at;
                }
            }
            Change::ListenerClosed { .. } => self.fds[LISTENER].set_fd(-1),
            // (Each closed socket is dropped, and so closed, on return.)
        }
    }
}

fn events(interest: Interest) -> libc::c_short {
    let mut events = 0;
    if interest.read {
        events |= libc::POLLIN;
    }
    if interest.write {
        events |= libc::POLLOUT;
    }
    events
}

/// `POLLERR`, `POLLHUP` and `POLLNVAL` are reported whatever was asked;
/// the next `read` or `write` surfaces the error.
fn ready(revents: libc::c_short) -> Ready {
    let trouble = revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
    Ready {
        readable: trouble || revents & libc::POLLIN != 0,
        writable: trouble || revents & libc::POLLOUT != 0,
        read_closed: false, // level-triggered: not needed
    }
}
