//! A connection as a value: the state machine of the readiness and
//! completion models.
//!
//! In the blocking family the state of a connection lives on a thread's
//! stack, between one blocking call and the next. A loop that serves
//! thousands of connections on one thread cannot keep them there: each
//! connection's state must be a value the loop can pick up, advance as far
//! as the kernel allows without waiting, and put down again. This is that
//! value, and it does no IO itself — the model moves bytes between it and
//! the socket (readiness models through [`crate::server::driver`], io_uring through
//! its completions) — so its rules are written once:
//!
//! - **input** goes straight to the codec ([`Conn::receive`]); responses pile
//!   up in `out` until the socket takes them ([`Conn::unsent`],
//!   [`Conn::sent`]);
//! - **interest**: read only while the unsent output is under `MAX_PENDING`
//!   (backpressure) and the input is not over; write only while output is
//!   waiting and the socket is not known to have room ([`Conn::interest`]);
//! - **end**: after end of input (the client's half-close, our shutdown, a
//!   line too long, the idle timeout) the connection flushes what it owes and
//!   is then [`done`](Conn::is_done).
//!
//! An idle connection owns almost nothing: once flushed, the output vector
//! is emptied (and freed if it grew past `KEEP_OUTPUT_CAPACITY`, 4 KiB), and
//! the codec holds bytes only for an unfinished line.
//!
//! **Pure.** It makes no system call, reads no global and counts nothing:
//! whether the server is draining is passed in, and what happened (lines
//! answered) is returned for the caller to count. So every rule above is
//! unit-tested here, without a socket.
//!
//! **Offloading** (`epoll --offload`): a connection made
//! [`offloading`](Conn::offloading) frames its requests as always but owes
//! their cost (`--work-us`, `--block-us`) to a pool: the answers leave as
//! a [`Job`] and come back with [`Conn::job_done`]; meanwhile it reads
//! nothing, so one job at a time keeps them in order.

use std::time::Instant;

use crate::server::config::Config;
use crate::server::offload::Job;
use crate::server::protocol::{Codec, ERR_IDLE_TIMEOUT};

/// What a connection wants to be told about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Tell me when there is something to read.
    pub read: bool,
    /// Tell me when I can write.
    pub write: bool,
}

/// Output buffers bigger than this are freed when they empty, so one burst
/// does not pin memory on a connection forever.
const KEEP_OUTPUT_CAPACITY: usize = 4096;

/// The state of one connection.
#[derive(Debug)]
pub struct Conn {
    codec: Codec,
    out: Vec<u8>,
    /// How much of `out` the socket has taken.
    sent: usize,
    /// No more input will be read: end of stream, an error line queued, or
    /// the connection timed out.
    input_over: bool,
    /// When the last byte arrived (for the idle timeout).
    last_input: Instant,
    /// The most output the connection may owe (`MAX_PENDING`): the cap on
    /// what `out` allocates.
    max_pending: usize,
    /// `epoll --offload`: a costly request's answers go out as a [`Job`]
    /// and are sent only once it comes back.
    offloading: bool,
    /// Answers framed but not yet paid for: a job to hand to the pool.
    job: Option<Job>,
    /// A job is out (taken, not yet back): read nothing until it returns,
    /// so the answers stay in order.
    job_out: bool,
}

impl Conn {
    /// A fresh connection, accepted at `now`.
    pub fn new(config: &Config, now: Instant) -> Conn {
        Conn {
            codec: config.codec(),
            out: Vec::new(),
            sent: 0,
            input_over: false,
            last_input: now,
            max_pending: config.max_pending,
            offloading: false,
            job: None,
            job_out: false,
        }
    }

    /// The same connection, handing the cost of its requests (`--work-us`,
    /// `--block-us`) to a pool: after a [`receive`](Self::receive) that
    /// answered costly lines, [`take_job`](Self::take_job) gives the job,
    /// and [`job_done`](Self::job_done) takes its answers back.
    pub fn offloading(mut self) -> Conn {
        self.offloading = !self.codec.cost().is_zero();
        self
    }

    /// The job the last `receive` made, if any (see [`offloading`](Self::offloading)).
    pub fn take_job(&mut self) -> Option<Job> {
        let job = self.job.take();
        self.job_out |= job.is_some();
        job
    }

    /// The job came back at `now`: its answers are owed, in order, and
    /// reading resumes. The idle clock starts again: the client could not
    /// be expected to send while its connection was not being read. (A
    /// job longer than the idle timeout itself still times the connection
    /// out; such a cost is not a request's any more.)
    pub fn job_done(&mut self, answers: Vec<u8>, now: Instant) {
        self.out.extend_from_slice(&answers);
        self.job_out = false;
        self.last_input = now;
    }

    /// Feeds received bytes to the codec and queues the responses; returns
    /// how many lines were answered. A line too long queues the error line
    /// and ends the input.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) -> u64 {
        self.last_input = now;
        // An answer is as long as its request. Grow by doubling, as `Vec`
        // would, but not past `MAX_PENDING`: a client that does not read
        // then costs at most that much capacity, not up to twice it.
        let needed = self.out.len() + bytes.len();
        if needed > self.out.capacity() {
            let target = (self.out.capacity() * 2).clamp(needed, self.max_pending.max(needed));
            self.out.reserve_exact(target - self.out.len());
        }
        let decoded = if self.offloading {
            let mut answers = Vec::new();
            let decoded = self.codec.decode_deferred(bytes, &mut answers);
            let lines = decoded.unwrap_or_else(|too_long| too_long.lines);
            if !answers.is_empty() {
                let cost = self.codec.cost();
                self.job = Some(Job {
                    answers,
                    lines,
                    cost,
                });
            }
            decoded
        } else {
            self.codec.decode(bytes, &mut self.out)
        };
        match decoded {
            Ok(lines) => lines,
            Err(too_long) => {
                self.input_over = true;
                too_long.lines
            }
        }
    }

    /// Bytes are known to have arrived at `now` that are not read yet
    /// (they wait in the kernel): the connection is not idle.
    pub fn input_arrived(&mut self, now: Instant) {
        self.last_input = now;
    }

    /// End of input: the client half-closed (its unterminated tail is
    /// answered), or we shut the read side down to drain — `draining` — (it
    /// is not: an unfinished line is not a request).
    pub fn end_of_input(&mut self, draining: bool) {
        if !self.input_over && !draining {
            self.codec.finish(&mut self.out);
        }
        self.input_over = true;
    }

    /// Nothing arrived for the idle timeout: queue the error line and stop
    /// reading. (If the client is not reading either, the line may never
    /// leave; the caller closes the connection after one try.)
    pub fn time_out(&mut self) {
        self.out.extend_from_slice(ERR_IDLE_TIMEOUT);
        self.input_over = true;
    }

    /// The output the socket has not taken yet.
    pub fn unsent(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// Moves all unsent output into `into`, which must be empty: for a
    /// model that gives the kernel a buffer it must not touch until the
    /// operation completes (io_uring's `send`). The two buffers trade
    /// places when nothing was sent yet, so neither side allocates on each
    /// request: the connection takes back the empty buffer the last send
    /// finished with (kept under the same size cap as after a write). The
    /// bytes count as sent from the connection's point of view; the caller
    /// counts `bytes_out` when the kernel confirms them.
    pub fn move_unsent_into(&mut self, into: &mut Vec<u8>) {
        debug_assert!(into.is_empty(), "the previous send is not finished");
        if self.sent == 0 {
            std::mem::swap(&mut self.out, into);
            if self.out.capacity() > KEEP_OUTPUT_CAPACITY {
                self.out = Vec::new();
            }
        } else {
            into.extend_from_slice(&self.out[self.sent..]);
            self.out.clear();
        }
        self.sent = 0;
    }

    /// Bytes of output waiting.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// The socket took `n` more bytes of [`unsent`](Self::unsent).
    pub fn sent(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.out.len() {
            self.sent = 0;
            if self.out.capacity() > KEEP_OUTPUT_CAPACITY {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
        }
    }

    /// Whether the connection should read: its input is not over, and its
    /// unsent output is under `max_pending` (backpressure).
    pub fn wants_read(&self, max_pending: usize) -> bool {
        !self.input_over && !self.job_out && self.job.is_none() && self.pending() < max_pending
    }

    /// How many bytes a read may take without pushing the unsent output over
    /// `max_pending` (a response is as long as its request).
    pub fn read_room(&self, max_pending: usize) -> usize {
        max_pending.saturating_sub(self.pending())
    }

    /// What to wait for next. `writable_known` is whether the socket is
    /// known to have room (no `EAGAIN` since the last write readiness), in
    /// which case the loop writes without asking first.
    pub fn interest(&self, max_pending: usize, writable_known: bool) -> Interest {
        Interest {
            read: self.wants_read(max_pending),
            write: self.pending() > 0 && !writable_known,
        }
    }

    /// Whether the connection has said all it will and can be closed.
    pub fn is_done(&self) -> bool {
        self.input_over && self.pending() == 0 && !self.job_out && self.job.is_none()
    }

    /// When the idle timeout (if any) fires, given the last input.
    pub fn idle_deadline(&self, config: &Config) -> Option<Instant> {
        config.idle_timeout().map(|t| self.last_input + t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> Config {
        Config {
            max_line: 16,
            max_pending: 32,
            idle_timeout: Duration::from_secs(10),
            ..Config::default()
        }
    }

    /// Takes everything the connection owes, as a socket with room would.
    fn drain(conn: &mut Conn) -> Vec<u8> {
        let out = conn.unsent().to_vec();
        conn.sent(out.len());
        out
    }

    #[test]
    fn a_line_split_across_reads_is_answered_once_whole() {
        let (config, t0) = (config(), Instant::now());
        let mut conn = Conn::new(&config, t0);
        assert_eq!(conn.receive(b"hel", t0), 0);
        assert_eq!(conn.pending(), 0, "no answer for half a line");
        assert_eq!(conn.receive(b"lo\nwor", t0), 1);
        assert_eq!(drain(&mut conn), b"HELLO\n");
        assert_eq!(conn.receive(b"ld\n", t0), 1);
        assert_eq!(drain(&mut conn), b"WORLD\n");
        assert!(!conn.is_done());
    }

    #[test]
    fn an_offloading_connection_owes_nothing_and_reads_nothing_until_its_job_returns() {
        let t0 = Instant::now();
        let config = Config {
            block: Duration::from_micros(1),
            ..config()
        };
        let mut conn = Conn::new(&config, t0).offloading();
        assert_eq!(conn.receive(b"a\nb", t0), 1);
        assert_eq!(conn.pending(), 0, "the answer waits for its cost");
        let job = conn.take_job().expect("a costly line makes a job");
        assert!(!conn.wants_read(config.max_pending), "one job at a time");
        conn.end_of_input(true);
        assert!(!conn.is_done(), "not while its job is out");
        conn.job_done(job.run(), t0);
        assert_eq!(drain(&mut conn), b"A\n");
        assert!(conn.is_done());
    }

    #[test]
    fn half_close_answers_the_tail_but_a_drain_does_not() {
        let (config, t0) = (config(), Instant::now());
        let mut client_closed = Conn::new(&config, t0);
        client_closed.receive(b"a\ntail", t0);
        client_closed.end_of_input(false);
        assert_eq!(drain(&mut client_closed), b"A\nTAIL");
        assert!(client_closed.is_done());

        let mut drained = Conn::new(&config, t0);
        drained.receive(b"a\ntail", t0);
        drained.end_of_input(true);
        assert_eq!(drain(&mut drained), b"A\n");
        assert!(drained.is_done());
    }

    #[test]
    fn a_line_too_long_ends_the_input_after_the_answers_before_it() {
        let (config, t0) = (config(), Instant::now());
        let mut conn = Conn::new(&config, t0);
        conn.receive(b"ok\n0123456789abcdefXYZ", t0);
        assert!(!conn.wants_read(config.max_pending), "input is over");
        assert_eq!(drain(&mut conn), b"OK\nerror: line too long\n");
        assert!(conn.is_done());
    }

    #[test]
    fn backpressure_stops_reading_at_max_pending_and_resumes_as_it_drains() {
        let (config, t0) = (config(), Instant::now());
        let mut conn = Conn::new(&config, t0);
        assert_eq!(conn.read_room(32), 32);
        conn.receive(b"0123456789\n0123456789\n0123456789\n", t0);
        assert!(!conn.wants_read(32), "33 bytes owed, over 32");
        assert_eq!(conn.read_room(32), 0);
        assert_eq!(
            conn.interest(32, false),
            Interest {
                read: false,
                write: true
            }
        );
        conn.sent(11);
        assert!(conn.wants_read(32));
        assert_eq!(conn.read_room(32), 10);
        assert_eq!(
            conn.interest(32, true),
            Interest {
                read: true,
                write: false
            },
            "known writable: write without asking"
        );
    }

    #[test]
    fn the_idle_deadline_moves_with_every_arrival() {
        let (config, t0) = (config(), Instant::now());
        let mut conn = Conn::new(&config, t0);
        assert_eq!(
            conn.idle_deadline(&config),
            Some(t0 + Duration::from_secs(10))
        );
        let t1 = t0 + Duration::from_secs(4);
        conn.receive(b"x", t1);
        assert_eq!(
            conn.idle_deadline(&config),
            Some(t1 + Duration::from_secs(10))
        );
        let t2 = t1 + Duration::from_secs(4);
        conn.input_arrived(t2);
        assert_eq!(
            conn.idle_deadline(&config),
            Some(t2 + Duration::from_secs(10))
        );
        conn.time_out();
        assert_eq!(drain(&mut conn), b"error: idle timeout\n");
        assert!(conn.is_done());
    }

    #[test]
    fn an_idle_connection_keeps_no_big_buffer() {
        let (config, t0) = (config(), Instant::now());
        let mut conn = Conn::new(&config, t0);
        let big = Config {
            max_pending: 1 << 20,
            max_line: 1 << 20,
            ..config
        };
        let mut conn_big = Conn::new(&big, t0);
        let burst = b"0123456789abcde\n".repeat(1024);
        conn_big.receive(&burst, t0);
        drain(&mut conn_big);
        assert_eq!(
            conn_big.out.capacity(),
            0,
            "a 16 KiB burst's buffer is freed"
        );
        conn.receive(b"small\n", t0);
        drain(&mut conn);
        assert!(conn.out.capacity() <= KEEP_OUTPUT_CAPACITY);
    }
}
