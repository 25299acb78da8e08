//! Wakers: how a parked task is found again.
//!
//! A future that cannot finish yet returns `Poll::Pending`, and before it
//! does, it hands a [`Waker`] to whoever will know when it can go on (our
//! reactor, a timer, a [`JoinHandle`](super::JoinHandle)). Calling the
//! waker says "poll this task again". std leaves what a waker *is* to the
//! executor: a [`RawWaker`] is one data word and a table of four functions
//! ([`RawWakerVTable`]) — a trait object written by hand.
//!
//! | function | called when | here |
//! |---|---|---|
//! | `clone` | a future keeps the waker beyond the poll (`cx.waker().clone()`) | copies the word: nothing is shared, nothing counted |
//! | `wake` | the waker is used up: `waker.wake()` | as `wake_by_ref` (there is nothing to release) |
//! | `wake_by_ref` | `waker.wake_by_ref()`: wake, keep the waker | pushes the task on this thread's run queue, once |
//! | `drop` | a waker is dropped | nothing |
//!
//! **What the word holds.** Not a pointer: the task's slab [`Key`] (slot
//! and generation, as the slab names everything), with this thread's tag
//! in eight spare bits. A waker therefore owns nothing, costs nothing to
//! clone or drop, and can never dangle: waking a task that has finished
//! finds its slot's generation moved on, and does nothing. tokio and
//! async-task instead point the word at a reference-counted task header
//! (an `Arc`), which a waker keeps alive — what they need, because a
//! waker may be woken from any thread.
//!
//! **Send and Sync.** [`Waker`] is `Send + Sync` whatever the executor:
//! any code may carry a waker to another thread and wake it there (an IO
//! thread pool, a channel's sender on another core). So the four
//! functions must be safe to call from any thread. Ours are: each reads
//! only the word it was given and the calling thread's own thread-locals,
//! so there is nothing two threads could race on. But *correct* is
//! another matter: woken on another thread, the key would be looked up in
//! that thread's run queue — the wrong executor. This runtime is
//! single-threaded by design (one executor per thread, like `coro`'s
//! schedulers, `--workers N` runs N of them), so the rule is: **a waker is
//! woken on the thread whose task it names**. The lab keeps it — no task
//! gives its waker away — and the tag checks it: a waker woken on another
//! thread panics, instead of waking a stranger there and leaving its own
//! task asleep for ever. (Eight bits: two threads whose numbers agree
//! modulo 256 would pass the check. It catches a bug; it is not what
//! makes the code sound.) The price of `Arc` wakers — an allocation per
//! task, an atomic increment per clone, a locked queue for wakes from
//! other threads — buys what this lab does not use.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::server::slab::Key;

/// What a waker names: a spawned task, or the future
/// [`block_on`](super::block_on) polls itself, which has no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// A task in the executor's slab.
    Task(Key),
    /// `block_on`'s own future.
    Main,
}

/// The task slot reserved for `block_on`'s future: tasks use the slots
/// below it, so about 16 million at once per thread.
const MAIN_INDEX: usize = (1 << 24) - 1;
/// The most tasks one executor can hold at once.
pub(super) const MAX_TASKS: usize = MAIN_INDEX;

/// The word's layout: bits 0–23 the task's slot, 24–31 the thread's tag,
/// 32–63 the slot's generation (where [`Key::to_u64`] puts them, with the
/// slot's top byte given to the tag).
const TAG_SHIFT: u32 = 24;
const TAG_MASK: u64 = 0xff << TAG_SHIFT;

// The word is a pointer-sized integer; the layout above needs 64 bits.
const _: () = assert!(usize::BITS >= 64, "async_rt needs 64-bit pointers");

static NEXT_TAG: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// This thread's tag: a number given to each thread the first time it
    /// asks, modulo 256.
    static TAG: u8 = NEXT_TAG.fetch_add(1, Relaxed);
}

/// This thread's tag (`None` while the thread is being torn down).
pub(super) fn thread_tag() -> Option<u8> {
    TAG.try_with(|tag| *tag).ok()
}

/// A waker for `target`, made on the thread tagged `tag`.
pub(super) fn waker(tag: u8, target: Target) -> Waker {
    // SAFETY: the vtable's functions keep RawWaker's contract: `clone`
    // gives a waker that wakes the same task, and all four may be called
    // from any thread (they read only the word and the caller's own
    // thread-locals: see the module doc); `drop` has nothing to free.
    unsafe { Waker::from_raw(RawWaker::new(pack(tag, target) as *const (), &VTABLE)) }
}

/// The word for `target` on the thread tagged `tag`.
fn pack(tag: u8, target: Target) -> usize {
    let key = match target {
        Target::Task(key) => {
            debug_assert!(key.index() < MAIN_INDEX, "checked by spawn");
            key.to_u64()
        }
        Target::Main => MAIN_INDEX as u64,
    };
    (key | u64::from(tag) << TAG_SHIFT) as usize
}

/// The thread tag and the target a waker's word holds.
fn unpack(word: usize) -> (u8, Target) {
    let word = word as u64;
    let tag = ((word & TAG_MASK) >> TAG_SHIFT) as u8;
    let key = Key::from_u64(word & !TAG_MASK);
    let target = if key.index() == MAIN_INDEX {
        Target::Main
    } else {
        Target::Task(key)
    };
    (tag, target)
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop);

/// The word is a value: the clone is the same word.
fn clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

/// Using the waker up releases nothing, so it is `wake_by_ref`.
fn wake(data: *const ()) {
    wake_by_ref(data);
}

fn wake_by_ref(data: *const ()) {
    let (tag, target) = unpack(data as usize);
    // No tag: this thread is exiting, and runs no executor any more.
    if let Some(here) = thread_tag() {
        assert_eq!(
            tag, here,
            "an async_rt waker was woken on another thread than its task's: \
             this runtime's wakers must stay on their thread"
        );
    }
    super::executor::wake(target);
}

/// Nothing to free: the word owns nothing.
fn drop(_data: *const ()) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::slab::Slab;

    #[test]
    fn a_waker_carries_its_task_and_thread() {
        let mut slab = Slab::new();
        let first = slab.insert(());
        slab.remove(first);
        let key = slab.insert(()); // generation 1: both halves matter
        let word = pack(0xa5, Target::Task(key));
        assert_eq!(unpack(word), (0xa5, Target::Task(key)));
        assert_eq!(unpack(pack(7, Target::Main)), (7, Target::Main));
        let waker = waker(0xa5, Target::Task(key));
        assert!(waker.clone().will_wake(&waker), "a clone is the same word");
    }
}
