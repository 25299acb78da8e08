//! The scheduler: a run queue, timers, and a reactor, on one thread.
//!
//! Every coroutine is either *runnable* (in the FIFO run queue), *running*
//! (exactly one, or none while the scheduler itself runs), *parked*
//! (waiting for a timer, a socket, or another coroutine), or *done*. The
//! scheduler loop resumes runnable coroutines in turn; when none is left,
//! it asks the reactor's epoll to wait for sockets, with the nearest timer
//! as its timeout; readiness and timers make parked coroutines runnable
//! again. When nothing is runnable, no timer is pending and no coroutine
//! waits on a socket, nothing can ever run again: [`run`] says so
//! ([`Deadlock`]) instead of sleeping for ever.
//!
//! A parked coroutine may be woken for nothing (a stale timer, an event
//! meant for an earlier wait); every wait is a loop that checks its
//! condition again, as with condition variables.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::context::Context;
use super::stack::{self, Pool, Stack};
use crate::sys::readiness::{Epoll, EpollEvent};

/// Names a coroutine: its slot and the slot's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CoroId {
    index: usize,
    generation: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Runnable,
    Running,
    Parked,
    Done,
}

struct Coro {
    context: Context,
    stack: Option<Stack>,
    state: State,
}

struct Slot {
    generation: u32,
    coro: Option<Box<Coro>>,
}

/// Which way a coroutine waits on a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Until it can read (data, end of stream, or an error).
    Read,
    /// Until it can write.
    Write,
}

/// A socket registered with the reactor, as the reactor knows it.
struct Source {
    generation: u32,
    reader: Option<CoroId>,
    writer: Option<CoroId>,
}

/// The handle a socket keeps for its registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceKey {
    index: usize,
    generation: u32,
}

struct Scheduler {
    slots: Vec<Slot>,
    free: Vec<usize>,
    run_queue: VecDeque<CoroId>,
    current: Option<CoroId>,
    /// The scheduler loop's own context, to which coroutines switch back.
    home: Box<Context>,
    /// Deadlines of parked coroutines. Each wait removes its own entry
    /// when it wakes, so the set never holds more than one per parked
    /// coroutine (a heap could only drop them as they expire).
    timers: BTreeSet<(Instant, u64, CoroId)>,
    timer_seq: u64,
    pool: Pool,
    epoll: Epoll,
    sources: Vec<Source>,
    free_sources: Vec<usize>,
    io_waiters: usize,
}

thread_local! {
    static SCHEDULER: RefCell<Option<Scheduler>> = const { RefCell::new(None) };
}

/// Runs `f` with the scheduler of this thread. Never hold the borrow across
/// a switch: the other side will need it.
fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    SCHEDULER.with(|cell| {
        let mut borrow = cell.borrow_mut();
        let scheduler = borrow.as_mut().expect("not inside coro::run");
        f(scheduler)
    })
}

/// Nothing can ever run again: every coroutine left is parked, with no timer
/// and no socket that could wake it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlock {
    /// Coroutines parked for ever.
    pub parked: usize,
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadlock: {} coroutine(s) parked with nothing that could ever wake them",
            self.parked
        )
    }
}

impl std::error::Error for Deadlock {}

impl From<Deadlock> for io::Error {
    fn from(d: Deadlock) -> io::Error {
        io::Error::other(d)
    }
}

/// Runs `main` as the first coroutine of a new scheduler on this thread,
/// and every coroutine it spawns, until `main` returns; gives `main`'s
/// value (or its panic, as `Err`), or [`Deadlock`].
pub fn run<T: 'static>(
    main: impl FnOnce() -> T + 'static,
) -> Result<std::thread::Result<T>, Deadlock> {
    stack::install_overflow_handler().expect("cannot install the stack overflow handler");
    let epoll = Epoll::new().expect("cannot create the reactor's epoll instance");
    SCHEDULER.with(|cell| {
        let mut slot = cell.borrow_mut();
        assert!(slot.is_none(), "coro::run is not reentrant");
        *slot = Some(Scheduler {
            slots: Vec::new(),
            free: Vec::new(),
            run_queue: VecDeque::new(),
            current: None,
            home: Box::default(),
            timers: BTreeSet::new(),
            timer_seq: 0,
            pool: Pool::default(),
            epoll,
            sources: Vec::new(),
            free_sources: Vec::new(),
            io_waiters: 0,
        });
    });
    let handle = spawn(main);
    let outcome = loop {
        run_runnable();
        // Checked between running and waiting: once `main` is done, nothing
        // else is worth waiting for (not even a timer some finished
        // coroutine left behind).
        if handle.is_finished() {
            break Ok(());
        }
        if let Err(deadlock) = wait_for_events() {
            break Err(deadlock);
        }
    };
    // Coroutines still parked when `main` returns are abandoned; their
    // stacks are unmapped with the scheduler (nothing runs on them).
    SCHEDULER.with(|cell| cell.borrow_mut().take());
    outcome.map(|()| handle.take_result())
}

/// Resumes every runnable coroutine, in FIFO order, until none is left.
///
/// One borrow of the scheduler per hop: it retires the coroutine that just
/// switched back (if it finished) and prepares the next, because the
/// bookkeeping around a switch costs more than the switch itself.
///
/// One *round*: only the coroutines runnable when it starts. One that yields
/// goes to the back of the queue and waits for the next round, after the
/// sockets and timers have been looked at, so a coroutine that yields in a
/// loop cannot starve IO.
fn run_runnable() {
    fire_timers();
    let mut round = with(|s| s.run_queue.len());
    let mut previous: Option<CoroId> = None;
    loop {
        let next = with(|s| {
            s.current = None;
            if let Some(id) = previous.take() {
                s.retire_if_done(id);
            }
            while round > 0 {
                round -= 1;
                let Some(id) = s.run_queue.pop_front() else {
                    break;
                };
                if let Some(target) = s.prepare(id) {
                    return Some((id, target));
                }
            }
            None
        });
        let Some((id, (home, target, guard))) = next else {
            return;
        };
        stack::set_current_guard(guard);
        // SAFETY: `home` and `target` point into boxes the scheduler keeps
        // alive (the home context, and the coroutine's box, which is freed
        // only after it is done); the target was saved by its last switch
        // or made fresh; no RefCell borrow is held across the switch.
        unsafe { (*home).switch(&*target, 0) };
        stack::set_current_guard((0, 0));
        previous = Some(id);
    }
}

/// Between rounds: looks at sockets — without sleeping if coroutines are
/// runnable, else until the next timer — or reports that nothing can ever
/// run again.
fn wait_for_events() -> Result<(), Deadlock> {
    fire_timers();
    let (runnable, next_timer, waiters) = with(|s| {
        (
            !s.run_queue.is_empty(),
            s.timers.first().map(|(at, _, _)| *at),
            s.io_waiters,
        )
    });
    if runnable {
        poll_reactor(Some(Duration::ZERO));
        return Ok(());
    }
    if next_timer.is_none() && waiters == 0 {
        // Counted only here: a scan of every coroutine is no cost to pay
        // on every wait.
        let parked = with(|s| {
            s.slots
                .iter()
                .filter(|slot| slot.coro.as_ref().is_some_and(|c| c.state == State::Parked))
                .count()
        });
        return Err(Deadlock { parked });
    }
    let timeout = next_timer.map(|at| at.saturating_duration_since(Instant::now()));
    poll_reactor(timeout);
    Ok(())
}

fn fire_timers() {
    let now = Instant::now();
    with(|s| {
        while let Some((at, _, id)) = s.timers.first().copied() {
            if at > now {
                break;
            }
            s.timers.pop_first();
            s.unpark(id);
        }
    });
}

fn poll_reactor(timeout: Option<Duration>) {
    let mut events: Vec<EpollEvent> = Vec::with_capacity(256);
    // The epoll is borrowed only for the call; the scheduler is not busy.
    let waited = with(|s| s.epoll.wait(&mut events, timeout));
    if waited.is_err() {
        return; // EINTR: a signal; the loop looks again
    }
    with(|s| {
        for event in &events {
            let key = SourceKey {
                index: (event.u64 & 0xffff_ffff) as usize,
                generation: (event.u64 >> 32) as u32,
            };
            let bits = event.events as libc::c_int;
            let trouble = bits & (libc::EPOLLERR | libc::EPOLLHUP) != 0;
            let Some(source) = s
                .sources
                .get_mut(key.index)
                .filter(|src| src.generation == key.generation)
            else {
                continue; // a socket closed since: never the wrong coroutine
            };
            let mut wake = Vec::new();
            if trouble || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) != 0 {
                wake.extend(source.reader.take());
            }
            if trouble || bits & libc::EPOLLOUT != 0 {
                wake.extend(source.writer.take());
            }
            for id in wake {
                s.io_waiters -= 1;
                s.unpark(id);
            }
        }
    });
}

impl Scheduler {
    fn coro(&mut self, id: CoroId) -> Option<&mut Coro> {
        let slot = self.slots.get_mut(id.index)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.coro.as_deref_mut()
    }

    fn unpark(&mut self, id: CoroId) {
        if let Some(coro) = self.coro(id) {
            if coro.state == State::Parked {
                coro.state = State::Runnable;
                self.run_queue.push_back(id);
            }
        }
    }
}

type Target = (*mut Context, *const Context, (usize, usize));

impl Scheduler {
    /// Makes `id` the running coroutine; gives the contexts to switch
    /// between and its stack's guard page, or `None` if it is not runnable
    /// (stale id).
    fn prepare(&mut self, id: CoroId) -> Option<Target> {
        let home: *mut Context = &mut *self.home;
        let coro = self.coro(id)?;
        if coro.state != State::Runnable {
            return None;
        }
        coro.state = State::Running;
        let guard = coro.stack.as_ref().map_or((0, 0), Stack::guard_range);
        let target: *const Context = &coro.context;
        self.current = Some(id);
        Some((home, target, guard))
    }

    /// Frees a coroutine that has finished: its stack back to the pool, its
    /// slot to the free list under a new generation.
    fn retire_if_done(&mut self, id: CoroId) {
        if !self.coro(id).is_some_and(|c| c.state == State::Done) {
            return;
        }
        let slot = &mut self.slots[id.index];
        if let Some(mut coro) = slot.coro.take() {
            if let Some(stack) = coro.stack.take() {
                self.pool.give_back(stack);
            }
        }
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
    }
}

/// Switches from the running coroutine back to the scheduler, leaving it
/// in `state` (Runnable: it was queued again; Parked: someone must unpark
/// it; Done: it will never run again).
fn suspend(state: State) {
    suspend_after(state, |_, _| {});
}

/// [`suspend`], running `before` on the scheduler first, in the same borrow.
fn suspend_after(state: State, before: impl FnOnce(&mut Scheduler, CoroId)) {
    let (home, own) = with(|s| {
        let id = s.current.expect("suspend outside a coroutine");
        before(s, id);
        let home: *const Context = &*s.home;
        let coro = s.coro(id).expect("the running coroutine exists");
        coro.state = state;
        (home, &mut coro.context as *mut Context)
    });
    // SAFETY: as in `resume`: both contexts live in boxes the scheduler
    // keeps; the home context was saved by the `resume` that started us.
    unsafe { (*own).switch(&*home, 0) };
}

/// The id of the running coroutine.
pub fn current() -> CoroId {
    with(|s| s.current.expect("not inside a coroutine"))
}

/// Lets every other runnable coroutine run once, then continues (FIFO).
pub fn yield_now() {
    suspend_after(State::Runnable, |s, id| s.run_queue.push_back(id));
}

/// Parks the running coroutine until `deadline` (or until woken earlier;
/// callers loop).
fn park_until(deadline: Option<Instant>) {
    let timer = deadline.map(|at| {
        with(|s| {
            let id = s.current.expect("park outside a coroutine");
            s.timer_seq += 1;
            let key = (at, s.timer_seq, id);
            s.timers.insert(key);
            key
        })
    });
    suspend(State::Parked);
    // Woken by something else first: withdraw the timer.
    if let Some(key) = timer {
        with(|s| s.timers.remove(&key));
    }
}

/// Sleeps for `duration` without blocking the thread: other coroutines run.
pub fn sleep(duration: Duration) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        park_until(Some(deadline));
    }
}

struct JoinState<T> {
    result: RefCell<Option<std::thread::Result<T>>>,
    waiter: Cell<Option<CoroId>>,
}

/// Owns the result of a spawned coroutine.
pub struct JoinHandle<T> {
    state: Rc<JoinState<T>>,
}

impl<T> JoinHandle<T> {
    /// Whether the coroutine has finished.
    pub fn is_finished(&self) -> bool {
        self.state.result.borrow().is_some()
    }

    /// Waits (parks) until the coroutine has finished; gives its value, or
    /// the panic it ended with.
    pub fn join(self) -> std::thread::Result<T> {
        while !self.is_finished() {
            self.state.waiter.set(Some(current()));
            park_until(None);
        }
        self.take_result()
    }

    fn take_result(&self) -> std::thread::Result<T> {
        self.state
            .result
            .borrow_mut()
            .take()
            .expect("checked finished")
    }
}

/// Starts `f` on a new coroutine of this thread's scheduler; it runs after
/// the coroutines already runnable (FIFO).
///
/// # Panics
///
/// If no stack can be mapped (see [`try_spawn`]).
pub fn spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> JoinHandle<T> {
    try_spawn(f).expect("cannot map a coroutine stack")
}

/// [`spawn`], or the error of mapping its stack: out of memory, or out of
/// memory mappings (`vm.max_map_count`, 65,530 by default: each stack with
/// its guard page takes two, so about 32,000 coroutines fit).
pub fn try_spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> io::Result<JoinHandle<T>> {
    let stack = with(|s| s.pool.take())?;
    let state = Rc::new(JoinState {
        result: RefCell::new(None),
        waiter: Cell::new(None),
    });
    let shared = state.clone();
    let body: Box<dyn FnOnce()> = Box::new(move || {
        // A panic stops here, inside the coroutine: it never unwinds into
        // the assembly frames below, and never reaches other coroutines.
        let result = catch_unwind(AssertUnwindSafe(f));
        *shared.result.borrow_mut() = Some(result);
        if let Some(waiter) = shared.waiter.take() {
            with(|s| s.unpark(waiter));
        }
    });
    let data = Box::into_raw(Box::new(body)) as usize;
    with(|s| {
        // SAFETY: the stack is ours until the coroutine is done; `data` is
        // a leaked box that `entry` takes back exactly once.
        let context = unsafe { Context::fresh(stack.top(), entry, data) };
        let index = s.free.pop().unwrap_or_else(|| {
            s.slots.push(Slot {
                generation: 0,
                coro: None,
            });
            s.slots.len() - 1
        });
        let id = CoroId {
            index,
            generation: s.slots[index].generation,
        };
        s.slots[index].coro = Some(Box::new(Coro {
            context,
            stack: Some(stack),
            state: State::Runnable,
        }));
        s.run_queue.push_back(id);
    });
    Ok(JoinHandle { state })
}

/// Where every coroutine starts (via the trampoline).
unsafe extern "C" fn entry(_message: usize, data: usize) -> ! {
    // SAFETY: `data` is the box leaked by `spawn` for this coroutine.
    let body = unsafe { Box::from_raw(data as *mut Box<dyn FnOnce()>) };
    body();
    suspend(State::Done);
    unreachable!("a finished coroutine was resumed");
}

// ------------------------------------------------------------- reactor ---

/// Registers `fd` with the reactor, for both directions, edge-triggered.
pub fn register(fd: RawFd) -> io::Result<SourceKey> {
    with(|s| {
        let index = s.free_sources.pop().unwrap_or_else(|| {
            s.sources.push(Source {
                generation: 0,
                reader: None,
                writer: None,
            });
            s.sources.len() - 1
        });
        let key = SourceKey {
            index,
            generation: s.sources[index].generation,
        };
        let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        let data = (u64::from(key.generation) << 32) | index as u64;
        match s.epoll.add(fd, events as u32, data) {
            Ok(()) => Ok(key),
            Err(e) => {
                s.free_sources.push(index);
                Err(e)
            }
        }
    })
}

/// Forgets a registration, before its socket is closed; a later event for
/// it (already queued in the kernel) finds a new generation and is dropped.
pub fn deregister(key: SourceKey, fd: RawFd) {
    with(|s| {
        let _ = s.epoll.delete(fd);
        if let Some(source) = s.sources.get_mut(key.index) {
            for waiter in [source.reader.take(), source.writer.take()]
                .into_iter()
                .flatten()
            {
                s.io_waiters -= 1;
                // Wake it: its socket is gone, its next call will say so.
                if let Some(slot) = s.slots.get_mut(waiter.index) {
                    if slot.generation == waiter.generation {
                        if let Some(coro) = slot.coro.as_mut() {
                            if coro.state == State::Parked {
                                coro.state = State::Runnable;
                                s.run_queue.push_back(waiter);
                            }
                        }
                    }
                }
            }
            source.generation = source.generation.wrapping_add(1);
            s.free_sources.push(key.index);
        }
    });
}

/// Parks the running coroutine until its socket is ready in `direction`,
/// or `deadline` passes. Call only after the operation said `EAGAIN`
/// (edge-triggered: the edge that ended the `EAGAIN` wakes us).
pub fn wait_io(key: SourceKey, direction: Direction, deadline: Option<Instant>) {
    with(|s| {
        let id = s.current.expect("wait_io outside a coroutine");
        let source = &mut s.sources[key.index];
        let slot = match direction {
            Direction::Read => &mut source.reader,
            Direction::Write => &mut source.writer,
        };
        if slot.replace(id).is_none() {
            s.io_waiters += 1;
        }
    });
    park_until(deadline);
    // Woken by a timer or for nothing: stop waiting on the socket.
    with(|s| {
        if let Some(source) = s
            .sources
            .get_mut(key.index)
            .filter(|src| src.generation == key.generation)
        {
            let slot = match direction {
                Direction::Read => &mut source.reader,
                Direction::Write => &mut source.writer,
            };
            if slot.take().is_some() {
                s.io_waiters -= 1;
            }
        }
    });
}

/// A one-shot event: coroutines `wait` until someone `set`s it.
#[derive(Clone, Default)]
pub struct Event {
    inner: Rc<EventState>,
}

#[derive(Default)]
struct EventState {
    set: Cell<bool>,
    waiters: RefCell<Vec<CoroId>>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the event and makes every waiting coroutine runnable.
    pub fn set(&self) {
        self.inner.set.set(true);
        let waiters = std::mem::take(&mut *self.inner.waiters.borrow_mut());
        with(|s| waiters.into_iter().for_each(|id| s.unpark(id)));
    }

    /// Parks until the event is set (at once if it is).
    pub fn wait(&self) {
        while !self.inner.set.get() {
            self.inner.waiters.borrow_mut().push(current());
            park_until(None);
        }
    }
}
