//! The server's options: the protocol's limits, plus the few knobs some
//! models have. Parsed once by the `lab` binary and handed to every model.

use std::time::Duration;

use clap::Args;

use crate::server::protocol::{Codec, DEFAULT_MAX_LINE};
use crate::server::tickets::Tickets;

/// Options common to every model (the limits of docs/src/protocol.md, and the address).
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on; port 0 asks the kernel for a free port.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "HOST:PORT")]
    pub addr: String,

    /// MAX_LINE: bytes without an LF (the LF counted) before `error: line too long`.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE, value_name = "BYTES",
          value_parser = parse_positive)]
    pub max_line: usize,

    /// MAX_CONNS: open connections beyond which a new one gets `error: too many connections`.
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = parse_positive)]
    pub max_conns: usize,

    /// MAX_PENDING: bytes of unsent responses beyond which the server stops reading a connection.
    #[arg(long, default_value_t = 262_144, value_name = "BYTES",
          value_parser = parse_positive)]
    pub max_pending: usize,

    /// IDLE_TIMEOUT in seconds (fractions allowed); 0 turns it off.
    #[arg(long, default_value = "300", value_name = "SECS", value_parser = parse_secs)]
    pub idle_timeout: Duration,

    /// DRAIN_TIMEOUT in seconds: how long a graceful shutdown may take.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = parse_secs)]
    pub drain_timeout: Duration,

    /// Burn this many microseconds of CPU per request, standing in for the
    /// work a real server does (see `lab demo head-of-line`).
    #[arg(long = "work-us", default_value = "0", value_name = "MICROS", value_parser = parse_micros)]
    pub work: Duration,

    /// Sleep this many microseconds per request, standing in for a
    /// blocking call (a disk read, a query): waiting, not CPU.
    #[arg(long = "block-us", default_value = "0", value_name = "MICROS", value_parser = parse_micros)]
    pub block: Duration,

    /// Demo only: answer a `ticket` line with `TICKET n` from one shared
    /// counter, sold in MODE: racy, yielding, locked, atomic or shared
    /// (see `lab demo race`).
    #[arg(long, value_name = "MODE", value_parser = Tickets::parse)]
    pub tickets: Option<Tickets>,

    /// Print a status line on stderr every second.
    #[arg(long)]
    pub stats: bool,

    /// Threads or processes, for the models that have a pool or several loops
    /// (filled from `--workers` where the model accepts it).
    #[arg(skip = 1usize)]
    pub workers: usize,

    /// Options only some models take, filled by the `lab` binary from the
    /// flags that model declares.
    #[arg(skip)]
    pub tuning: Tuning,
}

/// Knobs particular to some models. Each is documented where it is used and
/// offered on the command line only for the models that declare it.
#[derive(Clone, Debug, Default)]
pub struct Tuning {
    /// epoll: edge-triggered instead of level-triggered.
    pub edge: bool,
    /// nonblocking: sleep this long after every sweep.
    pub spin_sleep: Duration,
    /// uring: single-shot accept and recv with per-connection buffers.
    pub no_multishot: bool,
    /// uring: a kernel thread polls the submission queue.
    pub sqpoll: bool,
    /// uring: connections in the process's descriptor table, not the
    /// ring's (no direct descriptors).
    pub no_fixed_files: bool,
    /// uring: answers of at least this many bytes go out as zero-copy sends.
    pub send_zc_min: Option<usize>,
    /// uring: no receive bundles (one buffer per completion).
    pub no_bundle: bool,
    /// uring: after submitting answers, wait up to this long for one more
    /// completion than the answers (the kernel's `min_wait`), so that the
    /// call that submits them also sleeps; `None`: off.
    pub min_wait: Option<std::time::Duration>,
    /// epoll: threads in the pool that pays for costly requests (0: none).
    pub offload: usize,
    /// epoll: every worker's loop watches one shared listener (a dup of
    /// it) instead of its own `SO_REUSEPORT` sibling (`lab demo herd`).
    pub one_listener: bool,
    /// epoll: the listener is watched with `EPOLLEXCLUSIVE`.
    pub exclusive: bool,
}

impl Config {
    /// The idle timeout, or `None` when it is turned off.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (!self.idle_timeout.is_zero()).then_some(self.idle_timeout)
    }

    /// A connection's codec, with this configuration's line limit and work.
    pub fn codec(&self) -> Codec {
        Codec::new(self.max_line)
            .with_work(self.work)
            .with_blocking(self.block)
            .with_tickets(self.tickets)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:7878".into(),
            max_line: DEFAULT_MAX_LINE,
            max_conns: 10_000,
            max_pending: 262_144,
            idle_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(5),
            work: Duration::ZERO,
            block: Duration::ZERO,
            tickets: None,
            stats: false,
            workers: 1,
            tuning: Tuning::default(),
        }
    }
}

/// Parses a whole number of at least 1.
pub fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{text}` is not a whole number of at least 1")),
    }
}

/// Parses a non-negative number of seconds, fractions allowed (`0.5`).
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a duration in seconds"))
}

/// Parses a whole number of microseconds.
pub fn parse_micros(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_micros)
        .map_err(|_| format!("`{text}` is not a whole number of microseconds"))
}
