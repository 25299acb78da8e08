//! The connection handler of the blocking family: one function that serves
//! one connection from its first byte to its close, written as if every call
//! blocked.
//!
//! `blocking`, `fork`, `prefork`, `threads` and `threadpool` all run
//! [`handle`] on their connections; they differ only in *where* it runs (the
//! listening thread, a child process, a pooled process, a thread, a pooled
//! thread). The coroutine model runs this same function on a coroutine whose
//! socket suspends instead of blocking. That one function serving six models
//! is the lab's central lesson.
//!
//! What it does, in protocol terms:
//!
//! ```text
//! loop:
//!     read up to 512 B, on the stack (blocks; SO_RCVTIMEO = idle timeout;
//!                                   16 KiB, borrowed, if the last read was full)
//!       timeout      -> send "error: idle timeout", close
//!       0 bytes      -> end of stream: answer the tail (if the client
//!                       closed, not if we are shutting down), close
//!     feed the codec               (no syscalls)
//!     write every response          (blocks until the kernel took it all)
//!       line too long -> the error line went out last; close
//! ```
//!
//! Backpressure comes free: while a write blocks we do not read, so a client
//! that never reads fills its socket buffers and TCP flow control stops it.
//! What is held is one read's worth of responses (16 KiB, or `MAX_PENDING`
//! if that is smaller) plus the codec's unfinished line (under `MAX_LINE`),
//! which comes out whole once its LF arrives.
//!
//! **Nothing held while waiting.** Between requests the handler owns no
//! buffer: it waits in a read into [`FIRST_READ`] bytes of its own stack
//! frame, and borrows a [`READ_SIZE`] buffer and an output vector from its
//! thread's spares ([`crate::server::buffers`]) only while there are bytes to
//! answer. A thread or coroutine parked on an idle client costs its stack
//! pages, not 16 KiB of heap. A client that pipelines fills the small read;
//! the next read then borrows the big buffer, so a burst still arrives in
//! few calls, and keeps it while the bursts go on.

use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::server::buffers;
use crate::server::config::Config;
use crate::server::listener::{Accepted, Acceptor, Admitted};
use crate::server::protocol::{Codec, ERR_IDLE_TIMEOUT};
use crate::server::shutdown;
use crate::sys::counters::{self, Counter};
use crate::sys::{self, Stream};

/// How much a read asks for when the client is pipelining (the read
/// before filled its buffer). Large enough that a burst arrives in a few
/// reads; borrowed from the thread's spares ([`crate::server::buffers`]) only for
/// that read and its answers.
pub const READ_SIZE: usize = 16 * 1024;

/// How much the first read of an exchange asks for, into the stack: enough
/// for the requests of a client that waits for each answer (the bench's are
/// 64 bytes), small enough to sit in the stack page a parked coroutine
/// keeps anyway.
pub const FIRST_READ: usize = 512;

/// A byte stream the handler can serve: a blocking socket, or a coroutine's
/// socket that only looks blocking.
pub trait Conn: Read + Write {
    /// Makes reads give up with `WouldBlock` or `TimedOut` after `timeout`.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Makes writes give up with `WouldBlock` or `TimedOut` after `timeout`.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Conn for Stream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        Stream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        Stream::set_write_timeout(self, timeout)
    }
}

/// Serves one connection to its end. An IO error (a reset, a broken pipe)
/// ends the connection and is counted, never propagated: one client's
/// trouble is not the server's.
pub fn handle<C: Conn>(conn: &mut C, config: &Config) {
    if serve(conn, config).is_err() {
        counters::conn_error();
    }
}

fn serve<C: Conn>(conn: &mut C, config: &Config) -> io::Result<()> {
    let mut codec = config.codec();
    // Never read more than MAX_PENDING at once: an answer is as long as its
    // request, so that bounds what one read makes us owe.
    let big = READ_SIZE.min(config.max_pending);
    // A client that sends nothing, or reads nothing while we wait to give it
    // its answers, for the idle timeout is cut off.
    conn.set_read_timeout(config.idle_timeout())?;
    conn.set_write_timeout(config.idle_timeout())?;
    // Whether the last read brought a burst (at least FIRST_READ bytes): the
    // client pipelines, and the next read borrows a big buffer, until one
    // brings less. (Going back to the small one after every big read
    // doubled the reads of a pipelining client: 0.13 -> 0.24 syscalls per
    // request in the bench's pipeline run.) A client that goes quiet right
    // after a burst waits with the big buffer, until its next short read.
    let mut pipelining = false;
    loop {
        // The wait for the next request holds no buffer of its own: it
        // reads into a few hundred bytes of the stack, which the frame
        // occupies anyway. Only a read that follows a burst borrows
        // READ_SIZE bytes, and gives them back once answered.
        let mut small = [0u8; FIRST_READ];
        let mut lent = pipelining.then(|| buffers::input(big));
        let input: &mut [u8] = match lent.as_deref_mut() {
            Some(lent) => lent,
            None => &mut small[..FIRST_READ.min(big)],
        };
        let n = match conn.read(input) {
            Ok(n) => n,
            // A signal: if it was a stop signal, the read side has been shut
            // down and the next read returns what is left, then 0.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if sys::is_timeout(&e) => {
                write_all(conn, ERR_IDLE_TIMEOUT)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        pipelining = n >= FIRST_READ.min(big);
        let mut output = buffers::output();
        if n == 0 {
            // End of input. If the client half-closed, its unterminated tail
            // is answered; if we are shutting down, the tail is not a
            // complete line and gets no answer.
            if !shutdown::requested() {
                codec.finish(&mut output);
            }
            return write_all(conn, &output);
        }
        let more = answer(&mut codec, &input[..n], &mut output);
        write_all(conn, &output)?;
        if !more {
            return Ok(());
        }
        // `output` and `lent` go back to the thread's spares here.
    }
}

/// Decodes received bytes into answers on `output` and counts both;
/// returns whether the connection goes on (not after a line too long,
/// whose error line is then the last answer). This handler and its async
/// mirrors (the `async` and `tokio` models) all answer through it.
pub fn answer(codec: &mut Codec, input: &[u8], output: &mut Vec<u8>) -> bool {
    counters::add(Counter::BytesIn, input.len() as u64);
    let decoded = codec.decode(input, output);
    let lines = match decoded {
        Ok(lines) => lines,
        Err(too_long) => too_long.lines,
    };
    counters::add(Counter::Requests, lines);
    decoded.is_ok()
}

/// What one read led to, for the async mirrors of [`handle`]: a read there
/// happens in a block that holds the buffers and must not `.await` (or the
/// buffers would live in the task's future), so its outcome is carried out
/// of the block and acted on after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// End of stream.
    EndOfInput,
    /// Bytes were decoded into answers; `more` unless a line was too long.
    Answered {
        /// Whether the connection goes on.
        more: bool,
    },
    /// Nothing arrived for the idle timeout.
    Idle,
}

/// Writes all of `bytes`, coping with short writes and signals. Once a stop
/// signal has arrived, every write waits only until the drain's deadline
/// (this process's: a forked child's comes before its parent's). One
/// deadline, not a timeout per call: a per-call timeout starts again after
/// each partial write, so a client that reads a trickle could hold the
/// drain open for ever.
fn write_all<C: Conn>(conn: &mut C, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        if let Some(deadline) = shutdown::drain_deadline() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            conn.set_write_timeout(Some(left))?;
        }
        match conn.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                counters::add(Counter::BytesOut, n as u64);
                bytes = &bytes[n..];
            }
            // A signal; if it was a stop signal, the deadline applies
            // from the next write.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits for the next connection the blocking way. `Ok(None)` once the
/// server is shutting down (the listener was shut down, so `accept` fails
/// with `EINVAL`, or a stop signal interrupted it).
pub fn accept_next(acceptor: &mut Acceptor) -> io::Result<Option<Admitted>> {
    loop {
        if shutdown::requested() {
            return Ok(None);
        }
        match acceptor.accept() {
            Ok(Accepted::Conn(conn)) => return Ok(Some(conn)),
            Ok(Accepted::Again | Accepted::Empty) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
