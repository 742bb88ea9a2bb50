//! Drivers: what performs I/O and parks the worker.
//!
//! - `buf` — owned buffer traits ([`IoBuf`], [`IoBufMut`], [`Slice`]).
//! - `op` — the io_uring op lifecycle future.
//! - `uring` — the io_uring driver (proactor: submit, reap completions).
//! - `epoll` — the epoll driver (reactor: readiness + non-blocking calls).
//!
//! Each worker owns one [`IoDriver`]; this file is the one place that
//! chooses between the backends.

pub(crate) mod buf;
pub(crate) mod epoll;
pub(crate) mod op;
pub(crate) mod uring;

use std::io;
use std::task::Waker;
use std::time::Duration;

use crate::metrics::WorkerMetrics;
use op::OpData;

/// What a driver hands its worker to run or drop after the driver's borrow
/// ends, because each is user code (`runtime/guard.rs`).
#[derive(Default)]
pub(crate) struct Released {
    /// Resources of orphaned ops whose final CQE arrived, with its result.
    pub(crate) orphans: Vec<(Box<dyn OpData>, i32)>,
    /// Wakers the driver replaced or forgot (a waker's drop is user code).
    pub(crate) retired: Vec<Waker>,
}

impl Released {
    pub(crate) fn is_empty(&self) -> bool {
        self.orphans.is_empty() && self.retired.is_empty()
    }
}

/// Which I/O driver a runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// io_uring if it can be set up, else epoll (logging why, once).
    #[default]
    Auto,
    /// io_uring or fail with the reason and the fix.
    IoUring,
    /// epoll: readiness plus non-blocking syscalls.
    Epoll,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Driver::Auto => "auto",
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        })
    }
}

/// A worker's driver. One per worker, built once and never moved on a hot
/// path, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum IoDriver {
    Uring(uring::Driver),
    Epoll(epoll::Driver),
}

impl IoDriver {
    pub(crate) fn kind(&self) -> Driver {
        match self {
            IoDriver::Uring(_) => Driver::IoUring,
            IoDriver::Epoll(_) => Driver::Epoll,
        }
    }

    pub(crate) fn uring(&mut self) -> &mut uring::Driver {
        match self {
            IoDriver::Uring(d) => d,
            IoDriver::Epoll(_) => unreachable!("io_uring op on an epoll worker"),
        }
    }

    pub(crate) fn epoll(&mut self) -> Option<&mut epoll::Driver> {
        match self {
            IoDriver::Epoll(d) => Some(d),
            IoDriver::Uring(_) => None,
        }
    }

    /// Submits / collects without waiting.
    pub(crate) fn submit_and_reap(&mut self, m: &WorkerMetrics) -> io::Result<()> {
        match self {
            IoDriver::Uring(d) => d.submit_and_reap(m),
            IoDriver::Epoll(d) => d.submit_and_reap(m),
        }
    }

    /// Waits for I/O, a remote unpark, or `timeout`.
    pub(crate) fn park(&mut self, timeout: Option<Duration>, m: &WorkerMetrics) -> io::Result<()> {
        match self {
            IoDriver::Uring(d) => d.park(timeout, m),
            IoDriver::Epoll(d) => d.park(timeout, m),
        }
    }

    /// Shutdown drain: waits for in-flight kernel work (io_uring only).
    pub(crate) fn wait(&mut self, timeout: Duration, m: &WorkerMetrics) -> io::Result<()> {
        match self {
            IoDriver::Uring(d) => d.wait(timeout, m),
            IoDriver::Epoll(_) => Ok(()),
        }
    }

    pub(crate) fn cancel_all(&mut self, m: &WorkerMetrics) {
        if let IoDriver::Uring(d) = self {
            d.cancel_all(m);
        }
    }

    /// Operations the kernel still owns (io_uring only; epoll has none).
    pub(crate) fn in_flight(&self) -> usize {
        match self {
            IoDriver::Uring(d) => d.in_flight(),
            IoDriver::Epoll(_) => 0,
        }
    }

    /// (SQEs queued, CQEs waiting) on io_uring; (0, 0) on epoll.
    pub(crate) fn occupancy(&mut self) -> (usize, usize) {
        match self {
            IoDriver::Uring(d) => d.occupancy(),
            IoDriver::Epoll(_) => (0, 0),
        }
    }

    pub(crate) fn take_ready(&mut self, wakers: &mut Vec<Waker>, dead: &mut Released) {
        match self {
            IoDriver::Uring(d) => d.take_ready(wakers, dead),
            IoDriver::Epoll(d) => d.take_ready(wakers, dead),
        }
    }

    pub(crate) fn has_ready(&self) -> bool {
        match self {
            IoDriver::Uring(d) => d.has_ready(),
            IoDriver::Epoll(d) => d.has_ready(),
        }
    }
}
