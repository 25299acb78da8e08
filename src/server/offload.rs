//! The offload pool: an event loop hands each request's slow part to a
//! few threads and hears back through an eventfd.
//!
//! An event loop must never block: a `--block-us` sleep or a `--work-us`
//! burn inside it stalls every connection of the loop (`lab demo
//! head-of-line`). Node.js and libuv keep the loop but move such calls
//! (file IO, DNS, compression) to a small thread pool; the loop goes on
//! serving the others, and learns that a call is done from a descriptor it
//! watches like any socket (Bendersky's "Concurrent servers", part 4):
//!
//! ```text
//! event loop                           pool thread
//! recv "a\n" → frame: "A\n" (owed)
//! submit(token, job) ──── queue ────► job.run(): the slow part
//! epoll_wait (other clients served)   push (token, "A\n") on `done`
//!                  ◄───── eventfd ──── write(eventfd, 1)
//! eventfd readable: read it (count → 0)
//! take `done`: each answer back to its connection, send
//! ```
//!
//! The framing stays on the loop (it is cheap and keeps the connection's
//! state in one place); the pool only pays the [`Cost`]. A connection has
//! at most one job out at a time and reads nothing meanwhile, so its
//! answers come back in order and a client cannot queue unbounded work
//! (the connection's own backpressure).
//!
//! The eventfd is a counter: many completions before the loop looks make
//! it readable once, and one `read` takes them all, so a burst of
//! completions costs one wakeup.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::server::protocol::Cost;
use crate::sys;

/// A request's slow part: the answers are framed, the cost is still owed.
#[derive(Debug)]
pub struct Job {
    /// The answers, to be sent once the cost is paid.
    pub answers: Vec<u8>,
    /// How many lines they answer.
    pub lines: u64,
    /// What each line costs.
    pub cost: Cost,
}

impl Job {
    /// Pays the cost on this thread and gives the answers back.
    pub fn run(self) -> Vec<u8> {
        self.cost.spend(self.lines);
        self.answers
    }
}

/// What the loop and the pool threads share.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    more: Condvar,
    /// Finished jobs: the tag they were submitted with, and the answers.
    done: Mutex<Vec<(u64, Vec<u8>)>>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<(u64, Job)>,
    closed: bool,
}

/// A lock that a panicking pool thread poisoned still guards a consistent
/// queue (every change to it is one push or pop).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pool of threads running [`Job`]s for one event loop.
pub struct Offload {
    shared: Arc<Shared>,
    wake: Arc<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
}

impl Offload {
    /// Starts `threads` pool threads and the eventfd they wake the loop by.
    pub fn start(threads: usize) -> io::Result<Offload> {
        let shared = Arc::new(Shared::default());
        let wake = Arc::new(sys::eventfd()?);
        let mut pool = Offload {
            shared,
            wake,
            threads: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let (shared, wake) = (pool.shared.clone(), pool.wake.clone());
            let thread = std::thread::Builder::new()
                .name(format!("offload-{i}"))
                .spawn(move || work(&shared, &wake))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// The descriptor to watch: readable when jobs are done.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Queues `job`; its answers come back from [`completed`](Self::completed)
    /// with `tag`.
    pub fn submit(&self, tag: u64, job: Job) {
        lock(&self.shared.queue).jobs.push_back((tag, job));
        self.shared.more.notify_one();
    }

    /// The jobs finished since the last call: resets the eventfd, then takes
    /// them all. (Reset first: a job finished in between makes the eventfd
    /// readable again, and is at worst taken now and found absent next time.)
    pub fn completed(&self) -> io::Result<Vec<(u64, Vec<u8>)>> {
        sys::eventfd_take(self.wake.as_fd())?;
        Ok(std::mem::take(&mut *lock(&self.shared.done)))
    }
}

impl Drop for Offload {
    /// Closes the queue and waits for the threads: each finishes its job
    /// and leaves the rest (their connections are gone with the loop).
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.more.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A pool thread: take a job, run it, hand the answers back, wake the loop.
fn work(shared: &Shared, wake: &OwnedFd) {
    loop {
        let (tag, job) = {
            let mut queue = lock(&shared.queue);
            loop {
                if queue.closed {
                    return;
                }
                if let Some(next) = queue.jobs.pop_front() {
                    break next;
                }
                queue = shared
                    .more
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let answers = job.run();
        lock(&shared.done).push((tag, answers));
        sys::signal_eventfd(wake.as_raw_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn jobs_come_back_through_the_eventfd() {
        let pool = Offload::start(2).unwrap();
        let cost = Cost {
            work_per_line: Duration::ZERO,
            block_per_line: Duration::from_millis(1),
        };
        for tag in 0..4 {
            let answers = format!("ANSWER {tag}\n").into_bytes();
            pool.submit(
                tag,
                Job {
                    answers,
                    lines: 1,
                    cost,
                },
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut back = Vec::new();
        while back.len() < 4 && Instant::now() < deadline {
            back.extend(pool.completed().unwrap());
            std::thread::sleep(Duration::from_millis(1));
        }
        back.sort();
        let tags: Vec<u64> = back.iter().map(|(tag, _)| *tag).collect();
        assert_eq!(tags, [0, 1, 2, 3]);
        assert_eq!(back[2].1, b"ANSWER 2\n");
    }
}
