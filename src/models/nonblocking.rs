//! # `nonblocking` — one thread, no waiting, no multiplexer
//!
//! The blocking family needs a thread (or process) per client because each
//! one sleeps inside `read`. Put every socket in non-blocking mode
//! (`O_NONBLOCK`) and a call that would sleep fails at once with `EAGAIN`
//! instead. Now one thread can serve everyone: sweep over the listener and
//! every connection, try each, skip those that say `EAGAIN`, repeat.
//!
//! That works — this model passes every conformance test — and it is the
//! *wrong* way to wait: the thread never sleeps. With nothing to do it
//! still sweeps, hundreds of thousands of failing syscalls a second, and
//! one core reads busy in `top` (run with `--stats` and watch the syscalls
//! per second). Stevens calls it "polling" and warns against it; every
//! later model exists to let the kernel say *which* sockets are ready, so
//! the thread can sleep.
//!
//! ## One request, step by step
//!
//! ```text
//! loop (never sleeps)                                        client
//! accept4(listener) → EAGAIN
//! recv(c1) → EAGAIN   recv(c2) → EAGAIN   ...                "hi\n"
//! accept4(listener) → EAGAIN
//! recv(c1) → "hi\n"
//! send(c1, "HI\n")
//! recv(c2) → EAGAIN   ...
//! ```
//!
//! ## `--spin-sleep-us N`
//!
//! Sleeping N µs after each sweep trades latency for CPU: a request that
//! arrives just after a sweep waits up to N µs, and the idle loop wakes
//! 1,000,000 / N times a second instead of spinning. No N is right for both
//! an idle server and a busy one; that is the point.
//!
//! ## Costs
//!
//! - **Syscalls per request:** unbounded: one `accept` per sweep and one
//!   `recv` per connection per sweep, whether anything arrived or not.
//! - **CPU while idle:** one core, all the time (with no sleep).
//! - **At 10,000 clients:** each sweep is 10,001 syscalls, so a request
//!   waits on average half a sweep (milliseconds) before it is even seen.
//!
//! Next, `select` lets the thread sleep until something is ready.

use std::io;
use std::net::TcpListener;

use crate::server::config::Config;
use crate::server::driver::{Driver, Ready, Token, Trigger};
use crate::server::listener::Acceptor;
use crate::sys::Blocking;

/// Serves every connection from one thread by trying them all, forever.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let acceptor = Acceptor::new(listener, Blocking::No, config.max_conns)?;
    let mut driver = Driver::new(acceptor, config, Trigger::Level);
    let mut sweep: Vec<Token> = Vec::new();
    loop {
        let due = driver.tick();
        // Nothing is registered anywhere, so there is nothing to mirror.
        driver.changes().for_each(drop);
        if driver.finished() {
            return Ok(());
        }
        driver.accept_ready()?;
        sweep.clear();
        sweep.extend(driver.conns().map(|(token, _, _)| token));
        for &token in &sweep {
            // "Ready" is a guess: try both; `EAGAIN` says otherwise.
            driver.service(token, Ready::BOTH);
        }
        let nap = config.tuning.spin_sleep;
        if !nap.is_zero() {
            std::thread::sleep(due.map_or(nap, |due| due.min(nap)));
        }
    }
}
