//! Buffers lent for the length of one exchange, so that a connection that
//! waits holds none.
//!
//! A connection spends nearly all its life waiting for its client. If each
//! kept a 16 KiB read buffer and an output vector for its whole life, ten
//! thousand idle connections would pin 160 MiB doing nothing — which is
//! what the blocking-style handler did, on threads, coroutines and tokio
//! tasks alike. Instead a connection borrows buffers when bytes arrive and
//! gives them back when its answers are out. Each thread keeps the few
//! buffers given back to it ([`SPARES`]) for the next connection it
//! serves, so borrowing costs no allocation in the steady state.
//!
//! Per thread, not per process: no lock, and a buffer is reused while its
//! cache lines are still warm. A coroutine scheduler or an async executor
//! runs many connections on one thread, one at a time; each borrowed
//! buffer is *moved out* of the pool, so two connections can never share
//! one, however their turns interleave.

use std::cell::RefCell;

/// How many spare buffers of each kind a thread keeps.
pub const SPARES: usize = 4;

/// The largest buffer worth keeping: bigger ones (an output vector that
/// grew for a burst of pipelined answers) go back to the allocator.
const KEEP_CAPACITY: usize = 64 * 1024;

thread_local! {
    static INPUTS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static OUTPUTS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A read buffer of `len` bytes, borrowed from this thread's spares (or
/// freshly allocated). Give it back with [`return_input`].
pub fn take_input(len: usize) -> Box<[u8]> {
    let spare = INPUTS.with(|spares| {
        let mut spares = spares.borrow_mut();
        let at = spares.iter().position(|b| b.len() == len)?;
        Some(spares.swap_remove(at))
    });
    spare.unwrap_or_else(|| vec![0; len].into_boxed_slice())
}

/// Gives a read buffer back to this thread's spares.
pub fn return_input(buffer: Box<[u8]>) {
    if buffer.len() > KEEP_CAPACITY {
        return;
    }
    // `try_with`: a thread being torn down just frees it.
    let _ = INPUTS.try_with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < SPARES {
            spares.push(buffer);
        }
    });
}

/// An empty output vector, borrowed from this thread's spares (or new).
/// Give it back with [`return_output`].
pub fn take_output() -> Vec<u8> {
    OUTPUTS
        .with(|spares| spares.borrow_mut().pop())
        .unwrap_or_default()
}

/// Gives an output vector back (emptied) to this thread's spares.
pub fn return_output(mut output: Vec<u8>) {
    if output.capacity() == 0 || output.capacity() > KEEP_CAPACITY {
        return;
    }
    output.clear();
    let _ = OUTPUTS.try_with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < SPARES {
            spares.push(output);
        }
    });
}

/// A read buffer on loan: goes back to the thread's spares when dropped,
/// on every path out (an error included).
#[derive(Debug)]
pub struct Input(Option<Box<[u8]>>);

/// Borrows a read buffer of `len` bytes (see [`take_input`]).
pub fn input(len: usize) -> Input {
    Input(Some(take_input(len)))
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }
}

impl std::ops::DerefMut for Input {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        if let Some(buffer) = self.0.take() {
            return_input(buffer);
        }
    }
}

/// An output vector on loan: goes back to the thread's spares when dropped.
#[derive(Debug)]
pub struct Output(Vec<u8>);

/// Borrows an empty output vector (see [`take_output`]).
pub fn output() -> Output {
    Output(take_output())
}

impl std::ops::Deref for Output {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Output {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        return_output(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_lent_again_and_never_twice() {
        let a = take_input(1024);
        let a_ptr = a.as_ptr();
        return_input(a);
        let b = take_input(1024);
        assert_eq!(b.as_ptr(), a_ptr, "the spare is reused");
        let c = take_input(1024);
        assert_ne!(c.as_ptr(), b.as_ptr(), "a lent buffer is not lent twice");
    }

    #[test]
    fn outputs_come_back_empty_and_huge_ones_are_freed() {
        let mut out = take_output();
        out.extend_from_slice(b"answers");
        return_output(out);
        assert!(take_output().is_empty());
        let huge = Vec::with_capacity(KEEP_CAPACITY + 1);
        return_output(huge);
        assert!(OUTPUTS.with(|s| s.borrow().iter().all(|v| v.capacity() <= KEEP_CAPACITY)));
    }
}
