//! The reactor: the one place the executor's thread sleeps. It turns
//! epoll's events and the timers' deadlines into wakes.
//!
//! Every socket is registered once, for both directions, edge-triggered
//! ([`readiness_state::INTEREST`](crate::server::readiness_state::INTEREST)), in a
//! slab of [`Source`]s whose keys are the events' data. A source keeps
//! what is known of its readiness (with the sticky end-of-stream rule of
//! [`crate::server::readiness_state`], the rules the coroutine reactor keeps
//! too) and, each way, the [`Waker`] of the task that waits. An event
//! records its bits and wakes the waiters it concerns; an event for a
//! source deregistered since finds its slot's generation moved on and is
//! dropped, so it can never wake whoever has the slot now.
//!
//! Timers are [`Timers`] keyed by a second slab that holds each sleeper's
//! waker: a [`Sleep`](super::Sleep) files its deadline when first polled
//! and withdraws it when dropped, so the set holds only waits in progress.
//!
//! Wakers are woken *after* the reactor is put down: a waker is foreign
//! code as far as the reactor knows, and may want the reactor.

use std::io;
use std::os::fd::RawFd;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::executor::{self, Runtime};
use crate::server::readiness_state::{Direction, Source, INTEREST};
use crate::server::slab::{Key, Slab};
use crate::server::timers::Timers;
use crate::sys::readiness::{Epoll, EpollEvent};

/// Sockets and timers, and the buffers of one turn.
pub(super) struct Reactor {
    epoll: Epoll,
    sources: Slab<Source<Waker>>,
    /// How many wakers the sources hold: with none, a turn that must not
    /// sleep skips `epoll_wait` (an event could wake nobody).
    io_waiters: usize,
    timers: Timers<Key>,
    sleepers: Slab<Waker>,
    /// Kept between turns: allocating them each turn cost as much as the
    /// turn's polls.
    events: Vec<EpollEvent>,
    woken: Vec<Waker>,
}

impl Reactor {
    pub(super) fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            epoll: Epoll::new()?,
            sources: Slab::new(),
            io_waiters: 0,
            timers: Timers::new(),
            sleepers: Slab::new(),
            events: Vec::with_capacity(256),
            woken: Vec::new(),
        })
    }

    /// One turn: fires due timers, then looks at the sockets — without
    /// sleeping if `runnable` (and only if someone waits on a socket),
    /// else until the nearest timer — and wakes whom the events concern.
    /// `false` if nothing could ever wake anyone: nothing runnable, no
    /// timer, no socket awaited.
    pub(super) fn turn(rt: &Runtime, runnable: bool) -> bool {
        let mut woken = std::mem::take(&mut rt.reactor.borrow_mut().woken);
        let alive = {
            let mut reactor = rt.reactor.borrow_mut();
            reactor.fire_timers(&mut woken);
            let runnable = runnable || !woken.is_empty();
            if runnable && reactor.io_waiters == 0 {
                true
            } else if !runnable && reactor.io_waiters == 0 && reactor.timers.is_empty() {
                false
            } else {
                let timeout = if runnable {
                    Some(Duration::ZERO)
                } else {
                    reactor
                        .timers
                        .next()
                        .map(|at| at.saturating_duration_since(Instant::now()))
                };
                reactor.poll(timeout, &mut woken);
                reactor.fire_timers(&mut woken);
                true
            }
        };
        // With the reactor put down.
        for waker in woken.drain(..) {
            waker.wake();
        }
        rt.reactor.borrow_mut().woken = woken;
        alive
    }

    /// `epoll_wait`, and the events turned into readiness and wakers.
    fn poll(&mut self, timeout: Option<Duration>, woken: &mut Vec<Waker>) {
        let mut events = std::mem::take(&mut self.events);
        // EINTR: a signal (a stop signal made the eventfd readable too, and
        // the next turn sees it); nothing to do but look again.
        if self.epoll.wait(&mut events, timeout).is_ok() {
            for event in &events {
                let Some(source) = self.sources.get_mut(Key::from_u64(event.u64)) else {
                    continue; // deregistered since: never the new owner's
                };
                for waker in source.on_event(event.events).into_iter().flatten() {
                    self.io_waiters -= 1;
                    woken.push(waker);
                }
            }
        }
        self.events = events;
    }

    fn fire_timers(&mut self, woken: &mut Vec<Waker>) {
        // No timer, no clock read.
        if self.timers.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(key) = self.timers.pop_due(now) {
            woken.extend(self.sleepers.remove(key));
        }
    }
}

/// Runs `f` with this thread's reactor.
fn with<R>(f: impl FnOnce(&mut Reactor) -> R) -> R {
    executor::with(|rt| f(&mut rt.reactor.borrow_mut()))
}

/// Registers `fd` (non-blocking, open until [`deregister`]) for both
/// directions, edge-triggered.
pub(super) fn register(fd: RawFd) -> io::Result<Key> {
    with(|r| {
        let key = r.sources.insert(Source::new());
        match r.epoll.add(fd, INTEREST, key.to_u64()) {
            Ok(()) => Ok(key),
            Err(e) => {
                r.sources.remove(key);
                Err(e)
            }
        }
    })
}

/// Forgets a registration, before its descriptor is closed. Its waiters
/// are woken: their next call reports what became of the socket. Outside
/// a runtime (it has ended, and its epoll is closed) there is nothing to
/// forget.
pub(super) fn deregister(key: Key, fd: RawFd) {
    let waiters = executor::try_with(|rt| {
        let mut r = rt.reactor.borrow_mut();
        let _ = r.epoll.delete(fd);
        let mut source = r.sources.remove(key)?;
        let waiters = source.take_waiters();
        r.io_waiters -= waiters.iter().flatten().count();
        Some(waiters)
    });
    let waiters = waiters.flatten().unwrap_or_default();
    for waker in waiters.into_iter().flatten() {
        waker.wake();
    }
}

/// Ready if the socket may be ready in `direction`; else keeps `waker` to
/// be woken by its next event there, and `Pending`. A stale key is ready:
/// the next call on the descriptor reports what happened to it.
pub(super) fn poll_ready(key: Key, direction: Direction, waker: &Waker) -> Poll<()> {
    with(|r| {
        let Some(source) = r.sources.get_mut(key) else {
            return Poll::Ready(());
        };
        if source.readiness.is_ready(direction) {
            return Poll::Ready(());
        }
        let slot = source.waiter(direction);
        match slot {
            Some(kept) if kept.will_wake(waker) => {}
            _ => {
                if slot.replace(waker.clone()).is_none() {
                    r.io_waiters += 1;
                }
            }
        }
        Poll::Pending
    })
}

/// Stops waiting on the socket in `direction` (a wait ended by its timer,
/// or dropped).
pub(super) fn forget_waiter(key: Key, direction: Direction) {
    with(|r| {
        if let Some(source) = r.sources.get_mut(key) {
            if source.waiter(direction).take().is_some() {
                r.io_waiters -= 1;
            }
        }
    });
}

/// Whether the socket may be ready in `direction` (see [`poll_ready`]).
pub(super) fn is_ready(key: Key, direction: Direction) -> bool {
    with(|r| {
        r.sources
            .get(key)
            .map_or(true, |source| source.readiness.is_ready(direction))
    })
}

/// Notes that a call found the socket drained in `direction`.
pub(super) fn drained(key: Key, direction: Direction) {
    with(|r| {
        if let Some(source) = r.sources.get_mut(key) {
            source.readiness.drained(direction);
        }
    });
}

/// Files a deadline; `waker` is woken when it has passed.
pub(super) fn add_timer(at: Instant, waker: Waker) -> Key {
    with(|r| {
        let key = r.sleepers.insert(waker);
        r.timers.insert(at, key);
        key
    })
}

/// Replaces the waker of a deadline still filed; `false` if it has fired.
pub(super) fn rewake_timer(key: Key, waker: &Waker) -> bool {
    with(|r| match r.sleepers.get_mut(key) {
        Some(kept) => {
            if !kept.will_wake(waker) {
                kept.clone_from(waker);
            }
            true
        }
        None => false,
    })
}

/// Withdraws a deadline (fired or not). Outside a runtime, nothing to do.
pub(super) fn remove_timer(at: Instant, key: Key) {
    executor::try_with(|rt| {
        let mut r = rt.reactor.borrow_mut();
        r.timers.remove(at, key);
        r.sleepers.remove(key)
    });
}

/// How many sockets this thread's reactor has registered.
pub fn registered() -> usize {
    with(|r| r.sources.len())
}

/// How many deadlines this thread's reactor has filed.
pub fn timers() -> usize {
    with(|r| r.timers.len())
}
