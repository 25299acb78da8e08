//! The stackless runtime's costs, to set beside the coroutine runtime's
//! (`cargo bench --bench coro`): `cargo bench --bench async_rt`.
//!
//! - `task yield`: one hand-off through the executor, the counterpart of
//!   `coroutine yield`: two tasks each awaiting `yield_now` in a loop,
//!   reported per yield. A yield wakes its own task (its key goes to the
//!   back of the run queue), returns `Pending` up through the task's
//!   `poll`, and the executor calls the next task's `poll`, which jumps to
//!   its `.await`. At a round's end the executor also turns the reactor.
//! - `task ping-pong`: one task wakes the *other* and parks, the other
//!   wakes it back: a wake through a kept `Waker`, and a poll, per
//!   hand-off — what the reactor does for a socket's task.
//! - `spawn+join`: a task boxed into the slab, polled to its end, and its
//!   output taken through its `JoinHandle`.
//! - memory per parked task: printed once, from VmRSS before and after
//!   parking 100,000 tasks.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use iolab::async_rt::{self, block_on, spawn, yield_now};

fn yield_hand_off(c: &mut Criterion) {
    c.bench_function("task yield (one hand-off, through the executor)", |b| {
        b.iter_custom(|iters| {
            block_on(async move {
                let partner = spawn(async move {
                    for _ in 0..iters {
                        yield_now().await;
                    }
                });
                // The first poll of the partner is not a hand-off to count.
                yield_now().await;
                let start = Instant::now();
                for _ in 0..iters {
                    yield_now().await;
                }
                let elapsed = start.elapsed();
                partner.await.unwrap();
                // Our yields and the partner's: two hand-offs per iteration.
                elapsed / 2
            })
        })
    });
}

/// Whose turn it is, and the waker of the task waiting for its own.
#[derive(Default)]
struct Baton {
    turn: Cell<u64>,
    parked: RefCell<Option<Waker>>,
}

impl Baton {
    /// Waits until the turn is `mine`.
    async fn wait_for(&self, mine: u64) {
        poll_fn(|cx| {
            if self.turn.get() == mine {
                return Poll::Ready(());
            }
            *self.parked.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Gives the turn away and wakes whoever waits for it.
    fn pass(&self, to: u64) {
        self.turn.set(to);
        if let Some(waker) = self.parked.borrow_mut().take() {
            waker.wake();
        }
    }
}

fn ping_pong(c: &mut Criterion) {
    c.bench_function("task ping-pong (wake the other task, park)", |b| {
        b.iter_custom(|iters| {
            block_on(async move {
                let baton = Rc::new(Baton::default());
                let other = baton.clone();
                let partner = spawn(async move {
                    for i in 0..iters {
                        other.wait_for(2 * i + 1).await;
                        other.pass(2 * i + 2);
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    baton.pass(2 * i + 1);
                    baton.wait_for(2 * i + 2).await;
                }
                let elapsed = start.elapsed();
                partner.await.unwrap();
                // Two hand-offs per iteration, as the thread ping-pong's.
                elapsed / 2
            })
        })
    });
}

fn spawn_join(c: &mut Criterion) {
    c.bench_function("task spawn+join (boxed into the slab)", |b| {
        b.iter_custom(|iters| {
            block_on(async move {
                let start = Instant::now();
                for i in 0..iters {
                    std::hint::black_box(spawn(async move { i }).await.unwrap());
                }
                start.elapsed()
            })
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

/// Not a timing: prints resident memory per parked task, beside the
/// coroutine benchmark's per parked coroutine. No `vm.max_map_count` to
/// mind: a task is a heap allocation, not a mapping.
fn parked_memory(_: &mut Criterion) {
    const N: usize = 100_000;
    let (before, after, elapsed) = block_on(async {
        let before = rss_kib();
        let start = Instant::now();
        let gate = Rc::new(Baton::default());
        let parked: Vec<_> = (0..N)
            .map(|_| {
                let gate = gate.clone();
                // Each parks in `wait_for`, keeping its waker in a box of
                // its own: the state a task needs to be woken again.
                let kept: Rc<RefCell<Option<Waker>>> = Rc::default();
                spawn(async move {
                    poll_fn(|cx| {
                        if gate.turn.get() == 1 {
                            return Poll::Ready(());
                        }
                        *kept.borrow_mut() = Some(cx.waker().clone());
                        Poll::Pending
                    })
                    .await
                })
            })
            .collect();
        yield_now().await; // every task is polled once and parks
        let after = rss_kib();
        assert_eq!(async_rt::tasks(), N);
        gate.turn.set(1);
        drop(parked); // detached; block_on drops them when it returns
        (before, after, start.elapsed())
    });
    println!(
        "parked {N} tasks in {elapsed:?}: VmRSS {before} KiB -> {after} KiB, {:.3} KiB per parked task",
        (after - before) as f64 / N as f64
    );
}

criterion_group!(
    benches,
    yield_hand_off,
    ping_pong,
    spawn_join,
    parked_memory
);
criterion_main!(benches);
