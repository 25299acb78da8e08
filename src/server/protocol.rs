//! The UPPER protocol's codec: bytes in, responses out, no sockets.
//!
//! Every model feeds the bytes it receives to a [`Codec`] and sends what the
//! codec appends to its output buffer. Framing, the line limit and end of
//! stream are decided here and nowhere else, so a blocking thread, an epoll
//! loop and an io_uring completion handler all answer byte for byte the same.
//! (This is mini-redis's split between `frame` and `connection`.)
//!
//! The protocol in brief (docs/src/protocol.md has it in full): a request is
//! a line ending in LF; its response is the same bytes with `a`..=`z`
//! upper-cased, sent only once the LF has arrived. A line of `max_line` bytes
//! or more without an LF is an error. At end of stream an unterminated tail
//! is answered without an LF.
//!
//! Because a response is exactly as long as its request and differs only in
//! the case of some bytes, the codec never parses anything: it finds the last
//! LF, checks that no line before it is too long, and upper-cases everything
//! up to it in one pass. The bytes after the last LF wait in [`Codec`] until
//! their LF comes.

use std::time::{Duration, Instant};

use crate::server::tickets::Tickets;

/// Sent when a line reaches the limit without an LF; then the server closes.
pub const ERR_LINE_TOO_LONG: &[u8] = b"error: line too long\n";
/// Sent to a connection that would exceed `MAX_CONNS`; then it is closed.
pub const ERR_TOO_MANY_CONNS: &[u8] = b"error: too many connections\n";
/// Sent when nothing arrived for `IDLE_TIMEOUT`; then the server closes.
pub const ERR_IDLE_TIMEOUT: &[u8] = b"error: idle timeout\n";

/// The default `MAX_LINE`: 64 KiB, the LF included.
pub const DEFAULT_MAX_LINE: usize = 65536;

/// A line reached `max_line` bytes without an LF. The codec has already
/// appended the responses to the earlier lines and [`ERR_LINE_TOO_LONG`] to
/// the output; the connection must be flushed and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineTooLong {
    /// Complete lines answered, in this call, before the overlong one.
    pub lines: u64,
}

/// What answering one line costs besides framing: stand-ins for the work
/// a real server does per request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// CPU burned per line (`--work-us`): a busy loop on the calling
    /// thread, as real request processing would be.
    pub work_per_line: Duration,
    /// Time blocked per line (`--block-us`): a sleep, as a blocking call
    /// (a disk read, a query to another server) would be. The thread waits
    /// and the CPU is free for others; a single event loop stalls all the
    /// same.
    pub block_per_line: Duration,
}

impl Cost {
    /// Whether answering costs anything.
    pub fn is_zero(&self) -> bool {
        self.work_per_line.is_zero() && self.block_per_line.is_zero()
    }

    /// Pays for `lines` lines on this thread: the CPU burn, then the sleep.
    pub fn spend(&self, lines: u64) {
        if lines == 0 {
            return;
        }
        let lines = u32::try_from(lines).unwrap_or(u32::MAX);
        if !self.work_per_line.is_zero() {
            let until = Instant::now() + self.work_per_line.saturating_mul(lines);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        if !self.block_per_line.is_zero() {
            std::thread::sleep(self.block_per_line.saturating_mul(lines));
        }
    }
}

/// The per-connection framing state: the unterminated tail of the input.
#[derive(Debug)]
pub struct Codec {
    max_line: usize,
    /// What answering a line costs besides framing (`--work-us`,
    /// `--block-us`), nothing by default.
    cost: Cost,
    /// The demo-only ticket desk (`--tickets`): `ticket` lines are
    /// answered with the next number from it.
    tickets: Option<Tickets>,
    /// Bytes received since the last LF (always fewer than `max_line`).
    partial: Vec<u8>,
}

impl Codec {
    /// A codec that rejects lines of `max_line` bytes or more without an LF
    /// (so a line of exactly `max_line` bytes, the LF included, passes).
    ///
    /// # Panics
    ///
    /// If `max_line` is 0: no line at all could pass.
    pub fn new(max_line: usize) -> Self {
        assert!(max_line > 0, "max_line must be at least 1");
        Codec {
            max_line,
            cost: Cost::default(),
            tickets: None,
            partial: Vec::new(),
        }
    }

    /// The same codec, burning `per_line` of CPU for every line it answers.
    /// The burn is a busy loop on the calling thread, as real request
    /// processing would be: it is how `lab demo head-of-line` shows a slow
    /// request stalling every other client of a single event loop.
    pub fn with_work(mut self, per_line: Duration) -> Self {
        self.cost.work_per_line = per_line;
        self
    }

    /// The same codec, sleeping `per_line` for every line it answers: a
    /// blocking call (a disk read, a query to another server) rather than
    /// work. The thread waits and the CPU is free for others; a single
    /// event loop stalls all the same (`lab demo head-of-line`).
    pub fn with_blocking(mut self, per_line: Duration) -> Self {
        self.cost.block_per_line = per_line;
        self
    }

    /// The same codec, selling a ticket for every `ticket` line
    /// ([`crate::server::tickets`], demo-only).
    pub fn with_tickets(mut self, tickets: Option<Tickets>) -> Self {
        self.tickets = tickets;
        self
    }

    /// What answering a line costs besides framing.
    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// Feeds received bytes. Appends to `out` the response to every line
    /// completed by `input`, in order, and returns how many there were.
    ///
    /// # Errors
    ///
    /// [`LineTooLong`] if a line reached the limit; the error line has then
    /// been appended to `out` after the responses before it, and any input
    /// after the overlong line is ignored.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<u64, LineTooLong> {
        let start = out.len();
        let decoded = self.frame(input, out);
        if let Some(tickets) = &self.tickets {
            tickets.stamp(out, start);
        }
        if let Ok(lines) = decoded {
            self.cost.spend(lines);
        }
        decoded
    }

    /// [`decode`](Self::decode) without the slow part: the answers are
    /// appended, and the caller owes [`cost`](Self::cost) for the lines
    /// returned before it may send them (`epoll --offload` spends it on a
    /// pool thread).
    pub fn decode_deferred(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<u64, LineTooLong> {
        let start = out.len();
        let decoded = self.frame(input, out);
        if let Some(tickets) = &self.tickets {
            tickets.stamp(out, start);
        }
        decoded
    }

    /// [`decode`](Self::decode) without the slow part: framing and
    /// upper-casing only.
    fn frame(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<u64, LineTooLong> {
        let Some(last_lf) = input.iter().rposition(|&b| b == b'\n') else {
            // No line ends here: the input only lengthens the tail.
            if self.partial.len() + input.len() >= self.max_line {
                return Err(self.too_long(0, out));
            }
            self.partial.extend_from_slice(input);
            return Ok(0);
        };
        let (complete, tail) = input.split_at(last_lf + 1);

        // Fast path: if the tail so far plus everything up to the last LF is
        // shorter than the limit, no line in it can be too long.
        let lines = if self.partial.len() + complete.len() <= self.max_line {
            let lines = count_lines(complete);
            push_upper(out, &self.partial);
            push_upper(out, complete);
            self.clear_partial();
            lines
        } else {
            self.decode_line_by_line(complete, out)?
        };

        if tail.len() >= self.max_line {
            return Err(self.too_long(lines, out));
        }
        self.partial.extend_from_slice(tail);
        Ok(lines)
    }

    /// The slow path of [`decode`](Self::decode): `complete` ends with an LF
    /// and may hold an overlong line, so check each line.
    fn decode_line_by_line(
        &mut self,
        complete: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u64, LineTooLong> {
        let mut lines = 0;
        for line in complete.split_inclusive(|&b| b == b'\n') {
            // `line` includes its LF, so this is "max_line bytes or more
            // before the LF".
            if self.partial.len() + line.len() > self.max_line {
                return Err(self.too_long(lines, out));
            }
            push_upper(out, &self.partial);
            push_upper(out, line);
            self.clear_partial();
            lines += 1;
        }
        Ok(lines)
    }

    /// Empties the tail; a long one's buffer is freed, so an idle
    /// connection does not keep up to `max_line` bytes after one long line.
    fn clear_partial(&mut self) {
        if self.partial.capacity() > 4096 {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
        }
    }

    fn too_long(&mut self, lines: u64, out: &mut Vec<u8>) -> LineTooLong {
        self.clear_partial();
        out.extend_from_slice(ERR_LINE_TOO_LONG);
        LineTooLong { lines }
    }

    /// End of stream from the client: appends the unterminated tail, if any,
    /// upper-cased and without an LF. Returns whether there was one.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        push_upper(out, &self.partial);
        let had_tail = !self.partial.is_empty();
        self.clear_partial();
        self.cost.spend(had_tail as u64);
        had_tail
    }

    /// Bytes held back waiting for their LF.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// Appends `bytes` to `out` with `a`..=`z` upper-cased and every other byte
/// unchanged (`u8::to_ascii_uppercase` is exactly that mapping).
fn push_upper(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.extend_from_slice(bytes);
    out[start..].make_ascii_uppercase();
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The response the protocol requires for `request` (what a client checks
/// against): the same bytes with `a`..=`z` upper-cased.
pub fn upper(request: &[u8]) -> Vec<u8> {
    request.to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max_line: usize, chunks: &[&[u8]]) -> (Vec<u8>, Result<u64, LineTooLong>) {
        let mut codec = Codec::new(max_line);
        let mut out = Vec::new();
        let mut total = 0;
        for chunk in chunks {
            match codec.decode(chunk, &mut out) {
                Ok(n) => total += n,
                Err(e) => return (out, Err(e)),
            }
        }
        (out, Ok(total))
    }

    #[test]
    fn upper_cases_only_ascii_lower_case() {
        let (out, lines) = run(100, &["MiXeD 123 äß\n".as_bytes()]);
        assert_eq!(out, "MIXED 123 äß\n".as_bytes());
        assert_eq!(lines, Ok(1));
    }

    #[test]
    fn holds_a_partial_line_until_its_lf() {
        let mut codec = Codec::new(100);
        let mut out = Vec::new();
        assert_eq!(codec.decode(b"hel", &mut out), Ok(0));
        assert!(out.is_empty());
        assert_eq!(codec.pending(), 3);
        assert_eq!(codec.decode(b"lo\nwor", &mut out), Ok(1));
        assert_eq!(out, b"HELLO\n");
        assert!(codec.finish(&mut out));
        assert_eq!(out, b"HELLO\nWOR");
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_passes() {
        let line = [b"x".repeat(9), b"\n".to_vec()].concat();
        let (out, lines) = run(10, &[&line]);
        assert_eq!(lines, Ok(1));
        assert_eq!(out, upper(&line));
    }

    #[test]
    fn max_line_bytes_without_lf_is_an_error_after_earlier_answers() {
        let (out, result) = run(10, &[b"ok\n", &b"x".repeat(10)]);
        assert_eq!(result, Err(LineTooLong { lines: 0 }));
        assert_eq!(out, [b"OK\n".as_slice(), ERR_LINE_TOO_LONG].concat());
    }

    #[test]
    fn an_overlong_line_in_the_middle_of_one_chunk() {
        let input = [b"a\n".as_slice(), &b"y".repeat(20), b"\nb\n"].concat();
        let (out, result) = run(10, &[&input]);
        assert_eq!(result, Err(LineTooLong { lines: 1 }));
        assert_eq!(out, [b"A\n".as_slice(), ERR_LINE_TOO_LONG].concat());
    }

    #[test]
    fn an_overlong_line_spread_over_chunks() {
        let (out, result) = run(10, &[b"abc", b"def", b"ghij"]);
        assert_eq!(result, Err(LineTooLong { lines: 0 }));
        assert_eq!(out, ERR_LINE_TOO_LONG);
    }

    #[test]
    fn empty_lines_are_requests_too() {
        let (out, lines) = run(1, &[b"\n\n\n"]);
        assert_eq!(lines, Ok(3));
        assert_eq!(out, b"\n\n\n");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Cuts `input` at the given points (taken modulo its length).
        fn cut<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&input[start..p]);
                start = p;
            }
            chunks.push(&input[start..]);
            chunks
        }

        /// Lines of arbitrary bytes (LF excluded), each shorter than `max`.
        fn lines(max: usize) -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..max),
                0..20,
            )
            .prop_map(|lines| {
                lines
                    .into_iter()
                    .flat_map(|l| l.into_iter().chain([b'\n']))
                    .collect()
            })
        }

        proptest! {
            #[test]
            fn output_is_the_upper_case_of_the_input_however_it_is_cut(
                input in lines(40),
                tail in prop::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..40),
                cuts in prop::collection::vec(any::<usize>(), 0..10),
            ) {
                let input = [input, tail].concat();
                let mut codec = Codec::new(41);
                let mut out = Vec::new();
                for chunk in cut(&input, &cuts) {
                    prop_assert!(codec.decode(chunk, &mut out).is_ok());
                }
                codec.finish(&mut out);
                prop_assert_eq!(out, upper(&input));
            }

            #[test]
            fn an_overlong_line_yields_the_error_after_the_earlier_responses(
                before in lines(16),
                long_len in 16usize..64,
                after in lines(16),
                cuts in prop::collection::vec(any::<usize>(), 0..10),
            ) {
                let input = [before.clone(), vec![b'q'; long_len], b"\n".to_vec(), after].concat();
                let mut codec = Codec::new(16);
                let mut out = Vec::new();
                let mut failed = false;
                for chunk in cut(&input, &cuts) {
                    if codec.decode(chunk, &mut out).is_err() {
                        failed = true;
                        break;
                    }
                }
                prop_assert!(failed);
                prop_assert_eq!(out, [upper(&before), ERR_LINE_TOO_LONG.to_vec()].concat());
            }
        }
    }
}
