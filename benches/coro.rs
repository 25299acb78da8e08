//! The coroutine runtime's costs, next to the OS thread equivalent, in one
//! run: `cargo bench --bench coro`.
//!
//! - `switch`: one coroutine switch (two coroutines yielding to each other;
//!   each yield is a suspend into the scheduler and a resume out of it).
//! - `spawn+join`: a coroutine started on a pooled stack and joined.
//! - `thread ping-pong`: two OS threads handing a token back and forth
//!   through a mutex and condition variable — one hand-off, the thread
//!   equivalent of a switch.
//! - memory per parked coroutine: printed once, from VmRSS before and after
//!   parking 100,000 coroutines.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use iolab::coro;

fn switch(c: &mut Criterion) {
    c.bench_function("coroutine switch", |b| {
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
                // Each iteration is two switches out and two back (ours and
                // the partner's yield): report per switch.
                elapsed / 4
            })
            .unwrap()
            .unwrap()
        })
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

fn parked_memory(c: &mut Criterion) {
    const N: usize = 100_000;
    let (before, after, elapsed) = coro::run(|| {
        let before = rss_kib();
        let start = Instant::now();
        let gate = coro::Event::new();
        let parked: Vec<_> = (0..N)
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
        "parked {N} coroutines in {elapsed:?}: VmRSS {before} KiB -> {after} KiB, {:.2} KiB per parked coroutine",
        (after - before) as f64 / N as f64
    );
    // A trivial timing so criterion lists the measurement with the others.
    c.bench_function("park+wake 100k coroutines (memory printed above)", |b| {
        b.iter_custom(|iters| {
            Duration::from_secs_f64(elapsed.as_secs_f64() / N as f64) * iters as u32
        })
    });
}

criterion_group!(benches, switch, spawn_join, thread_ping_pong, parked_memory);
criterion_main!(benches);
