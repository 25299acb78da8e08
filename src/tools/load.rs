//! `lab load`: a load generator that checks every byte it gets back.
//!
//! Published comparisons of IO models have been wrong because the server
//! echoed stale bytes, or because the load tool itself was the bottleneck,
//! or because a stalled server hid behind the load tool's own waiting
//! (coordinated omission). This generator is built so that each of those
//! shows up in its report instead of in the conclusions:
//!
//! - **Every byte is checked.** Request `k` on a connection is a line of
//!   random lower-case letters drawn from a generator seeded per connection;
//!   the receiving side replays the same generator and compares each byte of
//!   the response with the upper-case of what was sent, across any split of
//!   the stream into reads. A wrong, missing or out-of-order byte is an
//!   error naming the connection and the offset, the connection is dropped,
//!   and the run exits non-zero. Errors never count as throughput.
//! - **Closed or open loop.** By default each connection keeps `--depth`
//!   requests in flight (closed loop: the server's speed sets the pace).
//!   With `--rate`, requests are *scheduled* at fixed times whatever the
//!   server does, and latency runs from the scheduled time, so a server that
//!   stalls for a second is charged for every request it delayed, not only
//!   for the one it was stuck on.
//! - **The generator measures itself.** The report gives its own CPU use:
//!   near 100 % of its threads means the generator, not the server, was the
//!   limit.
//!
//! It is event-driven on epoll, edge-triggered, like the lab's `epoll`
//! model: one thread drives thousands of connections, `--threads` adds more,
//! each thread with its own connections and epoll.

use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::sys::readiness::{Epoll, EpollEvent};
use crate::sys::{self};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadArgs {
    /// The server.
    pub addr: String,
    /// Connections that send requests.
    pub conns: usize,
    /// Requests each connection keeps in flight (closed loop).
    pub depth: usize,
    /// Bytes per request line, the LF included (at least 1).
    pub size: usize,
    /// How long to measure.
    pub duration: Duration,
    /// How long to run before measuring.
    pub warmup: Duration,
    /// Total requests per second, scheduled (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    /// Extra connections opened and left silent.
    pub idle: usize,
    /// Threads, each with its share of the connections.
    pub threads: usize,
}

impl LoadArgs {
    /// The plain closed loop the bench and the demos run: `conns`
    /// connections each keeping `depth` 64-byte requests in flight for
    /// `duration`, no warm-up, no idle connections, one generator thread.
    pub fn closed_loop(addr: &str, conns: usize, depth: usize, duration: Duration) -> LoadArgs {
        LoadArgs {
            addr: addr.to_string(),
            conns,
            depth,
            size: 64,
            duration,
            warmup: Duration::ZERO,
            rate: None,
            idle: 0,
            threads: 1,
        }
    }
}

/// What happened.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// The server's address.
    pub addr: String,
    /// Busy connections.
    pub conns: usize,
    /// Silent connections.
    pub idle: usize,
    /// Requests in flight per connection (closed loop).
    pub depth: usize,
    /// Bytes per request.
    pub size: usize,
    /// Scheduled requests per second (open loop), if any.
    pub rate: Option<f64>,
    /// Threads.
    pub threads: usize,
    /// Seconds measured.
    pub duration_s: f64,
    /// Requests answered correctly within the measured window.
    pub requests: u64,
    /// `requests / duration_s`.
    pub requests_per_s: f64,
    /// Latency percentiles in microseconds.
    pub latency_us: Percentiles,
    /// Requests answered per busy connection: min, median, max.
    pub per_conn: Fairness,
    /// Errors of every kind (wrong bytes, resets, missing answers,
    /// failed connects, silent connections closed by the server).
    pub errors: u64,
    /// The first few errors, described.
    pub error_samples: Vec<String>,
    /// The generator's own CPU seconds (user + system) over the run.
    pub cpu_s: f64,
    /// The generator's CPU as a share of its threads' capacity (1.0: every
    /// thread was busy all the time — then the generator was the limit).
    pub cpu_share: f64,
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The slowest.
    pub max: f64,
}

/// Requests answered per connection.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Fairness {
    /// The most starved connection.
    pub min: u64,
    /// The median connection.
    pub median: u64,
    /// The most served connection.
    pub max: u64,
}

/// How long after the end of the run answers may still arrive before the
/// requests they answer count as missing.
const GRACE: Duration = Duration::from_secs(3);
/// The most errors described in the report.
const SAMPLES: usize = 10;

/// Runs the load and returns the report. `Err` only for a bad address or a
/// failure of the generator itself; the server's failures are in the report.
pub fn run(args: &LoadArgs) -> io::Result<LoadReport> {
    run_observed(args, |_, _| {})
}

/// [`run`], telling `observe` (on a thread of its own, as the load starts)
/// the measured window: from the end of the warm-up to the end of the
/// load. `lab bench` reads the server's CPU time at both ends.
pub fn run_observed(
    args: &LoadArgs,
    observe: impl FnOnce(Instant, Instant) + Send,
) -> io::Result<LoadReport> {
    let addr = args
        .addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "no address"))?;
    let threads = args.threads.clamp(1, args.conns.max(1));
    let usage_before = cpu_time();
    let start = Instant::now() + Duration::from_millis(50) * threads as u32;
    let measure_from = start + args.warmup;
    let stop = measure_from + args.duration;
    let results: Vec<io::Result<ThreadResult>> = std::thread::scope(|scope| {
        scope.spawn(move || observe(measure_from, stop));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let busy = share(args.conns, threads, t);
                let idle = share(args.idle, threads, t);
                let first_conn = (0..t).map(|u| share(args.conns, threads, u)).sum::<usize>();
                scope.spawn(move || {
                    Worker::new(
                        args,
                        addr,
                        first_conn,
                        busy,
                        idle,
                        start,
                        measure_from,
                        stop,
                    )?
                    .run()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a load thread panicked")))
            })
            .collect()
    });
    let cpu_s = (cpu_time() - usage_before).as_secs_f64();
    let wall = Instant::now()
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);

    let mut histogram = new_histogram();
    let mut per_conn = Vec::new();
    let (mut errors, mut samples) = (0u64, Vec::new());
    for result in results {
        let result = result?;
        histogram.add(&result.histogram).map_err(io::Error::other)?;
        per_conn.extend(result.per_conn);
        errors += result.errors;
        samples.extend(result.samples);
    }
    samples.truncate(SAMPLES);
    per_conn.sort_unstable();
    let requests = histogram.len();
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(LoadReport {
        addr: args.addr.clone(),
        conns: args.conns,
        idle: args.idle,
        depth: args.depth,
        size: args.size,
        rate: args.rate,
        threads,
        duration_s: args.duration.as_secs_f64(),
        requests,
        requests_per_s: requests as f64 / args.duration.as_secs_f64().max(1e-9),
        latency_us: Percentiles {
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            p999: us(0.999),
            max: histogram.max() as f64 / 1000.0,
        },
        per_conn: Fairness {
            min: per_conn.first().copied().unwrap_or(0),
            median: per_conn.get(per_conn.len() / 2).copied().unwrap_or(0),
            max: per_conn.last().copied().unwrap_or(0),
        },
        errors,
        error_samples: samples,
        cpu_s,
        cpu_share: cpu_s / (wall * threads as f64),
    })
}

/// The `t`-th of `n` near-equal shares of `total`.
fn share(total: usize, n: usize, t: usize) -> usize {
    total / n + usize::from(t < total % n)
}

fn new_histogram() -> Histogram<u64> {
    // 1 ns to 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

fn cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return Duration::ZERO;
    };
    crate::server::stats::timeval(usage.user_time())
        + crate::server::stats::timeval(usage.system_time())
}

/// A small, fast generator (xorshift64*): the request bytes need to be
/// unpredictable to a server, not to an attacker.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Appends one request line: `size - 1` random lower-case letters and LF.
    fn line(&mut self, size: usize, out: &mut Vec<u8>) {
        let letters = size - 1;
        let mut left = letters;
        while left > 0 {
            let mut bits = self.next();
            // Eight letters per draw; `% 26` of a byte is biased a little,
            // which does not matter here.
            for _ in 0..left.min(8) {
                out.push(b'a' + (bits as u8) % 26);
                bits >>= 8;
            }
            left -= left.min(8);
        }
        out.push(b'\n');
    }
}

/// One busy connection of the generator.
struct Client {
    id: usize,
    socket: OwnedFd,
    /// Replays requests to build what the next answer must be.
    send_rng: Rng,
    check_rng: Rng,
    out: Vec<u8>,
    out_sent: usize,
    /// Send (or scheduled) time of each request in flight.
    in_flight: VecDeque<Instant>,
    /// The answer being received, and how much of it has arrived.
    expected: Vec<u8>,
    matched: usize,
    /// Bytes received so far (for error offsets).
    received: u64,
    /// Answers counted in the measured window.
    answered: u64,
    /// Open loop: when the next request is due.
    next_due: Instant,
    dead: bool,
}

struct ThreadResult {
    histogram: Histogram<u64>,
    per_conn: Vec<u64>,
    errors: u64,
    samples: Vec<String>,
}

struct Worker<'a> {
    args: &'a LoadArgs,
    epoll: Epoll,
    clients: Vec<Client>,
    idle: Vec<OwnedFd>,
    histogram: Histogram<u64>,
    errors: u64,
    samples: Vec<String>,
    start: Instant,
    measure_from: Instant,
    stop: Instant,
    interval: Option<Duration>,
    /// Open loop: connections by due time.
    due: BinaryHeap<std::cmp::Reverse<(Instant, usize)>>,
    scratch: Vec<u8>,
}

/// Epoll `data` words of idle connections are offset by this.
const IDLE_BASE: u64 = 1 << 40;

impl<'a> Worker<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        args: &'a LoadArgs,
        addr: SocketAddr,
        first_conn: usize,
        conns: usize,
        idle: usize,
        start: Instant,
        measure_from: Instant,
        stop: Instant,
    ) -> io::Result<Worker<'a>> {
        let epoll = Epoll::new()?;
        let interval = args
            .rate
            .map(|rate| Duration::from_secs_f64(args.conns as f64 / rate.max(1e-9)));
        let mut worker = Worker {
            args,
            epoll,
            clients: Vec::with_capacity(conns),
            idle: Vec::with_capacity(idle),
            histogram: new_histogram(),
            errors: 0,
            samples: Vec::new(),
            start,
            measure_from,
            stop,
            interval,
            due: BinaryHeap::new(),
            scratch: vec![0; 64 * 1024],
        };
        let edge = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        for i in 0..idle {
            match connect(addr) {
                Ok(socket) => {
                    worker.epoll.add(
                        socket.as_raw_fd(),
                        (libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                        IDLE_BASE + i as u64,
                    )?;
                    worker.idle.push(socket);
                }
                Err(e) => worker.error(format!("idle connection {i}: connect failed: {e}")),
            }
        }
        for i in 0..conns {
            let id = first_conn + i;
            match connect(addr) {
                Ok(socket) => {
                    worker
                        .epoll
                        .add(socket.as_raw_fd(), edge, worker.clients.len() as u64)?;
                    // Stagger the open-loop schedule so connections do not fire in lockstep.
                    let offset = interval.map_or(Duration::ZERO, |iv| {
                        iv.mul_f64(i as f64 / conns.max(1) as f64)
                    });
                    worker.clients.push(Client {
                        id,
                        socket,
                        send_rng: Rng::new(id as u64 + 1),
                        check_rng: Rng::new(id as u64 + 1),
                        out: Vec::new(),
                        out_sent: 0,
                        in_flight: VecDeque::new(),
                        expected: Vec::new(),
                        matched: 0,
                        received: 0,
                        answered: 0,
                        next_due: start + offset,
                        dead: false,
                    });
                }
                Err(e) => worker.error(format!("conn {id}: connect failed: {e}")),
            }
        }
        Ok(worker)
    }

    fn error(&mut self, description: String) {
        self.errors += 1;
        if self.samples.len() < SAMPLES {
            self.samples.push(description);
        }
    }

    fn run(mut self) -> io::Result<ThreadResult> {
        let mut events: Vec<EpollEvent> = Vec::with_capacity(1024);
        let mut ready: Vec<u64> = Vec::with_capacity(1024);
        // Wait for the common start, so every thread's connections are open.
        std::thread::sleep(self.start.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        for c in 0..self.clients.len() {
            match self.interval {
                None => {
                    for _ in 0..self.args.depth {
                        self.queue_request(c, now);
                    }
                }
                Some(_) => self
                    .due
                    .push(std::cmp::Reverse((self.clients[c].next_due, c))),
            }
            self.flush(c);
        }
        let deadline = self.stop + GRACE;
        loop {
            let now = Instant::now();
            self.send_due(now);
            let sending = now < self.stop;
            let waiting = self
                .clients
                .iter()
                .any(|c| !c.dead && !c.in_flight.is_empty());
            if (!sending && !waiting) || now >= deadline {
                break;
            }
            let mut timeout = if sending {
                self.stop - now
            } else {
                deadline - now
            };
            if let Some(std::cmp::Reverse((due, _))) = self.due.peek() {
                timeout = timeout.min(due.saturating_duration_since(now));
                // epoll_wait counts in whole milliseconds (rounded up): for
                // the last one before a send is due, poll without sleeping,
                // so requests leave on schedule instead of up to 1 ms late
                // (which would be charged to the server).
                if timeout < Duration::from_millis(1) {
                    timeout = Duration::ZERO;
                }
            }
            match self.epoll.wait(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            ready.clear();
            ready.extend(events.iter().map(|event| event.u64));
            for &data in &ready {
                if data >= IDLE_BASE {
                    let i = (data - IDLE_BASE) as usize;
                    self.error(format!("idle connection {i}: closed by the server"));
                    let fd = self.idle[i].as_raw_fd();
                    let _ = self.epoll.delete(fd);
                    continue;
                }
                let c = data as usize;
                self.receive(c, now);
                self.flush(c);
            }
        }
        for c in 0..self.clients.len() {
            let client = &self.clients[c];
            if !client.dead && !client.in_flight.is_empty() {
                let (id, n) = (client.id, client.in_flight.len());
                self.error(format!("conn {id}: {n} requests never answered"));
            }
        }
        Ok(ThreadResult {
            histogram: self.histogram,
            per_conn: self.clients.iter().map(|c| c.answered).collect(),
            errors: self.errors,
            samples: self.samples,
        })
    }

    /// Open loop: queue every request whose scheduled time has come.
    fn send_due(&mut self, now: Instant) {
        let Some(interval) = self.interval else {
            return;
        };
        while let Some(&std::cmp::Reverse((due, c))) = self.due.peek() {
            if due > now || due >= self.stop {
                break;
            }
            self.due.pop();
            if self.clients[c].dead {
                continue;
            }
            // Latency runs from `due`, the scheduled time, not from now.
            self.queue_request(c, due);
            self.clients[c].next_due = due + interval;
            self.due.push(std::cmp::Reverse((due + interval, c)));
            self.flush(c);
        }
    }

    fn queue_request(&mut self, c: usize, at: Instant) {
        let size = self.args.size;
        let client = &mut self.clients[c];
        client.send_rng.line(size, &mut client.out);
        client.in_flight.push_back(at);
    }

    fn flush(&mut self, c: usize) {
        let client = &mut self.clients[c];
        while !client.dead && client.out_sent < client.out.len() {
            // Uncounted: these are the clients' calls, not the server's.
            match sys::send_uncounted(client.socket.as_fd(), &client.out[client.out_sent..]) {
                Ok(n) => client.out_sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let id = client.id;
                    return self.fail(c, format!("conn {id}: write failed: {e}"));
                }
            }
        }
        client.out.clear();
        client.out_sent = 0;
    }

    fn fail(&mut self, c: usize, description: String) {
        let client = &mut self.clients[c];
        if !client.dead {
            client.dead = true;
            let _ = self.epoll.delete(client.socket.as_raw_fd());
            self.error(description);
        }
    }

    /// Reads until `EAGAIN`, checking each byte against the expected answers.
    fn receive(&mut self, c: usize, now: Instant) {
        loop {
            if self.clients[c].dead {
                return;
            }
            let n = match sys::recv_uncounted(self.clients[c].socket.as_fd(), &mut self.scratch) {
                Ok(0) => {
                    let client = &self.clients[c];
                    let (id, at, n) = (client.id, client.received, client.in_flight.len());
                    return self.fail(c, format!("conn {id}: closed by the server at byte {at} with {n} requests unanswered"));
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    let id = self.clients[c].id;
                    return self.fail(c, format!("conn {id}: read failed: {e}"));
                }
            };
            // A short read drained the socket; the next data raises a new
            // edge, so skip the read that would only say EAGAIN.
            let drained = n < self.scratch.len();
            let mut chunk = 0;
            while chunk < n {
                let size = self.args.size;
                let client = &mut self.clients[c];
                if client.in_flight.is_empty() {
                    let (id, at) = (client.id, client.received);
                    return self.fail(
                        c,
                        format!("conn {id}: {} unrequested bytes at byte {at}", n - chunk),
                    );
                }
                if client.matched == 0 {
                    client.expected.clear();
                    client.check_rng.line(size, &mut client.expected);
                    client.expected.make_ascii_uppercase();
                }
                let take = (n - chunk).min(size - client.matched);
                let got = &self.scratch[chunk..chunk + take];
                let want = &client.expected[client.matched..client.matched + take];
                if got != want {
                    let id = client.id;
                    // An answer that starts with the protocol's error prefix
                    // is the server saying why: quote it.
                    let rest = &self.scratch[chunk..n];
                    if client.matched == 0 && rest.starts_with(b"error:") {
                        let line = rest.split(|&b| b == b'\n').next().unwrap_or(rest);
                        let at = client.received;
                        let said = String::from_utf8_lossy(line).into_owned();
                        return self.fail(
                            c,
                            format!("conn {id}: the server answered {said:?} at offset {at}"),
                        );
                    }
                    let i = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(0);
                    let at = client.received + i as u64;
                    let (g, w) = (got[i], want[i]);
                    return self.fail(
                        c,
                        format!(
                            "conn {id}: wrong byte at offset {at}: expected {:?}, got {:?}",
                            w as char, g as char
                        ),
                    );
                }
                client.matched += take;
                client.received += take as u64;
                chunk += take;
                if client.matched == size {
                    client.matched = 0;
                    let sent_at = client.in_flight.pop_front().expect("checked non-empty");
                    if sent_at >= self.measure_from && sent_at < self.stop {
                        client.answered += 1;
                        let nanos = now.saturating_duration_since(sent_at).as_nanos().max(1) as u64;
                        let _ = self.histogram.record(nanos.min(100_000_000_000));
                    }
                    if self.interval.is_none() && now < self.stop {
                        self.queue_request(c, now);
                    }
                }
            }
            if drained {
                return;
            }
        }
    }
}

/// Connects with a timeout, then makes the socket non-blocking with
/// `TCP_NODELAY` (requests are small; Nagle would batch them).
fn connect(addr: SocketAddr) -> io::Result<OwnedFd> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl LoadReport {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate:.0} req/s"),
            None => format!("closed loop, depth {}", self.depth),
        };
        let l = &self.latency_us;
        let mut text = format!(
            "lab load {}: {} conns (+{} idle), {}-byte lines, {mode}, {:.1} s, {} thread(s)\n\
             requests   {} ({:.0}/s)   errors {}\n\
             latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n\
             fairness   answers per conn: min {}  median {}  max {}\n\
             generator  {:.2} s CPU, {:.0}% of its threads' time{}\n",
            self.addr,
            self.conns,
            self.idle,
            self.size,
            self.duration_s,
            self.threads,
            self.requests,
            self.requests_per_s,
            self.errors,
            micros(l.p50),
            micros(l.p90),
            micros(l.p99),
            micros(l.p999),
            micros(l.max),
            self.per_conn.min,
            self.per_conn.median,
            self.per_conn.max,
            self.cpu_s,
            self.cpu_share * 100.0,
            if self.cpu_share > 0.9 {
                "  (the generator may be the bottleneck)"
            } else {
                ""
            },
        );
        for sample in &self.error_samples {
            text.push_str(&format!("error      {sample}\n"));
        }
        text
    }
}

fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.0}µs")
    }
}
