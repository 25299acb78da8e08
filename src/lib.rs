//! # iolab — a lab of Linux IO models
//!
//! Every way a Linux server can wait for the network — blocking calls,
//! processes, threads, readiness (`select`, `poll`, `epoll`, signals),
//! completion (io_uring) and coroutines — written out in full, serving one
//! protocol, measured side by side. The source is meant to be read: start
//! with [`models`], whose doc states the contract every model keeps, then
//! read the models in the order `lab list` prints them.
//!
//! The layers, each knowing only the ones below it:
//!
//! ```text
//! lab (src/main.rs)  the CLI: list · MODEL · client
//! models/            one file per model, and the table of them
//! handler            the blocking family's one connection handler
//! protocol · config · listener · shutdown · stats    the shared pieces
//! sys/               every hot-path syscall, counted
//! ```
#![warn(missing_docs)]

pub mod annotate;
pub mod attack;
#[cfg(target_pointer_width = "64")]
pub mod async_rt;
pub mod bench;
pub mod book;
pub mod buffers;
pub mod charts;
pub mod child;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod coro;
pub mod demo;
pub mod driver;
pub mod handler;
pub mod listener;
pub mod load;
pub mod models;
pub mod protocol;
pub mod readiness_state;
pub mod shutdown;
pub mod slab;
pub mod stats;
pub mod sys;
pub mod timers;
