//! The park/unpark latch of one worker: an eventfd the worker keeps a read
//! posted on (in its ring), and a three-state flag so that a parked worker is
//! signalled once, not once per wake (PITFALLS 11).
//!
//! Protocol (all SeqCst):
//! - worker: `state = PARKED`, then re-check its remote queue; if empty,
//!   wait in the ring; afterwards `state = RUNNING`.
//! - waker: push to the remote queue, then `swap(NOTIFIED)`; only if the old
//!   value was `PARKED` write the eventfd.
//!
//! Either the worker's re-check sees the pushed task, or the waker's swap
//! sees `PARKED` and the eventfd write completes the posted read, ending the
//! wait. A wake is never lost, and a running worker costs wakers no syscall.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

const RUNNING: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

pub(crate) struct Unparker {
    fd: OwnedFd,
    state: AtomicU8,
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
            state: AtomicU8::new(RUNNING),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Worker: about to park. The caller must re-check its queue afterwards.
    pub(crate) fn prepare_park(&self) {
        self.state.store(PARKED, SeqCst);
    }

    /// Worker: back from parking (or decided not to park).
    pub(crate) fn finish_park(&self) {
        self.state.store(RUNNING, SeqCst);
    }

    /// Any thread: make sure the worker sees new work. Returns whether the
    /// eventfd was signalled.
    pub(crate) fn unpark(&self) -> bool {
        if self.state.swap(NOTIFIED, SeqCst) != PARKED {
            return false;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to our own eventfd.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        debug_assert!(n == 8 || n < 0);
        true
    }
}
