//! A small stackful coroutine runtime: blocking-style code, thousands of
//! connections, one thread.
//!
//! This is the Rust answer to Python's greenlet + gevent. Code written as
//! if every call blocked — the blocking family's
//! [`handler::handle`](crate::server::handler::handle), `read`, `write_all` — runs
//! on a *coroutine*: a function with its own small stack that can be
//! suspended in the middle of a call and resumed later, on the same thread.
//! Its sockets ([`net::TcpStream`]) try the real non-blocking call; where
//! the kernel says `EAGAIN` they park the coroutine and let another run,
//! and the reactor's epoll says when to resume it. No `async`, no `await`,
//! no coloured functions: the suspension is invisible to the code above.
//!
//! | part | file | greenlet/gevent counterpart |
//! |---|---|---|
//! | context switch | [`context`] | greenlet's `slp_switch` (stack switching in assembly) |
//! | stacks | [`stack`] | greenlet copies slices of one C stack in and out; we give each coroutine its own `mmap`ed stack with a guard page |
//! | stacks that shrink | [`trim`] | none in greenlet (its saved slices are heap copies of just what is used); Go shrinks idle goroutines' stacks |
//! | scheduler | [`scheduler`] | gevent's hub: a run queue and timers |
//! | reactor | [`scheduler`] (`register`, `wait_io`) | gevent's libev/libuv loop |
//! | sockets | [`net`] | `gevent.socket`, what monkey-patching installs |
//!
//! **Single-threaded by design.** A coroutine never moves to another
//! thread: with stack switching, a coroutine that parked on one thread and
//! resumed on another would see the new thread's thread-locals through
//! addresses the compiler may have cached from the old one — Rust cannot
//! make that sound today. More threads means more schedulers, each with
//! its own coroutines (`lab coro --workers N`), as gevent runs one hub per
//! thread.
//!
//! **Costs.** A switch saves and restores seven registers and two control
//! words: a resume and a suspend take about ten nanoseconds, a hand-off
//! through the scheduler tens, against microseconds for a thread switch
//! through the kernel (see the `coro` benchmarks). A parked coroutine costs
//! its stack's touched pages plus a small record; once it has been parked
//! for [`trim::TRIM_AFTER`], only the pages above its stack pointer — for
//! the lab's handler, one.
//!
//! **Nothing is freed undropped.** When [`run`] ends, the coroutines still
//! unfinished are unwound from where they parked, so that every
//! destructor on their stacks runs before the stacks are unmapped (see
//! [`scheduler`]).
//!
//! x86-64 and aarch64: the switch is two short blocks of inline assembly
//! for each ([`context`]); the aarch64 one saves x19–x29, sp, d8–d15 and
//! FPCR. It is tested under `qemu-aarch64`: docs/src/models/coro.md says
//! how.

pub mod context;
pub mod net;
pub mod scheduler;
pub mod stack;
pub mod trim;

pub use scheduler::{
    current, run, sleep, spawn, try_spawn, yield_now, CoroId, Deadlock, Event, JoinHandle,
};
