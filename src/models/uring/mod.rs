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
//!   moved, owned with the ring by one value
//!   ([`Ring`]) whose `Drop` unregisters them
//!   from the kernel before they are unmapped. A multishot `recv` takes a
//!   buffer only when data arrives, so an idle connection owns none; the
//!   completion hands it to us as a
//!   [`LentBuffer`](crate::sys::uring::LentBuffer), a value given back
//!   exactly once. Without multishot (`--no-multishot`, or a kernel
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
//! same [`Timers`](crate::server::timers::Timers) as the readiness models, their nearest deadline becoming
//! the `io_uring_enter` timeout; before a due timer is judged, the loop
//! reaps what has completed — again and again until a look brings nothing
//! new, since the kernel runs the receives it deferred to us in batches —
//! and, for an ordinary descriptor, asks the socket (`FIONREAD`) whether
//! bytes wait that no completion has reported, so a client that did send
//! is not cut off. (A direct descriptor cannot be asked; there the reap is
//! the answer, as an armed receive reports every byte that arrives, and a
//! connection whose receive is stopped by backpressure has a send in
//! flight that it is not reading, which the timeout ends either way.) A stop
//! signal completes a `PollAdd` on the shutdown eventfd: the accept is
//! cancelled, every read side shut down, and the loop ends when the last
//! session is freed. An accept error that retrying at once would only
//! repeat — out of descriptors (`EMFILE`), out of memory, a listener that
//! refuses — pauses accepting for 50 ms (`PAUSE`) rather than spinning;
//! the readiness models' acceptor sorts the errors the same way
//! ([`AcceptError`](crate::server::listener::AcceptError)).
//!
//! ## Direct descriptors
//!
//! By default an accepted connection never enters the process's
//! descriptor table: the accept puts it in a free slot of the ring's own
//! table of registered files (`IORING_FILE_INDEX_ALLOC`, Linux 5.19), and
//! every operation names that slot (`IOSQE_FIXED_FILE`). The kernel then
//! skips, per operation, the descriptor-table lookup and the reference
//! count taken and dropped on the file. The price: no system call can
//! name the socket — no `close(2)` (an `IORING_OP_CLOSE` instead), no
//! `shutdown(2)` (an `IORING_OP_SHUTDOWN`, which the kernel runs on a
//! worker thread, so the slot is closed only after it completed), no
//! `setsockopt(2)` (`TCP_NODELAY` is inherited from the listener), no
//! `FIONREAD` (see the idle rule above), no `/proc/PID/fd` entry; `ss`
//! still shows the sockets. The table has `setup::direct_table_size()`
//! slots; a full table fails the accept with `ENFILE`, which pauses
//! accepting like `EMFILE`.
//!
//! ## Options
//!
//! - `--no-fixed-files`: connections as ordinary descriptors.
//! - `--no-bundle`: one provided buffer per receive completion. By default
//!   a receive is a *bundle* (Linux 6.10): when more bytes wait than one
//!   4 KiB buffer holds, one completion fills several buffers in the
//!   ring's order and names the first; `BufRing::take` counts the rest.
//! - `--no-multishot`: single-shot accept and recv, per-connection buffers
//!   (what a pre-6.0 kernel would get; forced here so it is tested).
//! - `--send-zc BYTES`: answers of at least BYTES go out as zero-copy
//!   sends (`IORING_OP_SEND_ZC`, 6.0): the kernel sends from our pages and
//!   says with a second completion, the *notification*, when it no longer
//!   needs them; only then is the buffer ours again. On loopback the
//!   kernel copies anyway (and says so: `send_zc_copied`), so here it only
//!   costs.
//! - `--min-wait-us MICROS`: the call that submits answers also waits for
//!   the next requests. Without it a batch costs two `io_uring_enter`: a
//!   send to a socket with room completes while it is submitted, so the
//!   call that submits the answers and waits for "one completion" returns
//!   at once with their completions, and the next call sleeps. With it the
//!   call waits for one completion more than the answers, but only MICROS
//!   long (the kernel's `min_wait`, 6.12), then returns with whatever has
//!   come: an answer that cannot complete (a client that does not read)
//!   must not keep another client's request waiting longer than that.
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
use std::os::fd::AsFd;
use std::time::Duration;

use crate::server::config::Config;
use crate::sys::uring::Ring;
use crate::sys::{self, counters};

mod event_loop;
mod session;
mod setup;

use event_loop::Loop;
use setup::Features;

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
/// How long accepting pauses after an error that retrying at once would
/// repeat (out of descriptors or memory, a listener that refuses).
const PAUSE: Duration = Duration::from_millis(50);

/// Runs `--workers` rings, each on its own thread with its own listener.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    super::per_worker(listener, config, "uring", run)
}

/// Checks, before `lab` says it is listening, that a ring can be made here
/// with the operations the model needs: a kernel without io_uring (or with
/// it disabled) fails at start, not after the first client connected.
pub fn preflight(config: &Config) -> io::Result<()> {
    setup::open_ring(ENTRIES, config).map(drop)
}

/// One ring's life.
fn run(listener: TcpListener, config: &Config) -> io::Result<()> {
    let mut features = Features::probe(config);
    let mut ring = Ring::new(setup::open_ring(ENTRIES, config)?);
    if features.multishot {
        ring.provide_buffers(BUFFERS, BUFFER_SIZE, 0)?;
    }
    if features.direct {
        if let Err(e) = ring.register_direct_table(setup::direct_table_size()) {
            eprintln!(
                "lab: uring: no direct descriptors ({e}); using the process's descriptor table"
            );
            features.direct = false;
        }
    }
    // Accepted sockets inherit TCP_NODELAY from the listener: one
    // setsockopt here instead of one per connection (and a direct
    // descriptor has no setsockopt(2) at all).
    sys::set_nodelay(listener.as_fd())?;
    if config.stats {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| eprintln!("lab: uring: {}", features.describe(config.tuning.sqpoll)));
    }
    let result = Loop::new(ring, listener, config, features).run();
    counters::flush();
    result
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    /// The loop sets TCP_NODELAY once, on the listener, and relies on the
    /// kernel copying it into every socket accepted from it (it cannot set
    /// it on a direct descriptor). This checks that the kernel does.
    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        sys::set_nodelay(listener.as_fd()).expect("setsockopt");
        let _client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        assert!(
            accepted.nodelay().expect("getsockopt"),
            "TCP_NODELAY not inherited"
        );
    }
}
