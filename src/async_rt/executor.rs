//! The executor: tasks in a slab, a run queue, and the loop that polls
//! them.
//!
//! A *task* is a spawned future, boxed (its size is known only to the
//! compiler, and the slab holds one type) and pinned (it may point into
//! itself: see the chapter), in a slot of a [`Slab`]. Its slot's [`Key`]
//! is its name: the run queue holds keys, and so does every waker. A task
//! is *queued* (its key is in the run queue, once), *being polled*, or
//! *parked* (someone holds its waker). When its future returns
//! `Poll::Ready` it is done, and its slot is freed.
//!
//! [`block_on`] runs a future on this thread and, while it waits, every
//! task it spawns. Its loop, one turn:
//!
//! ```text
//! poll the main future, if it was woken
//! run one round: poll each task queued when the round began (FIFO)
//! turn the reactor: epoll_wait — without sleeping if anything is
//!     runnable, else until the nearest timer — and wake who it concerns
//! ```
//!
//! The same three steps as the coroutine scheduler's loop
//! ([`crate::coro::scheduler`]); what differs is what "run" means. A
//! coroutine is resumed where it stopped, on its own stack. A task is
//! *called*: its `poll` starts at the top every time, and the state
//! machine the compiler made from its `async` code jumps to where it was.
//!
//! **One round at a time.** A task woken while the round runs (by itself,
//! or by another task) waits for the next round, after the reactor has
//! been looked at: a task that wakes itself in a loop ([`yield_now`])
//! cannot keep the sockets and timers out.
//!
//! **Cancellation is a drop.** A task's whole state is its future, a
//! value; dropping it runs the destructors of whatever it holds at the
//! `.await` it stopped at — its socket deregisters and closes, its buffers
//! go back — and it never runs again. [`JoinHandle::cancel`] does that to
//! one task, and [`block_on`], when its own future is done, to every task
//! left. A dropped `JoinHandle` does *not* cancel: the task runs on,
//! detached (every connection's task is detached).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::reactor::Reactor;
use super::waker::{self, Target};
use crate::server::slab::{Key, Slab};

/// A spawned future: `None` while it is being polled (taken out of the
/// slab, so that it can spawn, wake and cancel without the slab being
/// borrowed).
struct Task {
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// Its key is in the run queue: a second wake adds nothing.
    queued: bool,
}

/// This thread's executor and reactor, while [`block_on`] runs.
pub(super) struct Runtime {
    /// This thread's tag, which its wakers carry (see [`waker`]).
    tag: u8,
    tasks: RefCell<Slab<Task>>,
    queue: RefCell<VecDeque<Key>>,
    /// `block_on`'s own future was woken.
    main_woken: Cell<bool>,
    /// Sockets and timers.
    pub(super) reactor: RefCell<Reactor>,
}

thread_local! {
    static RUNTIME: RefCell<Option<Runtime>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's runtime.
///
/// # Panics
///
/// Outside [`block_on`].
pub(super) fn with<R>(f: impl FnOnce(&Runtime) -> R) -> R {
    try_with(f).expect("not inside async_rt::block_on")
}

/// Runs `f` with this thread's runtime, if there is one. The runtime is
/// borrowed shared, so `f` may call `with` again; only `block_on`
/// installs and removes it.
pub(super) fn try_with<R>(f: impl FnOnce(&Runtime) -> R) -> Option<R> {
    RUNTIME
        .try_with(|cell| cell.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// Queues `target` to be polled: what every waker does.
pub(super) fn wake(target: Target) {
    // No runtime on this thread: `block_on` has returned, and the task the
    // waker named is gone with it.
    try_with(|rt| match target {
        Target::Main => rt.main_woken.set(true),
        Target::Task(key) => rt.schedule(key),
    });
}

impl Runtime {
    /// Puts the task on the run queue, unless it is there already (a
    /// waker woken twice polls once) or gone (a stale key).
    fn schedule(&self, key: Key) {
        if let Some(task) = self.tasks.borrow_mut().get_mut(key) {
            if !task.queued {
                task.queued = true;
                self.queue.borrow_mut().push_back(key);
            }
        }
    }

    /// Polls each task queued when the round began, once, in FIFO order.
    fn run_round(&self) {
        let round = self.queue.borrow().len();
        for _ in 0..round {
            let Some(key) = self.queue.borrow_mut().pop_front() else {
                break;
            };
            // Take the future out; a stale key (the task finished or was
            // cancelled since it was queued) finds nothing.
            let future = self.tasks.borrow_mut().get_mut(key).and_then(|task| {
                task.queued = false;
                task.future.take()
            });
            let Some(mut future) = future else {
                continue;
            };
            let waker = waker::waker(self.tag, Target::Task(key));
            let done = future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            // Put it back, or free the slot. A task cancelled while it was
            // being polled (its slot gone) is dropped now.
            let finished = {
                let mut tasks = self.tasks.borrow_mut();
                match tasks.get_mut(key) {
                    Some(task) if !done => {
                        task.future = Some(future);
                        None
                    }
                    Some(_) => {
                        tasks.remove(key);
                        Some(future)
                    }
                    None => Some(future),
                }
            };
            // Dropped with nothing borrowed: its destructors may
            // deregister sockets, wake tasks, spawn.
            drop(finished);
        }
    }

    /// Whether anything is ready to be polled.
    fn runnable(&self) -> bool {
        self.main_woken.get() || !self.queue.borrow().is_empty()
    }
}

/// Runs `future` to completion on this thread, and with it every task it
/// spawns; gives its output. When it is done, the tasks still unfinished
/// are cancelled (dropped) before `block_on` returns.
///
/// # Panics
///
/// If called inside another `block_on` on the same thread; if nothing can
/// ever wake the future (it waits, and no task is runnable, no timer set
/// and no socket awaited: a deadlock); if the reactor's epoll cannot be
/// created.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let _runtime = Installed::new();
    // Declared after `_runtime`, so dropped before it: whatever the future
    // still holds (sockets) goes while the reactor is there to deregister.
    let mut future = pin!(future);
    let tag = with(|rt| rt.tag);
    let waker = waker::waker(tag, Target::Main);
    let mut cx = Context::from_waker(&waker);
    loop {
        if with(|rt| rt.main_woken.replace(false)) {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
        with(Runtime::run_round);
        let runnable = with(Runtime::runnable);
        if !with(|rt| Reactor::turn(rt, runnable)) {
            panic!(
                "async_rt::block_on: deadlock: the future waits, and no task is runnable, \
                 no timer is set and no socket is awaited: nothing could ever wake it"
            );
        }
    }
}

/// The runtime installed on this thread for the length of a `block_on`.
struct Installed;

impl Installed {
    fn new() -> Installed {
        let reactor = Reactor::new().expect("cannot create the reactor's epoll instance");
        let tag = waker::thread_tag().expect("a live thread has its tag");
        RUNTIME.with(|cell| {
            let mut slot = cell.borrow_mut();
            assert!(slot.is_none(), "async_rt::block_on is not reentrant");
            *slot = Some(Runtime {
                tag,
                tasks: RefCell::new(Slab::new()),
                queue: RefCell::new(VecDeque::new()),
                // The main future is polled once to begin with.
                main_woken: Cell::new(true),
                reactor: RefCell::new(reactor),
            });
        });
        Installed
    }
}

impl Drop for Installed {
    /// Cancels the tasks left — drops their futures, one at a time, with
    /// nothing borrowed, and again for any their destructors spawn — and
    /// only then removes the runtime (closing its epoll).
    fn drop(&mut self) {
        loop {
            let left = with(|rt| rt.tasks.borrow().keys());
            if left.is_empty() {
                break;
            }
            for key in left {
                // Gone already if an earlier one's destructor cancelled it.
                let task = with(|rt| rt.tasks.borrow_mut().remove(key));
                drop(task.and_then(|task| task.future));
            }
        }
        RUNTIME.with(|cell| cell.borrow_mut().take());
    }
}

/// Starts `future` as a task of this thread's executor; it is first polled
/// after the tasks queued before it. The handle gives its output; dropping
/// the handle does not cancel the task.
///
/// The future need not be `Send`: a task never leaves its thread.
///
/// # Panics
///
/// Outside [`block_on`], or with 16 million tasks already running on this
/// thread.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    let state = Rc::new(JoinState {
        result: Cell::new(None),
        finished: Cell::new(false),
        joiner: Cell::new(None),
    });
    let body = Spawned {
        future,
        state: state.clone(),
    };
    let key = with(|rt| {
        let key = rt.tasks.borrow_mut().insert(Task {
            future: Some(Box::pin(body)),
            queued: true,
        });
        assert!(key.index() < waker::MAX_TASKS, "too many tasks");
        rt.queue.borrow_mut().push_back(key);
        key
    });
    JoinHandle { state, key }
}

/// What a task runs: the spawned future, and where its result goes.
///
/// Written by hand rather than as `async move { .. future.await .. }`:
/// the compiler stores an `async` block's captured future and the future
/// it moves it into as two fields, and a connection's task came out three
/// times its future's size. Here the future is stored once.
struct Spawned<F: Future> {
    future: F,
    state: Rc<JoinState<F::Output>>,
}

impl<F: Future> Future for Spawned<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `future` is *structurally pinned*: it is only ever
        // reached through `Pin` (here), never moved out or swapped while
        // `Spawned` lives (no method hands out `&mut F`), and `Spawned` has
        // no `Drop` of its own that could move it; so a `Spawned` that
        // stays put keeps its `future` put too. `state` is not pinned:
        // only a shared reference to it is made.
        let (future, state) = unsafe {
            let this = self.get_unchecked_mut();
            (Pin::new_unchecked(&mut this.future), &this.state)
        };
        // A panic stops here, as a thread's does: the task ends with it as
        // its result, and no other task sees it.
        let result = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Ok(output),
            Err(panic) => Err(panic),
        };
        state.result.set(Some(result));
        state.finished.set(true);
        if let Some(joiner) = state.joiner.take() {
            joiner.wake();
        }
        Poll::Ready(())
    }
}

/// How many bytes the task of a spawned future of type `F` takes on the
/// heap: `F`, and what [`spawn`] keeps beside it.
pub fn task_size<F: Future + 'static>() -> usize {
    std::mem::size_of::<Spawned<F>>()
}

struct JoinState<T> {
    result: Cell<Option<std::thread::Result<T>>>,
    finished: Cell<bool>,
    /// The waker of whoever awaits the handle.
    joiner: Cell<Option<Waker>>,
}

/// Owns the result of a spawned task: await it for the task's output (or
/// the panic it ended with). Dropping it detaches the task, which runs on.
pub struct JoinHandle<T> {
    state: Rc<JoinState<T>>,
    key: Key,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.state.finished.get()
    }

    /// Cancels the task: drops its future now, wherever it was waiting,
    /// with everything it holds (see the module doc). A finished task has
    /// nothing left to drop.
    pub fn cancel(self) {
        let task = with(|rt| rt.tasks.borrow_mut().remove(self.key));
        // Dropped with nothing borrowed. A task cancelling itself from
        // inside its own poll has no future in its slot: the executor
        // drops it when the poll returns.
        drop(task.and_then(|task| task.future));
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = std::thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.state.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                self.state.joiner.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

/// Lets every other runnable task run, then continues: wakes its own task
/// and returns `Pending` once. The task goes to the back of the queue, and
/// is polled again in the next round, after the reactor has had its turn.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// How many tasks this thread's executor holds (spawned and not finished
/// or cancelled).
pub fn tasks() -> usize {
    with(|rt| rt.tasks.borrow().len())
}
