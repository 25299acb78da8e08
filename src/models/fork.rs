//! # `fork` — a process per connection
//!
//! The classic Unix server (inetd, early Apache, `sshd` to this day): the
//! parent only accepts; for each connection it `fork`s a child that serves
//! that one client with the same blocking handler as `blocking`, then exits.
//! Clients no longer wait for each other, and a child that crashes takes
//! only its own client with it.
//!
//! ## One request, step by step
//!
//! ```text
//! parent                          child (one per client)          client
//! accept() ..... blocks .....                                     connect()
//!          returns fd
//! fork() ─────────────────────►  close(listener)
//! close(fd)                       read(fd) .... blocks ......     "hi\n"
//! accept() ..... blocks .....              returns 3 bytes
//!                                 write(fd, "HI\n")
//!                                 read(fd) .... blocks ......     close()
//!                                          returns 0
//!                                 _exit(0)
//! SIGCHLD ─► handler: waitpid()   (reaped: no zombie)
//! ```
//!
//! ## Costs
//!
//! - **Syscalls per request:** the child's `read` + `write`, as in
//!   `blocking`; per *connection* a `fork`, which copies the page tables
//!   (copy-on-write keeps it from copying memory), and an exit and a reap:
//!   about 0.4 ms of CPU per connection on the lab's machine, dozens of
//!   requests' worth.
//! - **Memory per connection:** a process: its kernel structures, page
//!   tables and the pages it writes (stack, buffers, the copies made on
//!   write). Measured here: about 76 KiB of proportional set size (PSS) per
//!   child, which `ps` shows as a much larger RSS because RSS counts the
//!   pages still shared with the parent in full in every child.
//! - **At 10,000 clients:** 10,000 processes. It works on a big machine,
//!   but the scheduler, the memory and `kernel.pid_max` (32,768 by the
//!   kernel's default, 4,194,304 where systemd sets it) all feel it.
//!
//! ## Failure modes, and what the code does
//!
//! - *Zombies*: every exited child is reaped by the `SIGCHLD` handler the
//!   moment it exits (see [`super::process`]).
//! - *`MAX_CONNS`*: counts live children; the place a child holds is given
//!   back when it is reaped, so a child that crashes cannot leak it.
//! - *A crashing child* (a bug, a `kill -9`): its client is cut off, the
//!   parent reaps it and counts it in the summary's `children_crashed`.
//! - *`fork` fails* (`EAGAIN`: process limit): the client gets
//!   `error: too many connections` and the parent carries on.
//! - *Shutdown*: the parent stops accepting and sends each child `SIGTERM`;
//!   a child drains its connection like `blocking` does; children still
//!   alive at the drain timeout get `SIGKILL`.
//!
//! Next, `prefork` pays for the processes once, up front.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use crate::server::config::Config;
use crate::server::handler;
use crate::server::listener::Acceptor;
use crate::server::protocol::ERR_TOO_MANY_CONNS;
use crate::server::shutdown;
use crate::sys::{counters, Blocking, Stream};

use super::process;

/// Accepts on the calling thread and forks a child per connection.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    // Each child holds one MAX_CONNS place, given back when it is reaped.
    process::install(config.max_conns, |_slot| counters::close_conn())?;
    let mut acceptor = Acceptor::new(listener, Blocking::Yes, config.max_conns)?.stop_on_signal();
    let listener_fd = acceptor.as_raw_fd();
    while let Some(conn) = handler::accept_next(&mut acceptor)? {
        let (fd, place) = conn.into_parts();
        // The child takes the socket out of `conn`; the parent's copy is
        // closed when `conn` drops at the end of this iteration.
        let mut conn = Some(Stream::new(fd));
        let spawned = process::spawn(|_slot| {
            // SAFETY: the child never touches `acceptor` again and ends in
            // `_exit` (process::spawn), so the listener is closed only here.
            unsafe { process::close_inherited(listener_fd) };
            if let Some(stream) = conn.take() {
                let mut stream = shutdown::Serving::mark(stream);
                handler::handle(&mut *stream, config);
            }
        });
        match spawned {
            Ok(Some(_slot)) => place.keep(), // the child has it now
            // No process to spare: say so, as for MAX_CONNS. `place` drops.
            Ok(None) | Err(_) => {
                if let Some(stream) = conn.as_mut() {
                    let _ = std::io::Write::write_all(stream, ERR_TOO_MANY_CONNS);
                }
            }
        }
    }
    process::stop_all(config.drain_timeout);
    Ok(())
}
