//! The part of every readiness model that is not about waiting.
//!
//! A readiness model is a loop: *wait* until the kernel says some sockets
//! are ready, then *advance* those connections as far as they can go
//! without blocking. The waiting is what distinguishes `select` from `poll`
//! from `epoll` from signals, and it is all a model file holds. The
//! advancing is the same for all of them and lives here, in [`Driver`]:
//!
//! - it owns the listener and the open connections ([`Conn`] state
//!   machines and their non-blocking sockets), each named by a [`Token`];
//! - [`Driver::accept_ready`] takes new connections, [`Driver::service`]
//!   advances one connection the model found ready, [`Driver::tick`] fires
//!   idle timeouts, begins and ends the shutdown drain, and says how long
//!   the model may wait next;
//! - every change the model must mirror in its kernel registrations — a
//!   connection opened, its interest changed, it closed, the listener
//!   closed — is queued as a [`Change`] for the model to apply, in order,
//!   before it waits again.
//!
//! **Level or edge.** Under level-triggered readiness (`select`, `poll`,
//! epoll's default, the non-blocking sweep) the kernel repeats itself: a
//! socket with unread bytes is reported on every wait, so servicing reads
//! once per report and forgets. Under edge-triggered readiness (`epoll
//! --edge`, signal-driven IO) the kernel reports a change *once*, so the
//! driver remembers what is known ready and reads until `EAGAIN`. To keep one
//! busy client from starving the others it stops after [`EDGE_READ_BUDGET`]
//! reads and puts the connection on a *deferred* queue, which the model runs
//! (with a zero wait timeout) before it sleeps again. The listener gets the
//! same treatment: an accept that stops at [`ACCEPT_BUDGET`] under edge
//! triggering leaves the rest queued without a new report, so the deferred
//! work includes "accept again".

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::server::config::Config;
use crate::server::conn::{Conn, Interest};
use crate::server::listener::{Accepted, Acceptor, ConnPermit};
use crate::server::offload::Offload;
use crate::server::shutdown::StopFlag;
use crate::server::slab::{Key, Slab};
use crate::server::timers::Timers;
use crate::sys;
use crate::sys::counters::{self, Counter};

/// Reads one edge-triggered wakeup may do before the connection yields to
/// the others: 16 reads of up to 64 KiB each.
pub const EDGE_READ_BUDGET: usize = 16;

/// Connections one wakeup may accept before serving the ones it has.
pub const ACCEPT_BUDGET: usize = 64;

/// Size of the one read buffer the loop shares between all connections.
pub const SCRATCH_SIZE: usize = 64 * 1024;

/// Names a connection: its [`Key`] in the driver's [`Slab`], packed into
/// the integer the kernel carries for us (an epoll event's data), so that a
/// token kept for a closed connection (a stale event, a deferred entry)
/// never reaches the connection that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

impl Token {
    fn key(self) -> Key {
        Key::from_u64(self.0)
    }
    /// The slot number: small, dense, and reused after a close (models
    /// index their own tables with it).
    pub fn index(self) -> usize {
        self.key().index()
    }
}

impl From<Key> for Token {
    fn from(key: Key) -> Token {
        Token(key.to_u64())
    }
}

/// How readiness is reported to the model's loop (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Reported for as long as it holds.
    Level,
    /// Reported once, when it begins.
    Edge,
}

/// What the kernel said about a connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ready {
    /// There is something to read (data, end of stream, or an error).
    pub readable: bool,
    /// There is room to write (or an error).
    pub writable: bool,
    /// The peer has closed its side (`EPOLLRDHUP`): end of stream waits
    /// behind whatever data is queued. Under edge triggering this matters:
    /// data and FIN that arrive together raise one edge, so a short read
    /// does *not* mean "no more events are coming" — the 0 of end of
    /// stream is still to be read.
    pub read_closed: bool,
}

impl Ready {
    /// Readable only.
    pub const READ: Ready = Ready {
        readable: true,
        writable: false,
        read_closed: false,
    };
    /// Writable only.
    pub const WRITE: Ready = Ready {
        readable: false,
        writable: true,
        read_closed: false,
    };
    /// Both (for errors and hang-ups, which both calls will surface).
    pub const BOTH: Ready = Ready {
        readable: true,
        writable: true,
        read_closed: false,
    };
}

/// A change the model must mirror in what it asks the kernel to watch.
///
/// A closed connection's socket (and the listener, when the drain begins)
/// travels *inside* the change, still open: the model stops watching it,
/// then drops it, which closes it. Pollers that must be told before a
/// descriptor closes (mio, polling) are told in time, and a descriptor
/// number cannot be reused while a change about it is still queued.
#[derive(Debug)]
pub enum Change {
    /// A new connection, wanting `interest`.
    Opened {
        /// Its token.
        token: Token,
        /// Its socket.
        fd: RawFd,
        /// What it wants to hear about first.
        interest: Interest,
    },
    /// A connection now wants `interest`.
    Interest {
        /// Its token.
        token: Token,
        /// Its socket.
        fd: RawFd,
        /// What it wants to hear about now.
        interest: Interest,
    },
    /// A connection is finished: stop watching `socket`, then drop it.
    Closed {
        /// Its token.
        token: Token,
        /// Its socket, still open.
        socket: OwnedFd,
    },
    /// The drain began: stop watching the listener, then drop it.
    ListenerClosed {
        /// The listening socket, still open.
        listener: std::net::TcpListener,
    },
}

struct Entry {
    socket: OwnedFd,
    conn: Conn,
    /// Known readable: no `EAGAIN` from `read` since the last report.
    readable: bool,
    /// Known writable: no `EAGAIN` from `write` since the last report.
    writable: bool,
    /// The peer's FIN has been reported (see [`Ready::read_closed`]).
    read_closed: bool,
    /// The interest last announced to the model.
    interest: Interest,
    /// On the deferred queue already.
    deferred: bool,
    /// The idle deadline this connection has filed in the timers.
    timer: Option<Instant>,
    _place: ConnPermit,
}

/// The connections of one readiness loop, advanced on the model's word.
pub struct Driver {
    config: Config,
    trigger: Trigger,
    acceptor: Option<Acceptor>,
    conns: Slab<Entry>,
    timers: Timers<Token>,
    deferred: VecDeque<Token>,
    /// Edge-triggered, the last accept stopped at its budget: connections
    /// may still be queued, and no new report will say so.
    accept_pending: bool,
    changes: Vec<Change>,
    scratch: Box<[u8]>,
    now: Instant,
    drain_deadline: Option<Instant>,
    memory_return: sys::MemoryReturn,
    /// Whether a stop was requested (the process's flag, or a test's).
    stop: StopFlag,
    /// `epoll --offload`: the pool that pays for costly requests.
    offload: Option<Offload>,
}

impl Driver {
    /// A driver for connections accepted from `acceptor` (which must be
    /// non-blocking).
    pub fn new(acceptor: Acceptor, config: &Config, trigger: Trigger) -> Driver {
        Driver {
            config: config.clone(),
            trigger,
            acceptor: Some(acceptor),
            conns: Slab::new(),
            timers: Timers::new(),
            deferred: VecDeque::new(),
            accept_pending: false,
            changes: Vec::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            now: Instant::now(),
            drain_deadline: None,
            memory_return: sys::MemoryReturn::default(),
            stop: StopFlag::process(),
            offload: None,
        }
    }

    /// Hands the cost of every connection's requests (`--work-us`,
    /// `--block-us`) to `pool` instead of paying it on the loop's thread.
    /// The model watches [`Offload::fd`] and calls
    /// [`offload_done`](Self::offload_done) when it is readable.
    pub fn with_offload(mut self, pool: Offload) -> Driver {
        self.offload = Some(pool);
        self
    }

    /// Gives every job the pool has finished back to its connection (a
    /// connection closed meanwhile is gone, and so are its answers) and
    /// advances it: its answers go out and it reads again.
    pub fn offload_done(&mut self) -> io::Result<()> {
        let Some(pool) = &self.offload else {
            return Ok(());
        };
        let done = pool.completed()?;
        let now = Instant::now();
        for (tag, answers) in done {
            let token = Token(tag);
            if let Some(entry) = self.entry_mut(token) {
                entry.conn.job_done(answers, now);
                self.advance(token, Ready::default(), false);
            }
        }
        Ok(())
    }

    /// Watches `stop` instead of the process's stop flag (unit tests).
    pub fn with_stop_flag(mut self, stop: StopFlag) -> Driver {
        self.stop = stop;
        self
    }

    /// The listening socket, until the drain begins.
    pub fn listener_fd(&self) -> Option<RawFd> {
        self.acceptor.as_ref().map(|a| a.as_raw_fd())
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Every open connection: its token, socket and current interest.
    pub fn conns(&self) -> impl Iterator<Item = (Token, RawFd, Interest)> + '_ {
        self.conns
            .iter()
            .map(|(key, entry)| (key.into(), entry.socket.as_raw_fd(), entry.interest))
    }

    /// The changes since the last call, in the order they happened. Apply
    /// them all *after* the last call that may make one (`tick`,
    /// `accept_ready`, `service`, `run_deferred`) and *before* waiting
    /// again: a connection opened but not yet watched, or closed but not
    /// yet dropped, would otherwise wait as long as the loop sleeps.
    pub fn changes(&mut self) -> std::vec::Drain<'_, Change> {
        self.changes.drain(..)
    }

    /// Whether the drain is over: shutdown was requested and every
    /// connection is closed. The model's loop ends then.
    pub fn finished(&self) -> bool {
        self.drain_deadline.is_some() && self.conns.is_empty()
    }

    /// Accepts the connections waiting on the listener (at most
    /// [`ACCEPT_BUDGET`], so a flood of connects cannot starve the clients
    /// already served). If the budget runs out under edge triggering, the
    /// rest is deferred work: [`Driver::has_deferred`] says so, and
    /// [`Driver::run_deferred`] accepts again. `Err` only if the listener
    /// itself failed.
    pub fn accept_ready(&mut self) -> io::Result<()> {
        // The loop may have slept for hours: a connection accepted now must
        // not start life already past its idle deadline.
        self.now = Instant::now();
        self.accept_pending = false;
        for _ in 0..ACCEPT_BUDGET {
            let Some(acceptor) = self.acceptor.as_mut() else {
                return Ok(());
            };
            match acceptor.accept()? {
                Accepted::Conn(admitted) => {
                    let (socket, place) = admitted.into_parts();
                    self.open_conn(socket, place);
                }
                Accepted::Again => continue,
                Accepted::Empty => return Ok(()),
            }
        }
        // Level-triggered, the listener is reported again while it has
        // connections queued.
        self.accept_pending = self.trigger == Trigger::Edge;
        Ok(())
    }

    fn open_conn(&mut self, socket: OwnedFd, place: ConnPermit) {
        let mut conn = Conn::new(&self.config, self.now);
        if self.offload.is_some() {
            conn = conn.offloading();
        }
        let timer = conn.idle_deadline(&self.config);
        let interest = conn.interest(self.config.max_pending, true);
        let fd = socket.as_raw_fd();
        let token = Token::from(self.conns.insert(Entry {
            socket,
            conn,
            readable: false,
            // A new socket's send buffer is empty: write without asking.
            writable: true,
            read_closed: false,
            interest,
            deferred: false,
            timer,
            _place: place,
        }));
        if let Some(at) = timer {
            self.timers.insert(at, token);
        }
        self.memory_return.note(self.conns.len());
        self.changes.push(Change::Opened {
            token,
            fd,
            interest,
        });
    }

    fn entry_mut(&mut self, token: Token) -> Option<&mut Entry> {
        self.conns.get_mut(token.key())
    }

    /// Advances the connection `token` after the kernel reported `ready`:
    /// writes what it owes, reads what it can (once, or under edge
    /// triggering until `EAGAIN` or the budget), answers, and closes it if it
    /// is done or failed. A stale token is ignored.
    pub fn service(&mut self, token: Token, ready: Ready) {
        self.advance(token, ready, false);
    }

    /// Advances a connection that may have received data (even its FIN)
    /// before anyone was watching it — sigio's sockets, made `O_ASYNC`
    /// only after `accept`, raised no signal for what came first. Reads
    /// until `EAGAIN` or end of stream, not trusting a short read.
    pub fn service_unwatched(&mut self, token: Token) {
        self.advance(token, Ready::BOTH, true);
    }

    fn advance(&mut self, token: Token, ready: Ready, to_eagain: bool) {
        let how = Pump {
            max_pending: self.config.max_pending,
            trigger: self.trigger,
            to_eagain,
            draining: self.drain_deadline.is_some(),
        };
        // Not `entry_mut`: the scratch buffer is borrowed at the same time.
        let Some(entry) = self.conns.get_mut(token.key()) else {
            return;
        };
        let scratch = &mut self.scratch;
        entry.readable |= ready.readable;
        entry.writable |= ready.writable;
        entry.read_closed |= ready.read_closed;
        let pumped = pump(entry, scratch, how);
        if let (Some(pool), Some(job)) = (&self.offload, entry.conn.take_job()) {
            pool.submit(token.0, job);
        }
        self.settle(token, pumped);
    }

    /// After a connection was advanced: close it, or announce its new
    /// interest and defer it if it still has known work.
    fn settle(&mut self, token: Token, pumped: io::Result<()>) {
        let (max_pending, trigger) = (self.config.max_pending, self.trigger);
        let Some(entry) = self.entry_mut(token) else {
            return;
        };
        if pumped.is_err() {
            counters::conn_error();
            return self.close(token);
        }
        if entry.conn.is_done() {
            return self.close(token);
        }
        let interest = entry.conn.interest(max_pending, entry.writable);
        let fd = entry.socket.as_raw_fd();
        let defer = trigger == Trigger::Edge
            && entry.readable
            && entry.conn.wants_read(max_pending)
            && !entry.deferred;
        if defer {
            entry.deferred = true;
        }
        if interest != entry.interest {
            entry.interest = interest;
            self.changes.push(Change::Interest {
                token,
                fd,
                interest,
            });
        }
        if defer {
            self.deferred.push_back(token);
        }
    }

    /// Whether work was deferred: connections on the deferred queue, or
    /// an accept cut short by its budget (the model must then not sleep in
    /// its wait).
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty() || self.accept_pending
    }

    /// Accepts again if an accept was cut short, then services each
    /// connection that was on the deferred queue.
    pub fn run_deferred(&mut self) -> io::Result<()> {
        if self.accept_pending {
            self.accept_ready()?;
        }
        for _ in 0..self.deferred.len() {
            let Some(token) = self.deferred.pop_front() else {
                break;
            };
            if let Some(entry) = self.entry_mut(token) {
                entry.deferred = false;
                self.service(token, Ready::default());
            }
        }
        Ok(())
    }

    fn close(&mut self, token: Token) {
        let Some(entry) = self.conns.remove(token.key()) else {
            return;
        };
        self.memory_return.note(self.conns.len());
        if let Some(at) = entry.timer {
            self.timers.remove(at, token);
        }
        // The MAX_CONNS place is given back now; the socket goes to the
        // model, which closes it once it has stopped watching it.
        let Entry { socket, .. } = entry;
        self.changes.push(Change::Closed { token, socket });
    }

    /// Bookkeeping between waits: notes the time, begins the drain when a
    /// stop signal has come, fires due idle timeouts, and ends the drain
    /// when its time is up. Returns how long the model may wait for events:
    /// until the next deadline, zero if work is deferred, `None` for ever.
    pub fn tick(&mut self) -> Option<Duration> {
        self.now = Instant::now();
        if self.stop.requested() && self.drain_deadline.is_none() {
            self.begin_drain();
        }
        while let Some(token) = self.timers.pop_due(self.now) {
            self.expire(token);
        }
        if self
            .drain_deadline
            .is_some_and(|deadline| self.now >= deadline)
        {
            let tokens: Vec<Token> = self.conns().map(|(token, _, _)| token).collect();
            for token in tokens {
                self.close(token);
            }
        }
        if self.has_deferred() {
            return Some(Duration::ZERO);
        }
        let next = match (self.timers.next(), self.drain_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|at| at.saturating_duration_since(self.now))
    }

    /// A connection's timer came due: file it again if it has received
    /// since (see [`crate::server::timers`]), or time it out.
    ///
    /// A due timer is not yet proof of silence. The process may have been
    /// stopped (`SIGSTOP`, a debugger, a VM's stolen time) while bytes
    /// arrived, and a loop that wakes late looks at its timers before the
    /// kernel's news: a client that did send would be cut off, and a socket
    /// closed with unread bytes answers with a reset. The rule, the same in
    /// every model: a connection is idle only if no byte *arrived* for the
    /// timeout, so what is queued on the socket is read before the timer
    /// is judged.
    fn expire(&mut self, token: Token) {
        let (config, now) = (&self.config, self.now);
        // A busy connection's deadline has simply moved: no need to look.
        let moved = self
            .conns
            .get(token.key())
            .and_then(|entry| entry.conn.idle_deadline(config))
            .is_some_and(|at| at > now);
        if !moved {
            self.advance(token, Ready::READ, true);
        }
        let (config, now) = (&self.config, self.now);
        // Not `entry_mut`: the config and the timers are used meanwhile.
        let Some(entry) = self.conns.get_mut(token.key()) else {
            return;
        };
        entry.timer = self
            .timers
            .refile_or_expire(token, entry.conn.idle_deadline(config), now);
        if entry.timer.is_none() {
            entry.conn.time_out();
            // One try to deliver the error line; the client may not be
            // reading, so we do not wait for it.
            let _ = write_out(entry);
            self.close(token);
        }
    }

    /// Stops accepting and shuts down every connection's read side, so each
    /// answers what it has received and ends (see [`crate::server::shutdown`]).
    fn begin_drain(&mut self) {
        self.drain_deadline = Some(self.now + self.config.drain_timeout);
        if let Some(acceptor) = self.acceptor.take() {
            let listener = acceptor.into_listener();
            self.changes.push(Change::ListenerClosed { listener });
        }
        let tokens: Vec<Token> = self.conns().map(|(token, _, _)| token).collect();
        for token in tokens {
            if let Some(entry) = self.entry_mut(token) {
                sys::shutdown_read(entry.socket.as_raw_fd());
            }
            self.service(token, Ready::READ);
        }
    }
}

/// Moves bytes for one connection until the kernel would block or the read
/// budget is spent. Writing comes first: it frees room under `MAX_PENDING`
/// for the next read.
/// How [`pump`] moves one connection's bytes.
#[derive(Clone, Copy)]
struct Pump {
    max_pending: usize,
    trigger: Trigger,
    /// Read until `EAGAIN`, not trusting a short read.
    to_eagain: bool,
    /// The drain has begun: an end of stream is ours, not the client's.
    draining: bool,
}

fn pump(entry: &mut Entry, scratch: &mut [u8], pump: Pump) -> io::Result<()> {
    let Pump {
        max_pending,
        trigger,
        to_eagain,
        draining,
    } = pump;
    // The time input arrived, for the idle timeout: read fresh (not the
    // last `tick`'s: the loop may have slept since), and only when bytes
    // come — most calls here write, or find nothing, and need no clock.
    let mut now = None;
    let budget = match trigger {
        Trigger::Level => 1,
        Trigger::Edge => EDGE_READ_BUDGET,
    };
    let mut reads = 0;
    loop {
        if entry.writable && entry.conn.pending() > 0 {
            write_out(entry)?;
        }
        if !entry.readable || !entry.conn.wants_read(max_pending) || reads == budget {
            break;
        }
        reads += 1;
        let room = entry.conn.read_room(max_pending).min(scratch.len());
        match sys::recv(entry.socket.as_fd(), &mut scratch[..room]) {
            Ok(0) => entry.conn.end_of_input(draining),
            Ok(n) => {
                let now = *now.get_or_insert_with(Instant::now);
                counters::add(Counter::BytesIn, n as u64);
                let lines = entry.conn.receive(&scratch[..n], now);
                counters::add(Counter::Requests, lines);
                // A short read emptied the socket's receive queue: under
                // edge triggering, data arriving from now on raises a new
                // event, so there is no need to pay for the read that
                // would only say EAGAIN (tokio and mio make the same bet).
                // Unless the FIN already came: its edge is spent, and the
                // end of stream must be read now.
                if n < room && !entry.read_closed && !to_eagain {
                    entry.readable = false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => entry.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if trigger == Trigger::Level {
        // The kernel will say so again if it is still true.
        entry.readable = false;
    }
    Ok(())
}

/// Writes as much pending output as the socket takes.
fn write_out(entry: &mut Entry) -> io::Result<()> {
    while entry.conn.pending() > 0 {
        match sys::send(entry.socket.as_fd(), entry.conn.unsent()) {
            Ok(n) => {
                counters::add(Counter::BytesOut, n as u64);
                entry.conn.sent(n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                entry.writable = false;
                break;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The driver without a poller: the test plays the model, saying which
    //! connection is ready, and talks to it over loopback sockets.

    use super::*;
    use crate::server::listener;
    use crate::sys::Blocking;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// `MAX_CONNS` is counted process-wide (shared with forked children),
    /// so these tests, which open connections, take turns.
    static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn turn() -> std::sync::MutexGuard<'static, ()> {
        TURNS.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn driver(config: &Config, trigger: Trigger) -> (Driver, std::net::SocketAddr, StopFlag) {
        let listener = listener::bind("127.0.0.1:0", false).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = Acceptor::new(listener, Blocking::No, config.max_conns).expect("acceptor");
        let stop = StopFlag::detached();
        let driver = Driver::new(acceptor, config, trigger).with_stop_flag(stop);
        (driver, addr, stop)
    }

    /// Accepts until the driver has `n` connections (the kernel may take
    /// a moment to queue them), returning their tokens.
    fn accept(driver: &mut Driver, n: usize) -> Vec<Token> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while driver.len() < n && Instant::now() < deadline {
            driver.accept_ready().expect("accept");
        }
        assert_eq!(driver.len(), n);
        driver.changes().count();
        driver.conns().map(|(token, _, _)| token).collect()
    }

    /// Services `token` as readable until `client` has `want` bytes.
    fn answer(driver: &mut Driver, token: Token, client: &mut TcpStream, want: &[u8]) {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut got = vec![0; want.len()];
        driver.service(token, Ready::READ);
        client.read_exact(&mut got).expect("answer");
        assert_eq!(got, want);
    }

    #[test]
    fn a_line_in_pieces_is_answered_once_it_is_whole() {
        let _turn = turn();
        let config = Config::default();
        let (mut driver, addr, _) = driver(&config, Trigger::Level);
        let mut client = TcpStream::connect(addr).expect("connect");
        let token = accept(&mut driver, 1)[0];
        client.write_all(b"hel").expect("send");
        std::thread::sleep(Duration::from_millis(20));
        driver.service(token, Ready::READ);
        client.write_all(b"lo\nagain\n").expect("send");
        answer(&mut driver, token, &mut client, b"HELLO\nAGAIN\n");
    }

    #[test]
    fn max_conns_turns_the_extra_connection_away() {
        let _turn = turn();
        let config = Config {
            max_conns: 1,
            ..Config::default()
        };
        let (mut driver, addr, _) = driver(&config, Trigger::Level);
        let _first = TcpStream::connect(addr).expect("connect");
        accept(&mut driver, 1);
        let mut second = TcpStream::connect(addr).expect("connect");
        std::thread::sleep(Duration::from_millis(20));
        driver.accept_ready().expect("accept");
        assert_eq!(driver.len(), 1);
        let mut refusal = String::new();
        second.read_to_string(&mut refusal).expect("read");
        assert_eq!(refusal, "error: too many connections\n");
    }

    #[test]
    fn the_drain_answers_what_arrived_closes_the_listener_and_ends() {
        let _turn = turn();
        let config = Config::default();
        let (mut driver, addr, stop) = driver(&config, Trigger::Level);
        let mut client = TcpStream::connect(addr).expect("connect");
        let token = accept(&mut driver, 1)[0];
        client.write_all(b"owed\nunfinished").expect("send");
        std::thread::sleep(Duration::from_millis(20));
        stop.raise();
        driver.tick();
        let closed_listener = driver
            .changes()
            .any(|c| matches!(c, Change::ListenerClosed { .. }));
        assert!(closed_listener, "the drain stops accepting");
        // Level-triggered, one read per report: the end of stream that the
        // drain's shutdown(SHUT_RD) made comes with the next.
        for _ in 0..3 {
            driver.service(token, Ready::READ);
        }
        assert!(driver.finished(), "answered and closed");
        // The model closes the sockets the changes hand it.
        driver.changes().count();
        let mut got = String::new();
        client.read_to_string(&mut got).expect("read");
        assert_eq!(got, "OWED\n", "an unfinished line is not answered");
    }

    #[test]
    fn edge_triggered_reads_stop_at_the_budget_and_defer_the_rest() {
        let _turn = turn();
        // Reads of at most 64 bytes (the room under MAX_PENDING), so the
        // budget runs out long before the socket is empty.
        let config = Config {
            max_pending: 64,
            ..Config::default()
        };
        let (mut driver, addr, _) = driver(&config, Trigger::Edge);
        let client = TcpStream::connect(addr).expect("connect");
        let token = accept(&mut driver, 1)[0];
        // Far more than the budget's worth of reads: 16 reads of 64 bytes.
        let burst = b"0123456789abcdef0123456789abcdef0123456789abcdef012345678901234\n"
            .repeat(EDGE_READ_BUDGET * 64);
        let writer = {
            let mut client = client.try_clone().expect("clone");
            std::thread::spawn(move || client.write_all(&burst))
        };
        // Read the answers on the side, so the driver never has to wait.
        let mut reader = client.try_clone().expect("clone");
        let drained = std::thread::spawn(move || {
            let mut sink = [0u8; 65536];
            let mut total = 0;
            while let Ok(n @ 1..) = reader.read(&mut sink) {
                total += n;
            }
            total
        });
        std::thread::sleep(Duration::from_millis(200));
        driver.service(token, Ready::READ);
        assert!(driver.has_deferred(), "the budget ran out with bytes left");
        // Keep serving (as reports of new bytes would make a model do)
        // until the client has sent everything.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !writer.is_finished() && Instant::now() < deadline {
            driver.run_deferred().expect("deferred");
            driver.service(token, Ready::BOTH);
        }
        writer.join().expect("writer").expect("write");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !driver.is_empty() && Instant::now() < deadline {
            driver.service(token, Ready::BOTH);
            driver.run_deferred().expect("deferred");
        }
        assert!(driver.is_empty());
        drop(driver);
        assert_eq!(drained.join().expect("reader"), EDGE_READ_BUDGET * 64 * 64);
    }
}
