//! Sockets whose calls return futures: a call the kernel answers with
//! `EAGAIN` parks the *task* (its future says `Pending`, its waker waits in
//! the reactor) instead of the thread; the coroutine runtime's sockets
//! ([`crate::coro::net`]) do the same to a coroutine. Every call goes
//! through the counted [`crate::sys::recv`] and [`crate::sys::send`].
//!
//! Two ways to read, for two kinds of caller:
//!
//! - [`TcpStream::read`]: `read(&mut buf).await`, as tokio's
//!   `AsyncReadExt::read` reads. The buffer is borrowed *across* the
//!   `.await`, so it lives in the caller's future while it waits.
//! - [`TcpStream::readable`], then [`TcpStream::try_read`]: wait holding
//!   nothing, then read into a buffer that exists only for the read — what
//!   a connection that must cost little while idle does (tokio's
//!   `readable` + `try_read`, and the `async` model).

use std::future::Future;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::reactor;
use super::timer::{sleep_until, Sleep};
use crate::server::readiness_state::Direction;
use crate::server::slab::Key;
use crate::sys;

/// A descriptor registered with this thread's reactor, deregistered
/// before it closes (so that no event for it can reach whoever gets its
/// number next).
#[derive(Debug)]
pub struct Registration {
    key: Key,
    fd: RawFd,
}

impl Registration {
    /// Registers `fd`, which must be non-blocking and outlive the
    /// registration.
    pub fn new(fd: &impl AsRawFd) -> io::Result<Registration> {
        let fd = fd.as_raw_fd();
        Ok(Registration {
            key: reactor::register(fd)?,
            fd,
        })
    }

    /// Whether the descriptor may be ready in `direction` (no `EAGAIN`, and
    /// no read that emptied it, since its last event).
    pub fn is_ready(&self, direction: Direction) -> bool {
        reactor::is_ready(self.key, direction)
    }

    /// Notes that a call left the descriptor drained in `direction`.
    pub fn drained(&self, direction: Direction) {
        reactor::drained(self.key, direction);
    }

    /// Waits until the descriptor may be ready in `direction`, or until
    /// `deadline` (then `Err(TimedOut)`). Await it once a call has found
    /// the descriptor drained: the next edge wakes it.
    pub fn wait(&self, direction: Direction, deadline: Option<Instant>) -> Wait<'_> {
        Wait {
            registration: self,
            direction,
            timer: deadline.map(sleep_until),
        }
    }

    /// Waits until the descriptor may be ready in `direction`, for at most
    /// `timeout` from now (asks the clock only if it must wait).
    pub async fn ready(&self, direction: Direction, timeout: Option<Duration>) -> io::Result<()> {
        if self.is_ready(direction) {
            return Ok(());
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        self.wait(direction, deadline).await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        reactor::deregister(self.key, self.fd);
    }
}

/// The future of [`Registration::wait`], written by hand: ready when the
/// reactor has seen the descriptor become ready, or when its timer fires.
/// Dropped, it withdraws its waker from the reactor and its deadline from
/// the timers: a wait cut short leaves nothing behind.
#[derive(Debug)]
pub struct Wait<'a> {
    registration: &'a Registration,
    direction: Direction,
    timer: Option<Sleep>,
}

impl Future for Wait<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let key = this.registration.key;
        if reactor::poll_ready(key, this.direction, cx.waker()).is_ready() {
            return Poll::Ready(Ok(()));
        }
        if let Some(timer) = &mut this.timer {
            if Pin::new(timer).poll(cx).is_ready() {
                return Poll::Ready(Err(ErrorKind::TimedOut.into()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        reactor::forget_waiter(self.registration.key, self.direction);
    }
}

/// A connected TCP socket served from a task.
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

    /// Makes [`readable`](Self::readable) and [`read`](Self::read) give up
    /// with `TimedOut` after waiting `timeout`.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Makes [`write`](Self::write) give up with `TimedOut` after waiting
    /// `timeout`.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// Waits until the socket may have something to read — holding
    /// nothing — or `Err(TimedOut)` after the read timeout.
    pub async fn readable(&self) -> io::Result<()> {
        self.registration
            .ready(Direction::Read, self.read_timeout)
            .await
    }

    /// Reads without waiting: `WouldBlock`, without a syscall, if the
    /// socket is known to be drained; else [`recv`](Self::recv).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.registration.is_ready(Direction::Read) {
            return Err(ErrorKind::WouldBlock.into());
        }
        self.recv(buf)
    }

    /// Asks the kernel, whatever the reactor knows (after a timeout, to be
    /// sure a client is idle before cutting it off). A read that comes
    /// back short has emptied the receive queue, and one that says
    /// `EAGAIN` found it empty: either marks the socket drained, so that
    /// the next read waits for an edge instead of asking again.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let got = sys::recv(self.socket.as_fd(), buf);
        match got {
            Ok(n) if n > 0 && n < buf.len() => self.registration.drained(Direction::Read),
            Err(ref e) if e.kind() == ErrorKind::WouldBlock => {
                self.registration.drained(Direction::Read)
            }
            _ => {}
        }
        got
    }

    /// Reads into `buf`, parking the task until there is something to
    /// read; `TimedOut` after the read timeout. `buf` is held by the
    /// future while it waits.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (fd, len) = (self.socket.as_fd(), buf.len());
        retry(
            &self.registration,
            Direction::Read,
            self.read_timeout,
            len,
            || sys::recv(fd, buf),
        )
        .await
    }

    /// Writes some of `buf`, parking the task until there is room;
    /// `TimedOut` after the write timeout.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.socket.as_fd();
        retry(
            &self.registration,
            Direction::Write,
            self.write_timeout,
            buf.len(),
            || sys::send(fd, buf),
        )
        .await
    }
}

/// Runs `op` (a `recv` or `send` of `len` bytes) once the socket may be
/// ready, parking until it is; `TimedOut` once `timeout` has passed since
/// the first wait. The coroutine socket's `retry`, with `.await` where
/// that one parks.
async fn retry(
    registration: &Registration,
    direction: Direction,
    timeout: Option<Duration>,
    len: usize,
    mut op: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    // Read the clock only if we must wait: most calls succeed at once.
    let mut deadline = None;
    loop {
        if registration.is_ready(direction) {
            match op() {
                Err(e) if e.kind() == ErrorKind::WouldBlock => registration.drained(direction),
                Ok(n) if n > 0 && n < len => {
                    registration.drained(direction);
                    return Ok(n);
                }
                other => return other,
            }
        }
        let deadline = *deadline.get_or_insert_with(|| timeout.map(|t| Instant::now() + t));
        if registration.wait(direction, deadline).await.is_err() {
            // The deadline passed, but a process stopped for a while wakes
            // late, perhaps to its timers before its events: ask the kernel
            // once more, so that a peer who did send (or read) in time is
            // not cut off.
            return match op() {
                Err(e) if e.kind() == ErrorKind::WouldBlock => Err(ErrorKind::TimedOut.into()),
                other => other,
            };
        }
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
