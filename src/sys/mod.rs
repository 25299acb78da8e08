//! The only place that makes hot-path system calls.
//!
//! Every wrapper here does three things, and nothing else: makes the call,
//! turns the C convention (`-1` and `errno`) into an [`io::Error`], and bumps
//! the call's [`Counter`]. Model code therefore reads like
//! the man page (`sys::recv(fd, buf)`) and the summary line's syscall counts
//! are true by construction: a call that does not go through here is not
//! made on the hot path.
//!
//! Calls made once at start-up (binding, the listener's options) go through
//! `socket2` and `nix` instead: they are not what distinguishes one model
//! from another. A connection's own `setsockopt`s (`TCP_NODELAY`, the
//! timeouts) are made per connection, and counted.

pub mod counters;
pub mod readiness;
pub mod uring;

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

use counters::{bump, Counter};

/// Calls a libc function and turns `-1` into the `errno` it set, like mio's
/// macro of the same name. The `unsafe` is the caller's to argue.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        let res = libc::$fn($($arg),*);
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// `recv(2)`: reads at most `buf.len()` bytes from the socket `fd`.
///
/// On a socket, `recv` with no flags does what `read` does, by a shorter
/// path through the kernel (`read` goes through the VFS layer: file
/// position locking, `rw_verify_area`, fsnotify hooks). Every model uses
/// it, so the difference is the same for all.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    bump(Counter::Recv);
    recv_uncounted(fd, buf)
}

/// [`recv`] without counting it: for the *clients* the lab runs (the load
/// generator), whose calls are not the server's and must never show in its
/// summary, even if the two share a process.
pub fn recv_uncounted(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for the
    // whole call, and the kernel writes at most that many bytes into it.
    let n = unsafe { syscall!(recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)) }?;
    Ok(n as usize)
}

/// `send(2)` with `MSG_NOSIGNAL`: writes at most `buf.len()` bytes to the
/// socket `fd`.
///
/// `MSG_NOSIGNAL` makes a send to a peer that has gone fail with `EPIPE`
/// instead of raising `SIGPIPE`, which would kill the server. (`SIGPIPE`
/// is ignored process-wide as well, for the calls that cannot say so.)
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    bump(Counter::Send);
    send_uncounted(fd, buf)
}

/// [`send`] without counting it (see [`recv_uncounted`]).
pub fn send_uncounted(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid, readable region of `buf.len()` bytes for the
    // whole call; the kernel only reads from it.
    let n = unsafe {
        syscall!(send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL
        ))
    }?;
    Ok(n as usize)
}

/// Whether `accept` should make the new socket non-blocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// Calls on the socket wait (the blocking family).
    Yes,
    /// Calls on the socket fail with `EAGAIN` instead of waiting.
    No,
}

/// `accept4(2)`: takes the next connection off `listener`'s queue.
///
/// The new descriptor is always `CLOEXEC` (so a forked-and-exec'd program
/// never inherits client sockets) and, if asked, `O_NONBLOCK`, set atomically
/// by the same call rather than by a racy `fcntl` afterwards.
pub fn accept(listener: BorrowedFd<'_>, blocking: Blocking) -> io::Result<OwnedFd> {
    bump(Counter::Accept);
    let mut flags = libc::SOCK_CLOEXEC;
    if blocking == Blocking::No {
        flags |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: null address pointers are allowed by accept4(2) and mean that
    // we do not want the peer's address.
    let fd = unsafe {
        syscall!(accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags
        ))
    }?;
    bump(Counter::Accepted);
    // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(TCP_NODELAY)`: send small writes at once instead of holding
/// them until earlier data is acknowledged (Nagle's algorithm), which with
/// the peer's delayed ACKs can stall a pipelined answer by 40 ms. Every
/// model sets it on every connection, so the comparison stays fair.
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    bump(Counter::SetSockOpt);
    socket2::SockRef::from(&fd).set_nodelay(true)
}

/// `ioctl(FIONREAD)`: how many bytes wait unread in the socket's receive
/// queue. For a loop that hands its reads to the kernel (io_uring) and must
/// know, before it calls a connection idle, whether bytes arrived that no
/// completion has reported yet.
pub fn bytes_queued(fd: BorrowedFd<'_>) -> io::Result<usize> {
    bump(Counter::Ioctl);
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to
    // a live local of that type.
    unsafe { syscall!(ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut queued)) }?;
    Ok(queued.max(0) as usize)
}

/// Gives the allocator's free memory back to the kernel (glibc's
/// `malloc_trim(0)`, which also releases whole free pages in the middle of
/// the heap). glibc keeps freed memory for reuse, so a loop that served a
/// burst of clients that did not read would otherwise keep their buffers'
/// worth of resident memory long after they left. A no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only rearranges the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// When to call [`release_free_memory`]: each time the open connections
/// have fallen to half of their high-water mark since the last call, and at
/// least [`MemoryReturn::WORTH_IT`] of them have closed. Memory held for
/// many connections comes back as they go, for the cost of one walk over
/// the heap per halving.
#[derive(Debug, Default)]
pub struct MemoryReturn {
    high: usize,
}

impl MemoryReturn {
    /// Fewer closes than this are not worth a walk over the heap.
    pub const WORTH_IT: usize = 32;

    /// Notes that `open` connections are open now (after an open or a close).
    pub fn note(&mut self, open: usize) {
        self.high = self.high.max(open);
        if open <= self.high / 2 && self.high - open >= Self::WORTH_IT {
            release_free_memory();
            self.high = open;
        }
    }
}

/// Whether a call on a socket with a timeout ran out of time (Linux says
/// `EAGAIN` for `SO_RCVTIMEO`/`SO_SNDTIMEO`, which std reports as
/// `WouldBlock`; some paths say `TimedOut`).
pub fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// `shutdown(2)` of the read side: later reads return what is already
/// buffered, then 0 (end of stream). Used to wake a thread blocked in `read`
/// at shutdown. Errors are ignored: the socket may already be disconnected,
/// which is just as good.
pub fn shutdown_read(fd: RawFd) {
    // SAFETY: shutdown(2) takes any integer; on a descriptor that is not a
    // socket it fails with ENOTSOCK and changes nothing.
    unsafe { libc::shutdown(fd, libc::SHUT_RD) };
}

/// `eventfd(2)`: a counter in the kernel that a poller can watch, readable
/// while it is not zero. Non-blocking and close-on-exec. The offload pool
/// ([`crate::server::offload`]) wakes its event loop through one.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain eventfd(2) call; on success we own the new descriptor.
    let fd = unsafe { syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)) }?;
    // SAFETY: `fd` was just returned by eventfd(2) and nobody else has it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `read(2)` of an eventfd: takes its count and sets it back to 0 (so it
/// is not readable again until the next write); `Ok(0)` if it was 0
/// (`EAGAIN`). Not counted: it is not on the path of a request the lab's
/// tables compare, only of `epoll --offload`'s completions.
pub fn eventfd_take(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut count: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live, 8-byte stack variable.
    let got = unsafe {
        syscall!(read(
            fd.as_raw_fd(),
            (&mut count as *mut u64).cast(),
            std::mem::size_of::<u64>()
        ))
    };
    match got {
        Ok(_) => Ok(count),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// `write(2)` of 1 to an eventfd, making it readable. Async-signal-safe
/// (no allocation, no lock, errno left to the caller): for signal handlers.
pub fn signal_eventfd(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of a live stack variable; a bad descriptor
    // only makes the call fail.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// `setsockopt(SO_SNDTIMEO)` from a signal handler: async-signal-safe (a
/// plain system call on a stack value). Errors are ignored: a descriptor
/// that is not a socket any more is not ours to time out.
pub fn set_send_timeout_raw(fd: RawFd, micros: u64) {
    let limit = libc::timeval {
        tv_sec: (micros / 1_000_000) as libc::time_t,
        tv_usec: (micros % 1_000_000) as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads a live stack timeval of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&limit as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
}

/// `shutdown(2)` with `how` (`SHUT_RD`, `SHUT_WR`, `SHUT_RDWR`); errors
/// ignored as for [`shutdown_read`].
pub fn shutdown(fd: RawFd, how: libc::c_int) {
    // SAFETY: as for `shutdown_read`.
    unsafe { libc::shutdown(fd, how) };
}

/// `shutdown(2)` of both sides: pending and future reads and writes fail at
/// once. Used when the drain timeout runs out.
pub fn shutdown_both(fd: RawFd) {
    // SAFETY: as for `shutdown_read`.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// The result of [`fork`], seen from each side.
pub enum Forked {
    /// In the parent: the child's pid.
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// A panic hook that writes `lab: panic: MESSAGE` to standard error with
/// one `write(2)` from a stack buffer: no lock (std's own hook takes the
/// stderr lock) and no allocation. For processes forked from a
/// multi-threaded parent, where a lock held by another thread at the fork
/// stays held for ever in the child.
pub fn panic_message_without_locks(info: &std::panic::PanicHookInfo<'_>) {
    use std::fmt::Write as _;
    struct StackBuf {
        bytes: [u8; 512],
        len: usize,
    }
    impl std::fmt::Write for StackBuf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = self.bytes.len() - self.len;
            let n = s.len().min(room);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(()) // a long message is cut, not failed
        }
    }
    let mut buf = StackBuf {
        bytes: [0; 512],
        len: 0,
    };
    let _ = write!(buf, "lab: panic: {info}");
    let end = buf.len.min(buf.bytes.len() - 1);
    buf.bytes[end] = b'\n';
    // SAFETY: write(2) reads `end + 1` initialised bytes of a live array.
    unsafe { libc::write(2, buf.bytes.as_ptr().cast(), end + 1) };
}

/// `fork(2)`.
///
/// # Safety
///
/// In a multi-threaded program the child has only the calling thread; it
/// must not touch state another thread may have held locked at the fork.
/// The lab's process models fork from their single main thread (helper
/// threads, if any, hold no locks the child uses), and the child only serves
/// its connection and calls `_exit`.
pub unsafe fn fork() -> io::Result<Forked> {
    bump(Counter::Fork);
    // SAFETY: the caller upholds this function's contract above.
    match unsafe { syscall!(fork()) }? {
        0 => {
            // The batch of counts the child inherited is the parent's to flush.
            counters::forget_local();
            Ok(Forked::Child)
        }
        pid => Ok(Forked::Parent(pid)),
    }
}

/// `prctl(PR_SET_PDEATHSIG, SIGTERM)`: asks the kernel to send this
/// process SIGTERM when its parent dies, so that a forked worker never
/// outlives a parent killed with SIGKILL (it would go on accepting on the
/// inherited listener for ever). If the parent is already gone — it died
/// between the fork and this call — the signal is raised at once.
pub fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no
    // pointers; getppid and raise have no preconditions.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent {
            libc::raise(libc::SIGTERM);
        }
    }
}

/// Runs `f` and puts `errno` back as it was: what a signal handler must do,
/// so that the code it interrupted sees the errno of its own call, not of
/// the handler's.
pub fn with_errno_preserved<T>(f: impl FnOnce() -> T) -> T {
    let saved = nix::errno::Errno::last_raw();
    let result = f();
    nix::errno::Errno::set_raw(saved);
    result
}

/// The running kernel's release (`6.18.44-...`), from
/// `/proc/sys/kernel/osrelease`; empty if it cannot be read.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether the running kernel is at least `major.minor` (from
/// [`kernel_release`]; a release that does not parse counts as 0.0).
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = kernel_release();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// A child that ended, from [`reap_child`].
#[derive(Clone, Copy, Debug)]
pub struct Reaped {
    /// Its process id.
    pub pid: libc::pid_t,
    /// Whether a signal killed it (a crash, or a `kill -9`).
    pub by_signal: bool,
    /// The CPU time it used in user mode, in microseconds.
    pub user_us: u64,
    /// The CPU time it used in the kernel, in microseconds.
    pub system_us: u64,
    /// Its peak resident memory, in KiB.
    pub max_rss_kb: u64,
}

/// `wait4(-1, WNOHANG)`: collects one ended child, if any, so it does not
/// stay a zombie, with what that one child used. (`getrusage(CHILDREN)`
/// would sum every child this process ever reaped, *including those reaped
/// before an `execve` made it `lab`*: under `cargo run`, the compiler.)
/// Async-signal-safe: the `SIGCHLD` handler calls it in a loop until it
/// returns `None`.
pub fn reap_child() -> Option<Reaped> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value (integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes the status and the usage into live locals.
    let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
    let micros = |tv: libc::timeval| tv.tv_sec.max(0) as u64 * 1_000_000 + tv.tv_usec.max(0) as u64;
    (pid > 0).then(|| Reaped {
        pid,
        by_signal: libc::WIFSIGNALED(status),
        user_us: micros(usage.ru_utime),
        system_us: micros(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss.max(0) as u64,
    })
}

/// `_exit(2)`: ends this process at once, without running destructors or
/// `atexit` handlers — how a forked child ends, since those belong to the
/// parent.
pub fn exit_now(status: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(status) }
}

/// The size of a memory page (`sysconf(_SC_PAGESIZE)`): 4 KiB on x86-64,
/// 4, 16 or 64 KiB on aarch64 kernels.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Gives the calling thread an alternate stack for signal handlers
/// installed with `SA_ONSTACK` (`sigaltstack(2)`): a handler for a stack
/// overflow cannot run on the stack that overflowed. The memory is
/// `'static` because the kernel keeps using it for the thread's life.
pub fn set_alternate_signal_stack(memory: &'static mut [u8]) -> io::Result<()> {
    let stack = libc::stack_t {
        ss_sp: memory.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: memory.len(),
    };
    // SAFETY: `stack` describes memory that lives (and is used by nothing
    // else) for the rest of the process; the old stack is not asked for.
    unsafe { syscall!(sigaltstack(&stack, std::ptr::null_mut())) }.map(drop)
}

/// Sets another process's soft and hard `resource` limit to `value`
/// (`prlimit(2)`): how `lab demo signal-overflow` shrinks a running
/// server's real-time signal queue, as `prlimit --pid` would.
pub fn set_process_limit(
    pid: libc::pid_t,
    resource: libc::__rlimit_resource_t,
    value: u64,
) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: prlimit reads the new limit from a live local and, with a
    // null old-limit pointer, writes nothing.
    unsafe { syscall!(prlimit(pid, resource, &limit, std::ptr::null_mut())) }?;
    Ok(())
}

/// Raises this process's soft limit on open descriptors to its hard limit
/// and returns the limit now in force. Most distributions give a shell a
/// soft limit of 1,024 and a hard limit hundreds of times higher; the soft
/// one exists for old programs that keep descriptors in a `select` bitmap
/// (`FD_SETSIZE` is 1,024), and a server that needs more simply raises it,
/// as Go's runtime does for every program since 1.19. The `lab` binary
/// calls this first thing; children inherit the raised limit. Failure
/// leaves the limit as it was.
pub fn raise_open_files_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// Descriptors a `lab` process keeps for itself beyond its connections:
/// standard streams, listeners, epoll or io_uring instances, eventfds, the
/// spare for `EMFILE`, the runtime's own.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Checks that `sockets` sockets fit under this process's descriptor limit
/// (already raised), or says in one line why not and what to do.
pub fn descriptors_fit(what: &str, sockets: usize) -> Result<(), String> {
    let limit = raise_open_files_limit();
    let needed = sockets as u64 + RESERVED_DESCRIPTORS;
    if needed <= limit {
        return Ok(());
    }
    Err(format!(
        "{what} needs about {needed} descriptors, but this process may open {limit}, \
         its hard limit (`ulimit -Hn`; only root can raise it)"
    ))
}

/// A connected TCP socket whose reads and writes go through the counted
/// wrappers above: what the blocking family of models hands the shared
/// handler. (`std::net::TcpStream` would work just as well, but its calls
/// would not be counted.)
#[derive(Debug)]
pub struct Stream {
    fd: OwnedFd,
}

impl Stream {
    /// Wraps a connected socket.
    pub fn new(fd: OwnedFd) -> Self {
        Stream { fd }
    }

    /// `SO_RCVTIMEO`: a blocking read that waits longer fails with `EAGAIN`.
    /// (Counted: it is made for every connection.)
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        bump(Counter::SetSockOpt);
        socket2::SockRef::from(&self.fd).set_read_timeout(timeout)
    }

    /// `SO_SNDTIMEO`: a blocking write that waits longer fails with `EAGAIN`.
    /// (Counted: it is made for every connection.)
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        bump(Counter::SetSockOpt);
        socket2::SockRef::from(&self.fd).set_write_timeout(timeout)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        recv(self.fd.as_fd(), buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send(self.fd.as_fd(), buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An anonymous memory mapping: zero-filled, page-aligned, unmapped on drop.
/// The one place the lab calls `mmap`: shared counters, io_uring's buffer
/// ring, coroutine stacks.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is an owned region of memory, like a Box<[u8]>; what
// is stored in it decides what may be shared, and its users say so.
unsafe impl Send for Mapping {}
// SAFETY: as above: &Mapping only exposes the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes with protection `prot` (`libc::PROT_*`) and
    /// `libc::MAP_SHARED` or `libc::MAP_PRIVATE` (plus any other `MAP_*`
    /// flag) in `flags`.
    pub fn anonymous(len: usize, prot: libc::c_int, flags: libc::c_int) -> io::Result<Mapping> {
        let len = len.max(1);
        // SAFETY: a fresh anonymous mapping at an address the kernel picks
        // aliases no Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).expect("mmap never returns null on success");
        Ok(Mapping { ptr, len })
    }

    /// `mprotect(2)` of `len` bytes from `offset`.
    pub fn protect(&self, offset: usize, len: usize, prot: libc::c_int) -> io::Result<()> {
        assert!(offset + len <= self.len, "range outside the mapping");
        // SAFETY: the range lies inside this mapping (checked above).
        unsafe { syscall!(mprotect(self.ptr.as_ptr().add(offset).cast(), len, prot)) }?;
        Ok(())
    }

    /// `madvise(MADV_DONTNEED)` of `len` bytes from `offset`, both multiples
    /// of the page size: the kernel frees those pages at once (RSS and PSS
    /// drop now), and the next touch of one faults in a zero-filled page.
    /// Used to give back the unused part of an idle coroutine's stack. Not
    /// counted, like the `mmap` and `mprotect` that made the stack: it is
    /// made at most once per idle spell of a coroutine, not per request.
    ///
    /// # Safety
    ///
    /// Nothing may need what the range holds: it reads as zeros afterwards,
    /// under any pointer into it.
    pub unsafe fn discard(&self, offset: usize, len: usize) -> io::Result<()> {
        assert!(offset + len <= self.len, "range outside the mapping");
        // SAFETY: the range lies inside this mapping (checked above), and
        // the caller promised that nothing needs its contents.
        let start = unsafe { self.ptr.as_ptr().add(offset) };
        // SAFETY: as above; madvise only changes what backs the pages.
        unsafe { syscall!(madvise(start.cast(), len, libc::MADV_DONTNEED)) }?;
        Ok(())
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: a mapping has at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping `anonymous` made; its owner
        // guarantees nothing (Rust or the kernel) still uses it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A value of type `T` in an anonymous `MAP_SHARED` mapping: after `fork`,
/// parent and children see the same memory, so atomics in it are shared
/// between processes. The mapping is never unmapped (it lives as long as the
/// process, like a `static`), which is what makes `&'static T` sound.
pub struct SharedMem<T> {
    mapping: Mapping,
    _value: std::marker::PhantomData<T>,
}

// SAFETY: a `SharedMem<T>` only hands out `&T`, so sharing it between threads
// is as safe as sharing `&T`, which needs `T: Sync`.
unsafe impl<T: Sync> Sync for SharedMem<T> {}
// SAFETY: the mapping is not tied to the thread that created it.
unsafe impl<T: Sync> Send for SharedMem<T> {}

impl<T> SharedMem<T> {
    /// Maps a zero-filled, shared `T`.
    ///
    /// # Safety
    ///
    /// All-zero bytes must be a valid `T` (true of atomics and arrays of
    /// them), and `T` must be usable from several processes at once, which
    /// rules out anything holding pointers or process-local resources.
    pub unsafe fn zeroed() -> io::Result<Self> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let mapping = Mapping::anonymous(std::mem::size_of::<T>(), prot, libc::MAP_SHARED)?;
        Ok(SharedMem {
            mapping,
            _value: std::marker::PhantomData,
        })
    }

    /// The shared value.
    pub fn get(&self) -> &T {
        // SAFETY: the mapping is valid while `self` lives, page-aligned
        // (enough for any `T` we map) and zero-initialised, which the caller
        // of `zeroed` promised is a valid `T`.
        unsafe { &*self.mapping.as_ptr().cast::<T>() }
    }
}

impl<T> std::ops::Deref for SharedMem<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.get()
    }
}
