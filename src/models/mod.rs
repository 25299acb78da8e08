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
//! - **framing** by [`crate::protocol::Codec`]: every complete line is
//!   answered, in order; a line reaching `max_line` bytes without an LF gets
//!   the earlier answers, then `error: line too long`, then a close;
//! - **end of stream**: on the client's half-close, answer every complete
//!   line, then the unterminated tail without an LF, then close; on a reset,
//!   drop the connection and carry on;
//! - **limits** from [`crate::config::Config`]: `MAX_CONNS` through
//!   [`crate::listener::Acceptor`], the idle timeout, and `MAX_PENDING`
//!   (stop reading a connection whose unsent answers exceed it);
//! - **syscalls** through [`crate::sys`], so they are counted;
//! - **shutdown** through [`crate::shutdown`]: on SIGINT/SIGTERM stop
//!   accepting, answer every complete line already received, flush, close,
//!   and return within the drain timeout. `serve` returns `Ok(())` then;
//!   an `Err` means the model could not run at all (the binary prints it on
//!   one line and exits non-zero).
//!
//! A model that cannot keep a clause by its nature says so in its doc and
//! in its table entry ([`Model::concurrent`], [`Model::fd_limit`]).
//!
//! # The two families
//!
//! *Blocking* models run [`crate::handler::handle`], one function that
//! serves a connection as if every call blocked; they differ in where it
//! runs. (Later: *readiness* and *completion* models drive a per-connection
//! state machine from one loop.)

use std::io;
use std::net::TcpListener;

use crate::config::Config;

pub mod blocking;
pub mod fork;
pub mod prefork;
pub mod process;
pub mod threadpool;
pub mod threads;

/// Which family a model belongs to (the headings of `lab list`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// One handler per connection, written as if every call blocked.
    Blocking,
}

impl Family {
    /// The heading `lab list` prints above the family.
    pub fn heading(self) -> &'static str {
        match self {
            Family::Blocking => "blocking IO: one connection per thread of control",
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
    /// Options it takes beyond the common ones.
    pub options: &'static [ModelOption],
    /// Extra argument sets the conformance suite also runs it with.
    pub variants: &'static [&'static [&'static str]],
    /// Whether each worker binds its own `SO_REUSEPORT` listener.
    pub listener_per_worker: bool,
    /// The model itself.
    pub serve: ServeFn,
}

impl Model {
    /// The default of `--workers`, or `None` if the model has no pool.
    pub fn default_workers(&self) -> Option<usize> {
        self.options.iter().find_map(|option| match option {
            ModelOption::Workers { default } => Some(*default),
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
        options: &[],
        variants: &[],
        listener_per_worker: false,
        serve: blocking::serve,
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
        options: &[],
        variants: &[],
        listener_per_worker: false,
        serve: fork::serve,
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
        options: &[ModelOption::Workers {
            default: POOL_DEFAULT,
        }],
        variants: &[],
        listener_per_worker: false,
        serve: prefork::serve,
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
        options: &[],
        variants: &[],
        listener_per_worker: false,
        serve: threads::serve,
    },
    Model {
        name: "threadpool",
        family: Family::Blocking,
        summary: "a fixed pool of threads fed by a queue of accepted connections",
        about: "The main thread accepts and queues connections; --workers threads take them one \
                at a time (producer-consumer). Queued connections count toward --max-conns.",
        concurrent: true,
        fd_limit: None,
        options: &[ModelOption::Workers {
            default: POOL_DEFAULT,
        }],
        variants: &[],
        listener_per_worker: false,
        serve: threadpool::serve,
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
