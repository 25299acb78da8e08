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
//! the processes under it: [`crate::tools::child::tree_memory_kib`]) is read
//! before, with the hogs connected but quiet, and after each of two waves:
//! first half the hogs push until they stall, then the other half. The
//! first wave also pays for what the server sets up once (a pool of
//! buffers it touches only under load, say); the second shows what *one
//! more hog* costs. **The bound**: a hog of the second wave may cost at most
//! `64 KiB + 2 × MAX_PENDING`: the unsent answers (up to `MAX_PENDING`,
//! plus the one read that passed it, up to another `MAX_PENDING`), and
//! 64 KiB for the read buffer and bookkeeping. Under `--model` the server
//! runs with `--max-pending 65536`, so the bound is 192 KiB a hog. **And it
//! must give the memory back**: 5 s after the hogs have left, the server
//! may keep what it set up once (at least 2 MiB), 256 KiB for each of its
//! processes, and 64 KiB a hog. Allocators keep freed memory for reuse:
//! glibc gives a heap's top back only past 128 KiB, keeps a heap per
//! thread and the stacks of exited threads, and every worker of a
//! pre-forked pool has a heap of its own. "All of it" would fail correct
//! servers; a buffer kept per connection that has gone would not pass.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::wire::{self, HONEST_WITHIN, PATIENCE};
use super::{Finding, Halt, Limits, Plan, Process, Scenario, Target};
use crate::tools::child::{descendants, tree_memory_kib};

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
/// What a server may keep once after the hogs are gone, at least: what
/// its allocator keeps for reuse.
const KEPT_ONCE_KIB: u64 = 2048;
/// What each of its processes may keep besides: a heap's top is given
/// back only past a threshold (glibc's `M_TRIM_THRESHOLD`, 128 KiB), and
/// freed chunks stay for reuse, in every process of a pre-forked pool.
const KEPT_PER_PROCESS_KIB: u64 = 256;
/// How long the memory has to come back once the hogs are gone.
const RETURN_WITHIN: Duration = Duration::from_secs(5);

fn run(target: &mut Target, plan: &Plan) -> Result<Finding, Halt> {
    let mut f = Finding::default();
    // Two waves need two hogs at least.
    let n = plan.count(HOGS).max(2);
    let pid = target.pid;
    let pss = || pid.map(tree_memory_kib);
    wire::honest(target.addr, 0, PATIENCE)?;
    let mut memory = Memory {
        base: pss(),
        ..Memory::default()
    };

    let mut hogs = Vec::with_capacity(n);
    for i in 0..n {
        let mut hog = connect_hog(target.addr)?;
        let line = format!("hog {i} says hello before it turns hog\n");
        wire::roundtrip(&mut hog, line.as_bytes(), PATIENCE)
            .map_err(|e| format!("hog {i} was not served while still polite: {e}"))?;
        hog.set_nonblocking(true)?;
        hogs.push(hog);
    }
    memory.quiet = pss();

    let done = AtomicBool::new(false);
    let addr = target.addr;
    let (first, second) = hogs.split_at_mut(n / 2);
    let (pushed, probes) = std::thread::scope(|scope| {
        let prober = scope.spawn(|| {
            let mut results = Vec::new();
            while !done.load(Relaxed) {
                results.push(wire::honest(addr, results.len() + 1, HONEST_WITHIN));
                std::thread::sleep(Duration::from_millis(200));
            }
            results
        });
        // Two waves: what the second costs is what one more hog costs,
        // with whatever the server sets up once paid by the first.
        let mut pushed = push_all(first);
        memory.first_wave = pss();
        let more = push_all(second);
        memory.second_wave = pss();
        pushed.add(&more);
        // One more honest client with every hog stalled.
        let last = wire::honest(addr, usize::MAX, HONEST_WITHIN);
        done.store(true, Relaxed);
        let mut probes = prober.join().unwrap_or_default();
        probes.push(last);
        (pushed, probes)
    });
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
    f.fact("pushed_mib", pushed.sent as f64 / (1 << 20) as f64);
    f.fact("stalled", pushed.stalled);
    f.fact("closed_by_server", pushed.closed);
    f.fact("honest_clients", probes.len());
    f.says = format!(
        "{n} hogs pushed {:.0} MiB ({} stalled, {} closed by the server); {} of {} honest \
         clients answered",
        pushed.sent as f64 / (1 << 20) as f64,
        pushed.stalled,
        pushed.closed,
        probes.len() - failed.len(),
        probes.len()
    );
    match pid {
        Some(pid) => memory.verdict(&mut f, pid, n, target.limits.max_pending),
        None => f.says.push_str("; memory not measured (no --pid)"),
    }
    target.alive(&mut f);
    Ok(f)
}

/// The server's memory (KiB) at each step, if its process is known.
#[derive(Default)]
struct Memory {
    /// Before any hog.
    base: Option<u64>,
    /// Every hog connected, quiet.
    quiet: Option<u64>,
    /// The first half of the hogs pushed until stalled.
    first_wave: Option<u64>,
    /// All of them.
    second_wave: Option<u64>,
}

impl Memory {
    /// Checks the cost of one more hog against the bound, then waits for
    /// the memory to come back.
    fn verdict(&self, f: &mut Finding, pid: i32, n: usize, max_pending: usize) {
        let (Some(base), Some(quiet), Some(first), Some(second)) =
            (self.base, self.quiet, self.first_wave, self.second_wave)
        else {
            return;
        };
        let (wave1, wave2) = ((n / 2) as f64, (n - n / 2) as f64);
        let bound = OVERHEAD_KIB + 2 * (max_pending as u64).div_ceil(1024);
        let per_quiet = quiet.saturating_sub(base) as f64 / n as f64;
        let per_hog = second.saturating_sub(first) as f64 / wave2;
        f.check(per_hog <= bound as f64, || {
            format!(
                "each hog of the second wave cost {per_hog:.0} KiB, over the bound of {bound} \
                 KiB (64 KiB + 2 × MAX_PENDING {max_pending})"
            )
        });
        // What the first wave cost beyond its hogs' share: set up once.
        let once = (first.saturating_sub(quiet) as f64 - wave1 * per_hog).max(0.0) as u64;
        let processes = 1 + descendants(pid).len() as u64;
        let allowed =
            once.max(KEPT_ONCE_KIB) + KEPT_PER_PROCESS_KIB * processes + OVERHEAD_KIB * n as u64;
        let since = Instant::now();
        let mut after = tree_memory_kib(pid);
        while after.saturating_sub(base) > allowed && since.elapsed() < RETURN_WITHIN {
            std::thread::sleep(Duration::from_millis(200));
            after = tree_memory_kib(pid);
        }
        let kept = after.saturating_sub(base);
        let grew = second.saturating_sub(base);
        f.check(kept <= allowed, || {
            format!(
                "{} s after the hogs left it still kept {kept} KiB of the {grew} KiB it grew \
                 (allowed: {allowed} KiB)",
                RETURN_WITHIN.as_secs()
            )
        });
        f.fact("pss_base_kib", base);
        f.fact("quiet_kib_per_conn", per_quiet);
        f.fact("hog_kib_per_conn", per_hog);
        f.fact("set_up_once_kib", once);
        f.fact("bound_kib_per_hog", bound);
        f.fact("pss_peak_kib", second);
        f.fact("pss_after_kib", after);
        f.says.push_str(&format!(
            "; memory {per_quiet:.0} KiB per quiet connection, {per_hog:.0} KiB more per hog \
             (bound {bound}), {once} KiB set up once, {kept} KiB kept after"
        ));
    }
}

/// How the push went.
struct Pushed {
    sent: usize,
    stalled: usize,
    closed: usize,
}

impl Pushed {
    fn add(&mut self, other: &Pushed) {
        self.sent += other.sent;
        self.stalled += other.stalled;
        self.closed += other.closed;
    }
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
