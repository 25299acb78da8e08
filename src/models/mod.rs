//! The models, and the contract every one of them keeps.
//!
//! A model is one function, `serve(listener, &config)`, in one file (or one
//! small folder) under `models/`. The [`all`] table lists them in teaching
//! order; the `lab` binary, `lab list` and the conformance suite all read
//! that table, so a model added here is runnable, listed and tested without
//! touching anything else.
//!
//! # The contract
//!
//! Every model serves the UPPER protocol (docs/src/protocol.md) on the
//! listener it is given, using the shared pieces rather than its own
//! versions of them:
//!
//! - **framing** by [`crate::server::protocol::Codec`]: every complete line is
//!   answered, in order; a line reaching `max_line` bytes without an LF gets
//!   the earlier answers, then `error: line too long`, then a close;
//! - **end of stream**: on the client's half-close, answer every complete
//!   line, then the unterminated tail without an LF, then close; on a reset,
//!   drop the connection and carry on;
//! - **limits** from [`crate::server::config::Config`]: `MAX_CONNS` through
//!   [`crate::server::listener::Acceptor`], the idle timeout, and `MAX_PENDING`
//!   (stop reading a connection whose unsent answers exceed it);
//! - **syscalls** through [`crate::sys`], so they are counted;
//! - **shutdown** through [`crate::server::shutdown`]: on a stop signal (SIGINT,
//!   SIGTERM, SIGHUP: [`crate::server::shutdown::STOP_SIGNALS`]) stop accepting,
//!   answer every complete line already received, flush, close, and return
//!   within the drain timeout. `serve` returns `Ok(())` then;
//!   an `Err` means the model could not run at all (the binary prints it on
//!   one line and exits non-zero).
//!
//! A model that cannot keep a clause by its nature says so in its doc and
//! in its table entry ([`Model::concurrent`], [`Model::fd_limit`]).
//!
//! # Two ways to write a connection, four families
//!
//! *As if it blocked:* the **blocking** models run
//! [`crate::server::handler::handle`], one function that serves a connection as if
//! every call blocked; they differ in where it runs (the listening thread,
//! a child process, a pooled process, a thread, a pooled thread). The
//! **coroutine** models run it without a thread per connection: `coro`
//! runs that same function on coroutines whose sockets park instead of
//! blocking, and `async` runs a copy of it rewritten as a future
//! ([`async_model::handle`]), on the lab's own executor.
//!
//! *As a state machine:* each connection is a value, a
//! [`crate::server::conn::Conn`]. The **readiness** models drive them all from one
//! loop through the shared [`crate::server::driver::Driver`] and differ only in how
//! they wait; the **completion** model (`uring`) hands the kernel whole
//! operations and advances the same `Conn` from their completions. The
//! **reference** models are the same server on mio, polling and tokio.

use std::io;
use std::net::TcpListener;

use crate::server::config::Config;

#[cfg(target_pointer_width = "64")]
pub mod async_model;
pub mod blocking;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod coro;
pub mod epoll;
pub mod fork;
pub mod nonblocking;
pub mod poll;
pub mod prefork;
pub mod process;
pub mod select;
pub mod sigio;
pub mod threadpool;
pub mod threads;
pub mod uring;
pub mod with_mio;
pub mod with_polling;
pub mod with_tokio;

/// Which family a model belongs to (the headings of `lab list`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// One handler per connection, written as if every call blocked.
    Blocking,
    /// One loop, many connections: the kernel says which are ready.
    Readiness,
    /// One loop, many connections: the kernel does whole operations.
    Completion,
    /// The blocking handler on coroutines that yield instead of blocking:
    /// stackful (`coro`) or rewritten as a future (`async`).
    Coroutine,
    /// The same server on the crates the Rust ecosystem uses.
    Reference,
}

impl Family {
    /// The heading `lab list` prints above the family.
    pub fn heading(self) -> &'static str {
        match self {
            Family::Blocking => "blocking IO: one connection per thread of control",
            Family::Readiness => {
                "readiness: one thread serves many connections, the kernel says which are ready"
            }
            Family::Completion => {
                "completion: the kernel does whole operations and reports them done"
            }
            Family::Coroutine => {
                "coroutines: the blocking handler on stacks that yield, or rewritten as a future"
            }
            Family::Reference => "reference: the same server on mio, polling and tokio",
        }
    }
}

/// A command-line option that only some models take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelOption {
    /// `--workers N`: threads or processes in a pool, with this default.
    Workers {
        /// What `--workers` is when not given.
        default: usize,
    },
    /// `--edge`: edge-triggered readiness (epoll).
    Edge,
    /// `--spin-sleep-us N`: sleep between sweeps (nonblocking).
    SpinSleep,
    /// `--no-multishot`: single-shot operations (uring).
    NoMultishot,
    /// `--sqpoll`: kernel-side submission polling (uring).
    SqPoll,
    /// `--no-fixed-files`: ordinary descriptors instead of direct ones (uring).
    NoFixedFiles,
    /// `--send-zc BYTES`: zero-copy sends for answers this large (uring).
    SendZc,
    /// `--min-wait-us MICROS`: the call that submits answers also waits
    /// for the next requests, up to MICROS (uring).
    MinWait,
    /// `--no-bundle`: one provided buffer per receive completion (uring).
    NoBundle,
    /// `--offload N`: a pool of N threads pays for costly requests (epoll).
    Offload,
    /// `--one-listener`: the workers share one listener (epoll).
    OneListener,
    /// `--exclusive`: `EPOLLEXCLUSIVE` on the listener (epoll).
    Exclusive,
}

impl ModelOption {
    /// The option on the command line: its flag and its help. (A model's
    /// subcommand gets one for each option the model declares.)
    pub fn arg(self) -> clap::Arg {
        use clap::{Arg, ArgAction};
        match self {
            ModelOption::Workers { default } => Arg::new("workers")
                .long("workers")
                .value_name("N")
                .value_parser(clap::value_parser!(u64).range(1..))
                .help(format!(
                    "Workers: threads, processes or event loops [default: {default}]"
                )),
            ModelOption::Edge => Arg::new("edge")
                .long("edge")
                .action(ArgAction::SetTrue)
                .help("Edge-triggered readiness (EPOLLET) instead of level-triggered"),
            ModelOption::SpinSleep => Arg::new("spin-sleep-us")
                .long("spin-sleep-us")
                .value_name("MICROS")
                .value_parser(clap::value_parser!(u64))
                .help("Sleep this long after each sweep [default: 0, never sleep]"),
            ModelOption::NoMultishot => Arg::new("no-multishot")
                .long("no-multishot")
                .action(ArgAction::SetTrue)
                .help("Single-shot accept and recv with per-connection buffers"),
            ModelOption::SqPoll => Arg::new("sqpoll")
                .long("sqpoll")
                .action(ArgAction::SetTrue)
                .help("A kernel thread polls the submission queue (IORING_SETUP_SQPOLL)"),
            ModelOption::NoFixedFiles => Arg::new("no-fixed-files")
                .long("no-fixed-files")
                .action(ArgAction::SetTrue)
                .help(
                    "Connections as ordinary descriptors, not direct ones in the ring's file table",
                ),
            ModelOption::NoBundle => Arg::new("no-bundle")
                .long("no-bundle")
                .action(ArgAction::SetTrue)
                .help("No receive bundles: one provided buffer per receive completion"),
            ModelOption::SendZc => Arg::new("send-zc")
                .long("send-zc")
                .value_name("BYTES")
                .value_parser(clap::value_parser!(u64).range(1..))
                .help("Send answers of at least BYTES bytes zero-copy (IORING_OP_SEND_ZC) [default: never]"),
            ModelOption::MinWait => Arg::new("min-wait-us")
                .long("min-wait-us")
                .value_name("MICROS")
                .value_parser(clap::value_parser!(u64).range(1..=1_000_000))
                .help(
                    "After submitting answers, wait up to MICROS for one completion more than \
                     the answers (io_uring's min_wait, Linux 6.12), so the call that submits them \
                     also waits for the next requests [default: off]",
                ),
            ModelOption::Offload => Arg::new("offload")
                .long("offload")
                .value_name("N")
                .value_parser(clap::value_parser!(u64))
                .help(
                    "A pool of N threads pays each request's --work-us and --block-us, \
                     off the loop [default: 0, none]",
                ),
            ModelOption::OneListener => Arg::new("one-listener")
                .long("one-listener")
                .action(ArgAction::SetTrue)
                .help("With --workers: all loops watch one shared listener, not one SO_REUSEPORT listener each"),
            ModelOption::Exclusive => Arg::new("exclusive")
                .long("exclusive")
                .action(ArgAction::SetTrue)
                .help("Watch the listener with EPOLLEXCLUSIVE: a connection wakes one loop, not all"),
        }
    }

    /// Sets what the option says in `config`, from the parsed command line.
    pub fn apply(self, args: &clap::ArgMatches, config: &mut Config) {
        let tuning = &mut config.tuning;
        match self {
            ModelOption::Workers { default } => {
                config.workers = args
                    .get_one::<u64>("workers")
                    .map_or(default, |&n| n as usize);
            }
            ModelOption::Edge => tuning.edge = args.get_flag("edge"),
            ModelOption::SpinSleep => {
                let micros = args.get_one::<u64>("spin-sleep-us").copied().unwrap_or(0);
                tuning.spin_sleep = std::time::Duration::from_micros(micros);
            }
            ModelOption::NoMultishot => tuning.no_multishot = args.get_flag("no-multishot"),
            ModelOption::SqPoll => tuning.sqpoll = args.get_flag("sqpoll"),
            ModelOption::NoFixedFiles => tuning.no_fixed_files = args.get_flag("no-fixed-files"),
            ModelOption::NoBundle => tuning.no_bundle = args.get_flag("no-bundle"),
            ModelOption::MinWait => {
                tuning.min_wait = args
                    .get_one::<u64>("min-wait-us")
                    .map(|&us| std::time::Duration::from_micros(us))
            }
            ModelOption::SendZc => {
                tuning.send_zc_min = args.get_one::<u64>("send-zc").map(|&n| n as usize);
            }
            ModelOption::Offload => {
                tuning.offload = args.get_one::<u64>("offload").map_or(0, |&n| n as usize);
            }
            ModelOption::OneListener => tuning.one_listener = args.get_flag("one-listener"),
            ModelOption::Exclusive => tuning.exclusive = args.get_flag("exclusive"),
        }
    }
}

/// How many clients a model can serve at once, and why no more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capacity {
    /// Bounded only by memory and `MAX_CONNS`.
    Unbounded,
    /// At most this many; the reason, in a phrase.
    AtMost(usize, &'static str),
}

impl Model {
    /// How many clients it serves at once with `workers` workers.
    pub fn capacity(&self, workers: usize) -> Capacity {
        if !self.concurrent {
            Capacity::AtMost(1, "serves one connection at a time")
        } else if self.pool_bound {
            Capacity::AtMost(workers, "each pool worker serves one connection at a time")
        } else if let Some(limit) = self.fd_limit {
            // The server's own descriptors (stdio, listener, eventfd, the
            // spare) take a few numbers below the limit.
            Capacity::AtMost(limit - 8, "descriptors must fit in an fd_set (FD_SETSIZE)")
        } else {
            Capacity::Unbounded
        }
    }
}

/// Runs `run` once per `--workers`: the calling thread with `listener`,
/// and one more thread per extra worker, each with its own `SO_REUSEPORT`
/// sibling listener, so the kernel spreads connections across them and
/// they share no lock (the "loop per core" shape of `epoll`, `uring`,
/// `coro`). With `--one-listener` (epoll) each extra worker gets a
/// duplicate of `listener` instead: one socket, one accept queue, every
/// loop watching it (the thundering herd of `lab demo herd`). Returns the
/// first error of any of them.
pub fn per_worker(
    listener: TcpListener,
    config: &Config,
    name: &str,
    run: impl Fn(TcpListener, &Config) -> io::Result<()> + Sync,
) -> io::Result<()> {
    let siblings = (1..config.workers)
        .map(|_| {
            if config.tuning.one_listener {
                listener.try_clone()
            } else {
                crate::server::listener::bind_sibling(&listener)
            }
        })
        .collect::<io::Result<Vec<_>>>()?;
    let run = &run;
    std::thread::scope(|scope| {
        let mut others = Vec::new();
        for (i, sibling) in siblings.into_iter().enumerate() {
            let handle = crate::server::shutdown::spawn_without_signals(|| {
                std::thread::Builder::new()
                    .name(format!("{name}-{}", i + 1))
                    .spawn_scoped(scope, move || run(sibling, config))
            })?;
            others.push(handle);
        }
        let mut result = run(listener, config);
        for handle in others {
            let joined = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other(format!("a {name} worker panicked"))));
            result = result.and(joined);
        }
        result
    })
}

/// The entry point every model has.
pub type ServeFn = fn(TcpListener, &Config) -> io::Result<()>;

/// One row of the model table.
#[derive(Clone, Copy, Debug)]
pub struct Model {
    /// The name on the command line: `lab NAME`.
    pub name: &'static str,
    /// Its family.
    pub family: Family,
    /// One line for `lab list`.
    pub summary: &'static str,
    /// A paragraph for `lab NAME --help`: what it is, how options apply.
    pub about: &'static str,
    /// Whether it serves more than one connection at a time. The iterative
    /// server does not, so tests that need two clients served at once skip it.
    pub concurrent: bool,
    /// The most descriptors it can watch, if it has such a limit.
    pub fd_limit: Option<usize>,
    /// Whether each worker serves one connection at a time, so that
    /// `--workers` bounds how many clients are served at once (pools).
    pub pool_bound: bool,
    /// Options it takes beyond the common ones.
    pub options: &'static [ModelOption],
    /// Extra argument sets the conformance suite also runs it with.
    pub variants: &'static [&'static [&'static str]],
    /// Whether each worker binds its own `SO_REUSEPORT` listener.
    pub listener_per_worker: bool,
    /// Whether its syscalls go through [`crate::sys`] and are counted (not
    /// so for tokio, whose IO happens inside the runtime).
    pub counts_syscalls: bool,
    /// The model itself.
    pub serve: ServeFn,
    /// What the model checks before `lab` binds and announces the address
    /// (that the kernel has what it needs), if anything.
    pub preflight: Option<fn(&Config) -> io::Result<()>>,
    /// Its source files, its own first: what `lab annotate` shows on its
    /// page (a runtime only it uses, like the coroutines', included).
    pub sources: &'static [Source],
    /// The shared pieces it stands on, by their page name in `lab annotate`
    /// (each has a page of its own).
    pub shared: &'static [&'static str],
}

/// A source file compiled into the binary, for `lab annotate`: its path in
/// the repository and its text (so a page always shows the code of the
/// `lab` that made it).
#[derive(Debug)]
pub struct Source {
    /// The path, from the repository's root.
    pub path: &'static str,
    /// The file's text.
    pub text: &'static str,
}

/// [`Source`] for a path under `src/`.
macro_rules! source {
    ($path:literal) => {
        $crate::models::Source {
            path: concat!("src/", $path),
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/", $path)),
        }
    };
}
pub(crate) use source;

/// The shared pieces the blocking-style models stand on.
const BLOCKING: &[&str] = &["handler", "listener", "shutdown", "protocol"];
/// ... and the process models.
const PROCESSES: &[&str] = &["handler", "process", "listener", "shutdown", "protocol"];
/// ... and the readiness models that wait in a poller of the lab's.
const READINESS: &[&str] = &[
    "driver",
    "conn",
    "slab",
    "readiness",
    "listener",
    "shutdown",
    "protocol",
];
/// ... and the loops that wait without one (the sweep) or in a crate's.
const LOOP: &[&str] = &["driver", "conn", "slab", "listener", "shutdown", "protocol"];

impl Model {
    /// The default of `--workers`, or `None` if the model has no pool.
    pub fn default_workers(&self) -> Option<usize> {
        self.options.iter().find_map(|option| match option {
            ModelOption::Workers { default } => Some(*default),
            _ => None,
        })
    }
}

/// How many workers the pool models start with: enough that a handful of
/// long-lived clients (or the conformance suite's twenty interleaved ones)
/// do not exhaust the pool; `--workers 2` shows what happens when they do.
const POOL_DEFAULT: usize = 32;

static MODELS: &[Model] = &[
    Model {
        name: "blocking",
        family: Family::Blocking,
        summary: "iterative server: one client at a time, the next waits in the backlog",
        about: "The iterative server: accept, serve that client until it leaves, accept the next. \
                Every call blocks on one thread, so a second client waits until the first is \
                done. --max-conns cannot be enforced (waiting clients are never accepted).",
        concurrent: false,
        fd_limit: None,
        pool_bound: false,
        options: &[],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: blocking::serve,
        preflight: None,
        sources: &[source!("models/blocking.rs")],
        shared: BLOCKING,
    },
    Model {
        name: "fork",
        family: Family::Blocking,
        summary: "a process per connection, forked by the accepting parent",
        about: "The parent accepts and forks a child per connection; the child serves it with the \
                blocking handler and exits, and the parent reaps it at once (SIGCHLD). \
                --max-conns counts live children.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: fork::serve,
        preflight: None,
        sources: &[source!("models/fork.rs")],
        shared: PROCESSES,
    },
    Model {
        name: "prefork",
        family: Family::Blocking,
        summary: "a pool of pre-forked processes all blocking in accept on one listener",
        about: "The parent forks --workers processes that each accept and serve on the shared \
                listener, one connection at a time; a worker that dies is replaced. Counters and \
                the connection limit live in shared memory.",
        concurrent: true,
        fd_limit: None,
        pool_bound: true,
        options: &[ModelOption::Workers {
            default: POOL_DEFAULT,
        }],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: prefork::serve,
        preflight: None,
        sources: &[source!("models/prefork.rs")],
        shared: PROCESSES,
    },
    Model {
        name: "threads",
        family: Family::Blocking,
        summary: "a thread per connection, spawned by the accepting thread",
        about: "The main thread accepts and spawns a thread per connection that runs the blocking \
                handler. At shutdown the main thread shuts down every connection's read side and \
                joins the threads.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: threads::serve,
        preflight: None,
        sources: &[source!("models/threads.rs")],
        shared: BLOCKING,
    },
    Model {
        name: "threadpool",
        family: Family::Blocking,
        summary: "a fixed pool of threads fed by a queue of accepted connections",
        about: "The main thread accepts and queues connections; --workers threads take them one \
                at a time (producer-consumer). Queued connections count toward --max-conns.",
        concurrent: true,
        fd_limit: None,
        pool_bound: true,
        options: &[ModelOption::Workers {
            default: POOL_DEFAULT,
        }],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: threadpool::serve,
        preflight: None,
        sources: &[source!("models/threadpool.rs")],
        shared: BLOCKING,
    },
    Model {
        name: "nonblocking",
        family: Family::Readiness,
        summary: "O_NONBLOCK sockets swept in a loop that never sleeps: no multiplexer",
        about: "One thread tries accept and read on every socket in turn and skips those that \
                answer EAGAIN. Correct, and it burns a core while idle; --spin-sleep-us trades \
                that CPU for latency.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[ModelOption::SpinSleep],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: nonblocking::serve,
        preflight: None,
        sources: &[source!("models/nonblocking.rs")],
        shared: LOOP,
    },
    Model {
        name: "select",
        family: Family::Readiness,
        summary: "select(2): fd_set bitmaps, rebuilt every call, capped at FD_SETSIZE (1024)",
        about: "One thread sleeps in select(2) until a socket is ready. A connection whose \
                descriptor is 1024 or more cannot be put in an fd_set: it gets \
                'error: too many connections' and is closed.",
        concurrent: true,
        fd_limit: Some(1024),
        pool_bound: false,
        options: &[],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: select::serve,
        preflight: None,
        sources: &[source!("models/select.rs")],
        shared: READINESS,
    },
    Model {
        name: "poll",
        family: Family::Readiness,
        summary: "poll(2): a pollfd array kept in step with the connections, scanned every call",
        about: "One thread sleeps in poll(2) over an array of every connection; no descriptor \
                limit, but each call costs O(connections).",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: poll::serve,
        preflight: None,
        sources: &[source!("models/poll.rs")],
        shared: READINESS,
    },
    Model {
        name: "epoll",
        family: Family::Readiness,
        summary: "epoll(7): interest registered once, wakeups cost O(ready); --edge, --workers",
        about: "One thread per worker sleeps in epoll_wait; epoll_ctl only when a connection's \
                interest changes. Level-triggered by default; --edge registers every socket once \
                edge-triggered and reads to EAGAIN under a per-wakeup budget. --workers N runs N \
                loops, each with its own epoll and SO_REUSEPORT listener.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[
            ModelOption::Workers { default: 1 },
            ModelOption::Edge,
            ModelOption::Offload,
            ModelOption::OneListener,
            ModelOption::Exclusive,
        ],
        variants: &[
            &["--edge"],
            &["--workers", "2"],
            &["--offload", "2", "--block-us", "10"],
            &["--workers", "2", "--one-listener", "--exclusive"],
        ],
        listener_per_worker: true,
        counts_syscalls: true,
        serve: epoll::serve,
        preflight: None,
        sources: &[source!("models/epoll.rs")],
        shared: READINESS,
    },
    Model {
        name: "sigio",
        family: Family::Readiness,
        summary: "signal-driven IO: O_ASYNC + F_SETSIG realtime signals taken with sigtimedwait",
        about: "Every socket raises a queued realtime signal carrying its descriptor when it \
                becomes ready; one thread takes them synchronously with sigtimedwait. When the \
                signal queue overflows the kernel sends SIGIO and the model falls back to one \
                poll(2) over every connection.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: sigio::serve,
        preflight: None,
        sources: &[source!("models/sigio.rs")],
        shared: READINESS,
    },
    Model {
        name: "uring",
        family: Family::Completion,
        summary: "io_uring: multishot accept and recv into a provided-buffer ring, batched submits",
        about: "One ring per worker: the kernel accepts, receives into a shared buffer ring and \
                sends, and one io_uring_enter submits everything queued and collects every \
                completion. --no-multishot uses single-shot operations and per-connection \
                buffers; --sqpoll lets a kernel thread poll the submission queue; --workers N \
                runs N rings with SO_REUSEPORT listeners.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[
            ModelOption::Workers { default: 1 },
            ModelOption::NoMultishot,
            ModelOption::SqPoll,
            ModelOption::NoFixedFiles,
            ModelOption::SendZc,
            ModelOption::NoBundle,
            ModelOption::MinWait,
        ],
        variants: &[
            &["--no-multishot"],
            &["--no-fixed-files"],
            &["--sqpoll"],
            &["--send-zc", "1"],
            &["--no-bundle"],
            &["--min-wait-us", "50"],
            &["--workers", "2"],
        ],
        listener_per_worker: true,
        counts_syscalls: true,
        serve: uring::serve,
        preflight: Some(uring::preflight),
        sources: &[
            source!("models/uring/mod.rs"),
            source!("models/uring/setup.rs"),
            source!("models/uring/session.rs"),
            source!("models/uring/event_loop.rs"),
            source!("sys/uring.rs"),
        ],
        shared: &["slab", "conn", "listener", "shutdown", "protocol"],
    },
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    Model {
        name: "coro",
        family: Family::Coroutine,
        summary:
            "the threads model's handler on the lab's own stackful coroutines and epoll reactor",
        about: "Each connection runs handler::handle, the function the threads model runs on a \
                thread, on a coroutine whose socket parks it at EAGAIN instead of blocking; one \
                scheduler and epoll reactor per thread. --workers N runs N schedulers with \
                SO_REUSEPORT listeners.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[ModelOption::Workers { default: 1 }],
        variants: &[&["--workers", "2"]],
        listener_per_worker: true,
        counts_syscalls: true,
        serve: coro::serve,
        preflight: None,
        sources: &[
            source!("models/coro.rs"),
            source!("coro/mod.rs"),
            source!("coro/context.rs"),
            source!("coro/stack.rs"),
            source!("coro/trim.rs"),
            source!("coro/scheduler.rs"),
            source!("coro/net.rs"),
        ],
        shared: &[
            "handler",
            "readiness_state",
            "listener",
            "shutdown",
            "protocol",
        ],
    },
    #[cfg(target_pointer_width = "64")]
    Model {
        name: "async",
        family: Family::Coroutine,
        summary:
            "the blocking handler rewritten as a future, on the lab's own executor and reactor",
        about: "Each connection is a task running async_model::handle, handler::handle with \
                .await where it would block, on a hand-written single-threaded executor \
                (src/async_rt: tasks in a slab, wakers that name them, an epoll reactor). \
                --workers N runs N executors with SO_REUSEPORT listeners; --stats also prints \
                the size of a connection's future at start-up.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[ModelOption::Workers { default: 1 }],
        variants: &[&["--workers", "2"]],
        listener_per_worker: true,
        counts_syscalls: true,
        serve: async_model::serve,
        preflight: None,
        sources: &[
            source!("models/async_model.rs"),
            source!("async_rt/mod.rs"),
            source!("async_rt/waker.rs"),
            source!("async_rt/executor.rs"),
            source!("async_rt/reactor.rs"),
            source!("async_rt/timer.rs"),
            source!("async_rt/net.rs"),
        ],
        shared: &[
            "handler",
            "readiness_state",
            "listener",
            "shutdown",
            "protocol",
        ],
    },
    Model {
        name: "mio",
        family: Family::Reference,
        summary: "the epoll --edge loop waiting with mio, the crate under tokio",
        about: "The shared connection state machine driven by a mio::Poll (epoll, always \
                edge-triggered): the difference from `epoll --edge` is what mio costs.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: with_mio::serve,
        preflight: None,
        sources: &[source!("models/with_mio.rs")],
        shared: LOOP,
    },
    Model {
        name: "polling",
        family: Family::Reference,
        summary: "the level-triggered loop waiting with polling, smol's portable poller",
        about: "The shared connection state machine driven by a polling::Poller in level mode, \
                interest changed only when a connection's really changes.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[],
        variants: &[],
        listener_per_worker: false,
        counts_syscalls: true,
        serve: with_polling::serve,
        preflight: None,
        sources: &[source!("models/with_polling.rs")],
        shared: LOOP,
    },
    Model {
        name: "tokio",
        family: Family::Reference,
        summary: "a task per connection on tokio (current-thread; --workers N: multi-thread)",
        about: "The server as a tokio user writes it: a task per connection, async read, codec, \
                write_all, timeout. Current-thread runtime by default; --workers N (N > 1) runs \
                the multi-thread runtime. Its syscalls happen inside tokio and are not counted.",
        concurrent: true,
        fd_limit: None,
        pool_bound: false,
        options: &[ModelOption::Workers { default: 1 }],
        variants: &[&["--workers", "2"]],
        listener_per_worker: false,
        counts_syscalls: false,
        serve: with_tokio::serve,
        preflight: None,
        sources: &[source!("models/with_tokio.rs")],
        shared: &["handler", "listener", "shutdown", "protocol"],
    },
];

/// Every model, in teaching order.
pub fn all() -> &'static [Model] {
    MODELS
}

/// The model called `name`.
pub fn find(name: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.name == name)
}
