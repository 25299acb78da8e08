//! The executor's promises, each checked on its own: wakes, re-queues,
//! detaching, cancellation, panics, deadlocks, timers, sockets.

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn, Future};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::net::TcpStream;
use super::{block_on, reactor, sleep, spawn, tasks, yield_now};

/// Every wait in these tests gives up after this long.
const PATIENCE: Duration = Duration::from_secs(5);

/// Awaits until `done` says so, yielding between looks; fails the test
/// after [`PATIENCE`].
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "still waiting for {what}");
        sleep(Duration::from_millis(1)).await;
    }
}

/// Pending for ever; counts its polls and keeps its last waker.
#[derive(Default)]
struct Parked {
    polls: Rc<Cell<u32>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Future for Parked {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.set(self.polls.get() + 1);
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Sets its flag when dropped.
struct Dropped(Rc<Cell<bool>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn a_waker_woken_twice_polls_its_task_once() {
    block_on(async {
        let parked = Parked::default();
        let (polls, waker) = (parked.polls.clone(), parked.waker.clone());
        let task = spawn(parked);
        yield_now().await; // the task is polled once, and parks
        assert_eq!(polls.get(), 1);
        let waker = waker.borrow().clone().expect("the task left its waker");
        let kept = waker.clone();
        waker.wake_by_ref();
        waker.wake_by_ref();
        kept.wake(); // the consuming `wake`, through a clone

        yield_now().await;
        yield_now().await;
        assert_eq!(polls.get(), 2, "three wakes, one poll");
        task.cancel();
    });
}

#[test]
fn a_task_woken_inside_its_own_poll_is_queued_again() {
    block_on(async {
        let polls = Rc::new(Cell::new(0));
        let counted = polls.clone();
        let task = spawn(poll_fn(move |cx| {
            counted.set(counted.get() + 1);
            if counted.get() == 1 {
                cx.waker().wake_by_ref(); // while it is being polled
                Poll::Pending
            } else {
                Poll::Ready(7)
            }
        }));
        assert_eq!(task.await.expect("no panic"), 7);
        assert_eq!(polls.get(), 2);
    });
}

#[test]
fn a_dropped_join_handle_does_not_cancel_its_task() {
    block_on(async {
        let done = Rc::new(Cell::new(false));
        let flag = done.clone();
        drop(spawn(async move {
            sleep(Duration::from_millis(5)).await;
            flag.set(true);
        }));
        until("the detached task", || done.get()).await;
        assert_eq!(tasks(), 0, "finished, and freed");
    });
}

#[test]
fn a_cancelled_task_drops_its_future_and_deregisters_its_socket() {
    let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
    ours.set_nonblocking(true).expect("non-blocking");
    let dropped = Rc::new(Cell::new(false));
    let guard = Dropped(dropped.clone());
    block_on(async {
        let task = spawn(async move {
            let _guard = guard;
            let mut stream = TcpStream::new(OwnedFd::from(ours)).expect("registers");
            stream.set_read_timeout(Some(Duration::from_secs(60)));
            let mut buf = [0u8; 16];
            stream.read(&mut buf).await // nothing comes: it parks
        });
        yield_now().await;
        assert_eq!(reactor::registered(), 1, "the task waits on its socket");
        assert_eq!(reactor::timers(), 1, "with its read timeout filed");
        assert!(!dropped.get());
        task.cancel();
        assert!(dropped.get(), "its future was dropped");
        assert_eq!(reactor::registered(), 0, "its socket was deregistered");
        assert_eq!(reactor::timers(), 0, "its deadline was withdrawn");
        assert_eq!(tasks(), 0);
    });
    theirs.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let n = theirs
        .read(&mut [0u8; 1])
        .expect("end of stream, not a timeout");
    assert_eq!(n, 0, "the socket was closed");
}

#[test]
fn block_on_cancels_the_tasks_left_when_it_returns() {
    let dropped = Rc::new(Cell::new(false));
    let guard = Dropped(dropped.clone());
    let answer = block_on(async move {
        spawn(async move {
            let _guard = guard;
            pending::<()>().await;
        });
        yield_now().await;
        42
    });
    assert_eq!(answer, 42);
    assert!(dropped.get(), "the pending task was dropped, not leaked");
}

#[test]
fn a_panic_ends_its_task_and_no_other() {
    block_on(async {
        let other = spawn(async {
            yield_now().await;
            "still here"
        });
        let failed = spawn(async {
            yield_now().await;
            panic!("a task panics");
        });
        assert!(failed.await.is_err(), "the panic is the task's result");
        assert_eq!(other.await.expect("no panic"), "still here");
    });
}

#[test]
#[should_panic(expected = "deadlock")]
fn a_future_nothing_can_wake_is_a_deadlock() {
    block_on(pending::<()>());
}

#[test]
fn a_task_that_only_yields_cannot_starve_timers() {
    block_on(async {
        let stop = Rc::new(Cell::new(false));
        let stopped = stop.clone();
        let spinner = spawn(async move {
            while !stopped.get() {
                yield_now().await;
            }
        });
        sleep(Duration::from_millis(5)).await;
        stop.set(true);
        spinner.await.expect("no panic");
    });
}

#[test]
fn a_waker_woken_on_another_thread_panics_there() {
    let waker = block_on(async {
        let task = spawn(Parked::default());
        yield_now().await;
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        task.cancel();
        waker
    });
    let elsewhere = std::thread::spawn(move || waker.wake());
    assert!(elsewhere.join().is_err(), "the wrong thread was not caught");
}

#[test]
fn a_read_times_out_and_withdraws_its_deadline() {
    let (ours, _theirs) = UnixStream::pair().expect("socketpair");
    ours.set_nonblocking(true).expect("non-blocking");
    block_on(async {
        let mut stream = TcpStream::new(OwnedFd::from(ours)).expect("registers");
        stream.set_read_timeout(Some(Duration::from_millis(20)));
        let started = Instant::now();
        let err = stream
            .read(&mut [0u8; 8])
            .await
            .expect_err("nothing was sent");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(reactor::timers(), 0);
    });
}

#[test]
fn a_socket_reads_its_last_bytes_and_then_the_end_of_stream() {
    let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
    ours.set_nonblocking(true).expect("non-blocking");
    block_on(async {
        let mut stream = TcpStream::new(OwnedFd::from(ours)).expect("registers");
        stream.set_read_timeout(Some(PATIENCE));
        let reader = spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("read failed: {e}"),
                }
            }
        });
        yield_now().await; // the reader parks on an empty socket
        std::io::Write::write_all(&mut theirs, b"last words").expect("write");
        theirs
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        // Data and FIN may come as one edge: the short read that takes the
        // data must not make the reader wait for another.
        assert_eq!(reader.await.expect("no panic"), b"last words");
    });
}

#[test]
fn writes_park_when_the_peer_does_not_read_and_resume_when_it_does() {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    ours.set_nonblocking(true).expect("non-blocking");
    block_on(async {
        let mut stream = TcpStream::new(OwnedFd::from(ours)).expect("registers");
        stream.set_write_timeout(Some(PATIENCE));
        const TOTAL: usize = 4 << 20; // far more than the socket buffers hold
        let writer = spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < TOTAL {
                sent += stream
                    .write(&chunk[..chunk.len().min(TOTAL - sent)])
                    .await?;
            }
            std::io::Result::Ok(sent)
        });
        let reader = std::thread::spawn(move || {
            let mut theirs = theirs;
            let mut got = 0;
            let mut buf = vec![0u8; 64 * 1024];
            while got < TOTAL {
                got += theirs.read(&mut buf).expect("read");
            }
            got
        });
        let sent = writer.await.expect("no panic").expect("all written");
        assert_eq!(sent, TOTAL);
        assert_eq!(reader.join().expect("reader"), TOTAL);
    });
}
