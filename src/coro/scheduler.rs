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
//! Two tables, both the core's generational [`Slab`]: the coroutines,
//! each named by a [`CoroId`], and the reactor's registered sockets, each
//! named by a [`SourceKey`] (its epoll events' data) and kept as a
//! [`Source`] — the record of readiness and waiters that the stackless
//! runtime's reactor keeps too, with its rules (see
//! [`crate::server::readiness_state`]: every edge recorded, the end of
//! stream sticky). A key carries its slot's generation, so a stale one — a
//! timer, a queued event, a wait left from a finished coroutine or a
//! closed socket — finds nothing instead of the slot's next tenant.
//!
//! A parked coroutine may be woken for nothing (a stale timer, an event
//! meant for an earlier wait); every wait is a loop that checks its
//! condition again, as with condition variables.
//!
//! **Nothing is freed that still holds something.** When [`run`] ends —
//! `main` has returned, or nothing can ever run again — the coroutines
//! still unfinished are *cancelled* before their stacks are unmapped, as
//! corosensei unwinds a coroutine whose handle is dropped: each is resumed
//! once more with a flag that makes the point where it parked unwind with
//! a private payload, caught at its entry, so every destructor on its
//! stack runs (its sockets close, its connection permit goes back).
//! Unmapping the stack instead would free values that were never dropped:
//! a leak of whatever they own, and unsound for anything pinned there.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::context::Context;
use super::stack::{self, Pool, Stack};
use super::trim::{Trimmer, Verdict, BATCH, TRIMMED};
use crate::server::readiness_state::{Source, INTEREST};
use crate::server::slab::{Key, Slab};
use crate::sys::readiness::{Epoll, EpollEvent};

/// Which way a coroutine waits on a socket: the readiness record's own
/// type, named here too for the coroutine code that waits.
pub use crate::server::readiness_state::Direction;

/// Names a coroutine: its slot in the scheduler's table and the slot's
/// generation, so that a stale id (a timer or a wake-up left over from a
/// finished coroutine) never reaches the coroutine that reused the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CoroId(Key);

/// The handle a socket keeps for its registration: its source's key in
/// the reactor's table, which is also the data its epoll events carry.
pub type SourceKey = Key;

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
    /// Its stack's guard page, which it records for the SIGSEGV handler
    /// each time it is resumed (see [`stack::set_current_guard`]).
    guard: (usize, usize),
    state: State,
    /// How many trim passes had been made when it was last resumed, or
    /// [`TRIMMED`](super::trim::TRIMMED) (see [`super::trim`]).
    mark: u32,
}

struct Scheduler {
    /// Every coroutine not yet retired. Boxed, so that its context stays
    /// put while the table grows: a raw pointer to it is held across a
    /// switch, during which the running coroutine may spawn.
    coros: Slab<Box<Coro>>,
    run_queue: VecDeque<CoroId>,
    /// How many entries at the front of the run queue are still to run in
    /// this round (see [`run_runnable`]).
    round: usize,
    /// The running coroutine; in the scheduler's own loop, the one that
    /// last suspended.
    current: Option<CoroId>,
    /// Deadlines of parked coroutines. Each wait removes its own entry
    /// when it wakes, so the set never holds more than one per parked
    /// coroutine (a heap could only drop them as they expire).
    timers: BTreeSet<(Instant, u64, CoroId)>,
    timer_seq: u64,
    pool: Pool,
    epoll: Epoll,
    /// The registered sockets: what is known of each one's readiness, and
    /// which coroutine waits on it each way.
    sources: Slab<Source<CoroId>>,
    /// How many coroutines wait on a socket, over all sources.
    io_waiters: usize,
    /// The buffer `epoll_wait` fills, kept between polls: allocating it
    /// anew each round cost as much as the round's switches.
    events: Vec<EpollEvent>,
    /// When idle coroutines' stacks are next trimmed.
    trimmer: Trimmer,
}

thread_local! {
    static SCHEDULER: RefCell<Option<Scheduler>> = const { RefCell::new(None) };
}

/// Runs `f` with the scheduler of this thread. Never hold the borrow across
/// a switch: the other side will need it.
///
/// Why not simply `SCHEDULER.with(|cell| f(...))`: with `f` inside it,
/// std's `LocalKey::with` grew too big to be inlined, and every use of the
/// scheduler paid an out-of-line call, an indirect call to the thread-local's
/// accessor and its result copied through memory: a fifth of the
/// instructions of a `yield_now` (callgrind). Fetching only the address and
/// borrowing here lets the whole of it be inlined into the caller.
#[inline(always)]
fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let cell: *const RefCell<Option<Scheduler>> = SCHEDULER.with(|cell| cell as *const _);
    // SAFETY: a thread-local lives until its thread exits, and this thread
    // cannot exit during this call, so the reference is valid for all of
    // it. (`LocalKey::with` lends it only to a closure because it cannot
    // know how long a caller would keep it; we keep it for this call only.)
    let cell = unsafe { &*cell };
    let mut borrow = cell.borrow_mut();
    let scheduler = borrow.as_mut().expect("not inside coro::run");
    f(scheduler)
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
            coros: Slab::new(),
            run_queue: VecDeque::new(),
            round: 0,
            current: None,
            timers: BTreeSet::new(),
            timer_seq: 0,
            pool: Pool::default(),
            epoll,
            sources: Slab::new(),
            io_waiters: 0,
            events: Vec::with_capacity(256),
            trimmer: Trimmer::default(),
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
    cancel_unfinished();
    // Only finished coroutines' stacks are left to unmap, with the pool.
    SCHEDULER.with(|cell| cell.borrow_mut().take());
    outcome.map(|()| handle.take_result())
}

/// The payload a cancelled coroutine unwinds with: private, so no code but
/// the coroutine's entry can mean to catch it.
struct Cancelled;

thread_local! {
    /// Set by [`cancel_unfinished`] just before it resumes a coroutine, and
    /// taken by the first park point (or [`entry`]) that coroutine reaches.
    static CANCEL: Cell<bool> = const { Cell::new(false) };
}

/// Resumes every coroutine that has not finished, one at a time, so that
/// it unwinds from where it parked (or, never started, drops its closure
/// unrun), running every destructor on its stack; its stack then goes to
/// the pool like any finished coroutine's. Repeated until none is left,
/// for destructors may spawn.
///
/// A coroutine that parks again while being cancelled — it caught the
/// unwind and carried on, or a destructor waits for something — cannot be
/// unwound a second time (a panic in a destructor during unwinding
/// aborts). It stays suspended, and its box and stack are *leaked*: never
/// unmapped, nothing on them freed. A leak is safe; freeing undropped
/// values is not.
fn cancel_unfinished() {
    loop {
        let unfinished: Vec<CoroId> = with(|s| {
            let coros = s.coros.iter();
            coros
                .filter(|(_, coro)| coro.state != State::Done)
                .map(|(key, _)| CoroId(key))
                .collect()
        });
        if unfinished.is_empty() {
            return;
        }
        for id in unfinished {
            let Some(target) = with(|s| {
                let coro = s.coro(id)?;
                coro.state = State::Running;
                let target: *const Context = &coro.context;
                s.current = Some(id);
                Some(target)
            }) else {
                continue; // freed by a destructor of one cancelled before it
            };
            CANCEL.with(|c| c.set(true));
            // SAFETY: as in `run_runnable`: the coroutine is suspended (or
            // fresh), its box and stack are alive until it is retired
            // below, and no RefCell borrow is held across the switch.
            unsafe { Context::resume(target) };
            stack::set_current_guard((0, 0));
            CANCEL.with(|c| c.set(false));
            with(|s| {
                s.current = None;
                if s.coro(id).is_some_and(|c| c.state == State::Done) {
                    s.retire_if_done(id);
                } else if let Some(coro) = s.coros.remove(id.0) {
                    // Suspended again mid-cancellation: see above.
                    std::mem::forget(coro);
                }
            });
        }
    }
}

/// In a coroutine just resumed: whether it is being cancelled (and this is
/// the first park point to see it).
#[inline(always)]
fn take_cancel() -> bool {
    CANCEL.with(|c| c.replace(false))
}

/// Resumes every runnable coroutine, in FIFO order, until none is left.
///
/// One *round*: only the coroutines runnable when it starts. One that yields
/// goes to the back of the queue and waits for the next round, after the
/// sockets and timers have been looked at, so a coroutine that yields in a
/// loop cannot starve IO.
///
/// Every coroutine suspends back here (greenlet's parent, gevent's hub):
/// a hand-off from one coroutine to the next is a suspend and a resume,
/// each a few nanoseconds, and this loop is the one place that frees a
/// finished coroutine's stack, from a stack that is not that one.
fn run_runnable() {
    // One borrow of the scheduler per resume, because the bookkeeping
    // around a switch costs more than the switch itself: the first starts
    // the round and its first coroutine...
    let mut next = with(|s| {
        s.fire_timers();
        s.round = s.run_queue.len();
        s.next_in_round()
    });
    while let Some(target) = next {
        // SAFETY: `target` points into the coroutine's box, which the
        // scheduler frees only after the coroutine is done (below, once it
        // has suspended for the last time); the coroutine is runnable, so
        // suspended or fresh; no RefCell borrow is held across the switch.
        unsafe { Context::resume(target) };
        // Back on the thread's own stack, which std guards.
        stack::set_current_guard((0, 0));
        // ...each later one retires the coroutine that suspended (if it
        // finished) and starts the next.
        next = with(|s| {
            if let Some(id) = s.current.take() {
                s.retire_if_done(id);
            }
            s.next_in_round()
        });
    }
}

/// Between rounds: looks at sockets — without sleeping if coroutines are
/// runnable, else until the next timer — or reports that nothing can ever
/// run again.
fn wait_for_events() -> Result<(), Deadlock> {
    let (runnable, next_timer, waiters, next_trim) = with(|s| {
        s.fire_timers();
        let runnable = !s.run_queue.is_empty();
        // Idle stacks are trimmed when the scheduler is about to sleep (a
        // clock read is nothing next to the syscall), or now and then if
        // it never does.
        if !runnable || s.trimmer.busy_round() {
            let now = Instant::now();
            if s.trimmer.is_due(now) {
                s.trim_stacks(now);
            }
        }
        (
            runnable,
            s.timers.first().map(|(at, _, _)| *at),
            s.io_waiters,
            s.trimmer.next(),
        )
    });
    if runnable {
        // Harvest the sockets without sleeping — if any coroutine waits on
        // one. With none waiting, an event could wake nobody (it would be
        // dropped), so the syscall is skipped: it costs more than a whole
        // round of switches. Events left in the kernel are harvested by the
        // first poll after someone parks on a socket, at worst one spurious
        // wake-up, which every wait tolerates.
        if waiters > 0 {
            poll_reactor(Some(Duration::ZERO));
        }
        return Ok(());
    }
    if next_timer.is_none() && waiters == 0 {
        // Counted only here: a scan of every coroutine is no cost to pay
        // on every wait.
        let parked = with(|s| {
            s.coros
                .iter()
                .filter(|(_, coro)| coro.state == State::Parked)
                .count()
        });
        return Err(Deadlock { parked });
    }
    // The next trim pass bounds the sleep too, but is no reason to wait:
    // it is not counted above.
    let wake = match (next_timer, next_trim) {
        (Some(timer), Some(trim)) => Some(timer.min(trim)),
        (timer, trim) => timer.or(trim),
    };
    let timeout = wake.map(|at| at.saturating_duration_since(Instant::now()));
    poll_reactor(timeout);
    Ok(())
}

fn poll_reactor(timeout: Option<Duration>) {
    // The buffer is taken out of the scheduler for the call and put back
    // below, where its events are read under one borrow.
    let mut events = with(|s| std::mem::take(&mut s.events));
    // The epoll is borrowed only for the call; the scheduler is not busy.
    let waited = with(|s| s.epoll.wait(&mut events, timeout));
    if waited.is_err() {
        with(|s| s.events = events);
        return; // EINTR: a signal; the loop looks again
    }
    with(|s| {
        for event in &events {
            let Some(source) = s.sources.get_mut(Key::from_u64(event.u64)) else {
                continue; // a socket closed since: never the wrong coroutine
            };
            // Recorded whether anybody waits (see `readiness_state`); the
            // waiters of the directions it made ready are handed over.
            for id in source.on_event(event.events).into_iter().flatten() {
                s.io_waiters -= 1;
                s.unpark(id);
            }
        }
        s.events = events;
    });
}

impl Scheduler {
    /// Makes the coroutines whose deadline has passed runnable.
    #[inline]
    fn fire_timers(&mut self) {
        // No timer, no need to read the clock (twice a round); checked
        // here, inlined, so that a round without timers pays no call.
        if !self.timers.is_empty() {
            self.fire_due_timers();
        }
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some((at, _, id)) = self.timers.first().copied() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.unpark(id);
        }
    }

    /// A trim pass (see [`super::trim`]): gives back the stack below the
    /// stack pointer of every coroutine parked since before the last pass,
    /// and the whole of every stack pooled since before it.
    fn trim_stacks(&mut self, now: Instant) {
        let mut budget = BATCH;
        let cursor = self.trimmer.cursor();
        let coros = self.coros.iter_mut();
        for (key, coro) in coros.skip_while(|(key, _)| key.index() < cursor) {
            if coro.state != State::Parked {
                continue;
            }
            match self.trimmer.verdict(coro.mark) {
                Verdict::Trim if budget == 0 => {
                    self.trimmer.pause(key.index(), now);
                    return;
                }
                Verdict::Trim => {
                    if let Some(stack) = &coro.stack {
                        // SAFETY: a parked coroutine is suspended, its
                        // saved stack pointer in its context, and resumes
                        // only through that context.
                        unsafe { stack.discard_below(coro.context.suspended_sp()) };
                    }
                    coro.mark = TRIMMED;
                    budget -= 1;
                }
                Verdict::Later => self.trimmer.note_later(),
                Verdict::Nothing => {}
            }
        }
        // The pool holds at most 1,024 stacks, and few of them at once
        // are due: no budget.
        let trimmer = &self.trimmer;
        let later = self.pool.trim(|mark| trimmer.verdict(mark));
        self.trimmer.passed(now, later);
    }

    /// The coroutine `id` names, unless it has been retired since (its
    /// slot may hold another coroutine now).
    fn coro(&mut self, id: CoroId) -> Option<&mut Coro> {
        self.coros.get_mut(id.0).map(|coro| &mut **coro)
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

impl Scheduler {
    /// Makes the next runnable coroutine of this round the running one and
    /// gives its context; `None` when the round is over. Stale entries (a
    /// coroutine no longer runnable, a slot reused) are skipped.
    fn next_in_round(&mut self) -> Option<*const Context> {
        while self.round > 0 {
            self.round -= 1;
            let Some(id) = self.run_queue.pop_front() else {
                break;
            };
            let mark = self.trimmer.resumed();
            if let Some(coro) = self.coro(id).filter(|c| c.state == State::Runnable) {
                coro.state = State::Running;
                coro.mark = mark;
                let target: *const Context = &coro.context;
                self.current = Some(id);
                return Some(target);
            }
        }
        self.round = 0;
        None
    }

    /// Frees a coroutine that has finished: its stack back to the pool, its
    /// slot to the table's free list under a new generation.
    fn retire_if_done(&mut self, id: CoroId) {
        if !self.coro(id).is_some_and(|c| c.state == State::Done) {
            return;
        }
        if let Some(mut coro) = self.coros.remove(id.0) {
            if let Some(stack) = coro.stack.take() {
                self.pool.give_back(stack, self.trimmer.mark());
            }
        }
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
    let (own, guard) = with(|s| {
        let id = s.current.expect("suspend outside a coroutine");
        before(s, id);
        let coro = s.coro(id).expect("the running coroutine exists");
        coro.state = state;
        // `current` still names us: the loop retires us if we are done.
        (&coro.context as *const Context, coro.guard)
    });
    // SAFETY: we run on our own stack and were resumed through this
    // context, which lives in a box the scheduler frees only after we are
    // done and off our stack; no RefCell borrow is held across the switch.
    unsafe { Context::suspend(own) };
    // Resumed: we set our guard page ourselves, before going any deeper
    // into our stack. (Had the resuming side set it, its own pushes on
    // *its* stack would run under our guard page's name.)
    stack::set_current_guard(guard);
    if take_cancel() {
        // `run` is over and is cancelling us: unwind to `entry`'s
        // catch_unwind, dropping everything on the way. resume_unwind, not
        // panic!: no panic hook, so no message for what is not an error.
        resume_unwind(Box::new(Cancelled));
    }
}

/// The guard page of the running coroutine's stack.
fn current_guard() -> (usize, usize) {
    with(|s| {
        let id = s.current.expect("not inside a coroutine");
        s.coro(id).expect("the running coroutine exists").guard
    })
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
        // So does the unwind of a cancellation (see `cancel_unfinished`).
        let result = catch_unwind(AssertUnwindSafe(f));
        *shared.result.borrow_mut() = Some(result);
        if let Some(waiter) = shared.waiter.take() {
            with(|s| s.unpark(waiter));
        }
    });
    let data = Box::into_raw(Box::new(body)) as usize;
    let guard = stack.guard_range();
    with(|s| {
        // SAFETY: the stack is ours until the coroutine is done; `data` is
        // a leaked box that `entry` takes back exactly once.
        let context = unsafe { Context::fresh(stack.top(), entry, data) };
        let key = s.coros.insert(Box::new(Coro {
            context,
            stack: Some(stack),
            guard,
            state: State::Runnable,
            mark: s.trimmer.mark(),
        }));
        s.run_queue.push_back(CoroId(key));
    });
    Ok(JoinHandle { state })
}

/// Where every coroutine starts (via the trampoline).
unsafe extern "C" fn entry(data: usize) -> ! {
    // SAFETY: `data` is the box leaked by `spawn` for this coroutine.
    let body = unsafe { Box::from_raw(data as *mut Box<dyn FnOnce()>) };
    // A fresh coroutine names its guard page first, as `suspend_after`
    // does on every later resume; this frame is at the top of its stack.
    stack::set_current_guard(current_guard());
    if take_cancel() {
        // Cancelled before it ever ran: what its closure captured is
        // dropped, here, and a panic in a destructor stops here too.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(body)));
    } else {
        body();
    }
    suspend(State::Done);
    unreachable!("a finished coroutine was resumed");
}

// ------------------------------------------------------------- reactor ---

/// Registers `fd` with the reactor, for both directions, edge-triggered.
pub fn register(fd: RawFd) -> io::Result<SourceKey> {
    with(|s| {
        let key = s.sources.insert(Source::new());
        // The event's data is the key, generation and all: an event for a
        // socket deregistered since finds nothing in `poll_reactor`.
        match s.epoll.add(fd, INTEREST, key.to_u64()) {
            Ok(()) => Ok(key),
            Err(e) => {
                s.sources.remove(key);
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
        // Removing it moves its slot's generation on.
        if let Some(mut source) = s.sources.remove(key) {
            for waiter in source.take_waiters().into_iter().flatten() {
                s.io_waiters -= 1;
                // Wake it: its socket is gone, its next call will say so.
                s.unpark(waiter);
            }
        }
    });
}

/// Whether the socket may be ready in `direction`: no call has said
/// `EAGAIN` (or read it empty) since its last event. A closed socket's
/// stale key says yes, so that the next call reports what happened.
pub fn is_ready(key: SourceKey, direction: Direction) -> bool {
    with(|s| {
        let source = s.sources.get(key);
        source.map_or(true, |src| src.readiness.is_ready(direction))
    })
}

/// Notes that the socket is drained in `direction` (a call said `EAGAIN`,
/// or a read returned less than it asked for: the queue is empty), so that
/// the next call waits for an event first.
pub fn drained(key: SourceKey, direction: Direction) {
    with(|s| {
        if let Some(src) = s.sources.get_mut(key) {
            src.readiness.drained(direction);
        }
    });
}

/// Parks the running coroutine until its socket is ready in `direction`,
/// or `deadline` passes. Call only once the socket is known drained (a
/// call said `EAGAIN`): the next edge wakes us.
///
/// A stale key (deregistered since) returns at once, as [`is_ready`] says
/// yes to one: its slot may hold another socket now, whose waiter we must
/// not displace, and no event will ever come for the old one. The next
/// call on the descriptor reports what happened to it.
pub fn wait_io(key: SourceKey, direction: Direction, deadline: Option<Instant>) {
    let registered = with(|s| {
        let id = s.current.expect("wait_io outside a coroutine");
        let Some(source) = s.sources.get_mut(key) else {
            return false;
        };
        source.readiness.drained(direction);
        if source.waiter(direction).replace(id).is_none() {
            s.io_waiters += 1;
        }
        true
    });
    if !registered {
        return;
    }
    park_until(deadline);
    // Woken by a timer or for nothing: stop waiting on the socket.
    with(|s| {
        if let Some(source) = s.sources.get_mut(key) {
            if source.waiter(direction).take().is_some() {
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
