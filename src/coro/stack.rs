//! Coroutine stacks: `mmap`ed, with a guard page, pooled.
//!
//! Each stack is one anonymous mapping: a `PROT_NONE` guard page at the
//! bottom (stacks grow down) and [`STACK_SIZE`] usable bytes above it. The
//! kernel gives physical pages only when they are first touched, so a
//! coroutine that uses 3 KiB of stack costs one or two resident pages, not
//! 64 KiB (measured: 4.3 KiB resident per parked coroutine at 100,000).
//! Touched pages stay resident until given back: an idle coroutine's
//! pages below its stack pointer, and a pooled stack's, are, by
//! [`Stack::discard_below`] (see [`super::trim`]).
//! The limit is not memory but mappings: a stack and its guard page are
//! two, and `vm.max_map_count` (65,530 by the kernel's default; some
//! distributions set more) caps a process at about 32,000 stacks unless it
//! is raised.
//!
//! **Why 64 KiB.** A thread's default is 8 MiB (main) or 2 MiB (spawned):
//! sized for deep recursion nobody asked for. The lab's connection handler
//! keeps its buffers on the heap and needs a few KiB; `std`'s formatting and
//! IO paths add a few more. 64 KiB leaves a wide margin while 10,000
//! coroutines reserve only 640 MiB of *virtual* memory. (gevent's greenlets
//! copy stacks in and out of one shared stack instead; goroutines start at
//! 2 KiB and are moved when they grow — which needs a garbage collector's
//! knowledge of every pointer, something Rust cannot have.)
//!
//! **Overflow.** Running off the bottom touches the guard page: a SIGSEGV.
//! The handler, on its own alternate stack (the faulting stack is full),
//! checks whether the fault address lies in the guard page of the stack
//! this thread is running on; if so it prints `coroutine stack overflow`
//! and aborts, rather than leaving a bare "Segmentation fault". Any other
//! fault goes to the handler it replaced (std's, which names overflows of
//! ordinary thread stacks).

use std::cell::Cell;
use std::io;
use std::sync::{Once, OnceLock};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::trim::{self, Verdict, RED_ZONE};
use crate::sys::{self, Mapping};

/// Usable bytes per coroutine stack.
pub const STACK_SIZE: usize = 64 * 1024;

/// One coroutine stack; unmapped on drop.
#[derive(Debug)]
pub struct Stack {
    // Unmapped on drop; the scheduler drops a stack only after its
    // coroutine has finished (or keeps it in the pool).
    memory: Mapping,
    guard: usize,
}

impl Stack {
    /// Maps a fresh stack: guard page, then [`STACK_SIZE`] bytes.
    pub fn new() -> io::Result<Stack> {
        let guard = sys::page_size();
        // All PROT_NONE, then the part above the guard page made usable:
        // the guard is what stays PROT_NONE. MAP_NORESERVE: stacks are
        // mostly untouched, so do not count them against overcommit.
        let flags = libc::MAP_PRIVATE | libc::MAP_NORESERVE;
        let memory = Mapping::anonymous(guard + STACK_SIZE, libc::PROT_NONE, flags)?;
        memory.protect(guard, STACK_SIZE, libc::PROT_READ | libc::PROT_WRITE)?;
        Ok(Stack { memory, guard })
    }

    /// The highest address of the usable stack (where pushing starts).
    pub fn top(&self) -> usize {
        self.memory.as_ptr() as usize + self.memory.len()
    }

    /// The guard page's address range.
    pub fn guard_range(&self) -> (usize, usize) {
        let base = self.memory.as_ptr() as usize;
        (base, base + self.guard)
    }

    /// Gives the kernel back the pages of this stack that lie wholly below
    /// `sp` less [`RED_ZONE`] bytes (`madvise(MADV_DONTNEED)`); they read as
    /// zeros when next touched. Returns how many bytes that covered,
    /// resident or not. An `sp` at or above [`top`](Stack::top) plus
    /// `RED_ZONE` gives back the whole stack.
    ///
    /// # Safety
    ///
    /// Nothing below `sp - RED_ZONE` may be needed again: `sp` is the saved
    /// stack pointer of the suspended coroutine that uses this stack, or
    /// no coroutine uses it.
    pub unsafe fn discard_below(&self, sp: usize) -> usize {
        let page = self.guard; // the guard is one page
        let bottom = self.guard_range().1;
        let end = sp.saturating_sub(RED_ZONE).min(self.top()) & !(page - 1);
        if end <= bottom {
            return 0;
        }
        // SAFETY: [bottom, end) is page-aligned, inside the usable part,
        // and the caller promised nothing there is needed. A failure would
        // only leave the pages resident.
        let _ = unsafe { self.memory.discard(self.guard, end - bottom) };
        end - bottom
    }
}

/// Stacks of finished coroutines, kept for the next `spawn` (mapping and
/// unmapping costs two syscalls and page faults each time). A stack that
/// stays here for a trim interval is given back to the kernel whole.
#[derive(Debug, Default)]
pub struct Pool {
    /// Each with its trim mark (see [`super::trim`]). `take` pops the
    /// last given back: the one most likely still resident.
    free: Vec<(Stack, u32)>,
}

/// Stacks kept at most; beyond that, finished stacks are unmapped.
const POOL_MAX: usize = 1024;

impl Pool {
    /// A stack from the pool, or a new one.
    pub fn take(&mut self) -> io::Result<Stack> {
        match self.free.pop() {
            Some((stack, _)) => Ok(stack),
            None => Stack::new(),
        }
    }

    /// Returns a stack whose coroutine has finished, with its trim mark.
    pub fn give_back(&mut self, stack: Stack, mark: u32) {
        if self.free.len() < POOL_MAX {
            self.free.push((stack, mark));
        }
    }

    /// A trim pass over the pool: gives back whole the stacks the pass's
    /// verdict says to. Returns whether some were pooled too recently, and
    /// wait for the next pass.
    pub fn trim(&mut self, verdict: impl Fn(u32) -> Verdict) -> bool {
        let mut later = false;
        for (stack, mark) in &mut self.free {
            match verdict(*mark) {
                Verdict::Trim => {
                    // SAFETY: a pooled stack belongs to no coroutine; an sp
                    // above its top covers all of it.
                    unsafe { stack.discard_below(stack.top() + RED_ZONE) };
                    *mark = trim::TRIMMED;
                }
                Verdict::Later => later = true,
                Verdict::Nothing => {}
            }
        }
        later
    }
}

thread_local! {
    /// The guard page of the stack this thread is running on now (0, 0
    /// when on its own stack), for the SIGSEGV handler.
    static GUARD: [Cell<usize>; 2] = const { [Cell::new(0), Cell::new(0)] };
}

/// Records which guard page the thread runs above: a coroutine calls it as
/// soon as it is resumed, the scheduler loop with (0, 0) when back on the
/// thread's own stack.
pub fn set_current_guard(range: (usize, usize)) {
    GUARD.with(|g| {
        g[0].set(range.0);
        g[1].set(range.1);
    });
}

/// Installs, once per process, the SIGSEGV handler that names coroutine
/// stack overflows, and gives the calling thread an alternate signal stack
/// to run it on.
pub fn install_overflow_handler() -> io::Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        let action = SigAction::new(
            SigHandler::SigAction(on_segv),
            SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
            SigSet::empty(),
        );
        // SAFETY: the handler only reads thread-locals with const
        // initialisers and the saved previous action, writes to stderr,
        // and aborts or hands over: all async-signal-safe.
        match unsafe { signal::sigaction(Signal::SIGSEGV, &action) } {
            Ok(previous) => {
                let _ = PREVIOUS.set(previous);
            }
            Err(errno) => result = Err(io::Error::from(errno)),
        }
    });
    result?;
    alternate_signal_stack()
}

thread_local! {
    static ALT_STACK: Cell<bool> = const { Cell::new(false) };
}

/// The SIGSEGV action before ours (std's, which names overflows of
/// ordinary thread stacks): every fault that is not a coroutine's goes to it.
static PREVIOUS: OnceLock<SigAction> = OnceLock::new();

/// A per-thread alternate stack for signal handlers (leaked: it must live
/// as long as the thread, and threads running schedulers are few).
fn alternate_signal_stack() -> io::Result<()> {
    if ALT_STACK.with(Cell::get) {
        return Ok(());
    }
    let memory = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
    sys::set_alternate_signal_stack(memory)?;
    ALT_STACK.with(|a| a.set(true));
    Ok(())
}

extern "C" fn on_segv(signo: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let address = unsafe { (*info).si_addr() } as usize;
    let (low, high) = GUARD.with(|g| (g[0].get(), g[1].get()));
    if low != 0 && (low..high).contains(&address) {
        let message = b"fatal: coroutine stack overflow (the guard page below a coroutine's stack was touched)\n";
        // write(2) and abort(3) are async-signal-safe; `stderr()` takes no
        // lock until it is written through, and it is not.
        let _ = nix::unistd::write(std::io::stderr(), message);
        std::process::abort();
    }
    // Any other fault: hand it to the handler we replaced (std's tells an
    // ordinary thread's stack overflow apart and prints its own message),
    // or, without one, restore the default action and return, so that the
    // faulting instruction runs again and the process dies as it would have.
    match PREVIOUS.get().map(SigAction::handler) {
        Some(SigHandler::SigAction(previous)) => previous(signo, info, context),
        Some(SigHandler::Handler(previous)) => previous(signo),
        _ => {
            // SAFETY: resetting SIGSEGV's action to the default.
            let _ = unsafe { signal::signal(Signal::SIGSEGV, SigHandler::SigDfl) };
        }
    }
}
