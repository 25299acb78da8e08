//! What a reactor remembers about a socket between two events: whether it
//! may be ready each way, whether its end of stream has been seen, and who
//! waits on it. One record, kept by every runtime that parks code on
//! sockets (the stackless executor's reactor, [`crate::async_rt`], and —
//! the same rules — the coroutine scheduler's).
//!
//! **Why remember at all.** Both runtimes register a socket once, for both
//! directions, *edge-triggered*: epoll reports a change of state once, not
//! a state for as long as it holds. An edge that arrives while nobody
//! waits must not be lost, so it is written down ([`Readiness::record`]);
//! and a call that finds the socket drained (`EAGAIN`, or a read that came
//! back short) writes that down too ([`Readiness::drained`]), so that the
//! next call parks at once instead of asking the kernel only to hear
//! `EAGAIN` — one syscall in three of a request-response exchange.
//!
//! **The sticky end of stream.** `EPOLLRDHUP` (the peer closed its side),
//! `EPOLLHUP` and `EPOLLERR` come as one edge each and no call drains them.
//! A read that emptied the queue with the last data *and* the FIN already
//! reported must still try once more, to read the 0 of end of stream:
//! were `drained` to forget the FIN, no edge would ever come again and the
//! connection would wait for its idle timeout. So `read_closed` and
//! `write_closed` are set by events and never cleared.

/// Which way code waits on a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Until it can read (data, end of stream, or an error).
    Read,
    /// Until it can write (room, or an error).
    Write,
}

/// The events a reactor registers every socket for, once: both
/// directions, the peer's half-close, edge-triggered. (`EPOLLERR` and
/// `EPOLLHUP` are always reported.)
pub const INTEREST: u32 =
    (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// Readiness as far as the reactor knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// May be readable: no call has found it drained since its last event.
    pub readable: bool,
    /// May be writable, likewise.
    pub writable: bool,
    /// Sticky: the peer closed its side, or the socket hung up or failed.
    pub read_closed: bool,
    /// Sticky: the socket hung up or failed.
    pub write_closed: bool,
}

impl Readiness {
    /// A socket just registered: nothing is known, so readiness is
    /// assumed and the first call finds out (an edge that came before
    /// the registration would otherwise be missed).
    pub const ASSUMED: Readiness = Readiness {
        readable: true,
        writable: true,
        read_closed: false,
        write_closed: false,
    };

    /// Records an epoll event's bits; returns which directions it made
    /// ready, `(read, write)`. An error or a hang-up is both: the next
    /// call either way reports it.
    pub fn record(&mut self, bits: u32) -> (bool, bool) {
        let bits = bits as libc::c_int;
        let trouble = bits & (libc::EPOLLERR | libc::EPOLLHUP) != 0;
        let read = trouble || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) != 0;
        let write = trouble || bits & libc::EPOLLOUT != 0;
        self.readable |= read;
        self.writable |= write;
        self.read_closed |= trouble || bits & libc::EPOLLRDHUP != 0;
        self.write_closed |= trouble;
        (read, write)
    }

    /// Whether a call in `direction` may succeed: not known drained, or
    /// closed (a closed side always answers at once).
    pub fn is_ready(&self, direction: Direction) -> bool {
        match direction {
            Direction::Read => self.readable || self.read_closed,
            Direction::Write => self.writable || self.write_closed,
        }
    }

    /// Notes that a call found the socket drained in `direction`: the
    /// next call waits for an edge first. The sticky bits stay.
    pub fn drained(&mut self, direction: Direction) {
        match direction {
            Direction::Read => self.readable = false,
            Direction::Write => self.writable = false,
        }
    }
}

/// A socket as a reactor knows it: its [`Readiness`] and who waits on it
/// each way. `W` is whatever the runtime wakes: a coroutine's id, or a
/// task's [`std::task::Waker`]. One waiter each way: a socket has one
/// owner, which reads and writes it from one place.
#[derive(Debug)]
pub struct Source<W> {
    /// What is known of its readiness.
    pub readiness: Readiness,
    reader: Option<W>,
    writer: Option<W>,
}

impl<W> Default for Source<W> {
    fn default() -> Self {
        Source::new()
    }
}

impl<W> Source<W> {
    /// A socket just registered: readiness assumed, nobody waiting.
    pub fn new() -> Source<W> {
        Source {
            readiness: Readiness::ASSUMED,
            reader: None,
            writer: None,
        }
    }

    /// Who waits on it in `direction`.
    pub fn waiter(&mut self, direction: Direction) -> &mut Option<W> {
        match direction {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }

    /// Records an event and hands over the waiters of the directions it
    /// made ready, reader first, to be woken.
    pub fn on_event(&mut self, bits: u32) -> [Option<W>; 2] {
        let (read, write) = self.readiness.record(bits);
        [
            if read { self.reader.take() } else { None },
            if write { self.writer.take() } else { None },
        ]
    }

    /// Hands over every waiter (the socket is being deregistered: each is
    /// woken, and its next call reports what became of the socket).
    pub fn take_waiters(&mut self) -> [Option<W>; 2] {
        [self.reader.take(), self.writer.take()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN: u32 = libc::EPOLLIN as u32;
    const OUT: u32 = libc::EPOLLOUT as u32;
    const RDHUP: u32 = libc::EPOLLRDHUP as u32;
    const HUP: u32 = libc::EPOLLHUP as u32;

    #[test]
    fn a_new_socket_is_assumed_ready_and_drains_each_way_on_its_own() {
        let mut r = Readiness::ASSUMED;
        assert!(r.is_ready(Direction::Read) && r.is_ready(Direction::Write));
        r.drained(Direction::Read);
        assert!(!r.is_ready(Direction::Read));
        assert!(r.is_ready(Direction::Write));
        assert_eq!(r.record(IN), (true, false));
        assert!(r.is_ready(Direction::Read));
    }

    #[test]
    fn the_end_of_stream_outlives_a_drain() {
        let mut r = Readiness::ASSUMED;
        r.record(IN | RDHUP);
        // The read that took the last data came back short: drained...
        r.drained(Direction::Read);
        // ...but the FIN's edge will not come again: still ready, to read 0.
        assert!(r.is_ready(Direction::Read));
        assert!(!r.write_closed);
    }

    #[test]
    fn a_hang_up_wakes_both_waiters_and_closes_both_ways() {
        let mut source = Source::new();
        source.readiness.drained(Direction::Read);
        source.readiness.drained(Direction::Write);
        *source.waiter(Direction::Read) = Some("reader");
        *source.waiter(Direction::Write) = Some("writer");
        assert_eq!(source.on_event(OUT), [None, Some("writer")]);
        assert_eq!(source.on_event(HUP), [Some("reader"), None]);
        source.readiness.drained(Direction::Write);
        assert!(source.readiness.is_ready(Direction::Write), "sticky");
    }
}
