//! The coroutine runtime's costs, next to the OS thread equivalent, in one
//! run: `cargo bench --bench coro`.
//!
//! - `coroutine switch`: the switch alone, no scheduler: a resume into a
//!   coroutine and its suspend back (`Context::resume` and
//!   `Context::suspend`), reported per pair, as corosensei's benchmark does.
//! - `coroutine yield`: one hand-off through the real scheduler: two
//!   coroutines yielding to each other, reported per yield. A yield is a
//!   suspend into the scheduler loop and its resume of the other
//!   coroutine; at a round's end the loop also looks at timers and
//!   sockets. The difference to the switch is the scheduler's bookkeeping.
//! - `spawn+join`: a coroutine started on a pooled stack and joined.
//! - `thread ping-pong`: two OS threads handing a token back and forth
//!   through a mutex and condition variable — one hand-off, the thread
//!   equivalent of a switch.
//! - `stack page fault after a trim`: what a trimmed coroutine pays per
//!   page when it goes deep again (see `coro::trim`): a stack's pages
//!   given back with `madvise(MADV_DONTNEED)`, then touched again, timed
//!   per page.
//! - `stack trim`: the `madvise` itself, of a 64 KiB stack with every page
//!   resident, and with none (a handler that parks in its top page).
//! - memory per parked coroutine: printed once, from PSS before and after
//!   parking 100,000 coroutines; and for 10,000 that went 32 KiB deep
//!   before parking, PSS before and after their stacks were trimmed.

use std::mem::MaybeUninit;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use iolab::coro;
use iolab::coro::context::Context;
use iolab::coro::stack::{Stack, STACK_SIZE};
use iolab::coro::trim::{RED_ZONE, TRIM_AFTER};

fn switch(c: &mut Criterion) {
    c.bench_function(
        "coroutine yield (one hand-off, through the scheduler)",
        |b| {
            b.iter_custom(|iters| {
                coro::run(move || {
                    let partner = coro::spawn(move || {
                        for _ in 0..iters {
                            coro::yield_now();
                        }
                    });
                    let start = Instant::now();
                    for _ in 0..iters {
                        coro::yield_now();
                    }
                    let elapsed = start.elapsed();
                    partner.join().unwrap();
                    // Each iteration is two yields, ours and the partner's: two
                    // hand-offs, comparable with the thread ping-pong's.
                    elapsed / 2
                })
                .unwrap()
                .unwrap()
            })
        },
    );
}

/// The coroutine of the raw benchmark: suspends back for ever. `data` is
/// its own `Context`.
unsafe extern "C" fn bounce(data: usize) -> ! {
    let context = data as *const Context;
    loop {
        // SAFETY: the `Context` of `context_switch`, alive while it resumes
        // us, and the one we were resumed through.
        unsafe { Context::suspend(context) };
    }
}

fn context_switch(c: &mut Criterion) {
    c.bench_function("coroutine switch (resume + suspend, no scheduler)", |b| {
        let stack = Stack::new().unwrap();
        // The coroutine needs its own context's address: allocate, then fill.
        let context = Box::into_raw(Box::new(MaybeUninit::<Context>::uninit())).cast::<Context>();
        // SAFETY: `context` is a live allocation until the end of this
        // closure; the stack outlives every resume below; the coroutine,
        // left suspended at the end, owns nothing that needs dropping.
        unsafe { context.write(Context::fresh(stack.top(), bounce, context as usize)) };
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                // SAFETY: the coroutine is fresh or suspended in `bounce`;
                // its context and stack are alive.
                unsafe { Context::resume(context) };
            }
            // One iteration is a pair: the resume and the suspend back.
            start.elapsed()
        });
        // SAFETY: made by `Box::into_raw` above and initialised; nothing
        // resumes the coroutine any more.
        drop(unsafe { Box::from_raw(context) });
    });
}

fn spawn_join(c: &mut Criterion) {
    c.bench_function("coroutine spawn+join (pooled stack)", |b| {
        b.iter_custom(|iters| {
            coro::run(move || {
                let start = Instant::now();
                for i in 0..iters {
                    std::hint::black_box(coro::spawn(move || i).join().unwrap());
                }
                start.elapsed()
            })
            .unwrap()
            .unwrap()
        })
    });
}

fn thread_ping_pong(c: &mut Criterion) {
    c.bench_function("OS thread ping-pong (one hand-off)", |b| {
        b.iter_custom(|iters| {
            let token = Arc::new((Mutex::new(0u64), Condvar::new()));
            let other = token.clone();
            let partner = std::thread::spawn(move || {
                let (lock, cv) = &*other;
                let mut turn = lock.lock().unwrap();
                for i in 0..iters {
                    while *turn != 2 * i + 1 {
                        turn = cv.wait(turn).unwrap();
                    }
                    *turn += 1;
                    cv.notify_one();
                }
            });
            let (lock, cv) = &*token;
            let start = Instant::now();
            let mut turn = lock.lock().unwrap();
            for i in 0..iters {
                *turn = 2 * i + 1;
                cv.notify_one();
                while *turn != 2 * i + 2 {
                    turn = cv.wait(turn).unwrap();
                }
            }
            let elapsed = start.elapsed();
            drop(turn);
            partner.join().unwrap();
            // Two hand-offs per iteration.
            elapsed / 2
        })
    });
}

/// Writes one word into each of `stack`'s pages, from the top down.
fn touch_every_page(stack: &Stack) {
    let page = iolab::sys::page_size();
    for k in 0..STACK_SIZE / page {
        let word = (stack.top() - k * page - 8) as *mut u64;
        // SAFETY: the word lies in the stack's usable part (k pages below
        // its top, never in the guard page), which no coroutine uses.
        unsafe { word.write_volatile(k as u64) };
    }
}

/// Gives back every page of `stack`.
fn trim_whole(stack: &Stack) {
    // SAFETY: no coroutine uses this stack; an sp above its top covers it
    // all.
    unsafe { stack.discard_below(stack.top() + RED_ZONE) };
}

fn trim_costs(c: &mut Criterion) {
    let pages = (STACK_SIZE / iolab::sys::page_size()) as u32;
    let stack = Stack::new().unwrap();
    c.bench_function("stack page fault after a trim (per page)", |b| {
        b.iter_custom(|iters| {
            let mut faulting = Duration::ZERO;
            for _ in 0..iters {
                trim_whole(&stack);
                let start = Instant::now();
                touch_every_page(&stack);
                faulting += start.elapsed();
            }
            faulting / pages
        })
    });
    c.bench_function("stack page touched again, not trimmed (per page)", |b| {
        touch_every_page(&stack);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                touch_every_page(&stack);
            }
            start.elapsed() / pages
        })
    });
    c.bench_function("stack trim: madvise, every page resident", |b| {
        b.iter_custom(|iters| {
            let mut trimming = Duration::ZERO;
            for _ in 0..iters {
                touch_every_page(&stack);
                let start = Instant::now();
                trim_whole(&stack);
                trimming += start.elapsed();
            }
            trimming
        })
    });
    c.bench_function("stack trim: madvise, nothing resident", |b| {
        trim_whole(&stack);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                trim_whole(&stack);
            }
            start.elapsed()
        })
    });
}

/// Proportional set size of this process, in KiB: its resident pages,
/// each shared one divided among its sharers.
fn pss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Recurses through `bytes` of stack, writing all of it.
#[inline(never)]
fn go_deep(bytes: usize) -> u64 {
    let pad = std::hint::black_box([bytes as u8; 1024]);
    let below = if bytes > 1024 {
        go_deep(bytes - 1024)
    } else {
        0
    };
    below + u64::from(pad[bytes % 1024])
}

/// How many coroutine stacks this machine can map: each stack and its guard
/// page are two mappings, and `vm.max_map_count` caps a process's total.
fn stacks_that_fit() -> usize {
    let max_maps: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(65_530);
    max_maps.saturating_sub(2_000) / 2
}

/// Not a timing: prints resident memory per parked coroutine (criterion
/// runs it with the group so that one `cargo bench` shows every figure).
fn parked_memory(_: &mut Criterion) {
    let fit = stacks_that_fit();
    let n = 100_000.min(fit);
    if n < 100_000 {
        println!(
            "vm.max_map_count allows about {fit} coroutine stacks here; measuring {n}, not 100,000 \
             (sysctl -w vm.max_map_count=262144 to measure 100,000)"
        );
    }
    let (before, after, elapsed) = coro::run(move || {
        let before = pss_kib();
        let start = Instant::now();
        let gate = coro::Event::new();
        let parked: Vec<_> = (0..n)
            .map(|_| {
                let gate = gate.clone();
                coro::spawn(move || gate.wait())
            })
            .collect();
        coro::yield_now(); // every coroutine runs once and parks
        let after = pss_kib();
        gate.set();
        for p in parked {
            p.join().unwrap();
        }
        (before, after, start.elapsed())
    })
    .unwrap()
    .unwrap();
    println!(
        "parked {n} coroutines in {elapsed:?}: PSS {before} KiB -> {after} KiB, {:.2} KiB per parked coroutine",
        (after - before) as f64 / n as f64
    );
    parked_deep_memory(10_000.min(fit));
}

/// PSS per parked coroutine that went 32 KiB deep before it parked,
/// before and after the scheduler trimmed its stack.
fn parked_deep_memory(n: usize) {
    const DEPTH: usize = 32 * 1024;
    let (before, deep, trimmed, waited) = coro::run(move || {
        let before = pss_kib();
        let gate = coro::Event::new();
        let parked: Vec<_> = (0..n)
            .map(|_| {
                let gate = gate.clone();
                coro::spawn(move || {
                    std::hint::black_box(go_deep(DEPTH));
                    gate.wait();
                })
            })
            .collect();
        coro::yield_now(); // every coroutine goes deep, comes back, parks
        let deep = pss_kib();
        // The trim comes between one and two intervals after the park.
        let start = Instant::now();
        let mut trimmed = deep;
        while start.elapsed() < 3 * TRIM_AFTER && trimmed > before + (deep - before) / 2 {
            coro::sleep(Duration::from_millis(100));
            trimmed = pss_kib();
        }
        let waited = start.elapsed();
        gate.set();
        for p in parked {
            p.join().unwrap();
        }
        (before, deep, trimmed, waited)
    })
    .unwrap()
    .unwrap();
    let per = |kib: u64| (kib - before) as f64 / n as f64;
    println!(
        "parked {n} coroutines that went {} KiB deep: PSS {before} KiB -> {deep} KiB ({:.2} KiB each); \
         trimmed after {waited:.1?}: {trimmed} KiB ({:.2} KiB each)",
        DEPTH / 1024,
        per(deep),
        per(trimmed)
    );
}

criterion_group!(
    benches,
    switch,
    context_switch,
    spawn_join,
    thread_ping_pong,
    trim_costs,
    parked_memory
);
criterion_main!(benches);
