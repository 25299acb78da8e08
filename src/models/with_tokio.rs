//! # `tokio` — the same server as a Rust programmer would write it today
//!
//! [tokio](https://tokio.rs) is what most Rust network servers run on: an
//! async runtime whose reactor is mio (epoll, edge-triggered) and whose
//! tasks are state machines the *compiler* writes from `async fn`s. The
//! connection handler below reads like the blocking family's
//! [`handler::handle`] — read, feed the codec,
//! write all — but every `.await` is a point where the task may be parked
//! and the thread may run another.
//!
//! It is written the way a competent tokio user would write it, with no
//! handicap: a task per connection, `tokio::time::timeout` for the idle
//! timeout, `write_all`, `TCP_NODELAY`. The runtime is current-thread by
//! default (one thread, like our `epoll` model, so the two compare like for
//! like); `--workers N` runs the multi-thread runtime with N workers.
//!
//! **What the lab cannot count.** The reads, writes and `epoll_wait`s
//! happen inside tokio and mio, out of reach of [`crate::sys`], so this
//! model's summary counts only the calls it makes itself, `setsockopt` and
//! the `recv` of an idle check (its table entry says so). Use `strace -c
//! -f`, or `perf stat -e raw_syscalls:sys_enter`, to see them.
//!
//! **Shutdown**, as in the `threads` model: the connections are registered
//! in [`Connections`]; on a stop signal the accept loop ends, every read
//! side is shut down (each task then reads what is buffered, answers it and
//! ends), and connections still open at the drain timeout are closed.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::server::buffers;
use crate::server::config::Config;
use crate::server::handler::{self, Step, FIRST_READ, READ_SIZE};
use crate::server::listener::ConnPermit;
use crate::server::protocol::{ERR_IDLE_TIMEOUT, ERR_TOO_MANY_CONNS};
use crate::server::shutdown::{self, Connections};
use crate::sys;
use crate::sys::counters::{self, bump, Counter};

/// Runs the server on a current-thread runtime, or on a multi-thread one
/// with `--workers` threads when that is more than 1.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let runtime = if config.workers > 1 {
        // Runtime threads must not take the stop signals (see `shutdown`).
        shutdown::spawn_without_signals(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.workers)
                .enable_all()
                .build()
        })?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    // The registry must outlive every task; it lives as long as the process.
    let connections: &'static Connections = Box::leak(Box::default());
    let config: &'static Config = Box::leak(Box::new(config.clone()));
    runtime.block_on(accept_loop(listener, config, connections))
}

async fn accept_loop(
    listener: TcpListener,
    config: &'static Config,
    connections: &'static Connections,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    // SAFETY: the shutdown eventfd is opened once and never closed, so it
    // stays open and the same file for the life of this `AsyncFd`.
    let wake = unsafe {
        AsyncFd::register_with_interest(shutdown::wake_fd(), tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)?;
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = wake.readable() => break,
        };
        // Reap finished tasks as we go, so the set does not grow for ever.
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // Out of descriptors: back off instead of spinning on a
            // listener that stays readable (hyper does the same).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => continue, // the client gave up while queued, and the like
        };
        bump(Counter::Accepted);
        let Some(place) = ConnPermit::try_acquire(config.max_conns) else {
            let _ = stream.try_write(ERR_TOO_MANY_CONNS);
            continue;
        };
        bump(Counter::SetSockOpt);
        let _ = stream.set_nodelay(true);
        let mut stream = connections.register(stream);
        tasks.spawn(async move {
            if serve_connection(&mut stream, config).await.is_err() {
                counters::conn_error();
            }
            drop(stream);
            drop(place);
            // The runtime's threads are joined without waiting for their
            // thread-local destructors (see counters): flush as we go.
            counters::flush();
        });
    }
    drop(listener);
    connections.begin_drain();
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(config.drain_timeout, all_done)
        .await
        .is_err()
    {
        connections.force_close();
        // Their IO now fails at once; give them a moment to notice, then stop.
        let rest = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(1), rest)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
    }
    counters::flush();
    Ok(())
}

/// One connection: the blocking handler's loop, with `.await`s, written as
/// tokio's own examples and a tokio maintainer would have it: wait for
/// `readable()` holding no buffer, then `try_read` into a buffer that lives
/// only until the answers are out. (`stream.read(&mut buf).await` would
/// keep `buf` inside the task's future — 16 KiB per idle connection.)
async fn serve_connection(stream: &mut tokio::net::TcpStream, config: &Config) -> io::Result<()> {
    let mut codec = config.codec();
    let big = READ_SIZE.min(config.max_pending);
    // As in the handler: after a read that brought a burst, the next read
    // borrows the big buffer.
    let mut pipelining = false;
    loop {
        let timed_out = match config.idle_timeout() {
            Some(idle) => tokio::time::timeout(idle, stream.readable())
                .await
                .map_or(true, |ready| ready.is_err()),
            None => stream.readable().await.is_err(),
        };
        let mut output = buffers::output();
        // The buffers live in this block, which has no `.await`: they are
        // not part of the task's state.
        let step = {
            let mut small = [0u8; FIRST_READ];
            let mut lent = pipelining.then(|| buffers::input(big));
            let input: &mut [u8] = match lent.as_deref_mut() {
                Some(lent) => lent,
                None => &mut small[..FIRST_READ.min(big)],
            };
            let read = if timed_out {
                // The timer fired, but a process stopped for a while wakes
                // late and may see its timers before its sockets' news: ask
                // the socket itself once more (not tokio's readiness cache,
                // which may not have heard yet) before calling it idle.
                sys::recv(stream.as_fd(), input)
            } else {
                stream.try_read(input)
            };
            match read {
                Ok(0) => Step::EndOfInput,
                Ok(n) => {
                    pipelining = n >= FIRST_READ.min(big);
                    Step::Answered {
                        more: handler::answer(&mut codec, &input[..n], &mut output),
                    }
                }
                // Nothing there after the timeout: idle. (Answered below,
                // out of this block, which must not `.await`.)
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && timed_out => Step::Idle,
                // Readiness was stale (tokio clears it and we wait again).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        match step {
            Step::Idle => {
                let idle = config.idle_timeout().unwrap_or_default();
                let _ = tokio::time::timeout(idle, stream.write_all(ERR_IDLE_TIMEOUT)).await;
                return Ok(());
            }
            Step::EndOfInput => {
                // The client's half-close answers the tail; our drain does not.
                if !shutdown::requested() {
                    codec.finish(&mut output);
                }
                return write_all(stream, &output, config).await;
            }
            Step::Answered { more } => {
                write_all(stream, &output, config).await?;
                if !more {
                    return Ok(()); // a line too long: its error line went out last
                }
            }
        }
    }
}

/// `write_all`, cut off after the idle timeout like the blocking family's
/// `SO_SNDTIMEO`: a client that reads nothing cannot hold a task for ever.
async fn write_all(
    stream: &mut tokio::net::TcpStream,
    bytes: &[u8],
    config: &Config,
) -> io::Result<()> {
    let write = stream.write_all(bytes);
    match config.idle_timeout() {
        Some(idle) => tokio::time::timeout(idle, write)
            .await
            .map_err(|_| io::ErrorKind::TimedOut)??,
        None => write.await?,
    }
    counters::add(Counter::BytesOut, bytes.len() as u64);
    Ok(())
}
