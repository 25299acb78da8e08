//! Setting up a ring: what the kernel offers, asked once, and the ring the
//! model runs on.
//!
//! io_uring grew one feature at a time, and a server meets kernels of many
//! ages. Each feature the model uses is checked here, before the server
//! says it is listening, and the loop runs with what there is: the
//! operations it cannot do without (or a clear error), and the ones it
//! can do better with (multishot receive into provided buffers, 6.0; a
//! byte cap on a multishot receive, 6.17) as flags in [`Features`].

use std::io;
use std::time::Duration;

use io_uring::{opcode, IoUring};

use crate::server::config::Config;
use crate::sys;
use crate::sys::uring as ring;

/// What the running kernel's io_uring can do that the loop cares about.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// Multishot accept and receive into a provided-buffer ring (6.0, and
    /// not turned off with `--no-multishot`).
    pub multishot: bool,
    /// A multishot receive can carry a byte cap (6.17), so a connection
    /// never receives past its room under `MAX_PENDING`. Turned off at
    /// run time if the kernel refuses it after all.
    pub recv_capped: bool,
    /// Connections live in the ring's own file table (direct descriptors,
    /// 5.19), not the process's: no descriptor lookup and reference count
    /// per operation. Off with `--no-fixed-files`, or if the kernel
    /// refuses the table (then said once at start).
    pub direct: bool,
    /// Answers of at least this many bytes go out zero-copy (`SEND_ZC`,
    /// Linux 6.0; usage reports 6.2): `--send-zc`.
    pub send_zc_min: Option<usize>,
    /// A receive completion may carry several provided buffers (bundles,
    /// Linux 6.10); off with `--no-bundle`.
    pub bundle: bool,
    /// After submitting answers, the loop waits for one completion more
    /// than the answers, for at most this long (`min_wait`, Linux 6.12):
    /// `--min-wait-us`.
    pub min_wait: Option<Duration>,
}

impl Features {
    /// What this kernel offers, as `config` asks for it.
    pub fn probe(config: &Config) -> Features {
        let multishot = !config.tuning.no_multishot && sys::kernel_at_least(6, 0);
        Features {
            multishot,
            recv_capped: multishot && sys::kernel_at_least(6, 17),
            direct: !config.tuning.no_fixed_files && sys::kernel_at_least(5, 19),
            send_zc_min: config
                .tuning
                .send_zc_min
                .filter(|_| sys::kernel_at_least(6, 2)),
            bundle: !config.tuning.no_bundle && multishot && sys::kernel_at_least(6, 10),
            min_wait: config
                .tuning
                .min_wait
                .filter(|_| sys::kernel_at_least(6, 12)),
        }
    }

    /// The features in use, as the start-up line says them.
    pub fn describe(&self, sqpoll: bool) -> String {
        let mut parts = vec![if self.multishot {
            "multishot accept and recv into provided buffers"
        } else {
            "single-shot accept and recv"
        }];
        if self.recv_capped {
            parts.push("capped recv");
        }
        if self.direct {
            parts.push("direct descriptors");
        }
        if self.send_zc_min.is_some() {
            parts.push("zero-copy sends");
        }
        if self.bundle {
            parts.push("receive bundles");
        }
        let min_wait;
        if let Some(wait) = self.min_wait {
            min_wait = format!(
                "answers submitted while waiting up to {} µs",
                wait.as_micros()
            );
            parts.push(&min_wait);
        }
        parts.push(if sqpoll {
            "SQPOLL"
        } else {
            "single issuer, deferred task work"
        });
        parts.join(", ")
    }
}

/// Slots in a ring's table of direct descriptors: as many connections as
/// the process could hold descriptors (the kernel refuses a table larger
/// than `RLIMIT_NOFILE`), at most 65,536. The table costs the kernel a few
/// bytes a slot; when it is full the accept fails with `ENFILE` and the
/// loop pauses accepting, as it does for `EMFILE`.
pub fn direct_table_size() -> u32 {
    sys::raise_open_files_limit().min(65_536) as u32
}

/// A ring as `--sqpoll` asks, with the operations the model needs, or a
/// clear error saying why there is none.
pub fn open_ring(entries: u32, config: &Config) -> io::Result<IoUring> {
    let sqpoll = config.tuning.sqpoll.then_some(Duration::from_millis(100));
    let ring = ring::new_ring(entries, sqpoll).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("io_uring is not available here ({e}): too old a kernel, kernel.io_uring_disabled, or a seccomp filter"),
        )
    })?;
    check_opcodes(&ring)?;
    Ok(ring)
}

/// Fails, naming the opcode, if the kernel lacks one we need.
fn check_opcodes(ring: &IoUring) -> io::Result<()> {
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot probe io_uring's operations ({e}): kernel older than 5.6?"),
        )
    })?;
    let needed = [
        ("accept", opcode::Accept::CODE),
        ("recv", opcode::Recv::CODE),
        ("send", opcode::Send::CODE),
        ("poll_add", opcode::PollAdd::CODE),
        ("async_cancel", opcode::AsyncCancel::CODE),
    ];
    for (name, code) in needed {
        if !probe.is_supported(code) {
            return Err(io::Error::other(format!(
                "this kernel's io_uring lacks the {name} operation"
            )));
        }
    }
    Ok(())
}
