//! # `async` — the blocking handler, rewritten as a future
//!
//! `coro` runs [`handler::handle`] unchanged on a
//! coroutine: the stack remembers where the handler was. Here the compiler
//! remembers: [`handle`] below is `handler::handle` rewritten line for
//! line as an `async fn`, with `.await` at each call that would block, and
//! the compiler turns it into a state machine — a value of a few hundred
//! bytes — that the lab's own executor ([`crate::async_rt`]) polls. Each
//! connection is a task; one thread, one epoll reactor, thousands of
//! connections, no stack per connection, no crate.
//!
//! ## One request, step by step
//!
//! ```text
//! task (connection A)               executor / reactor              client
//! handle: conn.readable().await     (new socket: assumed ready)
//!   try_read ─────────────────────► recv → EAGAIN: marked drained
//!   readable().await: the reactor
//!   keeps A's waker; Pending ─────► poll B, C ...
//!                                   nothing runnable: epoll_wait ..   "hi\n"
//!                                        A's socket readable: wake A
//!                                   poll A: jumps to the .await
//!   try_read ─────────────────────► recv → "hi\n" (short: drained)
//!   codec.decode → "HI\n"
//!   write_all: conn.write().await ► send → 3 (ready: no Pending)
//!   readable().await ─────────────► drained: Pending at once, no recv
//! ```
//!
//! ## Costs
//!
//! - **Syscalls per request:** `recv` + `send` and a share of
//!   `epoll_wait`, as `coro` and `epoll --edge`: the reactor keeps the
//!   same readiness rules ([`crate::server::readiness_state`]).
//! - **Memory per connection:** the task's future (its size is printed by
//!   `lab async --stats`, a few hundred bytes), its slab slot, its
//!   socket's source in the reactor; no stack. The handler waits holding
//!   no buffer: it borrows them ([`crate::server::buffers`]) in a block with no
//!   `.await`, so they are never part of the future.
//! - **Hand-offs:** a wake pushes a key on the run queue; polling the next
//!   task is a function call. No registers saved, no stack switched.
//!
//! ## Failure modes
//!
//! - *A task that never awaits* (a long computation, or a *blocking* call:
//!   `std::thread::sleep`, a blocking `read`) stalls every task of its
//!   thread: `lab demo head-of-line --model async` shows it.
//! - *Function colouring*: `handle` can only be awaited, and
//!   `handler::handle` (which blocks) cannot be: two copies of the same
//!   logic, which `coro` does not need.
//! - *Shutdown*: the reactor watches the shutdown eventfd; the accept loop
//!   ends, shuts down every connection's read side, lets the tasks finish
//!   for at most the drain timeout, closes what is left.

use std::future::{poll_fn, Future};
use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::async_rt::{self, net::Registration, net::TcpStream};
use crate::server::buffers;
use crate::server::config::Config;
use crate::server::handler::{self, Step, FIRST_READ, READ_SIZE};
use crate::server::listener::{Accepted, Acceptor, ConnPermit};
use crate::server::protocol::ERR_IDLE_TIMEOUT;
use crate::server::readiness_state::Direction;
use crate::server::shutdown::{self, Connections};
use crate::sys::counters::{self, Counter};
use crate::sys::Blocking;

/// Runs `--workers` executors, each on its own thread with its own
/// `SO_REUSEPORT` listener; the calling thread runs the first.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    if config.stats {
        eprintln!(
            "async: a connection's task is {} bytes on the heap: its future, {} bytes, \
             of which the handler's is {}",
            task_size_of(connection),
            size_of_return(connection),
            size_of_handler(handle),
        );
    }
    super::per_worker(listener, config, "async", run_executor)
}

fn run_executor(listener: TcpListener, config: &Config) -> io::Result<()> {
    let config = Rc::new(config.clone());
    // A panic in a connection's task stops in that task; one in the accept
    // loop unwinds out of `block_on` (which drops every task on its way)
    // and ends this executor with an error, as `coro`'s does.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        async_rt::block_on(accept_loop(listener, config))
    }));
    counters::flush();
    outcome.unwrap_or_else(|_panic| Err(io::Error::other("the accept loop panicked")))
}

/// `block_on`'s future: accept, spawn a task per connection, and at
/// shutdown drain them.
async fn accept_loop(listener: TcpListener, config: Rc<Config>) -> io::Result<()> {
    let mut acceptor = Acceptor::new(listener, Blocking::No, config.max_conns)?;
    let listening = Registration::new(&acceptor.as_raw_fd())?;
    // The stop signal's handler writes the shutdown eventfd, which nobody
    // reads: it stays readable, and its one edge wakes us.
    let stopping = Registration::new(&shutdown::wake_fd().as_raw_fd())?;
    let connections = Rc::new(Connections::default());
    while !shutdown::requested() {
        match acceptor.accept()? {
            Accepted::Conn(admitted) => {
                let (socket, place) = admitted.into_parts();
                // The JoinHandle is dropped: the task runs on, detached.
                async_rt::spawn(connection(
                    socket,
                    place,
                    config.clone(),
                    connections.clone(),
                ));
            }
            Accepted::Again => {}
            Accepted::Empty => {
                // The queue is empty: wait for its next edge. And shutdown
                // was not requested (checked above, nothing has run since),
                // so the eventfd's readiness is only the assumption every
                // registration starts with.
                listening.drained(Direction::Read);
                stopping.drained(Direction::Read);
                let mut accept = listening.wait(Direction::Read, None);
                let mut stop = stopping.wait(Direction::Read, None);
                poll_fn(|cx| {
                    let woken = Pin::new(&mut accept).poll(cx).is_ready()
                        || Pin::new(&mut stop).poll(cx).is_ready();
                    if woken {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
        }
    }
    // Stop listening: the registrations go first, then the socket.
    drop((listening, stopping, acceptor));
    drain(&connections, config.drain_timeout).await;
    Ok(())
}

/// One connection's task. Its future owns the socket (registered in
/// `connections`) and the place in `MAX_CONNS`; while `handle` runs, the
/// handler's future inside it holds `&mut stream`, a pointer to another
/// field of the same value. A future that points into itself must never
/// move: which is why a task is pinned.
async fn connection(
    socket: OwnedFd,
    place: ConnPermit,
    config: Rc<Config>,
    connections: Rc<Connections>,
) {
    let Ok(stream) = TcpStream::new(socket) else {
        return;
    };
    let mut stream = connections.register(stream);
    handle(&mut stream, &config).await;
    drop(stream);
    drop(place);
}

/// Serves one connection to its end: [`handler::handle`],
/// awaited.
pub async fn handle(conn: &mut TcpStream, config: &Config) {
    if serve_conn(conn, config).await.is_err() {
        counters::conn_error();
    }
}

/// `handler::serve`, line for line, with `.await` where it blocks — and
/// one change: the wait for a request comes *before* the buffers exist.
/// A local that lives across an `.await` is stored in the future; the
/// handler's 512 stack bytes, held across `conn.read(..).await`, would
/// add 512 bytes to every idle connection. So it waits first
/// (`readable().await`), and reads into buffers that live in a block with
/// no `.await`, as the tokio model does.
async fn serve_conn(conn: &mut TcpStream, config: &Config) -> io::Result<()> {
    let mut codec = config.codec();
    let big = READ_SIZE.min(config.max_pending);
    conn.set_read_timeout(config.idle_timeout());
    conn.set_write_timeout(config.idle_timeout());
    let mut pipelining = false;
    'exchange: loop {
        // The handler blocks in `conn.read`; we wait here, holding nothing.
        let timed_out = conn.readable().await.is_err();
        let mut output = buffers::output();
        let step = 'read: {
            let mut small = [0u8; FIRST_READ];
            let mut lent = pipelining.then(|| buffers::input(big));
            let input: &mut [u8] = match lent.as_deref_mut() {
                Some(lent) => lent,
                None => &mut small[..FIRST_READ.min(big)],
            };
            // After a timeout, ask the kernel once more before calling the
            // client idle: a process stopped for a while may see its
            // timers before its sockets' news.
            let read = if timed_out {
                conn.recv(input)
            } else {
                conn.try_read(input)
            };
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock && timed_out => break 'read Step::Idle,
                // Readiness was stale, or a signal: wait again.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    continue 'exchange
                }
                Err(e) => return Err(e),
            };
            pipelining = n >= FIRST_READ.min(big);
            if n == 0 {
                Step::EndOfInput
            } else {
                Step::Answered {
                    more: handler::answer(&mut codec, &input[..n], &mut output),
                }
            }
            // `small` and `lent` end here: no `.await` above.
        };
        match step {
            Step::Idle => {
                write_all(conn, ERR_IDLE_TIMEOUT).await?;
                return Ok(());
            }
            Step::EndOfInput => {
                // End of input: the client's half-close answers its tail;
                // our own shutdown does not.
                if !shutdown::requested() {
                    codec.finish(&mut output);
                }
                return write_all(conn, &output).await;
            }
            Step::Answered { more } => {
                write_all(conn, &output).await?;
                if !more {
                    return Ok(()); // a line too long: its error line went out last
                }
            }
        }
        // `output` goes back to the thread's spares here.
    }
}

/// `handler::write_all`, awaited: short writes, signals, and once a stop
/// signal has come, one deadline for the rest of the drain.
async fn write_all(conn: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        if let Some(deadline) = shutdown::drain_deadline() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            conn.set_write_timeout(Some(left));
        }
        match conn.write(bytes).await {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                counters::add(Counter::BytesOut, n as u64);
                bytes = &bytes[n..];
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Shuts down every read side, lets the tasks finish for at most
/// `drain_timeout`, then closes what is left and waits for those too:
/// `coro`'s drain, awaited.
async fn drain(connections: &Connections, drain_timeout: Duration) {
    let deadline = Instant::now() + drain_timeout;
    connections.begin_drain();
    // Tasks spawned just before the signal register their connection when
    // first polled: let them, so the loop below sees them.
    async_rt::yield_now().await;
    while !connections.is_empty() && Instant::now() < deadline {
        async_rt::sleep(Duration::from_millis(5)).await;
    }
    connections.force_close();
    while !connections.is_empty() {
        async_rt::sleep(Duration::from_millis(5)).await;
    }
}

/// The size of the future an `async fn` of owned arguments returns, from
/// its type alone: building a future runs none of its body, and its size
/// is fixed when it is compiled.
fn size_of_return<A, B, C, D, F: Future>(_: fn(A, B, C, D) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// The size of the task `spawn` makes of that future (boxed).
fn task_size_of<A, B, C, D, F: Future + 'static>(_: fn(A, B, C, D) -> F) -> usize {
    async_rt::executor::task_size::<F>()
}

/// The same for [`handle`], whose arguments are borrowed.
fn size_of_handler<'a, F: Future>(_: fn(&'a mut TcpStream, &'a Config) -> F) -> usize {
    std::mem::size_of::<F>()
}
