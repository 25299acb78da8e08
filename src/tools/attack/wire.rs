//! The attack's side of the wire: plain sockets and the byte checks every
//! scenario shares.
//!
//! Two rules hold everywhere here. **The attacker's calls are its own**:
//! `std::net` and `socket2`, never the server's counted wrappers in
//! [`crate::sys`], so nothing a client does shows up in a server's syscall
//! counts. **Every answer is checked byte for byte** against what
//! docs/src/protocol.md requires, written out here from the spec rather
//! than taken from the server's codec: a checker that borrowed the server's
//! `upper` or its error constants would agree with the server's mistakes.
//!
//! A check that fails returns `Err` with what went wrong in words (the
//! bytes that came instead, where they first differ), because that text is
//! what ends up in the verdict a student reads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::sys::is_timeout;

/// `error: too many connections`, as the spec writes it.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"error: too many connections\n";
/// `error: line too long`, as the spec writes it.
pub const LINE_TOO_LONG: &[u8] = b"error: line too long\n";
/// `error: idle timeout`, as the spec writes it.
pub const IDLE_TIMEOUT: &[u8] = b"error: idle timeout\n";

/// How long an honest client may wait for its answer while the server is
/// under attack before the server counts as not serving it. Generous: the
/// lab runs on two shared cores, and a server holding thousands of hostile
/// connections may be slow and still correct; what fails is a server that
/// does not answer at all.
pub const HONEST_WITHIN: Duration = Duration::from_secs(2);

/// How long any other single wait may take.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The answer the protocol requires for `request`: every byte in `a..=z`
/// minus 0x20, every other byte (the LF, CR, NUL, bytes >= 0x80) as it is.
/// That is exactly `to_ascii_uppercase`.
pub fn answer(request: &[u8]) -> Vec<u8> {
    request.to_ascii_uppercase()
}

/// Connects with a deadline. `TCP_NODELAY`, so that a dribbled byte leaves
/// at once instead of waiting for Nagle's algorithm.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, PATIENCE)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(PATIENCE))?;
    Ok(stream)
}

/// Reads exactly `n` bytes within `within`, or says what came instead.
pub fn read_exactly(stream: &mut TcpStream, n: usize, within: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + within;
    let mut got = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(format!(
                "{filled} of {n} bytes within {:.1} s: {}",
                within.as_secs_f64(),
                show(&got[..filled])
            ));
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut got[filled..]) {
            Ok(0) => {
                return Err(format!(
                    "the server closed after {filled} of {n} bytes: {}",
                    show(&got[..filled])
                ))
            }
            Ok(k) => filled += k,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "{e} after {filled} of {n} bytes: {}",
                    show(&got[..filled])
                ))
            }
        }
    }
    Ok(got)
}

/// Reads `want.len()` bytes within `within` and checks they are `want`.
pub fn expect(stream: &mut TcpStream, want: &[u8], within: Duration) -> Result<(), String> {
    let got = read_exactly(stream, want.len(), within)?;
    same(&got, want)
}

/// Sends `request` and checks that its answer comes back exactly, within
/// `within`; returns how long it took.
pub fn roundtrip(
    stream: &mut TcpStream,
    request: &[u8],
    within: Duration,
) -> Result<Duration, String> {
    let asked = Instant::now();
    stream
        .write_all(request)
        .map_err(|e| format!("sending {}: {e}", show(request)))?;
    expect(stream, &answer(request), within)?;
    Ok(asked.elapsed())
}

/// An honest client: connects, sends one line of mixed case and odd bytes,
/// checks the answer byte for byte within `within`, and leaves. Returns how
/// long the answer took.
pub fn honest(addr: SocketAddr, n: usize, within: Duration) -> Result<Duration, String> {
    let mut stream = connect(addr).map_err(|e| format!("honest client {n}: connect: {e}"))?;
    let line = format!("honest client {n}: MiXeD case, \u{e4}\u{df}, tab\there\n");
    roundtrip(&mut stream, line.as_bytes(), within).map_err(|e| format!("honest client {n}: {e}"))
}

/// Reads until the server closes the connection, within `within`; returns
/// everything that came. A reset after the last byte counts as the close (a
/// server that closes a socket with unread input makes the kernel send RST).
pub fn read_to_close(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(match got.is_empty() {
                true => format!("still open and silent after {:.1} s", within.as_secs_f64()),
                false => format!(
                    "still open after {:.1} s; it sent {}",
                    within.as_secs_f64(),
                    show(&got)
                ),
            });
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(got),
            Ok(k) => got.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(got),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{e}; it sent {}", show(&got))),
        }
    }
}

/// Closes with `SO_LINGER` 0: the kernel drops whatever is unsent and
/// sends RST instead of FIN, the way a crashed client or a middlebox ends a
/// connection.
pub fn reset(stream: TcpStream) {
    // If the option cannot be set the close is an ordinary one: still a
    // client vanishing, only a politer one.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Half-closes: the server sees end of stream and must answer, then close.
pub fn half_close(stream: &TcpStream) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)
}

/// `Ok` if `got == want`, or where and how they first differ.
pub fn same(got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let at = got.iter().zip(want).take_while(|(g, w)| g == w).count();
    let from = at.saturating_sub(16);
    Err(format!(
        "got {} bytes, want {}; first difference at byte {at}: got {} want {}",
        got.len(),
        want.len(),
        show(&got[from.min(got.len())..]),
        show(&want[from.min(want.len())..]),
    ))
}

/// Some bytes, escaped and cut short, for a verdict.
pub fn show(bytes: &[u8]) -> String {
    const MOST: usize = 48;
    let shown: String = bytes
        .iter()
        .take(MOST)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    if bytes.len() > MOST {
        format!("\"{shown}\"... ({} bytes)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}
