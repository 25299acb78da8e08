//! One connection as io_uring sees it: the [`Conn`] state machine, the
//! operations it has in flight, and the name those operations carry to the
//! kernel and back.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use io_uring::{squeue, types};

use crate::server::conn::Conn;
use crate::server::listener::ConnPermit;
use crate::server::slab::Key;

/// A connection's socket: a descriptor in the process's table, or a
/// *direct* descriptor, a slot in the ring's own table of registered files
/// that only io_uring operations can name (see the module docs).
pub enum Socket {
    /// An ordinary descriptor, closed when dropped.
    Fd(OwnedFd),
    /// A slot of the ring's file table, closed by an `IORING_OP_CLOSE`.
    Direct(u32),
}

impl Socket {
    /// What an operation puts in its entry's `fd` field, and the flag that
    /// says which table that number is in (`IOSQE_FIXED_FILE` for a slot).
    /// Every operation the loop builds takes the pair, so one code path
    /// serves both kinds.
    pub fn target(&self) -> (types::Fd, squeue::Flags) {
        match self {
            Socket::Fd(fd) => (types::Fd(fd.as_raw_fd()), squeue::Flags::empty()),
            Socket::Direct(slot) => (types::Fd(*slot as i32), squeue::Flags::FIXED_FILE),
        }
    }
}

/// A connection and the operations it has in flight.
pub struct Session {
    pub socket: Socket,
    pub conn: Conn,
    /// Bytes lent to the kernel by the `Send` in flight: its heap buffer
    /// is not touched, reallocated or freed until the completion (moving
    /// the session within the slab moves the `Vec` header, not the bytes).
    pub sending: Vec<u8>,
    pub send_in_flight: bool,
    /// A zero-copy send's result, held until its notification says the
    /// kernel is done with `sending` (see `Loop::send_completed`).
    pub zc_result: Option<i32>,
    pub recv_in_flight: bool,
    /// Nothing received yet: the first receive is armed *poll first*.
    pub fresh: bool,
    /// `Shutdown`s of a direct descriptor not yet completed. The kernel
    /// runs a shutdown on a worker thread, looking the slot up only then:
    /// closing the slot first would let it shut down whichever connection
    /// the next accept put in that slot. So a session is freed only after
    /// its shutdowns are done.
    pub shutdowns_in_flight: u8,
    /// A cancel of the multishot recv is on its way (backpressure, on
    /// kernels without a capped receive).
    pub recv_cancelling: bool,
    /// Single-shot mode: the buffer lent to the `Recv` in flight.
    pub recv_buffer: Option<Box<[u8]>>,
    /// Shut down; freed when nothing is in flight.
    pub closing: bool,
    /// The idle deadline filed in the loop's timers.
    pub timer: Option<Instant>,
    pub _place: ConnPermit,
}

impl Session {
    /// A session for a socket just accepted.
    pub fn new(socket: Socket, conn: Conn, timer: Option<Instant>, place: ConnPermit) -> Session {
        Session {
            socket,
            conn,
            sending: Vec::new(),
            send_in_flight: false,
            zc_result: None,
            recv_in_flight: false,
            fresh: true,
            shutdowns_in_flight: 0,
            recv_cancelling: false,
            recv_buffer: None,
            closing: false,
            timer,
            _place: place,
        }
    }

    /// Whether the kernel holds nothing of it that freeing it would take
    /// away: only then may it be freed (its socket closed). A zero-copy
    /// send whose result is in but whose notification is not still holds
    /// `sending`'s pages — until the peer acknowledges them, which a client
    /// that does not read may never do — so the loop frees the session
    /// then but keeps that buffer aside (`Loop::zc_leftovers`).
    pub fn idle(&self) -> bool {
        (!self.send_in_flight || self.zc_result.is_some())
            && !self.recv_in_flight
            && self.shutdowns_in_flight == 0
    }
}

/// What a completion is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The listener's accept.
    Accept,
    /// A session's receive.
    Recv,
    /// A session's send.
    Send,
    /// The shutdown eventfd became readable.
    Wake,
    /// A cancel: its target's own completion says the rest.
    Cancel,
    /// A direct descriptor's `Shutdown`.
    Shutdown,
    /// Housekeeping whose success needs no answer: a direct descriptor's
    /// `Close`, the message to a client turned away. They ask for no
    /// completion on success (`IOSQE_CQE_SKIP_SUCCESS`).
    Quiet,
}

/// The 64 bits of user data an operation carries: the kind in bits 0–7,
/// the session's slot in 8–31, the slot's generation in 32–63, so that a
/// completion for a freed and reused slot is recognised as stale.
pub fn user_data(op: Op, key: Option<Key>) -> u64 {
    let kind = match op {
        Op::Accept => 1,
        Op::Recv => 2,
        Op::Send => 3,
        Op::Wake => 4,
        Op::Cancel => 5,
        Op::Quiet => 6,
        Op::Shutdown => 7,
    };
    let key = key.map_or(0, Key::to_u64);
    let (index, generation) = (key & 0xffff_ffff, key >> 32);
    debug_assert!(index < 1 << 24, "slot numbers fit in 24 bits");
    kind | index << 8 | generation << 32
}

/// What [`user_data`] packed: `None` for data we never made.
pub fn parse_user_data(data: u64) -> Option<(Op, Key)> {
    let op = match data & 0xff {
        1 => Op::Accept,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::Wake,
        5 => Op::Cancel,
        6 => Op::Quiet,
        7 => Op::Shutdown,
        _ => return None,
    };
    let index = (data >> 8) & 0xff_ffff;
    let generation = data >> 32;
    Some((op, Key::from_u64(generation << 32 | index)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::slab::Slab;

    #[test]
    fn user_data_names_the_operation_and_the_session() {
        let mut slab = Slab::new();
        let old = slab.insert(());
        slab.remove(old);
        let key = slab.insert(());
        let data = user_data(Op::Send, Some(key));
        assert_eq!(parse_user_data(data), Some((Op::Send, key)));
        assert_ne!(
            parse_user_data(user_data(Op::Send, Some(old))),
            Some((Op::Send, key))
        );
        assert_eq!(parse_user_data(0), None);
    }
}
