//! Stacks that shrink: an idle coroutine gives back the stack pages below
//! its stack pointer.
//!
//! A stack's pages become resident when first touched and stay resident
//! after: a connection whose handler once went 40 KiB deep (a burst, an
//! error path, a panic's unwinding) keeps 40 KiB while it then sits idle
//! for minutes, though a parked coroutine needs only what lies *above*
//! its saved stack pointer. Go shrinks an idle goroutine's stack by
//! copying it into a smaller one, which needs the collector's knowledge of
//! every pointer into it; Rust has none, so we keep the addresses and
//! give back the pages instead.
//!
//! **When.** The scheduler makes a *pass* when it is about to sleep in
//! `epoll_wait` (a clock read costs nothing next to that syscall), or
//! every [`CHECK_EVERY`] rounds if it never sleeps, once [`TRIM_AFTER`]
//! has gone by since the last pass. Each resume marks the coroutine with
//! the number of passes made so far, a store into a record the resume
//! touches anyway. A pass trims every parked coroutine whose mark is older
//! than the last pass: it has not run for at least [`TRIM_AFTER`]. It
//! marks it trimmed, so that it is not trimmed again until it has run.
//! A pass gives back at most [`BATCH`] stacks at a stretch, and goes on
//! at the next check, so that it never holds the thread for long.
//! Stacks in the pool are given back whole by the same rule. A pass that
//! leaves nothing waiting for a later one arms no next pass: an idle
//! scheduler does not wake once a second for ever, only until what ran
//! last has been trimmed.
//!
//! **What.** From the stack's lowest usable byte up to the suspended stack
//! pointer less [`RED_ZONE`], rounded down to a page:
//! [`Stack::discard_below`], one `madvise(MADV_DONTNEED)`. Below the
//! saved stack pointer nothing is live (see
//! [`Context::suspended_sp`](super::context::Context::suspended_sp)); the
//! red-zone margin keeps at most one page more, the one the coroutine
//! touches first when it runs again, and is only caution where the ABI
//! has no red zone (aarch64).
//!
//! **`MADV_DONTNEED`, not `MADV_FREE`.** `MADV_FREE` is lazy: the pages
//! stay resident, and counted in RSS, PSS and the process's cgroup, until
//! the kernel runs short of memory and takes them; a write before then
//! cancels it for free. That suits an allocator that will reuse its
//! memory soon. Here the memory is given back *because* the coroutine is
//! idle and may stay so for minutes, and the point is that it counts no
//! more: in `smaps`, in a container's memory limit, to an OOM killer that
//! ranks by RSS. `MADV_DONTNEED` frees the pages at once, and the next
//! touch maps a zeroed page: one page fault.
//!
//! **The trade.** A trimmed coroutine that goes deep again pays a page
//! fault per page it touches below its old stack pointer: the kernel
//! entry, a zeroed page, the page-table update. The `coro` bench's `stack
//! page fault after a trim` puts it at about 2.5 µs a page on the lab's
//! VM (faults are slow there; a few tenths of a microsecond is usual on
//! bare metal), against the second or more the coroutine spent idle. The
//! pass pays one `madvise` per stack trimmed, under a microsecond when
//! nothing below the stack pointer is resident, which is the case of
//! the lab's handler: it parks with one page in use, so for it the trim
//! is insurance, not a saving. A pass also walks every coroutine, about
//! 0.2 ms per 10,000. A production runtime would batch the calls:
//! `process_madvise(2)` takes a vector of ranges.

use std::time::{Duration, Instant};

#[cfg(doc)]
use super::stack::Stack;

/// How long a coroutine must have been parked before its stack is
/// trimmed. The parks inside an exchange (a read waiting for the next
/// pipelined request, a write waiting for the client to read) last
/// microseconds to milliseconds; a coroutine parked for a second is
/// waiting for a client that is thinking or gone. At a second, the
/// faults its next deep call pays (2.5 µs a page on the lab's VM) are a
/// few millionths of the time it idled, per page.
pub const TRIM_AFTER: Duration = Duration::from_secs(1);

/// A scheduler that never sleeps looks at the clock for a due pass once
/// every this many rounds: often enough at any round length that matters
/// (a pass may come late by 64 rounds), rarely enough that the clock read
/// is lost in the rounds' switches.
pub const CHECK_EVERY: u32 = 64;

/// At most this many stacks are given back per stretch of a pass: 256
/// `madvise` calls hold the thread for about half a millisecond here (a
/// whole pass over 10,000 idle coroutines took 16 ms in one piece). The
/// pass goes on from where it stopped at the next check, after the
/// reactor has been looked at, as an incremental collector slices its
/// work.
pub const BATCH: usize = 256;

/// Bytes below the saved stack pointer never given back: the x86-64
/// System V red zone, which a function may use below its stack pointer
/// without moving it.
pub const RED_ZONE: usize = 128;

/// The mark of a stack given back since its coroutine last ran.
pub const TRIMMED: u32 = u32::MAX;

/// What a pass does with one stack, by its mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Idle for at least [`TRIM_AFTER`]: give it back.
    Trim,
    /// Ran since the last pass: the next pass will see.
    Later,
    /// Trimmed already, and has not run since.
    Nothing,
}

/// The scheduler's side of trimming: how many passes it has made, and
/// when the next is due.
#[derive(Debug, Default)]
pub struct Trimmer {
    passes: u32,
    due: Option<Instant>,
    /// Whether a coroutine was resumed since the last pass.
    ran: bool,
    rounds: u32,
    /// Where the pass under way goes on (a slot index), if it stopped at
    /// [`BATCH`]; 0 otherwise.
    cursor: usize,
    /// Whether the pass under way has left stacks for the next one.
    later: bool,
}

impl Trimmer {
    /// A coroutine is being resumed: the mark it keeps.
    #[inline(always)]
    pub fn resumed(&mut self) -> u32 {
        self.ran = true;
        self.passes
    }

    /// The mark of a stack given back to the pool now.
    pub fn mark(&self) -> u32 {
        self.passes
    }

    /// One round ended without a sleep: whether to look at the clock.
    #[inline(always)]
    pub fn busy_round(&mut self) -> bool {
        self.rounds += 1;
        if self.rounds < CHECK_EVERY {
            return false;
        }
        self.rounds = 0;
        true
    }

    /// Whether a pass is due at `now`; arms the next one if something ran
    /// since the last pass and none is armed.
    pub fn is_due(&mut self, now: Instant) -> bool {
        match self.due {
            Some(at) => now >= at,
            None => {
                if self.ran {
                    self.due = Some(now + TRIM_AFTER);
                }
                false
            }
        }
    }

    /// What the pass now due does with a stack marked `mark`.
    pub fn verdict(&self, mark: u32) -> Verdict {
        if mark == TRIMMED {
            Verdict::Nothing
        } else if mark < self.passes {
            Verdict::Trim
        } else {
            Verdict::Later
        }
    }

    /// The pass met a stack marked [`Verdict::Later`].
    pub fn note_later(&mut self) {
        self.later = true;
    }

    /// Where the pass now due starts: at the first slot, or where it
    /// stopped.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The pass has given back [`BATCH`] stacks and stops before slot
    /// `cursor`, to go on at the next check. It is still the same pass:
    /// the count, by which marks are judged, does not move.
    pub fn pause(&mut self, cursor: usize, now: Instant) {
        self.cursor = cursor;
        self.due = Some(now);
    }

    /// The pass is done: the next one is due in [`TRIM_AFTER`] if it left
    /// stacks for it, else when something has run again.
    pub fn passed(&mut self, now: Instant, later: bool) {
        self.passes += 1;
        self.ran = false;
        self.due = (self.later || later).then(|| now + TRIM_AFTER);
        self.cursor = 0;
        self.later = false;
    }

    /// When the next pass is due, for the reactor's timeout.
    pub fn next(&self) -> Option<Instant> {
        self.due
    }
}
