//! The server core: what every model stands on, and nothing that knows a
//! model by name. The protocol's codec and limits, the two ways to write a
//! connection (the blocking-style [`handler`], the [`conn`] state machine
//! that the readiness [`driver`] and io_uring advance), and the pieces they
//! share: accepting ([`listener`]), stopping ([`shutdown`]), counting
//! ([`stats`]), idle timers, the connection table, lent buffers; and the demo-only
//! ticket desk ([`tickets`]) that `lab demo race` sells from.

pub mod buffers;
pub mod config;
pub mod conn;
pub mod driver;
pub mod handler;
pub mod listener;
pub mod offload;
pub mod protocol;
pub mod readiness_state;
pub mod shutdown;
pub mod slab;
pub mod stats;
pub mod tickets;
pub mod timers;
