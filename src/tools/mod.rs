//! The tools around the server: the `lab` command line, the client, the
//! load generator, the bench and its renderers, the scripted demos, the
//! hostile clients, the profiler, the annotated source. They run models (as processes,
//! through the binary) and read what the server reports; no model and
//! nothing in the server core depends on them.

pub mod annotate;
pub mod attack;
pub mod bench;
pub mod child;
pub mod cli;
pub mod client;
pub mod demo;
pub mod load;
pub mod profile;
