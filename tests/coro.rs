//! The coroutine runtime, through its public API: scheduling order, what
//! survives a switch, spawning and joining at volume, sleeping, panics,
//! deadlock, stack overflow, and sockets that park.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use iolab::coro::net::{Registration, TcpStream};
use iolab::coro::scheduler::{self, Direction};
use iolab::coro::{self, Deadlock};

mod util;

#[test]
fn yields_interleave_in_exact_fifo_order() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let result = coro::run({
        let log = log.clone();
        move || {
            let workers: Vec<_> = (0..3)
                .map(|id| {
                    let log = log.clone();
                    coro::spawn(move || {
                        for step in 0..3 {
                            log.borrow_mut().push((id, step));
                            coro::yield_now();
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.join().unwrap();
            }
        }
    });
    assert!(matches!(result, Ok(Ok(()))));
    let expected: Vec<(i32, i32)> = (0..3)
        .flat_map(|step| (0..3).map(move |id| (id, step)))
        .collect();
    assert_eq!(*log.borrow(), expected);
}

/// The floating-point control state, status bits masked off: on x86-64,
/// MXCSR's control bits (the low six are sticky flags that arithmetic
/// sets) in the low half and the x87 control word in the high half; FPCR
/// on aarch64 (which has no status bits).
#[cfg(target_arch = "x86_64")]
fn fp_control() -> u64 {
    let (mut mxcsr, mut x87) = (0u32, 0u16);
    // SAFETY: stmxcsr and fnstcw store 4 and 2 bytes into live locals.
    unsafe {
        std::arch::asm!(
            "stmxcsr [{}]",
            "fnstcw [{}]",
            in(reg) &mut mxcsr,
            in(reg) &mut x87,
            options(nostack),
        )
    };
    u64::from(mxcsr & !0x3f) | u64::from(x87) << 32
}

#[cfg(target_arch = "x86_64")]
fn set_fp_control(value: u64) {
    let (mxcsr, x87) = (value as u32, (value >> 32) as u16);
    // SAFETY: ldmxcsr and fldcw load valid values (only the rounding bits
    // of the current ones change).
    unsafe {
        std::arch::asm!(
            "ldmxcsr [{}]",
            "fldcw [{}]",
            in(reg) &mxcsr,
            in(reg) &x87,
            options(nostack),
        )
    };
}

/// The rounding-control bits of MXCSR (14:13) and of the x87 control word
/// (11:10); both set is "toward zero" in each.
#[cfg(target_arch = "x86_64")]
const ROUNDING_BITS: u64 = 0x6000 | 0xC00 << 32;

#[cfg(target_arch = "aarch64")]
fn fp_control() -> u64 {
    let value: u64;
    // SAFETY: reading FPCR has no side effects.
    unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) value, options(nostack, nomem)) };
    value
}

#[cfg(target_arch = "aarch64")]
fn set_fp_control(value: u64) {
    // SAFETY: only FPCR's rounding-mode bits differ from the current value.
    unsafe { std::arch::asm!("msr fpcr, {}", in(reg) value, options(nostack, nomem)) };
}

/// FPCR's RMode bits (23:22); both set is "toward zero".
#[cfg(target_arch = "aarch64")]
const ROUNDING_BITS: u64 = 0xC0_0000;

#[test]
fn integers_floats_and_rounding_mode_survive_100000_switches() {
    const SWITCHES: u32 = 100_000;
    let result = coro::run(|| {
        // One coroutine rounds toward zero, the other to nearest; each must
        // find its own mode, and its own values, after every switch.
        let toward_zero = coro::spawn(|| {
            let mode = fp_control() | ROUNDING_BITS;
            set_fp_control(mode);
            let (mut n, mut x) = (0u64, 0.0f64);
            for i in 0..SWITCHES {
                n += u64::from(i);
                x += 0.5;
                coro::yield_now();
                assert_eq!(fp_control(), mode, "rounding mode lost after switch {i}");
            }
            (n, x)
        });
        let nearest = coro::spawn(|| {
            let mode = fp_control() & !ROUNDING_BITS;
            let mut y = 1.0f64;
            for _ in 0..SWITCHES {
                y = y * 1.000001 + 0.25;
                coro::yield_now();
                assert_eq!(fp_control(), mode);
            }
            y
        });
        (toward_zero.join().unwrap(), nearest.join().unwrap())
    });
    let ((n, x), y) = result.unwrap().unwrap();
    assert_eq!(n, u64::from(SWITCHES) * u64::from(SWITCHES - 1) / 2);
    assert_eq!(x, f64::from(SWITCHES) * 0.5);
    // The same computation on this thread, never switched.
    let mut expected = 1.0f64;
    for _ in 0..SWITCHES {
        expected = expected * 1.000001 + 0.25;
    }
    assert_eq!(y.to_bits(), expected.to_bits());
}

#[test]
fn ten_thousand_spawn_join_round_trips() {
    let total = coro::run(|| {
        (0..10_000u64)
            .map(|i| coro::spawn(move || i * 2).join().unwrap())
            .sum::<u64>()
    });
    assert_eq!(total.unwrap().unwrap(), 10_000 * 9_999);
}

#[test]
fn sleeps_wake_in_deadline_order_without_burning_cpu() {
    let woke = Rc::new(RefCell::new(Vec::new()));
    let cpu_before = thread_cpu();
    let started = Instant::now();
    coro::run({
        let woke = woke.clone();
        move || {
            let sleepers: Vec<_> = [300u64, 100, 200]
                .into_iter()
                .map(|ms| {
                    let woke = woke.clone();
                    coro::spawn(move || {
                        coro::sleep(Duration::from_millis(ms));
                        woke.borrow_mut().push(ms);
                    })
                })
                .collect();
            for sleeper in sleepers {
                sleeper.join().unwrap();
            }
        }
    })
    .unwrap()
    .unwrap();
    assert_eq!(*woke.borrow(), vec![100, 200, 300]);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The scheduler slept in epoll_wait, not in a loop: a 300 ms wait costs
    // far less than 100 ms of CPU.
    let cpu = thread_cpu() - cpu_before;
    assert!(
        cpu < Duration::from_millis(100),
        "{cpu:?} of CPU while sleeping"
    );
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn a_panic_stays_in_its_coroutine_and_runs_its_drops() {
    struct SetOnDrop(Rc<Cell<bool>>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = Rc::new(Cell::new(false));
    let result = coro::run({
        let dropped = dropped.clone();
        move || {
            let bystander = coro::spawn(|| {
                for _ in 0..10 {
                    coro::yield_now();
                }
                "still standing"
            });
            let doomed = coro::spawn(move || {
                let _guard = SetOnDrop(dropped);
                coro::yield_now();
                panic!("on purpose");
            });
            let panicked = doomed.join().is_err();
            (panicked, bystander.join().unwrap())
        }
    });
    assert_eq!(result.unwrap().unwrap(), (true, "still standing"));
    assert!(
        dropped.get(),
        "the panicking coroutine's locals were not dropped"
    );
}

#[test]
fn waiting_for_what_nothing_can_bring_is_a_deadlock_not_a_hang() {
    let result = coro::run(|| {
        let never = coro::Event::new();
        // A second coroutine waits too, then main; nobody will ever set it,
        // and there is no timer and no socket that could change that.
        let other = {
            let never = never.clone();
            coro::spawn(move || never.wait())
        };
        never.wait();
        other.join().unwrap();
    });
    let deadlock = result.expect_err("the runtime returned instead of reporting a deadlock");
    assert_eq!(deadlock, Deadlock { parked: 2 });
}

#[test]
fn an_event_wakes_every_waiter() {
    let woken = coro::run(|| {
        let event = coro::Event::new();
        let waiters: Vec<_> = (0..5)
            .map(|i| {
                let event = event.clone();
                coro::spawn(move || {
                    event.wait();
                    i
                })
            })
            .collect();
        coro::yield_now();
        event.set();
        waiters.into_iter().map(|w| w.join().unwrap()).sum::<i32>()
    });
    assert_eq!(woken.unwrap().unwrap(), 10);
}

#[test]
fn a_coroutine_stack_overflow_ends_the_process_with_a_clear_message() {
    if std::env::var_os("IOLAB_OVERFLOW_CHILD").is_some() {
        #[allow(unconditional_recursion)]
        fn deeper(n: u64) -> u64 {
            let pad = std::hint::black_box([n; 64]);
            deeper(pad[0] + 1) + pad[63]
        }
        let _ = coro::run(|| deeper(0));
        unreachable!("the overflow should have ended the process");
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_coroutine_stack_overflow_ends_the_process_with_a_clear_message",
            "--nocapture",
        ])
        .env("IOLAB_OVERFLOW_CHILD", "1")
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("coroutine stack overflow"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_hundred_clients_echo_64_kib_each_through_partial_writes() {
    const CLIENTS: usize = 100;
    const BYTES: usize = 64 * 1024;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let data: Vec<u8> = (0..BYTES).map(|j| (i * 7 + j) as u8).collect();
                let writer = {
                    let mut stream = stream.try_clone().unwrap();
                    let data = data.clone();
                    std::thread::spawn(move || stream.write_all(&data).unwrap())
                };
                let mut echoed = vec![0; BYTES];
                stream.read_exact(&mut echoed).unwrap();
                writer.join().unwrap();
                assert_eq!(echoed, data, "client {i}");
            })
        })
        .collect();
    coro::run(move || {
        listener.set_nonblocking(true).unwrap();
        let registration = Registration::new(&listener.as_raw_fd()).unwrap();
        let mut echoers = Vec::new();
        while echoers.len() < CLIENTS {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(true).unwrap();
                    // Small buffers, so writes come back short and park.
                    socket2::SockRef::from(&stream)
                        .set_send_buffer_size(4096)
                        .unwrap();
                    echoers.push(coro::spawn(move || {
                        let mut stream = TcpStream::new(stream.into()).unwrap();
                        let mut buf = [0; 1500];
                        let mut total = 0;
                        while total < BYTES {
                            let n = stream.read(&mut buf).unwrap();
                            assert!(n > 0, "early end of stream");
                            stream.write_all(&buf[..n]).unwrap();
                            total += n;
                        }
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    registration.wait(Direction::Read, None);
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        for echoer in echoers {
            echoer.join().unwrap();
        }
    })
    .unwrap()
    .unwrap();
    for client in clients {
        client.join().unwrap();
    }
}

#[test]
fn deadlock_is_an_error_value() {
    let d = Deadlock { parked: 2 };
    assert!(d.to_string().contains("2 coroutine"));
}

#[test]
fn lab_coro_holds_10000_concurrent_connections() {
    util::assert_holds_ten_thousand("coro", &[]);
}

#[test]
fn a_coroutine_that_only_yields_cannot_starve_timers() {
    let result = coro::run(|| {
        let woke = Rc::new(Cell::new(false));
        let sleeper = {
            let woke = woke.clone();
            coro::spawn(move || {
                coro::sleep(Duration::from_millis(20));
                woke.set(true);
            })
        };
        // Spins on yield_now until the sleeper's timer has fired. If timers
        // were only looked at once the run queue is empty, this would never
        // end; the bound turns that into a failure instead of a hang.
        let mut yields = 0u64;
        while !woke.get() {
            coro::yield_now();
            yields += 1;
            assert!(
                yields < 50_000_000,
                "the sleeper never woke: timers starved"
            );
        }
        sleeper.join().unwrap();
    });
    assert!(matches!(result, Ok(Ok(()))));
}

#[test]
fn a_coroutine_that_only_yields_cannot_starve_io() {
    let (mut writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
    reader.set_nonblocking(true).unwrap();
    let feeder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        writer.write_all(b"x").unwrap();
        writer
    });
    let result = coro::run(move || {
        let got = Rc::new(Cell::new(false));
        let waiter = {
            let got = got.clone();
            coro::spawn(move || {
                let registration = Registration::new(&reader).unwrap();
                let mut byte = [0u8; 1];
                loop {
                    match (&reader).read(&mut byte) {
                        Ok(1) => break,
                        Ok(_) => panic!("early end of stream"),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            registration.wait(Direction::Read, None);
                        }
                        Err(e) => panic!("read: {e}"),
                    }
                }
                got.set(true);
            })
        };
        // As with timers: the socket must be polled between rounds even
        // though a coroutine is always runnable.
        let mut yields = 0u64;
        while !got.get() {
            coro::yield_now();
            yields += 1;
            assert!(yields < 50_000_000, "the reader never woke: IO starved");
        }
        waiter.join().unwrap();
    });
    assert!(matches!(result, Ok(Ok(()))));
    drop(feeder.join().unwrap());
}

#[test]
fn an_ordinary_thread_overflow_still_gets_std_s_message() {
    if std::env::var_os("IOLAB_THREAD_OVERFLOW_CHILD").is_some() {
        // Install the runtime's SIGSEGV handler, then overflow a plain
        // thread: the fault must be handed to std's handler, which names it.
        coro::run(|| ()).unwrap().unwrap();
        #[allow(unconditional_recursion)]
        fn deeper(n: u64) -> u64 {
            let pad = std::hint::black_box([n; 64]);
            deeper(pad[0] + 1) + pad[63]
        }
        let _ = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| deeper(0))
            .unwrap()
            .join();
        unreachable!("the overflow should have ended the process");
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_ordinary_thread_overflow_still_gets_std_s_message",
            "--nocapture",
        ])
        .env("IOLAB_THREAD_OVERFLOW_CHILD", "1")
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("has overflowed its stack"),
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains("coroutine stack overflow"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_read_that_empties_the_queue_still_sees_the_end_of_stream_behind_it() {
    // The client's bytes and its FIN are both queued before the server
    // reads. The coroutine sleeps first, so the reactor harvests their one
    // edge (EPOLLIN | EPOLLRDHUP) before any read. The first read then
    // returns the 3 bytes, fewer than it asked for: "drained". No edge will
    // ever come again, so a runtime that believed "drained" and parked
    // would never see the end of stream (here: the read timeout).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    client.write_all(b"abc").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    accepted.set_nonblocking(true).unwrap();
    let reads = coro::run(move || {
        let mut stream = TcpStream::new(accepted.into()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5)));
        coro::sleep(Duration::from_millis(50));
        let mut buf = [0u8; 64];
        let first = stream.read(&mut buf).unwrap();
        let second = stream.read(&mut buf).unwrap();
        (first, second)
    });
    assert_eq!(reads.unwrap().unwrap(), (3, 0));
}

#[test]
fn a_wait_on_a_stale_key_does_not_take_the_waiter_of_the_socket_now_in_its_slot() {
    // `a` is registered and deregistered; `b`, registered next, gets the
    // same slot of the reactor under a new generation. A wait on `a`'s
    // stale key must not make its coroutine `b`'s reader: `b`'s own reader
    // would then never hear of `b`'s data.
    let (_a_peer, a) = std::os::unix::net::UnixStream::pair().unwrap();
    let (mut b_peer, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let woken_by_data = coro::run(move || {
        let stale = scheduler::register(a.as_raw_fd()).unwrap();
        scheduler::deregister(stale, a.as_raw_fd());
        let registration = Registration::new(&b).unwrap();
        let reader = coro::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(3);
            let timed_out = registration.wait(Direction::Read, Some(deadline));
            let mut byte = [0u8; 1];
            !timed_out && (&b).read(&mut byte).unwrap() == 1
        });
        coro::yield_now(); // the reader runs, and parks on `b`
        let soon = Instant::now() + Duration::from_millis(20);
        scheduler::wait_io(stale, Direction::Read, Some(soon));
        b_peer.write_all(b"x").unwrap();
        reader.join().unwrap()
    });
    assert!(
        woken_by_data.unwrap().unwrap(),
        "b's reader was not woken by b's data"
    );
}

/// Counts its drops in a shared cell.
struct CountsDrops(Rc<Cell<u32>>);

impl Drop for CountsDrops {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn coroutines_unfinished_when_run_returns_are_unwound_and_their_sockets_closed() {
    let (mut peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let drops = Rc::new(Cell::new(0));
    let result = coro::run({
        let drops = drops.clone();
        move || {
            // Parked for ever in a read: nothing is written to `peer`.
            let guard = CountsDrops(drops.clone());
            coro::spawn(move || {
                let _guard = guard;
                let mut stream = TcpStream::new(ours.into()).unwrap();
                let _ = stream.read(&mut [0u8; 1]);
                unreachable!("nothing is ever written to this socket");
            });
            // Parked for ever on an event only it holds.
            let guard = CountsDrops(drops.clone());
            coro::spawn(move || {
                let _guard = guard;
                coro::Event::new().wait();
            });
            coro::yield_now(); // both run, and park
                               // Spawned as `main` returns: never started.
            let guard = CountsDrops(drops);
            coro::spawn(move || drop(guard));
            "main is done"
        }
    });
    assert_eq!(result.unwrap().unwrap(), "main is done");
    assert_eq!(
        drops.get(),
        3,
        "values left on coroutine stacks were not dropped"
    );
    // The parked reader's socket was closed as it unwound: end of stream.
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(peer.read(&mut [0u8; 1]).unwrap(), 0);
}

#[test]
fn a_deadlock_unwinds_the_coroutines_it_reports() {
    let drops = Rc::new(Cell::new(0));
    let result = coro::run({
        let drops = drops.clone();
        move || {
            let _guard = CountsDrops(drops);
            coro::Event::new().wait();
        }
    });
    assert_eq!(result.unwrap_err(), Deadlock { parked: 1 });
    assert_eq!(drops.get(), 1);
}

#[test]
fn a_coroutine_that_parks_again_while_cancelled_is_leaked_not_freed() {
    // It catches the unwind of its cancellation and parks again. It cannot
    // be unwound twice, and its stack cannot be freed with its values
    // undropped: it is left as it is, and `run` still returns.
    let drops = Rc::new(Cell::new(0));
    let result = coro::run({
        let drops = drops.clone();
        move || {
            coro::spawn(move || {
                let _guard = CountsDrops(drops);
                let never = coro::Event::new();
                loop {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| never.wait()));
                }
            });
            coro::yield_now();
        }
    });
    assert!(matches!(result, Ok(Ok(()))));
    assert_eq!(drops.get(), 0, "a value on a leaked stack was dropped");
}

/// Recurses through `bytes` of stack, writing every byte of it, and
/// returns a sum that depends on all of it.
#[inline(never)]
fn go_deep(bytes: usize) -> u64 {
    let pad = std::hint::black_box([bytes as u8; 1024]);
    let below = if bytes > 1024 {
        go_deep(bytes - 1024)
    } else {
        0
    };
    below + u64::from(pad[bytes % 1024]) + bytes as u64
}

/// How many of the `pages` pages that end at `end` (exclusive, page-aligned)
/// are resident, by mincore(2).
fn resident_pages(end: usize, pages: usize) -> usize {
    let page = iolab::sys::page_size();
    let mut residency = vec![0u8; pages];
    // SAFETY: mincore reads no memory of ours but writes one byte per page
    // into `residency`, which has one per page; the range lies in a mapped
    // coroutine stack (the caller's), or the call fails with ENOMEM.
    let rc = unsafe {
        libc::mincore(
            (end - pages * page) as *mut libc::c_void,
            pages * page,
            residency.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    residency.iter().filter(|&&r| r & 1 != 0).count()
}

#[test]
fn a_coroutine_parked_for_a_while_gives_back_the_stack_below_its_stack_pointer() {
    const DEPTH: usize = 40 * 1024;
    let page = iolab::sys::page_size();
    if page != 4096 {
        // With 16 or 64 KiB pages a 64 KiB stack has too few to tell apart
        // the pages above and below the park point.
        eprintln!("skipped: pages of {page} bytes, this test counts 4 KiB ones");
        return;
    }
    let sums = coro::run(move || {
        let gate = coro::Event::new();
        let parked_at = Rc::new(Cell::new(0usize));
        let worker = {
            let (gate, parked_at) = (gate.clone(), parked_at.clone());
            coro::spawn(move || {
                let first = go_deep(DEPTH);
                let marker = std::hint::black_box(0u8);
                parked_at.set(&marker as *const u8 as usize);
                gate.wait();
                // Runs again over the pages the kernel took back: they come
                // back zeroed, and nothing above the stack pointer changed.
                let second = go_deep(DEPTH);
                std::hint::black_box(marker);
                (first, second)
            })
        };
        // The worker goes deep, comes back, and parks.
        coro::yield_now();
        // Pages well below the park point (its stack pointer is within a
        // page or two of `marker`), all touched by the recursion: from 8
        // to 28 KiB below it.
        let end = (parked_at.get() & !(page - 1)) - 2 * page;
        let pages = DEPTH / 2 / page;
        let before = resident_pages(end, pages);
        let started = Instant::now();
        while resident_pages(end, pages) > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(6),
                "still {} of {pages} pages resident after {:?}",
                resident_pages(end, pages),
                started.elapsed()
            );
            coro::sleep(Duration::from_millis(50));
        }
        let waited = started.elapsed();
        gate.set();
        let (first, second) = worker.join().unwrap();
        (before, pages, waited, first, second)
    });
    let (before, pages, waited, first, second) = sums.unwrap().unwrap();
    assert_eq!(before, pages, "the recursion did not touch every page");
    assert!(
        waited >= coro::trim::TRIM_AFTER,
        "trimmed after {waited:?}, before the coroutine had been idle for {:?}",
        coro::trim::TRIM_AFTER
    );
    assert_eq!(first, second);
}
