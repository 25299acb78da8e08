//! A small stackless runtime: `async` code, thousands of connections, one
//! thread, written out in full on `std::future`, `std::task` and
//! `std::pin` alone — no tokio, no `futures`, no `async-task`.
//!
//! The coroutine runtime ([`crate::coro`]) suspends code by switching
//! stacks: the code never knows. Here the *compiler* does the suspending.
//! An `async fn` compiles to a state machine — an enum with one variant
//! per `.await`, holding the locals that live across it — and a `poll`
//! method that runs from one `.await` to the next. Calling the `async fn`
//! builds the value and runs nothing; an executor polls it; where it must
//! wait, it returns `Poll::Pending` after handing a [`Waker`] to whatever
//! will know when it can go on; woken, it is polled again and jumps to
//! where it stopped. The task's whole state is that value: a few hundred
//! bytes, not a stack.
//!
//! | part | file | tokio counterpart |
//! |---|---|---|
//! | wakers | [`waker`] | `runtime::task::waker`: an `Arc`ed task header; here a task's key |
//! | executor | [`executor`]: [`block_on`], [`spawn`], [`JoinHandle`], [`yield_now`] | the current-thread scheduler |
//! | reactor | [`reactor`] | `runtime::io::driver` over mio |
//! | timers | [`timer`]: [`sleep`] | the timer wheel (here [`crate::server::timers::Timers`], ordered deadlines) |
//! | sockets | [`net`]: [`net::TcpStream`] | `tokio::net::TcpStream`, `readable` + `try_read` |
//!
//! **Single-threaded by design**, as the coroutine scheduler is: a task
//! never leaves its thread, so spawned futures need not be `Send`, tasks
//! share state with `Rc` and `Cell`, and waking needs no lock. More threads
//! mean more executors (`lab async --workers N`), each with its own epoll
//! and listener. Unlike a coroutine, a task *could* move — its state is a
//! value whose type the compiler checks — which is what lets tokio's
//! multi-thread runtime steal tasks; this runtime chooses not to.
//!
//! **Costs.** A hand-off from one task to the next is a wake (a key pushed
//! on the run queue), a return up the finished `poll`, and a call down the
//! next one's — no registers saved, no stack switched; see the `async_rt`
//! benchmarks beside the coroutine's yield. A parked task costs its
//! boxed future, its slab slot, and its socket's source in the reactor.

pub mod executor;
pub mod net;
pub mod reactor;
pub mod timer;
pub mod waker;

pub use executor::{block_on, spawn, tasks, yield_now, JoinHandle};
pub use timer::{sleep, sleep_until, Sleep};

#[doc(no_inline)]
pub use std::task::Waker;

#[cfg(test)]
mod tests;
