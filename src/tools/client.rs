//! `lab client`: the interactive line client, the Rust version of the
//! classic teaching client. It sends what it reads on standard input and
//! prints what the server sends back, so it works at a terminal and in a
//! pipe (`printf 'a\nb\n' | lab client`).

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};

/// Connects to `addr` and shuttles bytes until the server closes.
///
/// Standard input is copied to the socket on a second thread; when it ends,
/// the client half-closes its side, so the server answers an unterminated
/// last line and closes in turn. The main thread prints everything the
/// server sends, as it comes, and returns when the server closes.
pub fn run(addr: &str) -> io::Result<()> {
    let stream = TcpStream::connect(addr)?;
    let mut to_server = stream.try_clone()?;
    std::thread::spawn(move || {
        // A failed copy means the server went away; the reader sees that too.
        let _ = io::copy(&mut io::stdin().lock(), &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let mut from_server = stream;
    let mut stdout = io::stdout().lock();
    io::copy(&mut from_server, &mut stdout)?;
    stdout.flush()
}
