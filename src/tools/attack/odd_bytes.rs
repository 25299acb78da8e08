//! `odd-bytes`: the bytes a parser's author did not think of.
//!
//! The protocol is defined on bytes, not text: any byte but LF may be in a
//! line, NUL, CR and bytes that are not UTF-8 included, and only `a..=z`
//! change. A server that reads lines as strings, trims a CR, stops at a
//! NUL or upper-cases `ä` breaks that. The attack sends, each on a fresh
//! connection and checked byte for byte:
//!
//! 1. **every byte value**: a line per value 0..=255 (LF excepted, it ends
//!    the line), one line holding all 255, a CRLF line, an empty line;
//! 2. **the longest line that passes**: `MAX_LINE - 1` bytes and an LF,
//!    which must be answered;
//! 3. **one byte too many**: a line, then `MAX_LINE` bytes without an LF,
//!    which must bring the first line's answer, `error: line too long` and
//!    a close;
//! 4. **an unterminated tail**, then a half-close: answered without an LF,
//!    then closed;
//! 5. **a million empty lines** in one stream (each a lone LF, each a
//!    request), written while the answers are read, all of which must come
//!    back. The per-request overhead of a server shows here: a million
//!    requests in one megabyte.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::wire::{self, LINE_TOO_LONG, PATIENCE};
use super::{Finding, Halt, Limits, Plan, Process, Scenario, Target};

pub const SCENARIO: Scenario = Scenario {
    name: "odd-bytes",
    must: "answer every byte value, the longest line, the overlong line, the tail and a million \
           empty lines exactly as the spec says",
    conns: |_, _| 1,
    process: Process::Any,
    tune: |_: &mut Limits| {},
    run,
};

/// Empty lines sent in one stream, before scaling.
const EMPTY_LINES: usize = 1_000_000;

/// The most the empty lines may take, all of them.
const EMPTY_LINES_WITHIN: Duration = Duration::from_secs(60);

fn run(target: &mut Target, plan: &Plan) -> Result<Finding, Halt> {
    let mut f = Finding::default();
    let max_line = target.limits.max_line;
    let mut passed = Vec::new();
    let mut check = |name: &'static str, result: Result<(), String>| match result {
        Ok(()) => passed.push(name),
        Err(e) => f.fail(format!("{name}: {e}")),
    };

    check("every byte value", every_byte(target));
    check(
        "the longest line",
        longest_line(target, max_line)
            .map_err(|e| format!("{} bytes and an LF: {e}", max_line - 1)),
    );
    check("the overlong line", overlong_line(target, max_line));
    check("the tail at half-close", tail(target));
    let lines = plan.count(EMPTY_LINES);
    let started = Instant::now();
    check("empty lines", empty_lines(target, lines));
    let took = started.elapsed();

    f.fact("max_line", max_line);
    f.fact("empty_lines", lines);
    f.fact("empty_lines_s", took.as_secs_f64());
    f.fact("passed", passed.clone());
    target.alive(&mut f);
    f.says = format!(
        "{} of 5 checks exact; {lines} empty lines answered in {:.1} ms",
        passed.len(),
        took.as_secs_f64() * 1e3
    );
    Ok(f)
}

fn every_byte(target: &Target) -> Result<(), String> {
    let mut request = Vec::new();
    let values: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').collect();
    for &b in &values {
        request.extend_from_slice(b"byte ");
        request.push(b);
        request.extend_from_slice(b" end\n");
    }
    request.extend_from_slice(&values);
    request.extend_from_slice(b"\ncrlf line\r\n\n");
    let mut stream = wire::connect(target.addr).map_err(|e| e.to_string())?;
    wire::roundtrip(&mut stream, &request, PATIENCE).map(drop)
}

fn longest_line(target: &Target, max_line: usize) -> Result<(), String> {
    let mut request: Vec<u8> = (b'a'..=b'z').cycle().take(max_line - 1).collect();
    request.push(b'\n');
    let mut stream = wire::connect(target.addr).map_err(|e| e.to_string())?;
    wire::roundtrip(&mut stream, &request, PATIENCE).map(drop)
}

fn overlong_line(target: &Target, max_line: usize) -> Result<(), String> {
    let mut request = b"a line before\n".to_vec();
    request.extend((b'a'..=b'z').cycle().take(max_line));
    let mut stream = wire::connect(target.addr).map_err(|e| e.to_string())?;
    // The server may close before it has read the last of it; the write
    // failing then is no failure of the server's.
    let _ = stream.write_all(&request);
    let got = wire::read_to_close(&mut stream, PATIENCE)?;
    wire::same(&got, &[b"A LINE BEFORE\n", LINE_TOO_LONG].concat())
        .map_err(|e| format!("a line, then {max_line} bytes with no LF: {e}"))
}

fn tail(target: &Target) -> Result<(), String> {
    let mut stream = wire::connect(target.addr).map_err(|e| e.to_string())?;
    stream
        .write_all(b"whole line\ntail without lf")
        .and_then(|()| wire::half_close(&stream))
        .map_err(|e| e.to_string())?;
    let got = wire::read_to_close(&mut stream, PATIENCE)?;
    wire::same(&got, b"WHOLE LINE\nTAIL WITHOUT LF")
}

/// Writes `lines` lone LFs from a second thread while this one reads the
/// answers: reading only after writing everything would deadlock against a
/// server that stops reading while its answers are unread (as it must).
fn empty_lines(target: &Target, lines: usize) -> Result<(), String> {
    let mut stream = wire::connect(target.addr).map_err(|e| e.to_string())?;
    let mut writer: TcpStream = stream.try_clone().map_err(|e| e.to_string())?;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let chunk = vec![b'\n'; 64 * 1024];
            let mut left = lines;
            while left > 0 {
                let n = left.min(chunk.len());
                // A failed write shows up as missing answers on the reader.
                if writer.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n;
            }
        });
        let got = wire::read_exactly(&mut stream, lines, EMPTY_LINES_WITHIN);
        if got.is_err() {
            // Unblock the writer, which may be waiting on a full window.
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        let got = got?;
        match got.iter().position(|&b| b != b'\n') {
            None => Ok(()),
            Some(at) => Err(format!(
                "answer {at} is not an empty line: {}",
                wire::show(&got[at..])
            )),
        }
    })
}
