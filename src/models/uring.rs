//! # `uring` — completion: "tell me when this read is done"
//!
//! Every model so far asks the kernel a *readiness* question — which
//! sockets can I read without blocking? — and then makes the `recv` and
//! `send` calls itself, one syscall each. io_uring (Linux 5.1, Jens Axboe)
//! turns the question around: the program hands the kernel whole
//! operations — accept on this listener, receive on this socket, send these
//! bytes — through a ring of submission entries in shared memory, and
//! collects their results from a ring of completion entries. One
//! `io_uring_enter` submits everything queued and waits for whatever
//! finished; the kernel does the accepts, receives and sends in between.
//! This is Stevens' fifth model, asynchronous IO, done right at last.
//!
//! ## One request, step by step
//!
//! ```text
//! loop                                  kernel                       client
//! SQ: AcceptMulti(listener)   (once: keeps accepting)
//! io_uring_enter(submit, wait 1) ..                                  connect()
//!                                       accept → CQE{fd}
//!         returns
//! SQ: RecvMulti(fd, buffer group)  (once: keeps receiving)
//! io_uring_enter ..........                                          "hi\n"
//!                                       copies into a ring buffer
//!                                       → CQE{3 bytes, buffer 17}
//!         returns
//! codec(buffer 17) → "HI\n"; buffer 17 back to the ring
//! SQ: Send(fd, "HI\n")
//! io_uring_enter ..........             sends → CQE{3}
//! ```
//!
//! With a thousand busy connections one `io_uring_enter` carries hundreds
//! of completions out and hundreds of sends in: syscalls per request fall
//! far below one, where a readiness loop needs at least two (`recv` and
//! `send`) plus its share of `epoll_wait`. The summary shows both numbers:
//! `syscalls` (the `io_uring_enter`s) and `operations` (what the kernel did).
//!
//! ## Buffers the kernel holds: the memory-safety argument
//!
//! A readiness loop lends the kernel a buffer for the length of one call.
//! Here the kernel holds our memory *between* calls, until the completion
//! arrives, so every buffer must stay alive and unmoved until then:
//!
//! - **Receive buffers** belong to a provided-buffer ring
//!   ([`BufRing`](crate::sys::uring::BufRing)): one `mmap`ed pool, never
//!   moved, unmapped only after the ring itself is dropped (the `Loop`
//!   declares `ring` before `buffers`, and fields drop in order). A
//!   multishot `recv` takes a buffer only when data arrives, so an idle
//!   connection owns none. Without multishot (`--no-multishot`, or a kernel
//!   before 6.0) each connection's single-shot `recv` uses a boxed buffer
//!   owned by its session, which is never freed while a `recv` is in flight.
//! - **Send buffers**: a session moves its pending answers into `sending`
//!   and lends that vector's heap memory to one `Send`; nothing touches
//!   `sending` until the completion (moving the session within the slab
//!   moves the `Vec` header, not its heap buffer).
//! - **Closing**: a socket is never closed with an operation in flight.
//!   `shutdown(SHUT_RDWR)` makes every in-flight `recv` and `send` complete
//!   at once; the session, with its socket and buffers, is freed only when
//!   it has none left.
//!
//! ## Backpressure, limits, shutdown
//!
//! A multishot `recv` keeps receiving on its own, so backpressure must stop
//! it from outside. From Linux 6.17 the receive carries a byte cap, the
//! room left under `MAX_PENDING` when it was armed: it ends by itself there,
//! and is armed again, with the room there is then, once answers drain. An
//! older kernel refuses the cap (`EINVAL`), and the loop falls back to
//! *cancelling* the receive (`AsyncCancel`) when a client's unsent answers
//! reach `MAX_PENDING`; a few buffers may land while the cancel travels, so
//! that bound is `MAX_PENDING` plus a few buffers. Idle timeouts use the
//! same [`Timers`] as the readiness models, their nearest deadline becoming
//! the `io_uring_enter` timeout; before a due timer is judged, the loop
//! reaps what has completed and asks the socket (`FIONREAD`) whether bytes
//! wait that no completion has reported, so a client that did send is not
//! cut off. A stop
//! signal completes a `PollAdd` on the shutdown eventfd: the accept is
//! cancelled, every read side shut down, and the loop ends when the last
//! session is freed. Out of descriptors (`EMFILE`), accepting pauses for 50
//! ms at a time rather than spinning.
//!
//! ## Options
//!
//! - `--no-multishot`: single-shot accept and recv, per-connection buffers
//!   (what a pre-6.0 kernel would get; forced here so it is tested).
//! - `--sqpoll`: a kernel thread polls the submission queue, so submitting
//!   needs no syscall at all while it is awake. It helps when a core can be
//!   spared for it; on a 2-core box it competes with the loop and the load.
//! - `--workers N`: N rings on N threads, each with its own `SO_REUSEPORT`
//!   listener, like `epoll --workers`.
//!
//! Where io_uring is unavailable (`kernel.io_uring_disabled`, a seccomp
//! filter, `ENOSYS`) the model exits with a one-line message saying so.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::config::Config;
use crate::conn::Conn;
use crate::listener::{self, ConnPermit};
use crate::shutdown;
use crate::sys::counters::{self, bump, Counter};
use crate::sys::uring::{self as ring, BufRing};
use crate::sys::{self};
use crate::timers::Timers;

/// Submission queue entries per ring.
const ENTRIES: u32 = 4096;
/// Provided receive buffers per ring, and their size: 4 MiB. The kernel
/// hands them out in ring order, so after 1,024 receives all of them have
/// been written once and stay resident: a fixed cost per ring, not per
/// connection.
const BUFFERS: u16 = 1024;
const BUFFER_SIZE: usize = 4096;
/// Receive buffer per connection without multishot.
const SINGLE_SHOT_BUFFER: usize = 16 * 1024;
/// How long accepting pauses when out of descriptors.
const EMFILE_PAUSE: Duration = Duration::from_millis(50);

// What a completion is about: the low byte of its user data.
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;
const WAKE: u64 = 4;
const CANCEL: u64 = 5;

/// The session in `slot`, unless it was freed or the slot reused since the
/// operation was submitted (its generation no longer matches).
fn live_session(slots: &mut [Slot], slot: usize, generation: u32) -> Option<&mut Session> {
    let entry = slots.get_mut(slot)?;
    if entry.generation != generation {
        return None;
    }
    entry.session.as_mut()
}

/// User data: kind in bits 0–7, slot in 8–31, slot generation in 32–63,
/// so a completion for a freed and reused slot is recognised as stale.
fn user_data(kind: u64, slot: usize, generation: u32) -> u64 {
    kind | (slot as u64) << 8 | u64::from(generation) << 32
}

/// Runs `--workers` rings, each on its own thread with its own listener.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    super::per_worker(listener, config, "uring", run)
}

/// Checks, before `lab` says it is listening, that a ring can be made here
/// with the operations the model needs: a kernel without io_uring (or with
/// it disabled) fails at start, not after the first client connected.
pub fn preflight(config: &Config) -> io::Result<()> {
    check_opcodes(&open_ring(config)?)
}

/// A ring as `--sqpoll` asks, or a clear error saying why there is none.
fn open_ring(config: &Config) -> io::Result<IoUring> {
    let sqpoll = config.tuning.sqpoll.then_some(Duration::from_millis(100));
    ring::new_ring(ENTRIES, sqpoll).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("io_uring is not available here ({e}): too old a kernel, kernel.io_uring_disabled, or a seccomp filter"),
        )
    })
}

/// One ring's life.
fn run(listener: TcpListener, config: &Config) -> io::Result<()> {
    let ring = open_ring(config)?;
    check_opcodes(&ring)?;
    let buffers = if config.tuning.no_multishot || !kernel_at_least(6, 0) {
        None
    } else {
        // SAFETY: `Loop` declares `ring` before `buffers`, so the ring is
        // dropped (and stops using the buffers) before they are unmapped.
        Some(unsafe { BufRing::new(&ring, BUFFERS, BUFFER_SIZE, 0) }?)
    };
    let mut event_loop = Loop {
        ring,
        buffers,
        config,
        listener: Some(listener),
        slots: Vec::new(),
        free: Vec::new(),
        open: 0,
        timers: Timers::new(),
        accept_armed: false,
        accept_paused_until: None,
        drain_deadline: None,
        now: Instant::now(),
        completions: Vec::with_capacity(1024),
        recv_capped: kernel_at_least(6, 17),
        memory_return: sys::MemoryReturn::default(),
    };
    let result = event_loop.run();
    counters::flush();
    result
}

/// Fails, naming the opcode, if the kernel lacks one we need.
fn check_opcodes(ring: &IoUring) -> io::Result<()> {
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot probe io_uring's operations ({e}): kernel older than 5.6?"),
        )
    })?;
    let needed = [
        ("accept", opcode::Accept::CODE),
        ("recv", opcode::Recv::CODE),
        ("send", opcode::Send::CODE),
        ("poll_add", opcode::PollAdd::CODE),
        ("async_cancel", opcode::AsyncCancel::CODE),
    ];
    for (name, code) in needed {
        if !probe.is_supported(code) {
            return Err(io::Error::other(format!(
                "this kernel's io_uring lacks the {name} operation"
            )));
        }
    }
    Ok(())
}

/// Whether the running kernel is at least `major.minor` (multishot recv
/// needs 6.0).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = sys::kernel_release();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// A connection and the operations it has in flight.
struct Session {
    socket: OwnedFd,
    conn: Conn,
    /// Bytes lent to the kernel by the `Send` in flight (see module doc).
    sending: Vec<u8>,
    send_in_flight: bool,
    recv_in_flight: bool,
    /// A cancel of the multishot recv is on its way (backpressure).
    recv_cancelling: bool,
    /// Single-shot mode: the buffer lent to the `Recv` in flight.
    recv_buffer: Option<Box<[u8]>>,
    /// Shut down; freed when nothing is in flight.
    closing: bool,
    timer: Option<Instant>,
    _place: ConnPermit,
}

impl Session {
    fn idle(&self) -> bool {
        !self.send_in_flight && !self.recv_in_flight
    }
}

struct Slot {
    generation: u32,
    session: Option<Session>,
}

/// One ring and its connections. Field order matters: `ring` drops first,
/// then the buffers it may write into (see the module doc).
struct Loop<'a> {
    ring: IoUring,
    buffers: Option<BufRing>,
    config: &'a Config,
    listener: Option<TcpListener>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    open: usize,
    timers: Timers<(usize, u32)>,
    accept_armed: bool,
    accept_paused_until: Option<Instant>,
    drain_deadline: Option<Instant>,
    now: Instant,
    completions: Vec<(u64, i32, u32)>,
    /// Multishot receives carry a byte cap (Linux 6.17), so a connection
    /// never receives past its room under `MAX_PENDING` (see `progress`).
    recv_capped: bool,
    memory_return: sys::MemoryReturn,
}

impl Loop<'_> {
    fn run(&mut self) -> io::Result<()> {
        self.arm_accept()?;
        // SAFETY: PollAdd lends no memory; the eventfd lives for ever.
        let wake = opcode::PollAdd::new(
            types::Fd(shutdown::wake_fd().as_raw_fd()),
            libc::POLLIN as u32,
        )
        .build()
        .user_data(WAKE);
        unsafe { self.push(wake) }?;
        loop {
            self.now = Instant::now();
            self.bookkeeping()?;
            // Done when drained *and* the accept's final completion is in:
            // until then the kernel holds the listener, and its port would
            // stay bound for a moment after we exit.
            if self.drain_deadline.is_some() && self.open == 0 && !self.accept_armed {
                return Ok(());
            }
            self.wait_and_reap(self.next_deadline())?;
        }
    }

    /// Submits what is queued, waits up to `timeout` for a completion, and
    /// handles every completion that has arrived.
    fn wait_and_reap(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // Read before the wait: completions dropped during it count too.
        let before = self.ring.completion().overflow();
        ring::submit_and_wait(&self.ring, timeout)?;
        self.now = Instant::now();
        self.completions.clear();
        self.completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        // The ring's overflow counter counts every completion the kernel
        // dropped: all of them on a full ring before Linux 5.5, since then
        // (IORING_FEAT_NODROP) only those it could not even queue for
        // later, out of memory. The one place they are counted (the EBADR
        // that follows a drop is not counted again).
        let dropped = self.ring.completion().overflow().wrapping_sub(before);
        counters::add(Counter::Overflows, u64::from(dropped));
        for i in 0..self.completions.len() {
            let (data, result, flags) = self.completions[i];
            self.complete(data, result, flags)?;
        }
        if let Some(buffers) = &self.buffers {
            buffers.publish();
        }
        Ok(())
    }

    /// Queues an operation, submitting first if the queue is full.
    ///
    /// # Safety
    ///
    /// Whatever memory `entry` lends the kernel must stay valid and unmoved
    /// until its completion arrives (argued at each call).
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: passed on from the caller.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            ring::submit(&self.ring)?;
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        [
            self.timers.next(),
            self.drain_deadline,
            self.accept_paused_until,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(self.now))
    }

    /// Timers, the end of an EMFILE pause, and the drain.
    fn bookkeeping(&mut self) -> io::Result<()> {
        if self.timers.next().is_some_and(|at| at <= self.now) {
            // Before judging a connection idle, take in what the kernel has
            // finished for us: a loop that was stopped (SIGSTOP, a
            // debugger) wakes to its timers and its completions at once.
            self.wait_and_reap(Some(Duration::ZERO))?;
        }
        while let Some((slot, generation)) = self.timers.pop_due(self.now) {
            self.expire(slot, generation)?;
        }
        if self.accept_paused_until.is_some_and(|at| at <= self.now) {
            self.accept_paused_until = None;
            self.arm_accept()?;
        }
        if shutdown::requested() && self.drain_deadline.is_none() {
            self.begin_drain()?;
        }
        if self.drain_deadline.is_some_and(|at| at <= self.now) {
            for slot in 0..self.slots.len() {
                self.close(slot)?;
            }
        }
        Ok(())
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let Some(listener) = &self.listener else {
            return Ok(());
        };
        if self.accept_armed || self.accept_paused_until.is_some() || self.drain_deadline.is_some()
        {
            return Ok(());
        }
        let fd = types::Fd(listener.as_raw_fd());
        let flags = libc::SOCK_CLOEXEC;
        let entry = if self.buffers.is_some() {
            opcode::AcceptMulti::new(fd).flags(flags).build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(flags)
                .build()
        };
        self.accept_armed = true;
        // SAFETY: accept lends no memory (null address pointers).
        unsafe { self.push(entry.user_data(ACCEPT)) }
    }

    fn complete(&mut self, data: u64, result: i32, flags: u32) -> io::Result<()> {
        let kind = data & 0xff;
        let slot = ((data >> 8) & 0xff_ffff) as usize;
        let generation = (data >> 32) as u32;
        match kind {
            ACCEPT => self.accepted(result, flags),
            RECV => self.received(slot, generation, result, flags),
            SEND => self.sent(slot, generation, result),
            WAKE => self.begin_drain(),
            _ => Ok(()), // CANCEL: its target's own completion says the rest
        }
    }

    fn accepted(&mut self, result: i32, flags: u32) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if result >= 0 {
            bump(Counter::OpAccept);
            bump(Counter::Accepted);
            // SAFETY: a successful accept's result is a new descriptor that
            // nothing else owns.
            let socket = unsafe { OwnedFd::from_raw_fd(result) };
            self.open_session(socket)?;
        } else if matches!(-result, libc::EMFILE | libc::ENFILE) {
            // Out of descriptors: the connection stays queued. Stop asking
            // for a while instead of failing the same accept in a loop.
            self.accept_paused_until = Some(self.now + EMFILE_PAUSE);
            if self.accept_armed {
                self.cancel(user_data(ACCEPT, 0, 0))?;
            }
        }
        if !self.accept_armed && self.drain_deadline.is_none() {
            self.arm_accept()?;
        }
        Ok(())
    }

    fn open_session(&mut self, socket: OwnedFd) -> io::Result<()> {
        if self.drain_deadline.is_some() {
            return Ok(()); // accepted as the drain began: just close it
        }
        let Some(place) = ConnPermit::try_acquire(self.config.max_conns) else {
            listener::turn_away(socket);
            return Ok(());
        };
        let _ = sys::set_nodelay(std::os::fd::AsFd::as_fd(&socket));
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation: 0,
                session: None,
            });
            self.slots.len() - 1
        });
        let conn = Conn::new(self.config, self.now);
        let timer = conn.idle_deadline(self.config);
        if let Some(at) = timer {
            self.timers.insert(at, (slot, self.slots[slot].generation));
        }
        self.slots[slot].session = Some(Session {
            socket,
            conn,
            sending: Vec::new(),
            send_in_flight: false,
            recv_in_flight: false,
            recv_cancelling: false,
            recv_buffer: None,
            closing: false,
            timer,
            _place: place,
        });
        self.open += 1;
        self.memory_return.note(self.open);
        self.progress(slot)
    }

    /// The session in `slot` if `generation` is still its own.
    fn session(&mut self, slot: usize, generation: u32) -> Option<&mut Session> {
        live_session(&mut self.slots, slot, generation)
    }

    fn received(
        &mut self,
        slot: usize,
        generation: u32,
        result: i32,
        flags: u32,
    ) -> io::Result<()> {
        let now = self.now;
        let bid = cqueue::buffer_select(flags);
        // Not `self.session`: the buffer ring is borrowed at the same time.
        let Some(session) = live_session(&mut self.slots, slot, generation) else {
            // A stale completion: still return the buffer it took.
            if let (Some(bid), Some(buffers)) = (bid, self.buffers.as_mut()) {
                buffers.give_back(bid);
            }
            return Ok(());
        };
        if !cqueue::more(flags) {
            session.recv_in_flight = false;
            session.recv_cancelling = false;
        }
        match result {
            n if n > 0 => {
                bump(Counter::OpRecv);
                let n = n as usize;
                match (bid, self.buffers.as_mut()) {
                    (Some(bid), Some(buffers)) => {
                        session.conn.receive(buffers.buffer(bid, n), now);
                        buffers.give_back(bid);
                    }
                    _ => {
                        let buffer = session.recv_buffer.as_deref().unwrap_or(&[]);
                        session.conn.receive(&buffer[..n.min(buffer.len())], now);
                    }
                }
            }
            0 => {
                bump(Counter::OpRecv);
                session.conn.end_of_input();
            }
            // The buffer ring ran dry for a moment (ended the multishot),
            // or our own backpressure cancel: arm again when it makes sense.
            e if -e == libc::ENOBUFS || -e == libc::ECANCELED => {}
            // A kernel before 6.17 refuses the capped receive: arm plain
            // multishot receives from now on (cancelled on backpressure).
            e if -e == libc::EINVAL && self.recv_capped => {
                self.recv_capped = false;
                eprintln!("lab: uring: this kernel has no capped multishot recv (6.17); cancelling on backpressure instead");
            }
            _ => {
                if !session.closing {
                    counters::conn_error();
                }
                return self.close(slot);
            }
        }
        self.progress(slot)
    }

    fn sent(&mut self, slot: usize, generation: u32, result: i32) -> io::Result<()> {
        let Some(session) = self.session(slot, generation) else {
            return Ok(());
        };
        session.send_in_flight = false;
        if result < 0 {
            if !session.closing {
                counters::conn_error();
            }
            session.sending.clear();
            return self.close(slot);
        }
        bump(Counter::OpSend);
        let n = result as usize;
        counters::add(Counter::BytesOut, n as u64);
        // A short send: the rest goes next, before any newer answer.
        session.sending.drain(..n.min(session.sending.len()));
        if session.sending.is_empty() && session.sending.capacity() > 4096 {
            session.sending = Vec::new(); // an idle session keeps no big buffer
        }
        self.progress(slot)
    }

    /// Moves a session forward: send what is owed, close it when done,
    /// keep a receive armed exactly while it wants input.
    fn progress(&mut self, slot: usize) -> io::Result<()> {
        let (max_pending, multishot) = (self.config.max_pending, self.buffers.is_some());
        let group = self.buffers.as_ref().map_or(0, BufRing::group);
        let generation = self.slots[slot].generation;
        let Some(session) = self.slots[slot].session.as_mut() else {
            return Ok(());
        };
        if session.closing {
            return self.free_if_idle(slot);
        }
        let fd = types::Fd(session.socket.as_raw_fd());

        if !session.send_in_flight && (!session.sending.is_empty() || session.conn.pending() > 0) {
            if session.sending.is_empty() {
                session.conn.move_unsent_into(&mut session.sending);
            }
            let entry =
                opcode::Send::new(fd, session.sending.as_ptr(), session.sending.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(user_data(SEND, slot, generation));
            session.send_in_flight = true;
            // SAFETY: `sending`'s heap buffer is not touched, reallocated or
            // freed until this send's completion (module doc).
            unsafe { self.push(entry) }?;
        }

        let session = self.slots[slot].session.as_mut().expect("still open");
        let owed = session.conn.pending() + session.sending.len();
        if session.conn.is_done() && owed == 0 && !session.send_in_flight {
            return self.close(slot);
        }
        let wants_input = session.conn.wants_read(max_pending) && owed < max_pending;
        if wants_input && !session.recv_in_flight {
            let room = u32::try_from(max_pending - owed).unwrap_or(u32::MAX);
            let entry = if multishot && self.recv_capped {
                // At most the room left under MAX_PENDING, then it ends and
                // is armed again with the room there is then: the bound
                // holds exactly, with no cancel racing the kernel.
                ring::recv_multi_capped(fd, group, room, room.min(BUFFER_SIZE as u32))
            } else if multishot {
                opcode::RecvMulti::new(fd, group).build()
            } else {
                let buffer = session
                    .recv_buffer
                    .get_or_insert_with(|| vec![0; SINGLE_SHOT_BUFFER].into_boxed_slice());
                opcode::Recv::new(fd, buffer.as_mut_ptr(), buffer.len() as u32).build()
            };
            session.recv_in_flight = true;
            // SAFETY: multishot: the buffers are the ring's (module doc);
            // single-shot: the boxed buffer lives in the session and is not
            // dropped or replaced until this recv completes.
            unsafe { self.push(entry.user_data(user_data(RECV, slot, generation))) }?;
        } else if !wants_input
            && session.recv_in_flight
            && multishot
            && !self.recv_capped
            && !session.recv_cancelling
        {
            session.recv_cancelling = true;
            self.cancel(user_data(RECV, slot, generation))?;
        }
        Ok(())
    }

    fn cancel(&mut self, target: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target).build().user_data(CANCEL);
        // SAFETY: a cancel lends no memory.
        unsafe { self.push(entry) }
    }

    /// Starts closing a session: shut the socket down so everything in
    /// flight completes, and free it once nothing is.
    fn close(&mut self, slot: usize) -> io::Result<()> {
        let Some(session) = self.slots.get_mut(slot).and_then(|s| s.session.as_mut()) else {
            return Ok(());
        };
        if !session.closing {
            session.closing = true;
            sys::shutdown_both(session.socket.as_raw_fd());
        }
        self.free_if_idle(slot)
    }

    fn free_if_idle(&mut self, slot: usize) -> io::Result<()> {
        let entry = &mut self.slots[slot];
        if !entry.session.as_ref().is_some_and(Session::idle) {
            return Ok(());
        }
        let session = entry.session.take().expect("checked");
        if let Some(at) = session.timer {
            self.timers.remove(at, (slot, entry.generation));
        }
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        self.open -= 1;
        drop(session); // closes the socket, gives the MAX_CONNS place back
        self.memory_return.note(self.open);
        // A descriptor is free again: if accepting was paused for lack of
        // one, try now.
        if self.accept_paused_until.take().is_some() {
            self.arm_accept()?;
        }
        Ok(())
    }

    /// An idle timer came due: file it again if the session has received
    /// since, or time it out.
    fn expire(&mut self, slot: usize, generation: u32) -> io::Result<()> {
        let (config, now) = (self.config, self.now);
        let Some(session) = self.session(slot, generation) else {
            return Ok(());
        };
        match session.conn.idle_deadline(config) {
            Some(at) if at > now => {
                session.timer = Some(at);
                self.timers.insert(at, (slot, generation));
                Ok(())
            }
            _ => {
                // Bytes the kernel holds for us mean the client did send:
                // not idle (see the driver's `expire` for why we look).
                let queued = sys::bytes_queued(std::os::fd::AsFd::as_fd(&session.socket));
                if queued.is_ok_and(|n| n > 0) {
                    session.conn.input_arrived(now);
                    let at = session.conn.idle_deadline(config).unwrap_or(now);
                    session.timer = Some(at);
                    self.timers.insert(at, (slot, generation));
                    return Ok(());
                }
                session.timer = None;
                if session.send_in_flight {
                    // It is not reading either: no point queueing the error.
                    return self.close(slot);
                }
                session.conn.time_out();
                self.progress(slot)
            }
        }
    }

    /// Stops accepting and shuts down every read side: each session answers
    /// what it has received and ends (see [`crate::shutdown`]).
    fn begin_drain(&mut self) -> io::Result<()> {
        if self.drain_deadline.is_some() {
            return Ok(());
        }
        self.drain_deadline = Some(self.now + self.config.drain_timeout);
        if self.accept_armed {
            // The listener itself is dropped with the loop, after the
            // accept's last completion (see `run`).
            self.cancel(user_data(ACCEPT, 0, 0))?;
        }
        for slot in 0..self.slots.len() {
            if let Some(session) = self.slots[slot].session.as_ref() {
                sys::shutdown_read(session.socket.as_raw_fd() as RawFd);
                self.progress(slot)?;
            }
        }
        Ok(())
    }
}
