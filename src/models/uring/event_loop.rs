//! The loop: submit what is queued, wait for completions, advance the
//! sessions they are about, and keep the timers.

use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types};

use super::session::{parse_user_data, user_data, Op, Session, Socket};
use super::setup::Features;
use super::{BUFFER_SIZE, PAUSE, SINGLE_SHOT_BUFFER};
use crate::server::config::Config;
use crate::server::conn::Conn;
use crate::server::listener::{self, AcceptError, ConnPermit};
use crate::server::protocol::ERR_TOO_MANY_CONNS;
use crate::server::shutdown;
use crate::server::slab::{Key, Slab};
use crate::server::timers::Timers;
use crate::sys::counters::{self, bump, Counter};
use crate::sys::uring::{self as ring, Ring};
use crate::sys::{self, MemoryReturn};

/// `IORING_SEND_ZC_REPORT_USAGE` (6.2): the notification says whether
/// the kernel sent from our pages or copied them; `IORING_NOTIF_USAGE_ZC_COPIED`
/// is how it says "copied" (`include/uapi/linux/io_uring.h`).
const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// The most one bundled receive completion carries: 16 buffers.
const BUNDLE_MOST: u32 = 16 * BUFFER_SIZE as u32;
const ZC_COPIED: u32 = 1 << 31;

/// At most this many looks at the completion queue before idle timers are
/// judged (see `bookkeeping`).
const REAPS_BEFORE_JUDGING: usize = 64;

/// One ring and its connections.
pub struct Loop<'a> {
    ring: Ring,
    config: &'a Config,
    features: Features,
    listener: Option<TcpListener>,
    sessions: Slab<Session>,
    timers: Timers<Key>,
    accept: Accept,
    drain_deadline: Option<Instant>,
    now: Instant,
    /// Entries that did not fit in the submission queue, in order: they
    /// go in as soon as it has room (io-uring's own echo example keeps
    /// the same backlog), and the loop does not sleep while any wait.
    /// Each is marked if the next one is linked to it: a chain goes in
    /// whole or not at all (see `push_chain`).
    backlog: VecDeque<(squeue::Entry, bool)>,
    completions: Vec<(u64, i32, u32)>,
    memory_return: MemoryReturn,
    /// The buffers of zero-copy sends whose sessions were freed before the
    /// kernel's notification came, by the send's user data: dropped at the
    /// notification, or with the loop (after the ring: see `Session::idle`).
    zc_leftovers: Vec<(u64, Vec<u8>)>,
    /// Sends queued since the last `io_uring_enter` (see `wait_and_reap`).
    answers_queued: usize,
}

/// The listener's accept: armed or not, and paused after an error that
/// retrying at once would only repeat.
#[derive(Default)]
struct Accept {
    armed: bool,
    paused_until: Option<Instant>,
}

impl<'a> Loop<'a> {
    /// A loop over `ring` (with its provided buffers if `features` says
    /// multishot) serving connections from `listener`.
    pub fn new(ring: Ring, listener: TcpListener, config: &'a Config, features: Features) -> Self {
        Loop {
            ring,
            config,
            features,
            listener: Some(listener),
            sessions: Slab::new(),
            timers: Timers::new(),
            accept: Accept::default(),
            drain_deadline: None,
            now: Instant::now(),
            backlog: VecDeque::new(),
            completions: Vec::with_capacity(1024),
            memory_return: MemoryReturn::default(),
            zc_leftovers: Vec::new(),
            answers_queued: 0,
        }
    }

    /// Serves until a stop signal and the drain are over.
    pub fn run(&mut self) -> io::Result<()> {
        self.arm_accept();
        let wake = opcode::PollAdd::new(
            types::Fd(shutdown::wake_fd().as_raw_fd()),
            libc::POLLIN as u32,
        )
        .build()
        .user_data(user_data(Op::Wake, None));
        // SAFETY: PollAdd lends no memory; the eventfd lives for ever.
        unsafe { self.push(wake) };
        loop {
            self.now = Instant::now();
            self.bookkeeping()?;
            // Done when drained *and* the accept's final completion is in:
            // until then the kernel holds the listener, and its port would
            // stay bound for a moment after we exit.
            if self.drain_deadline.is_some() && self.sessions.is_empty() && !self.accept.armed {
                return Ok(());
            }
            let timeout = if self.backlog.is_empty() {
                self.next_deadline()
            } else {
                Some(Duration::ZERO)
            };
            self.wait_and_reap(timeout)?;
        }
    }

    /// Moves what waits in the backlog into the submission queue, submits,
    /// waits up to `timeout` for a completion, and handles every completion
    /// that has arrived.
    fn wait_and_reap(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.flush_backlog();
        // Read before the wait: completions dropped during it count too.
        let before = self.ring.ring_mut().completion().overflow();
        // A send to a socket with room completes while it is submitted, so
        // a call that submits answers and waits for "one completion"
        // returns at once with the answers' own completions, and only the
        // next call sleeps until requests come: two calls per batch. With
        // `--min-wait-us` this call waits for one completion more than the
        // answers — the next request — but for no longer than the bound:
        // an answer that cannot complete (a client that does not read)
        // must not hold another client's request unanswered for longer.
        let (want, min_wait) = match (self.features.min_wait, self.answers_queued) {
            (Some(bound), answers) if answers > 0 && timeout != Some(Duration::ZERO) => {
                (answers + 1, Some(bound))
            }
            _ => (1, None),
        };
        self.answers_queued = 0;
        ring::submit_and_wait(self.ring.ring(), want, timeout, min_wait)?;
        self.now = Instant::now();
        self.completions.clear();
        self.completions.extend(
            self.ring
                .ring_mut()
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        // The ring's overflow counter counts every completion the kernel
        // dropped: all of them on a full ring before Linux 5.5, since then
        // (IORING_FEAT_NODROP) only those it could not even queue for
        // later, out of memory. The one place they are counted (the EBADR
        // that follows a drop is not counted again).
        let dropped = self
            .ring
            .ring_mut()
            .completion()
            .overflow()
            .wrapping_sub(before);
        counters::add(Counter::Overflows, u64::from(dropped));
        for i in 0..self.completions.len() {
            let (data, result, flags) = self.completions[i];
            self.complete(data, result, flags);
        }
        if let Some(buffers) = self.ring.buffers() {
            buffers.publish();
        }
        Ok(self.completions.len())
    }

    /// Queues an operation; if the submission queue is full it waits in
    /// the backlog, and goes in at the next turn of the loop (after the
    /// kernel took the queue and we reaped what completed — pushing and
    /// submitting in a loop here could spin while the completion queue is
    /// full and the kernel answers `EBUSY`).
    ///
    /// # Safety
    ///
    /// Whatever memory `entry` lends the kernel must stay valid and unmoved
    /// until its completion arrives (argued at each call).
    unsafe fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: passed on from the caller.
        unsafe { self.push_chain(&[entry]) }
    }

    /// Queues linked entries (each but the last flagged `IO_LINK` or
    /// `IO_HARDLINK`) so that the kernel sees them *together*: with
    /// `SQPOLL` its thread takes entries as soon as the queue's tail
    /// moves, and a chain whose head it took alone would be cut there —
    /// the close linked after a send could then run before the send.
    ///
    /// # Safety
    ///
    /// As for [`push`](Self::push), for every entry.
    unsafe fn push_chain(&mut self, chain: &[squeue::Entry]) {
        // SAFETY: passed on from the caller; `push_multiple` moves the
        // queue's tail once, after all of them.
        if self.backlog.is_empty()
            && unsafe { self.ring.ring_mut().submission().push_multiple(chain) }.is_ok()
        {
            return;
        }
        let last = chain.len().saturating_sub(1);
        let marked = chain.iter().enumerate().map(|(i, e)| (e.clone(), i < last));
        self.backlog.extend(marked);
    }

    fn flush_backlog(&mut self) {
        let Loop { ring, backlog, .. } = self;
        // One queue handle: the tail moves once, when it drops.
        let mut queue = ring.ring_mut().submission();
        while !backlog.is_empty() {
            let length = 1 + backlog.iter().take_while(|(_, linked)| *linked).count();
            let chain: Vec<squeue::Entry> = backlog
                .iter()
                .take(length)
                .map(|(e, _)| e.clone())
                .collect();
            // SAFETY: each entry's memory was argued when it was pushed,
            // and stays valid until its completion, which has not come.
            if unsafe { queue.push_multiple(&chain) }.is_err() {
                break; // full again: the rest at the next turn
            }
            backlog.drain(..length);
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        [
            self.timers.next(),
            self.drain_deadline,
            self.accept.paused_until,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(self.now))
    }

    /// Timers, the end of an accept pause, and the drain.
    fn bookkeeping(&mut self) -> io::Result<()> {
        if self.timers.next().is_some_and(|at| at <= self.now) {
            // Before judging a connection idle, take in what the kernel has
            // finished for us: a loop that was stopped (SIGSTOP, a
            // debugger) wakes to its timers and its completions at once.
            // The kernel runs the receives it deferred to us in batches
            // (since Linux 6.13, a few dozen per call), so one look is not
            // enough: look until a look brings nothing new (bounded, for a
            // server so busy that something new always arrives).
            for _ in 0..REAPS_BEFORE_JUDGING {
                if self.wait_and_reap(Some(Duration::ZERO))? == 0 {
                    break;
                }
            }
        }
        while let Some(key) = self.timers.pop_due(self.now) {
            self.expire(key);
        }
        if self.accept.paused_until.is_some_and(|at| at <= self.now) {
            self.accept.paused_until = None;
            self.arm_accept();
        }
        if shutdown::requested() && self.drain_deadline.is_none() {
            self.begin_drain();
        }
        if self.drain_deadline.is_some_and(|at| at <= self.now) {
            for key in self.sessions.keys() {
                self.close(key);
            }
        }
        Ok(())
    }

    fn arm_accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        if self.accept.armed || self.accept.paused_until.is_some() || self.drain_deadline.is_some()
        {
            return;
        }
        let fd = types::Fd(listener.as_raw_fd());
        // With direct descriptors the kernel puts each new socket in a
        // free slot of the ring's file table, not in the process's (so
        // there is nothing to close on exec: the kernel refuses the flag).
        let direct = self.features.direct;
        let flags = if direct { 0 } else { libc::SOCK_CLOEXEC };
        let entry = if self.features.multishot {
            opcode::AcceptMulti::new(fd)
                .flags(flags)
                .allocate_file_index(direct)
                .build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(flags)
                .file_index(direct.then(types::DestinationSlot::auto_target))
                .build()
        };
        self.accept.armed = true;
        // SAFETY: accept lends no memory (null address pointers).
        unsafe { self.push(entry.user_data(user_data(Op::Accept, None))) }
    }

    fn complete(&mut self, data: u64, result: i32, flags: u32) {
        match parse_user_data(data) {
            Some((Op::Accept, _)) => self.accepted(result, flags),
            Some((Op::Recv, key)) => self.received(key, result, flags),
            Some((Op::Send, key)) => self.send_completed(key, result, flags),
            Some((Op::Wake, _)) => self.begin_drain(),
            Some((Op::Shutdown, key)) => {
                if let Some(session) = self.sessions.get_mut(key) {
                    session.shutdowns_in_flight -= 1;
                    self.progress(key);
                }
            }
            // A cancel's target's own completion says the rest.
            Some((Op::Cancel | Op::Quiet, _)) | None => {}
        }
    }

    fn accepted(&mut self, result: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept.armed = false;
        }
        if result >= 0 {
            bump(Counter::OpAccept);
            bump(Counter::Accepted);
            let socket = if self.features.direct {
                // The slot the kernel chose in the ring's file table.
                Socket::Direct(result as u32)
            } else {
                // SAFETY: a successful accept's result is a new descriptor
                // that nothing else owns.
                Socket::Fd(unsafe { OwnedFd::from_raw_fd(result) })
            };
            self.open_session(socket);
        } else {
            // The readiness models' acceptor sorts the errors the same way.
            match AcceptError::of(&io::Error::from_raw_os_error(-result)) {
                AcceptError::Empty | AcceptError::Transient => {}
                // The connection stays queued (or the listener is broken):
                // re-arming at once would fail the same way in a loop.
                // Pause, and try again after a while — or as soon as a
                // session closes and frees a descriptor.
                AcceptError::OutOfDescriptors | AcceptError::ShortOfMemory | AcceptError::Fatal => {
                    self.accept.paused_until = Some(self.now + PAUSE);
                    if self.accept.armed {
                        self.cancel(user_data(Op::Accept, None));
                    }
                }
            }
        }
        if !self.accept.armed && self.drain_deadline.is_none() {
            self.arm_accept();
        }
    }

    fn open_session(&mut self, socket: Socket) {
        if self.drain_deadline.is_some() {
            return self.release(socket); // accepted as the drain began
        }
        let Some(place) = ConnPermit::try_acquire(self.config.max_conns) else {
            return self.turn_away(socket);
        };
        // No TCP_NODELAY here: the socket inherited it from the listener
        // (see `super::run`), one setsockopt for all connections.
        let conn = Conn::new(self.config, self.now);
        let timer = conn.idle_deadline(self.config);
        let key = self
            .sessions
            .insert(Session::new(socket, conn, timer, place));
        if let Some(at) = timer {
            self.timers.insert(at, key);
        }
        self.memory_return.note(self.sessions.len());
        self.progress(key);
    }

    fn received(&mut self, key: Key, result: i32, flags: u32) {
        let now = self.now;
        let bundle = self.features.bundle;
        let lent = cqueue::buffer_select(flags).and_then(|bid| {
            let buffers = self.ring.buffers_mut()?;
            // SAFETY: the bid comes from this completion, which hands the
            // buffers over once; they are taken here and nowhere else.
            Some(unsafe { buffers.take(bid, result.max(0) as usize, bundle) })
        });
        let Some(session) = self.sessions.get_mut(key) else {
            // A stale completion: still return the buffer it took.
            if let (Some(lent), Some(buffers)) = (lent, self.ring.buffers_mut()) {
                buffers.give_back(lent);
            }
            return;
        };
        if !cqueue::more(flags) {
            session.recv_in_flight = false;
            session.recv_cancelling = false;
        }
        session.fresh = false;
        match result {
            n if n > 0 => {
                bump(Counter::OpRecv);
                counters::add(Counter::BytesIn, n as u64);
                let lines = match (lent, self.ring.buffers_mut()) {
                    (Some(lent), Some(buffers)) => {
                        let lines = buffers
                            .bytes(&lent)
                            .map(|bytes| session.conn.receive(bytes, now))
                            .sum();
                        buffers.give_back(lent);
                        lines
                    }
                    _ => {
                        let buffer = session.recv_buffer.as_deref().unwrap_or(&[]);
                        let n = (n as usize).min(buffer.len());
                        session.conn.receive(&buffer[..n], now)
                    }
                };
                counters::add(Counter::Requests, lines);
            }
            0 => {
                bump(Counter::OpRecv);
                session.conn.end_of_input(self.drain_deadline.is_some());
            }
            // The buffer ring ran dry for a moment (ended the multishot),
            // or our own backpressure cancel: arm again when it makes sense.
            e if -e == libc::ENOBUFS || -e == libc::ECANCELED => {}
            // A kernel before 6.17 refuses the capped receive: arm plain
            // multishot receives from now on (cancelled on backpressure).
            e if -e == libc::EINVAL && self.features.recv_capped => {
                self.features.recv_capped = false;
                eprintln!("lab: uring: this kernel has no capped multishot recv (6.17); cancelling on backpressure instead");
            }
            _ => {
                if !session.closing {
                    counters::conn_error();
                }
                return self.close(key);
            }
        }
        self.progress(key);
    }

    /// A send's completion. A zero-copy send completes twice: first with
    /// its result (flagged *more*), then with a *notification* once the
    /// network stack has let go of the pages it sent from. Until then
    /// `sending` is still the kernel's: the bytes sent may not even be
    /// dropped from the front of it, for that moves the rest. So the
    /// result waits in `zc_result` and is acted on at the notification.
    fn send_completed(&mut self, key: Key, result: i32, flags: u32) {
        let Some(session) = self.sessions.get_mut(key) else {
            if cqueue::notif(flags) {
                // The session was freed first: its buffer can go now.
                let data = user_data(Op::Send, Some(key));
                self.zc_leftovers.retain(|(lent, _)| *lent != data);
            }
            return;
        };
        if cqueue::notif(flags) {
            // The notification's result says whether the kernel could send
            // from our pages or had to copy them after all (as it does
            // for a peer on the same machine: loopback).
            if result as u32 & ZC_COPIED != 0 {
                bump(Counter::OpSendZcCopied);
            }
            let result = session.zc_result.take().unwrap_or(0);
            return self.sent(key, result);
        }
        if cqueue::more(flags) {
            session.zc_result = Some(result);
            // The buffer is still lent: wait for the notification — unless
            // the session is closing, which need not wait (`Session::idle`).
            if session.closing {
                self.free_if_idle(key);
            }
            return;
        }
        self.sent(key, result)
    }

    fn sent(&mut self, key: Key, result: i32) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        session.send_in_flight = false;
        if result < 0 {
            if !session.closing {
                counters::conn_error();
            }
            session.sending.clear();
            return self.close(key);
        }
        bump(Counter::OpSend);
        let n = result as usize;
        counters::add(Counter::BytesOut, n as u64);
        // A short send: the rest goes next, before any newer answer.
        session.sending.drain(..n.min(session.sending.len()));
        if session.sending.is_empty() && session.sending.capacity() > 4096 {
            session.sending = Vec::new(); // an idle session keeps no big buffer
        }
        self.progress(key);
    }

    /// Moves a session forward: send what is owed, close it when done,
    /// keep a receive armed exactly while it wants input.
    fn progress(&mut self, key: Key) {
        let max_pending = self.config.max_pending;
        let features = self.features;
        let group = self.ring.buffers().map_or(0, |b| b.group());
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if session.closing {
            return self.free_if_idle(key);
        }
        let (fd, fixed) = session.socket.target();

        if !session.send_in_flight && (!session.sending.is_empty() || session.conn.pending() > 0) {
            if session.sending.is_empty() {
                session.conn.move_unsent_into(&mut session.sending);
            }
            let (bytes, len) = (session.sending.as_ptr(), session.sending.len() as u32);
            let entry = if features.send_zc_min.is_some_and(|min| len as usize >= min) {
                bump(Counter::OpSendZc);
                opcode::SendZc::new(fd, bytes, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .zc_flags(SEND_ZC_REPORT_USAGE)
                    .build()
            } else {
                opcode::Send::new(fd, bytes, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            };
            let entry = entry.flags(fixed).user_data(user_data(Op::Send, Some(key)));
            session.send_in_flight = true;
            self.answers_queued += 1;
            // SAFETY: `sending`'s heap buffer is not touched, reallocated or
            // freed until this send's last completion — for a zero-copy
            // send, its notification (`send_in_flight` stays set until
            // then: see `send_completed` and `Session::sending`).
            unsafe { self.push(entry) };
        }

        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let owed = session.conn.pending() + session.sending.len();
        if session.conn.is_done() && owed == 0 && !session.send_in_flight {
            return self.close(key);
        }
        let wants_input = session.conn.wants_read(max_pending) && owed < max_pending;
        if wants_input && !session.recv_in_flight {
            let room = u32::try_from(max_pending - owed).unwrap_or(u32::MAX);
            let entry = if features.multishot && features.recv_capped {
                // At most the room left under MAX_PENDING, then it ends and
                // is armed again with the room there is then: the bound
                // holds exactly, with no cancel racing the kernel.
                let per_recv = if features.bundle {
                    BUNDLE_MOST
                } else {
                    BUFFER_SIZE as u32
                };
                ring::recv_multi_capped(fd, group, room, room.min(per_recv))
            } else if features.multishot {
                opcode::RecvMulti::new(fd, group).build()
            } else {
                let buffer = session
                    .recv_buffer
                    .get_or_insert_with(|| vec![0; SINGLE_SHOT_BUFFER].into_boxed_slice());
                opcode::Recv::new(fd, buffer.as_mut_ptr(), buffer.len() as u32).build()
            };
            // A connection just accepted has most likely sent nothing yet.
            let entry = if session.fresh {
                ring::poll_first(entry)
            } else {
                entry
            };
            let entry = if features.bundle && features.multishot {
                ring::bundle(entry)
            } else {
                entry
            };
            session.recv_in_flight = true;
            // SAFETY: multishot: the buffers are the ring's, unmapped only
            // after the group is unregistered (`Ring`); single-shot: the
            // boxed buffer lives in the session, which is not freed while a
            // recv is in flight (`free_if_idle`).
            unsafe { self.push(entry.flags(fixed).user_data(user_data(Op::Recv, Some(key)))) };
        } else if !wants_input
            && session.recv_in_flight
            && features.multishot
            && !features.recv_capped
            && !session.recv_cancelling
        {
            session.recv_cancelling = true;
            self.cancel(user_data(Op::Recv, Some(key)));
        }
    }

    fn cancel(&mut self, target: u64) {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data(Op::Cancel, None));
        // SAFETY: a cancel lends no memory.
        unsafe { self.push(entry) }
    }

    /// Starts closing a session: shut the socket down so everything in
    /// flight completes, and free it once nothing is.
    fn close(&mut self, key: Key) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if !session.closing {
            session.closing = true;
            self.shut_down(key, libc::SHUT_RDWR);
        }
        self.free_if_idle(key)
    }

    /// `shutdown(2)` of a session's socket: at once for a descriptor; for
    /// a direct descriptor an operation, counted until its completion
    /// (see `Session::shutdowns_in_flight`).
    fn shut_down(&mut self, key: Key, how: i32) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        match session.socket {
            Socket::Fd(ref fd) => sys::shutdown(fd.as_raw_fd(), how),
            Socket::Direct(slot) => {
                session.shutdowns_in_flight += 1;
                let entry = opcode::Shutdown::new(types::Fixed(slot), how)
                    .build()
                    .user_data(user_data(Op::Shutdown, Some(key)));
                // SAFETY: a shutdown lends no memory.
                unsafe { self.push(entry) }
            }
        }
    }

    /// Queues housekeeping that lends no memory and wants no completion
    /// unless it fails (and then there is nothing to do but carry on).
    fn push_quiet(&mut self, entry: squeue::Entry) {
        let entry = entry
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(user_data(Op::Quiet, None));
        // SAFETY: close lends no memory (and the message to a client turned
        // away is a constant).
        unsafe { self.push(entry) }
    }

    /// Closes a socket: a descriptor by dropping it, a direct descriptor by
    /// an `IORING_OP_CLOSE` of its slot (there is no close(2) for it).
    fn release(&mut self, socket: Socket) {
        if let Socket::Direct(slot) = socket {
            self.push_quiet(opcode::Close::new(types::Fixed(slot)).build());
        }
    }

    /// Tells a client over `MAX_CONNS` so, and closes it. A direct
    /// descriptor has no `send(2)`: the message and the close go as two
    /// *linked* entries, the close hard-linked after the send so it runs
    /// even if the send fails (a plain link would cancel it).
    fn turn_away(&mut self, socket: Socket) {
        match socket {
            Socket::Fd(fd) => listener::turn_away(fd),
            Socket::Direct(slot) => {
                let message = opcode::Send::new(
                    types::Fixed(slot),
                    ERR_TOO_MANY_CONNS.as_ptr(),
                    ERR_TOO_MANY_CONNS.len() as u32,
                )
                .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                .build()
                .flags(squeue::Flags::IO_HARDLINK | squeue::Flags::SKIP_SUCCESS)
                .user_data(user_data(Op::Quiet, None));
                let close = opcode::Close::new(types::Fixed(slot))
                    .build()
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(user_data(Op::Quiet, None));
                // SAFETY: the message is a `'static` constant; close lends
                // nothing.
                unsafe { self.push_chain(&[message, close]) };
            }
        }
    }

    fn free_if_idle(&mut self, key: Key) {
        if !self.sessions.get(key).is_some_and(Session::idle) {
            return;
        }
        let mut session = self.sessions.remove(key).expect("checked");
        if let Some(at) = session.timer {
            self.timers.remove(at, key);
        }
        if session.zc_result.is_some() {
            let lent = std::mem::take(&mut session.sending);
            self.zc_leftovers
                .push((user_data(Op::Send, Some(key)), lent));
        }
        self.release(session.socket);
        drop(session._place); // gives the MAX_CONNS place back
        self.memory_return.note(self.sessions.len());
        // A descriptor is free again: if accepting was paused for lack of
        // one, try now.
        if self.accept.paused_until.take().is_some() {
            self.arm_accept();
        }
    }

    /// An idle timer came due: file it again if the session has received
    /// since, or time it out.
    fn expire(&mut self, key: Key) {
        let (config, now) = (self.config, self.now);
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        // Before cutting a connection off (not for a busy one, whose
        // deadline has simply moved): bytes the kernel still holds for us
        // mean the client did send, so it is not idle (see the driver's
        // `expire` for why we look).
        // (A direct descriptor cannot be asked: there the reap that
        // `bookkeeping` just did is the answer, since an armed multishot
        // receive reports every byte that arrived.)
        let passed = !matches!(session.conn.idle_deadline(config), Some(at) if at > now);
        if let (true, Socket::Fd(fd)) = (passed, &session.socket) {
            if sys::bytes_queued(fd.as_fd()).is_ok_and(|n| n > 0) {
                session.conn.input_arrived(now);
            }
        }
        session.timer = self
            .timers
            .refile_or_expire(key, session.conn.idle_deadline(config), now);
        if session.timer.is_some() {
            return;
        }
        if session.send_in_flight {
            // It is not reading either: no point queueing the error.
            return self.close(key);
        }
        session.conn.time_out();
        self.progress(key)
    }

    /// Stops accepting and shuts down every read side: each session answers
    /// what it has received and ends (see [`crate::server::shutdown`]).
    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() {
            return;
        }
        self.drain_deadline = Some(self.now + self.config.drain_timeout);
        if self.accept.armed {
            // The listener itself is dropped with the loop, after the
            // accept's last completion (see `run`).
            self.cancel(user_data(Op::Accept, None));
        }
        for key in self.sessions.keys() {
            self.shut_down(key, libc::SHUT_RD);
            self.progress(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_loop(config: &Config) -> Loop<'_> {
        let listener = crate::server::listener::bind("127.0.0.1:0", false).expect("bind");
        let ring = ring::new_ring(4, None).expect("io_uring");
        let features = Features {
            multishot: false,
            recv_capped: false,
            direct: false,
            send_zc_min: None,
            bundle: false,
            min_wait: None,
        };
        Loop::new(Ring::new(ring), listener, config, features)
    }

    /// An accept error that retrying would only repeat pauses accepting,
    /// whatever it is: before, only EMFILE/ENFILE did, and a persistent
    /// ENOMEM or a firewall's EPERM re-armed the accept at once, for ever.
    #[test]
    fn a_persistent_accept_error_pauses_instead_of_spinning() {
        let config = Config::default();
        for errno in [libc::EMFILE, libc::ENOMEM, libc::ENOBUFS, libc::EPERM] {
            let mut event_loop = small_loop(&config);
            event_loop.arm_accept();
            event_loop.accepted(-errno, 0);
            assert!(event_loop.accept.paused_until.is_some(), "errno {errno}");
            assert!(!event_loop.accept.armed, "errno {errno}: re-armed at once");
        }
        // A transient one (the peer gave up while queued) re-arms at once.
        let mut event_loop = small_loop(&config);
        event_loop.arm_accept();
        event_loop.accepted(-libc::ECONNABORTED, 0);
        assert!(event_loop.accept.paused_until.is_none());
        assert!(event_loop.accept.armed);
    }

    /// A full submission queue sends entries to the backlog, in order,
    /// instead of submitting in a loop; the next turn takes them in.
    #[test]
    fn a_full_submission_queue_fills_the_backlog_and_the_next_turn_drains_it() {
        let config = Config::default();
        let mut event_loop = small_loop(&config);
        // User data whose low byte names no operation of ours: the loop
        // ignores their completions.
        for i in 0..10u64 {
            // SAFETY: a no-op lends no memory.
            unsafe { event_loop.push(opcode::Nop::new().build().user_data(0x100 * (i + 1))) };
        }
        assert_eq!(event_loop.backlog.len(), 6, "4 fit in the queue");
        let first = event_loop.backlog.front().map(|(e, _)| e.get_user_data());
        assert_eq!(first, Some(0x500), "the backlog keeps the order");
        // The kernel takes the four queued, and the next turn four more.
        event_loop
            .wait_and_reap(Some(Duration::ZERO))
            .expect("wait");
        event_loop
            .wait_and_reap(Some(Duration::ZERO))
            .expect("wait");
        assert_eq!(event_loop.backlog.len(), 2, "the queue took 4 more");
    }
}
