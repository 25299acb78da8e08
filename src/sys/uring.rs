//! io_uring, as the lab uses it: a ring whose `io_uring_enter` calls are
//! counted, and a provided-buffer ring.
//!
//! The `io-uring` crate binds the kernel's API faithfully; what lives here
//! is the part that needs a memory-safety argument of our own — memory we
//! hand the kernel for longer than one call.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering::Release};
use std::time::Duration;

use io_uring::types::{self, BufRingEntry, SubmitArgs, Timespec};
use io_uring::{opcode, squeue, IoUring};

use super::counters::{bump, Counter};
use super::Mapping;

/// Creates a ring with `entries` submission slots (and four times as many
/// completion slots, so a burst of multishot completions does not overflow
/// it), optionally with a kernel thread polling the submission queue.
///
/// Fails with the kernel's reason where io_uring is unavailable: `ENOSYS`
/// (too old, or compiled out), `EPERM` (`kernel.io_uring_disabled`, or a
/// seccomp filter), `ENOMEM` (locked-memory limit).
pub fn new_ring(entries: u32, sqpoll_idle: Option<Duration>) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(entries * 4);
    match sqpoll_idle {
        Some(idle) => {
            builder.setup_sqpoll(idle.as_millis().min(u32::MAX as u128) as u32);
        }
        None => {
            // One thread submits (ours), and the kernel's deferred work for
            // completions runs only when that thread enters to wait, instead
            // of interrupting it whenever a completion is ready (Linux 6.1).
            builder.setup_single_issuer().setup_defer_taskrun();
        }
    }
    match builder.build(entries) {
        // An older kernel refuses the flags: plain ring then.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && sqpoll_idle.is_none() => {
            IoUring::builder().setup_cqsize(entries * 4).build(entries)
        }
        other => other,
    }
}

/// `io_uring_enter`: submits what is queued and waits for at least `want`
/// completions, or until `timeout` passes (`Ok(false)`), or a signal
/// arrives (`Ok(false)` too: the caller looks at its flags and goes on).
/// With `min_wait` (Linux 6.12) it waits for `want` only that long, and
/// after it returns as soon as there is any completion at all.
pub fn submit_and_wait(
    ring: &IoUring,
    want: usize,
    timeout: Option<Duration>,
    min_wait: Option<Duration>,
) -> io::Result<bool> {
    bump(Counter::IoUringEnter);
    let result = match (timeout, min_wait) {
        (None, None) => ring.submitter().submit_and_wait(want),
        _ => {
            let ts = timeout.map(Timespec::from);
            let mut args = SubmitArgs::new();
            if let Some(ts) = &ts {
                args = args.timespec(ts);
            }
            if let Some(wait) = min_wait {
                let micros = u32::try_from(wait.as_micros()).unwrap_or(u32::MAX);
                args = args.min_wait_usec(micros);
            }
            ring.submitter().submit_with_args(want, &args)
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY)
            ) =>
        {
            Ok(false)
        }
        // Completions were dropped (out of memory with the ring full). The
        // kernel says so once, here, and counts them in the ring's overflow
        // counter, which the caller reads: carry on.
        Err(e) if e.raw_os_error() == Some(libc::EBADR) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Byte offset of `optlen` in the kernel's 64-byte `struct io_uring_sqe`
/// (`include/uapi/linux/io_uring.h`; a union with `file_index` and
/// `splice_fd_in`). Kernel ABI: it never moves.
const SQE_OPTLEN_OFFSET: usize = 44;

const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// A multishot `recv` from buffer group `group` that ends by itself once it
/// has received `total` bytes, each completion carrying at most `per_recv`
/// (Linux 6.17: the total travels in the entry's `optlen`, which the `io-uring`
/// crate does not expose yet). Without the cap a multishot `recv` takes
/// whatever the socket holds, up to 32 buffers per wakeup, before a cancel
/// sent on backpressure can reach it; with it, a connection never receives
/// more than the room it had when it armed the receive. Kernels before 6.17
/// refuse the entry with `EINVAL`.
pub fn recv_multi_capped(fd: types::Fd, group: u16, total: u32, per_recv: u32) -> squeue::Entry {
    let mut entry = opcode::RecvMulti::new(fd, group).len(per_recv).build();
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's
    // `io_uring_sqe`, 64 bytes (asserted above), whose u32 at byte 44 is
    // `optlen`, left 0 by `RecvMulti`. The write stays inside the entry and
    // makes no alignment assumption.
    unsafe {
        (&mut entry as *mut squeue::Entry)
            .cast::<u8>()
            .add(SQE_OPTLEN_OFFSET)
            .cast::<u32>()
            .write_unaligned(total);
    }
    entry
}

/// Byte offset of `ioprio` in `struct io_uring_sqe`, the u16 where a
/// `recv`'s or `send`'s own flags live (kernel ABI).
const SQE_IOPRIO_OFFSET: usize = 2;
/// `IORING_RECVSEND_POLL_FIRST` (`include/uapi/linux/io_uring.h`).
const RECVSEND_POLL_FIRST: u16 = 1 << 0;

/// Marks a `recv` (single- or multishot) *poll first* (Linux 5.19): the
/// kernel assumes the socket is empty and arms its wakeup at once, instead
/// of first trying a receive that fails with `EAGAIN`. Right for a
/// connection just accepted, which has usually sent nothing yet. (Were the
/// socket not empty after all, the armed wakeup fires at once: the receive
/// still happens, one poll round trip later.)
pub fn poll_first(entry: squeue::Entry) -> squeue::Entry {
    or_ioprio(entry, RECVSEND_POLL_FIRST)
}

/// `IORING_RECVSEND_BUNDLE` (`include/uapi/linux/io_uring.h`).
const RECVSEND_BUNDLE: u16 = 1 << 4;

/// Makes a `recv` from a buffer group a *bundle* (Linux 6.10): one
/// completion may fill several provided buffers, one after the other, and
/// names the first; [`BufRing::take`] finds the rest.
pub fn bundle(entry: squeue::Entry) -> squeue::Entry {
    or_ioprio(entry, RECVSEND_BUNDLE)
}

/// ORs `bits` into an entry's `ioprio`, where a `recv`'s and `send`'s own
/// flags live.
fn or_ioprio(mut entry: squeue::Entry, bits: u16) -> squeue::Entry {
    // SAFETY: as in `recv_multi_capped`: the u16 at byte 2 of the 64-byte
    // entry is `ioprio`; OR-ing flags keeps those already there.
    unsafe {
        let ioprio = (&mut entry as *mut squeue::Entry)
            .cast::<u8>()
            .add(SQE_IOPRIO_OFFSET)
            .cast::<u16>();
        ioprio.write_unaligned(ioprio.read_unaligned() | bits);
    }
    entry
}

/// A ring together with the receive buffers it may write into, so that
/// their lifetimes are tied by the type, not by the order of a struct's
/// fields: dropping it unregisters the buffers from the kernel first, and
/// only then are they unmapped.
pub struct Ring {
    ring: IoUring,
    buffers: Option<BufRing>,
}

impl Ring {
    /// Wraps a ring with no provided buffers.
    pub fn new(ring: IoUring) -> Ring {
        Ring {
            ring,
            buffers: None,
        }
    }

    /// Maps `count` buffers of `size` bytes (count a power of two, at most
    /// 32,768) and registers them with the ring as buffer group `group`.
    pub fn provide_buffers(&mut self, count: u16, size: usize, group: u16) -> io::Result<()> {
        assert!(self.buffers.is_none(), "one buffer group per ring");
        self.buffers = Some(BufRing::new(&self.ring, count, size, group)?);
        Ok(())
    }

    /// Registers a table of `slots` direct descriptors, all empty, for
    /// accepts to fill (`IORING_REGISTER_FILES2` sparse, Linux 5.19). The
    /// table goes with the ring: closing the ring closes what is in it.
    pub fn register_direct_table(&self, slots: u32) -> io::Result<()> {
        self.ring.submitter().register_files_sparse(slots)
    }

    /// The ring.
    pub fn ring(&self) -> &IoUring {
        &self.ring
    }

    /// The ring, mutably (its submission and completion queues).
    pub fn ring_mut(&mut self) -> &mut IoUring {
        &mut self.ring
    }

    /// Its provided buffers, if it has them.
    pub fn buffers(&self) -> Option<&BufRing> {
        self.buffers.as_ref()
    }

    /// Its provided buffers, mutably.
    pub fn buffers_mut(&mut self) -> Option<&mut BufRing> {
        self.buffers.as_mut()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if let Some(buffers) = &self.buffers {
            // After this the kernel takes no buffer from the group; the
            // ring's own drop (closing it) then ends every operation that
            // had one, before `buffers` is unmapped.
            let _ = self.ring.submitter().unregister_buf_ring(buffers.group);
        }
    }
}

/// A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19): a pool
/// of receive buffers that *belong to the ring*, not to any connection. A
/// multishot `recv` takes a buffer only when data arrives and names it in
/// its completion; we give it back as soon as the codec has consumed it. So
/// an idle connection owns no receive buffer at all — the point of the
/// design for the C10K shape.
///
/// The ring is an array of `{addr, len, bid}` entries shared with the
/// kernel; we add entries at the tail (whose 16 bits overlay the reserved
/// field of entry 0) and the kernel takes them from the head.
///
/// **Who owns a buffer when.** A buffer is the kernel's from the moment it
/// is published until a completion names it; then it is ours, as a
/// [`LentBuffer`] — a value that is not `Copy` or `Clone`, so it can be
/// given back exactly once ([`BufRing::give_back`] consumes it). Giving a
/// buffer back twice would put it in the ring twice, and the kernel could
/// write into it while we still read it: the type makes that impossible.
pub struct BufRing {
    entries: *mut BufRingEntry,
    /// Which buffer sits in each slot of the ring, as we wrote them: the
    /// kernel takes slots in order from its head, so a completion that
    /// filled several buffers (a *bundle*) names the first, and the rest
    /// are the slots after it.
    slots: Vec<u16>,
    /// The slot the kernel takes next, as we count: one more for every
    /// buffer a completion hands us.
    head: u16,
    // The memory behind `entries` and `buffers`, unmapped when dropped
    // (only inside a `Ring`, after the group is unregistered).
    _entries_memory: Mapping,
    _buffers_memory: Mapping,
    count: u16,
    tail: u16,
    buffers: *mut u8,
    size: usize,
    group: u16,
}

/// The provided buffers one completion filled and handed to us (see
/// [`BufRing`]): `count` consecutive slots of the ring from `slot`, holding
/// `len` bytes in all. One buffer, except for a bundle.
#[derive(Debug)]
#[must_use = "a lent buffer must be given back, or the ring runs dry"]
pub struct LentBuffer {
    slot: u16,
    count: u16,
    len: usize,
}

impl BufRing {
    fn new(ring: &IoUring, count: u16, size: usize, group: u16) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two(),
            "buffer ring size must be a power of two"
        );
        let ring_bytes = count as usize * std::mem::size_of::<BufRingEntry>();
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let entries_memory = Mapping::anonymous(ring_bytes, prot, libc::MAP_PRIVATE)?;
        let buffers_memory = Mapping::anonymous(count as usize * size, prot, libc::MAP_PRIVATE)?;
        let entries = entries_memory.as_ptr().cast::<BufRingEntry>();
        let buffers = buffers_memory.as_ptr();
        let mut buf_ring = BufRing {
            _entries_memory: entries_memory,
            _buffers_memory: buffers_memory,
            entries,
            slots: vec![0; count as usize],
            head: 0,
            count,
            tail: 0,
            buffers,
            size,
            group,
        };
        // SAFETY: `entries` is a page-aligned, zeroed mapping of `count`
        // entries. It stays mapped until the `BufRing` drops, which happens
        // only inside a `Ring`, whose `Drop` unregisters the group first.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, group, 0)
        }?;
        for bid in 0..count {
            buf_ring.push(bid);
        }
        buf_ring.publish();
        Ok(buf_ring)
    }

    /// The buffer group id to name in `RecvMulti`.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Takes ownership of the buffers a completion filled: the first is
    /// `bid`, from its flags; `len` is its result. Without bundles that is
    /// one buffer; a bundle's bytes fill buffers one after the other, so
    /// it took as many as `len` needs, from the slot the kernel took next.
    ///
    /// # Safety
    ///
    /// `bid` must come from a completion of this ring's group that has not
    /// been taken before: the kernel has finished writing it (and the
    /// buffers after it in a bundle) and handed them over exactly once.
    pub unsafe fn take(&mut self, bid: u16, len: usize, bundle: bool) -> LentBuffer {
        let count = if bundle {
            len.div_ceil(self.size).max(1)
        } else {
            1
        };
        assert!(bid < self.count && count <= self.count as usize && len <= count * self.size);
        let slot = self.head;
        // Completions come in the order the kernel took buffers, so the one
        // named is the one at our head: if not, our count is wrong, and a
        // bundle's later buffers would be misnamed.
        debug_assert_eq!(
            self.slots[self.index(slot)],
            bid,
            "the ring's head moved unseen"
        );
        self.head = self.head.wrapping_add(count as u16);
        LentBuffer {
            slot,
            count: count as u16,
            len,
        }
    }

    /// The bytes the kernel wrote into lent buffers, buffer by buffer.
    pub fn bytes<'a>(&'a self, lent: &'a LentBuffer) -> impl Iterator<Item = &'a [u8]> + 'a {
        (0..lent.count).map(move |i| {
            let bid = self.slots[self.index(lent.slot.wrapping_add(i))];
            let len = (lent.len - i as usize * self.size).min(self.size);
            // SAFETY: `bid` < count (slots hold only buffer ids we pushed)
            // and `len` <= size (`take` checked the total), so the slice lies
            // within the mapping; the kernel wrote it before the completion
            // and does not touch it while it is lent.
            unsafe { std::slice::from_raw_parts(self.buffers.add(bid as usize * self.size), len) }
        })
    }

    /// Gives lent buffers back to the kernel (visible after `publish`).
    pub fn give_back(&mut self, lent: LentBuffer) {
        for i in 0..lent.count {
            let bid = self.slots[self.index(lent.slot.wrapping_add(i))];
            self.push(bid);
        }
    }

    fn index(&self, slot: u16) -> usize {
        (slot & (self.count - 1)) as usize
    }

    fn push(&mut self, bid: u16) {
        let slot = self.index(self.tail);
        self.slots[slot] = bid;
        // SAFETY: `slot` < count, inside the entries mapping; the kernel
        // only reads entries between its head and our published tail, and
        // this one lies beyond the published tail.
        let entry = unsafe { &mut *self.entries.add(slot) };
        // SAFETY: `bid` < count, so the address is inside the mapping.
        entry.set_addr(unsafe { self.buffers.add(bid as usize * self.size) } as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given back so far visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: `entries` is the ring's base; its tail field is a u16 the
        // kernel reads atomically; a Release store orders our entry writes
        // before the tail that exposes them.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Release);
        }
    }
}
