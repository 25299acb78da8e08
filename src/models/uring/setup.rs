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
}

impl Features {
    /// What this kernel offers, as `config` asks for it.
    pub fn probe(config: &Config) -> Features {
        let multishot = !config.tuning.no_multishot && sys::kernel_at_least(6, 0);
        Features {
            multishot,
            recv_capped: multishot && sys::kernel_at_least(6, 17),
        }
    }
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
