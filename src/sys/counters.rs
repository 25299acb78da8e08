//! Counters: every syscall a model makes on its hot path, and the events the
//! protocol cares about (connections, requests, bytes), counted where they
//! happen.
//!
//! A counter is bumped on every `read` and `write`, so it must cost next to
//! nothing. Each thread counts into its own thread-local array of plain
//! integers (no atomics, no shared cache lines) and adds it into the
//! process-wide totals every [`FLUSH_EVERY`] bumps, when the thread exits, and
//! whenever someone calls [`flush`]. The totals live in a [`SharedMem`] page
//! mapped `MAP_SHARED` before any `fork`, so the children of the process
//! models add into the same numbers as the parent: the Rust answer to a
//! `multiprocessing.Manager` dict guarded by a `Lock`, with atomics instead of
//! the lock.
//!
//! A process killed outright (`kill -9` of a forked child) loses the
//! bumps it had not flushed yet, at most [`FLUSH_EVERY`] per thread; a
//! clean exit loses none.
//!
//! Gauges that must be exact at every instant (open connections, which
//! `MAX_CONNS` is checked against) are not batched: see [`Gauges`].

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use super::SharedMem;

/// What a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Something that happened: a connection, a request, bytes.
    Event,
    /// A system call made by the server.
    Syscall,
    /// An operation the kernel carried out on the server's behalf without a
    /// system call of its own (an io_uring submission's accept, recv, send).
    Operation,
}

macro_rules! counters {
    ($($variant:ident => $name:literal, $kind:ident;)*) => {
        /// One thing we count. The syscalls are named as in their man pages.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $(#[doc = $name] $variant,)* }

        impl Counter {
            /// Every counter, in declaration order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The name used in the summary line (`"recv"`, `"epoll_wait"`…).
            pub fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }

            /// What the counter counts.
            pub fn kind(self) -> Kind {
                match self { $(Counter::$variant => Kind::$kind,)* }
            }

        }
    };
}

counters! {
    Accepted => "accepted", Event;
    Requests => "requests", Event;
    BytesIn => "bytes_in", Event;
    BytesOut => "bytes_out", Event;
    Overflows => "overflows", Event;
    Accept => "accept", Syscall;
    Recv => "recv", Syscall;
    Send => "send", Syscall;
    SetSockOpt => "setsockopt", Syscall;
    Fork => "fork", Syscall;
    Select => "select", Syscall;
    Poll => "poll", Syscall;
    EpollWait => "epoll_wait", Syscall;
    EpollCtl => "epoll_ctl", Syscall;
    SigWait => "sigtimedwait", Syscall;
    IoUringEnter => "io_uring_enter", Syscall;
    Ioctl => "ioctl", Syscall;
    OpAccept => "accept", Operation;
    OpRecv => "recv", Operation;
    OpSend => "send", Operation;
    OpSendZc => "send_zc", Operation;
    OpSendZcCopied => "send_zc_copied", Operation;
}

const N: usize = Counter::ALL.len();

/// How many bumps a thread collects before it adds them to the shared totals.
/// Large enough that the atomics cost nothing per request, small enough that
/// the once-a-second status line is not visibly behind.
pub const FLUSH_EVERY: u32 = 64;

/// The process-wide totals and gauges, in memory shared with forked children.
pub struct Totals {
    counters: [AtomicU64; N],
    /// Exact, unbatched gauges.
    pub gauges: Gauges,
}

/// Gauges read and written directly with atomics, because a decision depends
/// on their exact value (the `MAX_CONNS` check) or because they are maxima.
pub struct Gauges {
    /// Connections open right now (queued ones included, for pool models).
    pub open_conns: AtomicI64,
    /// The most connections open at once.
    pub peak_conns: AtomicI64,
    /// Connections closed because of an IO error (reset, broken pipe).
    pub conn_errors: AtomicU64,
    /// Child processes that died of a signal of their own (process models).
    pub children_crashed: AtomicU64,
    /// Child processes the parent itself killed, still busy at the end of
    /// the drain (process models).
    pub children_stopped: AtomicU64,
    /// User CPU of the reaped children, in microseconds.
    pub children_user_us: AtomicU64,
    /// System CPU of the reaped children, in microseconds.
    pub children_system_us: AtomicU64,
    /// The largest peak resident memory of any reaped child, in KiB.
    pub children_peak_kb: AtomicU64,
}

static TOTALS: OnceLock<SharedMem<Totals>> = OnceLock::new();

/// The shared totals, mapped on first use. Call it once before forking so
/// that parent and children share one page (the `lab` binary does, at start).
pub fn totals() -> &'static Totals {
    TOTALS.get_or_init(|| {
        // SAFETY: `Totals` is made only of atomic integers, for which the
        // all-zero bit pattern is a valid value (zero).
        unsafe { SharedMem::zeroed() }.expect("cannot map the shared counters page")
    })
}

impl Totals {
    /// The current total of one counter (flushed bumps only).
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Relaxed)
    }
}

/// A thread's unflushed bumps. Dropped (and so flushed) when the thread exits.
struct Local {
    counts: [Cell<u64>; N],
    pending: Cell<u32>,
}

impl Local {
    fn flush(&self) {
        let totals = totals();
        for (local, total) in self.counts.iter().zip(&totals.counters) {
            let n = local.take();
            if n != 0 {
                total.fetch_add(n, Relaxed);
            }
        }
        self.pending.set(0);
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.flush();
    }
}

thread_local! {
    static LOCAL: Local = const {
        Local { counts: [const { Cell::new(0) }; N], pending: Cell::new(0) }
    };
}

/// Adds `n` to a counter, in this thread's local batch.
#[inline]
pub fn add(counter: Counter, n: u64) {
    // `try_with` fails only while the thread is being torn down; a bump lost
    // then is not worth a panic.
    let _ = LOCAL.try_with(|local| {
        let cell = &local.counts[counter as usize];
        cell.set(cell.get() + n);
        let pending = local.pending.get() + 1;
        local.pending.set(pending);
        if pending >= FLUSH_EVERY {
            local.flush();
        }
    });
}

/// Adds one to a counter.
#[inline]
pub fn bump(counter: Counter) {
    add(counter, 1);
}

/// Adds this thread's batch to the shared totals now. Call before a process
/// exits without unwinding (a forked child's `_exit`), before reading the
/// totals for a summary, and at the end of the work of any thread that
/// another thread joins: `std::thread::scope` (and tokio's runtime) count a
/// thread as finished when its closure returns, *before* its thread-local
/// destructors run, so the flush-on-exit may land after the summary.
pub fn flush() {
    let _ = LOCAL.try_with(Local::flush);
}

/// Forgets this thread's batch without adding it anywhere. A freshly forked
/// child calls it: the batch it inherited belongs to the parent, which will
/// flush it itself.
pub fn forget_local() {
    let _ = LOCAL.try_with(|local| {
        for cell in &local.counts {
            cell.set(0);
        }
        local.pending.set(0);
    });
}

/// Records a connection opening if fewer than `max` are open; returns whether
/// it may stay. The check and the increment are one atomic step, so two
/// threads (or processes) can never both take the last place.
pub fn try_open_conn(max: usize) -> bool {
    let gauges = &totals().gauges;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let admitted = gauges
        .open_conns
        .fetch_update(Relaxed, Relaxed, |open| (open < max).then_some(open + 1));
    match admitted {
        Ok(before) => {
            gauges.peak_conns.fetch_max(before + 1, Relaxed);
            true
        }
        Err(_) => false,
    }
}

/// Records a connection ended by an IO error (reset, broken pipe, write
/// timeout): the summary's `conn_errors`.
pub fn conn_error() {
    totals().gauges.conn_errors.fetch_add(1, Relaxed);
}

/// Records a connection closing (the other half of [`try_open_conn`]).
pub fn close_conn() {
    totals().gauges.open_conns.fetch_sub(1, Relaxed);
}
