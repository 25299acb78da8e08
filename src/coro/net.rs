//! Sockets that look blocking and are not: `read` and `write` that, where
//! the kernel says `EAGAIN`, park the coroutine until the reactor says the
//! socket is ready, and then try again. Code written for blocking sockets
//! (`Read`, `Write`; the `coro` model adds the handler's trait) runs on them
//! unchanged — gevent's monkey-patching, done by a type instead of a patch.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::scheduler::{self, Direction, SourceKey};
use crate::sys;

/// A descriptor registered with this thread's reactor, deregistered
/// before it closes (so that no event for it can reach whoever gets its
/// number next).
#[derive(Debug)]
pub struct Registration {
    key: SourceKey,
    fd: RawFd,
}

impl Registration {
    /// Registers `fd`, which must be non-blocking and outlive the
    /// registration.
    pub fn new(fd: &impl AsRawFd) -> io::Result<Registration> {
        let fd = fd.as_raw_fd();
        Ok(Registration {
            key: scheduler::register(fd)?,
            fd,
        })
    }

    /// After a call said `EAGAIN`: parks until the descriptor is ready in
    /// `direction` or `deadline` passes. Returns whether the deadline has
    /// passed.
    pub fn wait(&self, direction: Direction, deadline: Option<Instant>) -> bool {
        scheduler::wait_io(self.key, direction, deadline);
        deadline.is_some_and(|at| Instant::now() >= at)
    }

    /// Whether the descriptor may be ready in `direction` (no `EAGAIN`, and
    /// no read that emptied it, since its last event).
    pub fn is_ready(&self, direction: Direction) -> bool {
        scheduler::is_ready(self.key, direction)
    }

    /// Notes that a call left the descriptor drained in `direction`.
    pub fn drained(&self, direction: Direction) {
        scheduler::drained(self.key, direction);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        scheduler::deregister(self.key, self.fd);
    }
}

/// A connected TCP socket served from a coroutine.
#[derive(Debug)]
pub struct TcpStream {
    // Field order: the registration drops (deregisters) before the socket
    // closes.
    registration: Registration,
    socket: OwnedFd,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl TcpStream {
    /// Wraps a connected, non-blocking socket.
    pub fn new(socket: OwnedFd) -> io::Result<TcpStream> {
        let registration = Registration::new(&socket)?;
        Ok(TcpStream {
            registration,
            socket,
            read_timeout: None,
            write_timeout: None,
        })
    }

    /// Runs `op` (a `recv` or `send` of `len` bytes) once the socket may
    /// be ready, parking until it is; `TimedOut` once `timeout` has passed
    /// since the first wait.
    ///
    /// A socket known to be drained is not asked: the coroutine parks at
    /// once, saving the `recv` that would only say `EAGAIN` — one syscall
    /// in three of a request-response exchange. A call that moves fewer
    /// bytes than asked has emptied the receive queue (or filled the send
    /// buffer), so it marks the socket drained as `EAGAIN` would; the
    /// next data brings a new edge, which the reactor records.
    fn retry(
        &self,
        direction: Direction,
        timeout: Option<Duration>,
        len: usize,
        mut op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        // Read the clock only if we must wait: most calls succeed at once.
        let mut deadline = None;
        loop {
            if self.registration.is_ready(direction) {
                match op() {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Ok(n) if n > 0 && n < len => {
                        self.registration.drained(direction);
                        return Ok(n);
                    }
                    other => return other,
                }
            }
            let deadline = *deadline.get_or_insert_with(|| timeout.map(|t| Instant::now() + t));
            if self.registration.wait(direction, deadline) {
                // The deadline passed, but a process stopped for a while
                // (SIGSTOP, a debugger) wakes late, perhaps to its timers
                // before its events: ask the kernel once more, so that a
                // peer who did send (or read) in time is not cut off.
                return match op() {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Err(ErrorKind::TimedOut.into()),
                    other => other,
                };
            }
        }
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.socket.as_fd();
        let len = buf.len();
        self.retry(Direction::Read, self.read_timeout, len, || {
            sys::recv(fd, buf)
        })
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.socket.as_fd();
        self.retry(Direction::Write, self.write_timeout, buf.len(), || {
            sys::send(fd, buf)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TcpStream {
    /// Makes reads give up with `TimedOut` once they have waited `timeout`.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Makes writes give up with `TimedOut` once they have waited `timeout`.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
