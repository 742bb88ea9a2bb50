//! Parking a worker: a three-state latch, so a parked worker is signalled
//! once, not once per wake (PITFALLS 11), plus the eventfd it can be
//! signalled through from any thread.
//!
//! Protocol (all SeqCst):
//! - worker: `prepare_park` (swap state to PARKED), then re-check everything that
//!   could give it work (its queues, its mail, siblings' queues); only if all
//!   are empty wait in the kernel; afterwards `finish_park` (RUNNING).
//! - waker: publish the work (push to a queue), then `notify`: swap to
//!   NOTIFIED; only if the old value was PARKED signal the worker — by
//!   `IORING_OP_MSG_RING` from the waker's own ring, or by writing the
//!   eventfd (`Unparker::signal`), on which the parked worker keeps a read
//!   posted (io_uring) or which is in its epoll set.
//!
//! Either the worker's re-check sees the work, or the waker's swap sees
//! PARKED and signals. A wake is never lost, and a running worker costs its
//! wakers no syscall. `sched/loom_tests.rs` checks this under loom.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::primitives::{AtomicU8, Ordering::SeqCst};

const RUNNING: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

/// The state half of parking (no fd: what the loom models run).
pub(crate) struct Latch(AtomicU8);

impl Latch {
    pub(crate) fn new() -> Latch {
        Latch(AtomicU8::new(RUNNING))
    }

    /// Worker: about to park. The caller must re-check for work afterwards.
    ///
    /// A swap, not a store: if a waker's `notify` came first, this read
    /// synchronizes with it, so the re-check sees what it published (a plain
    /// store would not order the re-check's loads after the waker's push).
    pub(crate) fn prepare_park(&self) {
        self.0.swap(PARKED, SeqCst);
    }

    /// Worker: back from parking (or decided not to park).
    pub(crate) fn finish_park(&self) {
        self.0.store(RUNNING, SeqCst);
    }

    /// Waker, after publishing work: true if the worker is parked and the
    /// caller must signal it (exactly one caller per park gets true).
    pub(crate) fn notify(&self) -> bool {
        self.0.swap(NOTIFIED, SeqCst) == PARKED
    }

    /// Whether the worker is (about to be) parked: a hint for choosing
    /// which idle sibling to wake.
    pub(crate) fn is_parked(&self) -> bool {
        self.0.load(SeqCst) == PARKED
    }
}

/// The eventfd a worker can be signalled through from any thread.
pub(crate) struct Unparker {
    fd: OwnedFd,
    pub(crate) latch: Latch,
}

impl Unparker {
    pub(crate) fn new() -> io::Result<Unparker> {
        // Blocking mode on purpose: the ring's read must wait for a write,
        // not complete at once with EAGAIN.
        // SAFETY: plain syscall with no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("eventfd for worker wakeups: {e}"),
            ));
        }
        Ok(Unparker {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            latch: Latch::new(),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Writes the eventfd, ending the worker's wait.
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to our own eventfd.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        debug_assert!(n == 8 || n < 0);
    }
}
