//! `hogs`: clients that send megabytes and never read a byte.
//!
//! Every answer is as long as its request, so a server that kept reading a
//! client that never reads would pile the answers up in its own memory
//! without end: two hundred such clients, a few megabytes each, and the
//! server is a gigabyte bigger. The protocol's `MAX_PENDING` is the cure:
//! stop reading a connection whose unsent answers pass it; its receive
//! buffer fills, TCP's window closes, the hog's writes stall, and the
//! server's memory per hog stays near `MAX_PENDING`.
//!
//! Here 200 hogs (`--scale` scales them) first connect and each ask once,
//! so that the server has set each up; then each pushes up to 4 MiB of
//! lines without reading, until it has pushed them all or its writes have
//! made no progress for half a second. Honest clients ask all along and
//! must be answered within 2 s.
//!
//! The kernel's buffers would hide a greedy server. On loopback a segment
//! is 64 KiB, and the kernel sizes a socket's send buffer from its
//! segments, to megabytes: a server that never stopped reading could park
//! every answer there and look thrifty. So the hogs shrink everything they
//! control: their own buffers (64 KiB) and the segments they accept
//! (`TCP_MAXSEG` 1460, as on Ethernet), which keeps the server's send
//! buffer small. What piles up then piles up in the server's receive
//! buffer, where a server that stops reading leaves it, or in its heap.
//!
//! When the server's process is known, its memory (PSS, summed over it and
//! the processes under it: [`crate::child::tree_memory_kib`]) is read
//! before, with the hogs connected but quiet, and at the peak of the push.
//! **The bound**: what a hog costs beyond what a quiet connection costs
//! must stay under `64 KiB + 2 × MAX_PENDING` per hog: the unsent answers
//! (up to `MAX_PENDING`, plus the one read that passed it, up to another
//! `MAX_PENDING`), and 64 KiB for the read buffer and bookkeeping. Under
//! `--model` the server runs with `--max-pending 65536`, so the bound is
//! 192 KiB a hog. **And it must give the memory back**: 5 s after the hogs
//! have left, the server may keep at most 64 KiB a hog more than before
//! they came, plus 2 MiB once. Allocators keep freed memory for reuse
//! (glibc keeps a heap per thread, and the stacks of exited threads), so
//! "all of it" would fail correct servers; a buffer kept per connection
//! that has gone would not pass.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::wire::{self, HONEST_WITHIN, PATIENCE};
use super::{Finding, Halt, Limits, Plan, Process, Scenario, Target};
use crate::child::tree_memory_kib;

pub const SCENARIO: Scenario = Scenario {
    name: "hogs",
    must: "keep each non-reading client's memory under 64 KiB + 2 × MAX_PENDING, give it back, \
           and serve the others",
    conns: |plan, _| plan.count(HOGS) + 2,
    process: Process::Any,
    tune: |limits: &mut Limits| limits.max_pending = 65_536,
    run,
};

/// Hogs, before scaling.
const HOGS: usize = 200;
/// The most one hog pushes.
const PUSH: usize = 4 << 20;
/// A hog whose writes made no progress for this long has stalled.
const STALL: Duration = Duration::from_millis(500);
/// The most the push may take, all hogs together.
const PUSH_WITHIN: Duration = Duration::from_secs(30);
/// A hog's own send and receive buffers.
const HOG_BUFFERS: usize = 64 * 1024;
/// The largest segment a hog accepts: small segments keep the server's
/// send buffer, sized by segments, small.
const HOG_MSS: u32 = 1460;
/// The bound's allowance beyond the pending answers, per hog.
const OVERHEAD_KIB: u64 = 64;
/// What a server may keep once, whatever the number of hogs, after they
/// are gone: what its allocator keeps for reuse.
const KEPT_ONCE_KIB: u64 = 2048;
/// How long the memory has to come back once the hogs are gone.
const RETURN_WITHIN: Duration = Duration::from_secs(5);

fn run(target: &mut Target, plan: &Plan) -> Result<Finding, Halt> {
    let mut f = Finding::default();
    let n = plan.count(HOGS);
    let pss = || target.pid.map(tree_memory_kib);
    wire::honest(target.addr, 0, PATIENCE)?;
    let base = pss();

    let mut hogs = Vec::with_capacity(n);
    for i in 0..n {
        let mut hog = connect_hog(target.addr)?;
        let line = format!("hog {i} says hello before it turns hog\n");
        wire::roundtrip(&mut hog, line.as_bytes(), PATIENCE)
            .map_err(|e| format!("hog {i} was not served while still polite: {e}"))?;
        hog.set_nonblocking(true)?;
        hogs.push(hog);
    }
    let quiet = pss();

    let done = AtomicBool::new(false);
    let peak = AtomicU64::new(quiet.unwrap_or(0));
    let addr = target.addr;
    let pid = target.pid;
    let (push, probes) = std::thread::scope(|scope| {
        let prober = scope.spawn(|| {
            let mut results = Vec::new();
            while !done.load(Relaxed) {
                results.push(wire::honest(addr, results.len() + 1, HONEST_WITHIN));
                if let Some(pid) = pid {
                    peak.fetch_max(tree_memory_kib(pid), Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            results
        });
        let push = push_all(&mut hogs);
        if let Some(pid) = pid {
            peak.fetch_max(tree_memory_kib(pid), Relaxed);
        }
        // One more honest client with every hog stalled.
        let last = wire::honest(addr, usize::MAX, HONEST_WITHIN);
        done.store(true, Relaxed);
        let mut probes = prober.join().unwrap_or_default();
        probes.push(last);
        (push, probes)
    });
    let peak = peak.load(Relaxed);
    drop(hogs);

    let failed: Vec<&String> = probes.iter().filter_map(|p| p.as_ref().err()).collect();
    if let Some(first) = failed.first() {
        f.fail(format!(
            "{} of {} honest clients were not answered within {} s; the first: {first}",
            failed.len(),
            probes.len(),
            HONEST_WITHIN.as_secs()
        ));
    }
    f.fact("hogs", n);
    f.fact("pushed_mib", push.sent as f64 / (1 << 20) as f64);
    f.fact("stalled", push.stalled);
    f.fact("closed_by_server", push.closed);
    f.fact("honest_clients", probes.len());
    f.says = format!(
        "{n} hogs pushed {:.0} MiB ({} stalled, {} closed by the server); {} of {} honest \
         clients answered",
        push.sent as f64 / (1 << 20) as f64,
        push.stalled,
        push.closed,
        probes.len() - failed.len(),
        probes.len()
    );

    if let (Some(base), Some(quiet), Some(pid)) = (base, quiet, target.pid) {
        memory_verdict(&mut f, pid, n, target.limits.max_pending, base, quiet, peak);
    } else {
        f.says.push_str("; memory not measured (no --pid)");
    }
    target.alive(&mut f);
    Ok(f)
}

/// Checks the growth per hog against the bound, then waits for the memory
/// to come back.
fn memory_verdict(
    f: &mut Finding,
    pid: i32,
    n: usize,
    max_pending: usize,
    base: u64,
    quiet: u64,
    peak: u64,
) {
    let bound = OVERHEAD_KIB + 2 * (max_pending as u64).div_ceil(1024);
    let per_quiet = quiet.saturating_sub(base) as f64 / n as f64;
    let per_hog = peak.saturating_sub(quiet) as f64 / n as f64;
    f.check(per_hog <= bound as f64, || {
        format!(
            "{per_hog:.0} KiB per hog beyond a quiet connection, over the bound of {bound} KiB \
             (64 KiB + 2 × MAX_PENDING {max_pending})"
        )
    });
    let growth = peak.saturating_sub(base);
    let allowed = KEPT_ONCE_KIB + OVERHEAD_KIB * n as u64;
    let since = Instant::now();
    let mut after = tree_memory_kib(pid);
    while after.saturating_sub(base) > allowed && since.elapsed() < RETURN_WITHIN {
        std::thread::sleep(Duration::from_millis(200));
        after = tree_memory_kib(pid);
    }
    let kept = after.saturating_sub(base);
    f.check(kept <= allowed, || {
        format!(
            "{} s after the hogs left it still kept {kept} KiB of the {growth} KiB it grew \
             (allowed: {allowed} KiB)",
            RETURN_WITHIN.as_secs()
        )
    });
    f.fact("pss_base_kib", base);
    f.fact("quiet_kib_per_conn", per_quiet);
    f.fact("hog_kib_per_conn", per_hog);
    f.fact("bound_kib_per_hog", bound);
    f.fact("pss_peak_kib", peak);
    f.fact("pss_after_kib", after);
    f.says.push_str(&format!(
        "; memory {per_quiet:.0} KiB per quiet connection, {per_hog:.0} KiB more per hog \
         (bound {bound}), {kept} KiB kept after"
    ));
}

/// How the push went.
struct Pushed {
    sent: usize,
    stalled: usize,
    closed: usize,
}

/// Pushes up to [`PUSH`] bytes down every hog from this one thread,
/// round-robin over non-blocking sockets, until each has pushed it all,
/// stalled, or been closed by the server.
fn push_all(hogs: &mut [TcpStream]) -> Pushed {
    let chunk: Vec<u8> = b"hog: lower-case bytes for the server to upper-case and keep...\n"
        .iter()
        .copied()
        .cycle()
        .take(64 * 1024)
        .collect();
    let started = Instant::now();
    let mut sent = vec![0usize; hogs.len()];
    let mut progress = vec![started; hogs.len()];
    let mut active: Vec<usize> = (0..hogs.len()).collect();
    let (mut stalled, mut closed) = (0, 0);
    while !active.is_empty() && started.elapsed() < PUSH_WITHIN {
        let mut moved = false;
        active.retain(|&i| {
            let from = sent[i] % chunk.len();
            let to = chunk.len().min(from + PUSH - sent[i]);
            match hogs[i].write(&chunk[from..to]) {
                Ok(k) if k > 0 => {
                    sent[i] += k;
                    progress[i] = Instant::now();
                    moved = true;
                    sent[i] < PUSH
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let gave_up = progress[i].elapsed() > STALL;
                    stalled += usize::from(gave_up);
                    !gave_up
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                _ => {
                    closed += 1;
                    false
                }
            }
        });
        if !moved {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Pushed {
        sent: sent.iter().sum(),
        stalled,
        closed,
    }
}

/// Connects with small socket buffers, set before the handshake so that
/// the window the kernel advertises stays small too.
fn connect_hog(addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_send_buffer_size(HOG_BUFFERS)?;
    socket.set_recv_buffer_size(HOG_BUFFERS)?;
    socket.set_mss(HOG_MSS)?;
    socket.connect_timeout(&addr.into(), PATIENCE)?;
    socket.set_nodelay(true)?;
    socket.set_write_timeout(Some(PATIENCE))?;
    Ok(socket.into())
}
