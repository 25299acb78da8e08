//! # `blocking` — the iterative server
//!
//! The first server anyone writes: accept a connection, serve it until it
//! closes, accept the next. Every call blocks, and there is exactly one
//! thread, so the server does one thing at a time. It is the baseline every
//! other model improves on.
//!
//! ## One request, step by step
//!
//! ```text
//! server                                   client A         client B
//! accept() ............ blocks ..........  connect()
//!          returns A
//! read(A) ............. blocks ..........  "hi\n"
//!         returns 3 bytes                                    connect()  (sits in the
//! [codec: "HI\n"]                                                       kernel's accept
//! write(A, "HI\n")  returns at once (the kernel copies                   queue; nobody
//!                   into A's send buffer)                                calls accept)
//! read(A) ............. blocks ..........  close()
//!         returns 0: end of stream
//! close(A)
//! accept() returns B  ─────────────────────────────────────── B is finally served
//! ```
//!
//! ## Costs
//!
//! - **Syscalls per request:** one `read` and one `write` (a pipelining
//!   client gets many requests per pair), plus an `accept` per connection.
//! - **Memory per connection:** one connection at a time, so ~32 KiB of
//!   buffers in all, however many clients wait.
//! - **At 10,000 clients:** one is served; 4,096 wait in the accept queue
//!   (the backlog). Past it the kernel drops handshakes: a dropped SYN is
//!   retried until `connect` times out, and a dropped final ACK leaves a
//!   client whose `connect` succeeded talking to a connection the server
//!   does not have yet (`net.ipv4.tcp_abort_on_overflow=0`, the default).
//!   A client that opens a connection and says nothing stops the whole
//!   server for the idle timeout.
//!
//! ## Failure modes, and what the code does
//!
//! - *A slow or idle client blocks everyone*: that is the model. The idle
//!   timeout (`SO_RCVTIMEO` on the socket) bounds how long.
//! - *`MAX_CONNS`* cannot be enforced: we hold one connection, and waiting
//!   clients sit in the kernel's queue, never accepted, so there is nobody
//!   to send `error: too many connections` to. The conformance suite skips
//!   the cases that need two clients served at once.
//! - *Shutdown while blocked in `read` or `accept`*: the stop signal's
//!   handler shuts down the listener and the read side of the current
//!   connection ([`shutdown::Serving`]), so both calls return at once
//!   whether or not they had started when the signal came.
//!
//! The next model, `fork`, serves each client in its own process so that
//! one client no longer waits for another.

use std::io;
use std::net::TcpListener;

use crate::server::config::Config;
use crate::server::handler;
use crate::server::listener::Acceptor;
use crate::server::shutdown;
use crate::sys::{Blocking, Stream};

/// Serves connections one after another on the calling thread.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let mut acceptor = Acceptor::new(listener, Blocking::Yes, config.max_conns)?.stop_on_signal();
    while let Some(conn) = handler::accept_next(&mut acceptor)? {
        let (fd, _place) = conn.into_parts();
        let mut stream = shutdown::Serving::mark(Stream::new(fd));
        handler::handle(&mut *stream, config);
    }
    Ok(())
}
