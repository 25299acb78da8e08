//! Sleeping without blocking the thread: [`Sleep`], a future that is
//! ready once its deadline has passed.
//!
//! It is the smallest hand-written future in the runtime, and shows the
//! whole contract: `poll` checks the condition; if it does not hold, it
//! arranges to be woken when it might (files its deadline with the
//! reactor, with the waker it was polled with) and says `Pending`; polled
//! again — by the timer, or for another reason — it checks again.
//! Dropped before its deadline, it withdraws the deadline: a cancelled
//! wait leaves nothing behind.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::reactor;
use crate::server::slab::Key;

/// A future that is ready at `deadline`. Unpin: it holds no reference
/// into itself, only a deadline and the key of its filed entry.
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    /// Its entry in the reactor's timers, once polled.
    filed: Option<Key>,
}

/// Sleeps for `duration`: other tasks run meanwhile.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Sleeps until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        filed: None,
    }
}

impl Sleep {
    /// When it is ready.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            if let Some(key) = this.filed.take() {
                reactor::remove_timer(this.deadline, key);
            }
            return Poll::Ready(());
        }
        // Polled again before its time (woken for another reason): the
        // entry stays, with this poll's waker, unless it has fired (the
        // clock and the reactor's `now` may disagree by a hair).
        match this.filed {
            Some(key) if reactor::rewake_timer(key, cx.waker()) => {}
            _ => this.filed = Some(reactor::add_timer(this.deadline, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.filed.take() {
            reactor::remove_timer(self.deadline, key);
        }
    }
}
