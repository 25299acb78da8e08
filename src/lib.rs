//! # iolab — a lab of Linux IO models
//!
//! Every way a Linux server can wait for the network — blocking calls,
//! processes, threads, readiness (`select`, `poll`, `epoll`, signals),
//! completion (io_uring) and coroutines — written out in full, serving one
//! protocol, measured side by side. The source is meant to be read: start
//! with [`models`], whose doc states the contract every model keeps, then
//! read the models in the order `lab list` prints them.
//!
//! The layers, bottom to top; each uses only the ones below it (and
//! itself), which `tests/layers.rs` checks on every `use crate::` line:
//!
//! ```text
//! tools/     the `lab` command line (cli), client, load generator, bench
//!            (runner, report, Markdown, charts, the book's tables), demos,
//!            attack (hostile clients), annotate. They run models as
//!            processes and read their summaries.
//! models/    one file (or folder) per model, and the table of them: each
//!            declares its name, family, options and sources once.
//! coro/      the runtimes: stackful coroutines and their reactor;
//! async_rt/  a stackless executor, waker and reactor. General-purpose:
//!            they know nothing of the server (the models adapt them).
//! server/    the core every model stands on: protocol (the codec), config
//!            (the limits), handler (the blocking-style connection), conn +
//!            driver (the state-machine connection and the readiness loop's
//!            body), listener (accept, MAX_CONNS, EMFILE), shutdown (signals
//!            and the drain), stats (the summary), slab, timers, buffers,
//!            offload (a thread pool behind an event loop), tickets (the
//!            demo-only shared counter of `lab demo race`).
//! sys/       every system call on the hot path, counted, each `unsafe`
//!            argued; shared memory for the process models.
//! ```
//!
//! `src/main.rs`, the `lab` binary, sits on top and only dispatches to
//! [`tools::cli`] and the models.
#![warn(missing_docs)]

#[cfg(target_pointer_width = "64")]
pub mod async_rt;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod coro;
pub mod models;
pub mod server;
pub mod sys;
pub mod tools;
