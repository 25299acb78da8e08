//! `--tickets MODE`: a demo-only ticket desk, to make races visible.
//!
//! With `--tickets`, a request line that is `ticket` (in any case: the
//! check is made on the upper-cased answer) is answered
//! `TICKET n`, where `n` is the next number from one counter that every
//! connection of the server shares; every other line is answered as the
//! UPPER protocol says. Without the option nothing changes (the
//! conformance suite never gives it). `lab demo race` sells tickets to
//! many clients at once and counts the numbers sold twice.
//!
//! "The next number" is a read, an increment and a write. The modes say
//! how that is done and where the counter lives:
//!
//! | mode | the sale | the counter |
//! | --- | --- | --- |
//! | `racy` | read; some CPU work ([`WINDOW`]); write | process memory |
//! | `yielding` | read; let the others run; write | process memory |
//! | `locked` | a `Mutex` held around `racy`'s read, work and write | process memory |
//! | `atomic` | one `fetch_add` | process memory |
//! | `shared` | one `fetch_add` | a `MAP_SHARED` page, mapped before any fork |
//!
//! The window between the read and the write in `racy` is real work (a
//! spin of [`WINDOW`]), standing in for what a server does between reading
//! a value and writing it back (a check, a log line, a database round
//! trip would be far longer). It makes the race observable on a 2-core
//! machine within a few thousand sales; without it the race is still
//! there, only rarer. `yielding` puts a yield in the window instead: on a
//! thread, `sched_yield`; on a coroutine (the `coro` model installs its
//! own with [`Tickets::pausing_with`]), a switch to the other runnable
//! coroutines — what gevent's monkey-patched `time.sleep` or any IO call
//! does inside a critical section.
//!
//! The counter is an `AtomicU64` even in the racy modes: their loads and
//! stores are separate, so the race is in the logic (two sales read the
//! same number), not a data race in the Rust sense, which would be
//! undefined behaviour rather than a lesson.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::sys::SharedMem;

/// How a sale reads and advances the counter (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TicketMode {
    /// Read, work, write: loses updates when two sales overlap.
    Racy,
    /// Read, yield, write: loses updates wherever a yield lets another sale run.
    Yielding,
    /// `racy` under a `Mutex`: correct between threads of one process.
    Locked,
    /// One atomic `fetch_add` on a counter in process memory.
    Atomic,
    /// One atomic `fetch_add` on a counter in a `MAP_SHARED` page.
    Shared,
}

impl TicketMode {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TicketMode::Racy => "racy",
            TicketMode::Yielding => "yielding",
            TicketMode::Locked => "locked",
            TicketMode::Atomic => "atomic",
            TicketMode::Shared => "shared",
        }
    }
}

/// The CPU work between the read and the write in `racy` and `locked`.
pub const WINDOW: Duration = Duration::from_micros(20);

/// The request line that buys a ticket (the LF not included).
pub const REQUEST: &[u8] = b"ticket";

/// The counter in process memory: a plain global, copied into every
/// child by `fork`, so each process counts on its own copy.
static PRIVATE: AtomicU64 = AtomicU64::new(0);

/// The lock of `locked`: a process-local `Mutex`, which is all threads need.
static LOCK: Mutex<()> = Mutex::new(());

/// The ticket desk: a mode, the counter it sells from, and what a pause is.
#[derive(Clone, Copy, Debug)]
pub struct Tickets {
    mode: TicketMode,
    counter: &'static AtomicU64,
    pause: fn(),
}

impl Tickets {
    /// A desk selling in `mode`. For `shared` this maps the shared page,
    /// so it must run before the model forks (the `lab` binary parses
    /// `--tickets` before it starts any model).
    pub fn new(mode: TicketMode) -> io::Result<Tickets> {
        let counter: &'static AtomicU64 = if mode == TicketMode::Shared {
            // SAFETY: all-zero bytes are a valid AtomicU64 (0), and an
            // atomic in a shared page is what processes may use together.
            let page = unsafe { SharedMem::<AtomicU64>::zeroed()? };
            // The page lives as long as the process, like a static.
            Box::leak(Box::new(page)).get()
        } else {
            &PRIVATE
        };
        Ok(Tickets {
            mode,
            counter,
            pause: std::thread::yield_now,
        })
    }

    /// Parses `--tickets MODE` into a desk (mapping `shared`'s page).
    pub fn parse(text: &str) -> Result<Tickets, String> {
        let mode = TicketMode::from_str(text, true).map_err(|_| {
            format!("`{text}` is not a ticket mode (racy, yielding, locked, atomic, shared)")
        })?;
        Tickets::new(mode).map_err(|e| format!("cannot map the shared counter: {e}"))
    }

    /// The same desk with another pause in `yielding`'s window: a
    /// coroutine runtime gives its own yield, so that the pause switches
    /// coroutines rather than threads.
    pub fn pausing_with(self, pause: fn()) -> Tickets {
        Tickets { pause, ..self }
    }

    /// The mode it sells in.
    pub fn mode(&self) -> TicketMode {
        self.mode
    }

    /// Sells the next ticket: its number, counting from 1.
    pub fn next(&self) -> u64 {
        let counter = self.counter;
        match self.mode {
            TicketMode::Atomic | TicketMode::Shared => counter.fetch_add(1, Ordering::SeqCst) + 1,
            TicketMode::Racy => {
                let seen = counter.load(Ordering::SeqCst);
                spin(WINDOW);
                counter.store(seen + 1, Ordering::SeqCst);
                seen + 1
            }
            TicketMode::Yielding => {
                let seen = counter.load(Ordering::SeqCst);
                (self.pause)();
                counter.store(seen + 1, Ordering::SeqCst);
                seen + 1
            }
            TicketMode::Locked => {
                // A poisoned lock still guards the counter: a panic in
                // another sale left it consistent (a store is one step).
                let _held = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let seen = counter.load(Ordering::SeqCst);
                spin(WINDOW);
                counter.store(seen + 1, Ordering::SeqCst);
                seen + 1
            }
        }
    }

    /// Rewrites the answers in `out[start..]` (already upper-cased): each
    /// `TICKET` line becomes `TICKET n`, with a ticket sold for it.
    pub fn stamp(&self, out: &mut Vec<u8>, start: usize) {
        let answers = out.split_off(start);
        for line in answers.split_inclusive(|&b| b == b'\n') {
            if line.strip_suffix(b"\n") == Some(&b"TICKET"[..]) {
                out.extend_from_slice(format!("TICKET {}\n", self.next()).as_bytes());
            } else {
                out.extend_from_slice(line);
            }
        }
    }
}

/// Burns `how_long` of CPU on this thread, yielding to nobody.
pub fn spin(how_long: Duration) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_numbers_only_exact_ticket_lines() {
        let desk = Tickets::new(TicketMode::Shared).unwrap();
        let mut out = b"KEEP\nTICKET\nTICKETS\nTICKET\nTAIL".to_vec();
        desk.stamp(&mut out, 5);
        assert_eq!(out, b"KEEP\nTICKET 1\nTICKETS\nTICKET 2\nTAIL");
    }

    #[test]
    fn every_mode_counts_up_on_one_thread() {
        // Alone on a thread, even the racy modes lose nothing.
        for mode in [TicketMode::Racy, TicketMode::Yielding, TicketMode::Locked] {
            let desk = Tickets::new(mode).unwrap();
            let first = desk.next();
            assert_eq!(desk.next(), first + 1, "{mode:?}");
        }
    }
}
