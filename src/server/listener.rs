//! The listening socket, and the accept step every model shares: descriptor
//! exhaustion and the `MAX_CONNS` limit are handled here once.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::server::protocol::ERR_TOO_MANY_CONNS;
use crate::server::shutdown;
use crate::sys::{self, counters, Blocking};

/// How many connections may wait in the kernel's accept queue. The kernel
/// caps it at `net.core.somaxconn` (4096 by default since Linux 5.4).
const BACKLOG: i32 = 4096;

/// Binds a listening TCP socket (`SO_REUSEADDR`, `CLOEXEC`, IPv4 or IPv6).
///
/// With `reuse_port`, `SO_REUSEPORT` is set too, so that
/// [`bind_sibling`] can bind more listeners to the same port and the kernel
/// spreads connections across them (one per worker loop). It is off
/// otherwise, so that starting a second server on a busy port fails loudly.
pub fn bind(addr: &str, reuse_port: bool) -> io::Result<TcpListener> {
    let mut last_err = None;
    for addr in addr.to_socket_addrs()? {
        match bind_one(addr, reuse_port) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    // socket2 creates sockets with SOCK_CLOEXEC.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Binds another listener to the same address as `listener`, which must have
/// been bound with `reuse_port` (for models with one loop per worker).
pub fn bind_sibling(listener: &TcpListener) -> io::Result<TcpListener> {
    bind_one(listener.local_addr()?, true)
}

/// Takes connections off a listener, enforcing `MAX_CONNS` and surviving
/// descriptor exhaustion.
///
/// **EMFILE.** When the process is out of descriptors, `accept` fails with
/// `EMFILE` but the connection stays in the queue, so the listener stays
/// readable: a loop that just retries spins at 100 % CPU. We keep one spare
/// descriptor (`/dev/null`) open; on `EMFILE` we close it, accept the
/// connection into the freed slot, tell the client `error: too many
/// connections`, close it, and reopen the spare. The queue drains, the loop
/// sleeps in its wait as usual, and connections already open are untouched.
/// (libev's documentation describes the trick; nginx instead stops
/// watching its listeners and retries on a timer, as our `uring` model does.)
pub struct Acceptor {
    // Declared first, so dropped first: the listener is unwatched before
    // it closes (see `shutdown::watch_listener`).
    watch: Option<shutdown::ListenerWatch>,
    listener: TcpListener,
    blocking: Blocking,
    max_conns: usize,
    fd_limit: Option<usize>,
    spare: Option<OwnedFd>,
}

/// What one call to [`Acceptor::accept`] produced.
#[derive(Debug)]
pub enum Accepted {
    /// A connection, admitted under `MAX_CONNS`.
    Conn(Admitted),
    /// Nothing to hand over this time, but the queue may hold more: a
    /// signal interrupted the call, the client gave up while queued, or a
    /// connection was turned away (`MAX_CONNS`, or out of descriptors).
    Again,
    /// The queue is empty (non-blocking listeners only).
    Empty,
}

/// A connection admitted under `MAX_CONNS`: dropping it gives the place back.
#[derive(Debug)]
pub struct Admitted {
    /// The connected socket.
    pub fd: OwnedFd,
    permit: ConnPermit,
}

impl Admitted {
    /// Splits the socket from its place in the `MAX_CONNS` count.
    pub fn into_parts(self) -> (OwnedFd, ConnPermit) {
        (self.fd, self.permit)
    }
}

/// One place in the `MAX_CONNS` count, given back on drop.
#[derive(Debug)]
pub struct ConnPermit(());

impl ConnPermit {
    /// Takes a place if fewer than `max_conns` are taken (for models that
    /// accept through their own listener type, like tokio's).
    pub fn try_acquire(max_conns: usize) -> Option<ConnPermit> {
        // `then`, not `then_some`: `then_some(ConnPermit(()))` builds the
        // permit before the check is looked at, and when the check fails
        // that permit is dropped, giving back a place it never took. Every
        // second refused connection then found a free place.
        counters::try_open_conn(max_conns).then(|| ConnPermit(()))
    }

    /// Keeps the place taken after this value is gone: the fork model's
    /// parent gives it back when it reaps the child instead.
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        counters::close_conn();
    }
}

impl Acceptor {
    /// Wraps a listener. With `Blocking::No` the listener itself is made
    /// non-blocking too, so `accept` returns `Ok(None)` when the queue is
    /// empty instead of waiting.
    pub fn new(listener: TcpListener, blocking: Blocking, max_conns: usize) -> io::Result<Self> {
        listener.set_nonblocking(blocking == Blocking::No)?;
        Ok(Acceptor {
            watch: None,
            listener,
            blocking,
            max_conns,
            fd_limit: None,
            spare: open_spare(),
        })
    }

    /// Turns away, with the protocol's error line, every connection whose
    /// descriptor is `limit` or more: `select` cannot watch it.
    pub fn with_fd_limit(mut self, limit: usize) -> Self {
        self.fd_limit = Some(limit);
        self
    }

    /// Has a stop signal shut the listener down, so that a blocked
    /// `accept` fails and the accept loop ends (the blocking family's way:
    /// see [`crate::server::shutdown`]). Unwatched when the acceptor is dropped.
    pub fn stop_on_signal(mut self) -> Self {
        self.watch = Some(shutdown::watch_listener(&self.listener));
        self
    }

    /// Gives the listening socket back (unwatched; the spare descriptor is
    /// closed).
    pub fn into_listener(self) -> TcpListener {
        let Acceptor {
            watch, listener, ..
        } = self;
        drop(watch);
        listener
    }

    /// The listening socket (to register with a poller, or to watch for
    /// shutdown).
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }

    /// Accepts one connection.
    ///
    /// `Err` means the listener itself is unusable (at shutdown the blocking
    /// models' listener is shut down and `accept` fails with `EINVAL`).
    pub fn accept(&mut self) -> io::Result<Accepted> {
        let fd = match sys::accept(self.listener.as_fd(), self.blocking) {
            Ok(fd) => fd,
            Err(e) => return self.accept_failed(e),
        };
        // Checked before a place is taken: a connection turned away for its
        // descriptor number never counts as open, not even in the peak.
        let beyond_fd_limit = self
            .fd_limit
            .is_some_and(|limit| fd.as_raw_fd() as usize >= limit);
        if beyond_fd_limit || !counters::try_open_conn(self.max_conns) {
            turn_away(fd);
            return Ok(Accepted::Again);
        }
        let permit = ConnPermit(());
        // Fails only if the peer is already gone; the first read says so.
        let _ = sys::set_nodelay(fd.as_fd());
        Ok(Accepted::Conn(Admitted { fd, permit }))
    }

    fn accept_failed(&mut self, err: io::Error) -> io::Result<Accepted> {
        match AcceptError::of(&err) {
            AcceptError::Empty => Ok(Accepted::Empty),
            AcceptError::Transient => Ok(Accepted::Again),
            AcceptError::OutOfDescriptors => Ok(self.shed_one()),
            // The connection stays queued; back off briefly rather than
            // spin on a listener that stays readable.
            AcceptError::ShortOfMemory => {
                std::thread::sleep(std::time::Duration::from_millis(10));
                Ok(Accepted::Again)
            }
            AcceptError::Fatal => Err(err),
        }
    }

    /// Out of descriptors: free the spare, use it to take one connection off
    /// the queue and turn it away, then take the spare back. `Empty` if
    /// there was no connection to take.
    fn shed_one(&mut self) -> Accepted {
        match self.spare.take() {
            Some(spare) => {
                drop(spare);
                let shed = match sys::accept(self.listener.as_fd(), self.blocking) {
                    Ok(fd) => {
                        turn_away(fd);
                        Accepted::Again
                    }
                    // The queue was empty after all (or the peer gave up).
                    Err(_) => Accepted::Empty,
                };
                self.spare = open_spare();
                shed
            }
            // Another thread took the descriptor we freed before we could
            // reopen the spare. Without one we cannot drain the queue, so
            // wait a little for connections to close instead of spinning.
            None => {
                std::thread::sleep(std::time::Duration::from_millis(10));
                self.spare = open_spare();
                Accepted::Empty
            }
        }
    }
}

/// What a failed `accept` means, for every model that accepts (the
/// readiness models through [`Acceptor`], io_uring from its completions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// `EAGAIN`: the queue is empty.
    Empty,
    /// Try again at once: a signal (`EINTR`), or the peer reset or gave up
    /// while queued (`ECONNABORTED`), or one of the network errors
    /// accept(2) says to treat like `EAGAIN` on Linux.
    Transient,
    /// `EMFILE`, `ENFILE`: no descriptor for the connection, which stays
    /// queued. Retrying at once spins: free one, or pause.
    OutOfDescriptors,
    /// `ENOBUFS`, `ENOMEM`: the kernel is short of memory; the connection
    /// stays queued. Pause briefly.
    ShortOfMemory,
    /// Anything else (`EINVAL` after the listener was shut down, `EPERM`
    /// from a firewall hook, `EBADF`): the listener is unusable, or will
    /// fail the same way again.
    Fatal,
}

impl AcceptError {
    /// Classifies the error of a failed `accept`.
    pub fn of(err: &io::Error) -> AcceptError {
        match err.raw_os_error() {
            Some(libc::EAGAIN) => AcceptError::Empty,
            Some(
                libc::EINTR
                | libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH,
            ) => AcceptError::Transient,
            // `accept4` takes a descriptor number *before* it looks at the
            // queue, so it fails with EMFILE even when the queue is empty.
            Some(libc::EMFILE | libc::ENFILE) => AcceptError::OutOfDescriptors,
            Some(libc::ENOBUFS | libc::ENOMEM) => AcceptError::ShortOfMemory,
            _ => AcceptError::Fatal,
        }
    }
}

/// Tells a client we cannot take it, and closes it (the socket is
/// consumed). The write cannot block: the socket is new and its send buffer
/// empty, and `MSG_DONTWAIT` makes sure. Every model that turns a client
/// away says it this way.
pub fn turn_away(socket: OwnedFd) {
    let _ = socket2::SockRef::from(&socket).send_with_flags(ERR_TOO_MANY_CONNS, libc::MSG_DONTWAIT);
}

fn open_spare() -> Option<OwnedFd> {
    // std opens files with O_CLOEXEC.
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

impl AsRawFd for Acceptor {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dropped acceptor's listener is no longer watched for the stop
    /// signals: a signal must never shut down a socket that reused its
    /// descriptor number.
    #[test]
    fn a_dropped_acceptor_unwatches_its_listener() {
        let listener = bind("127.0.0.1:0", false).expect("bind");
        let fd = listener.as_raw_fd();
        let acceptor = Acceptor::new(listener, Blocking::No, 10)
            .expect("acceptor")
            .stop_on_signal();
        assert!(shutdown::is_watched(fd));
        drop(acceptor);
        assert!(!shutdown::is_watched(fd), "closed but still watched");
        let listener = bind("127.0.0.1:0", false).expect("bind");
        let fd = listener.as_raw_fd();
        let acceptor = Acceptor::new(listener, Blocking::No, 10)
            .expect("acceptor")
            .stop_on_signal();
        let listener = acceptor.into_listener();
        assert!(!shutdown::is_watched(fd), "handed back but still watched");
        drop(listener);
    }
}
