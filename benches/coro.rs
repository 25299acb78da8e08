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
//! - memory per parked coroutine: printed once, from VmRSS before and after
//!   parking 100,000 coroutines.

use std::mem::MaybeUninit;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use iolab::coro;
use iolab::coro::context::Context;
use iolab::coro::stack::Stack;

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

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
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
        let before = rss_kib();
        let start = Instant::now();
        let gate = coro::Event::new();
        let parked: Vec<_> = (0..n)
            .map(|_| {
                let gate = gate.clone();
                coro::spawn(move || gate.wait())
            })
            .collect();
        coro::yield_now(); // every coroutine runs once and parks
        let after = rss_kib();
        gate.set();
        for p in parked {
            p.join().unwrap();
        }
        (before, after, start.elapsed())
    })
    .unwrap()
    .unwrap();
    println!(
        "parked {n} coroutines in {elapsed:?}: VmRSS {before} KiB -> {after} KiB, {:.2} KiB per parked coroutine",
        (after - before) as f64 / n as f64
    );
}

criterion_group!(
    benches,
    switch,
    context_switch,
    spawn_join,
    thread_ping_pong,
    parked_memory
);
criterion_main!(benches);
