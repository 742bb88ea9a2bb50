//! `Socket`: an owned, non-blocking socket fd plus its epoll registration
//! token (0 until an epoll worker registers it; unused on io_uring).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::runtime::context;

pub(crate) struct Socket {
    fd: OwnedFd,
    token: AtomicU64,
    /// The last read came back short: the receive queue was empty after it.
    drained: AtomicBool,
}

impl Socket {
    pub(crate) fn new(fd: OwnedFd) -> Socket {
        Socket {
            fd,
            token: AtomicU64::new(0),
            drained: AtomicBool::new(false),
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn owned(&self) -> &OwnedFd {
        &self.fd
    }

    /// The fd, without running `Drop` (no registration to forget).
    pub(crate) fn into_owned(self) -> OwnedFd {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so the fd is moved out exactly once;
        // the token is a plain integer with nothing to release.
        unsafe { std::ptr::read(&me.fd) }
    }

    pub(crate) fn token(&self) -> u64 {
        self.token.load(Relaxed)
    }

    pub(crate) fn set_token(&self, t: u64) {
        self.token.store(t, Relaxed);
    }

    pub(crate) fn drained(&self) -> bool {
        self.drained.load(Relaxed)
    }

    pub(crate) fn set_drained(&self, d: bool) {
        self.drained.store(d, Relaxed);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let token = self.token();
        if token == 0 {
            return;
        }
        // Forget the registration on this worker; elsewhere, the stale entry
        // is replaced when the fd number is registered again (token check).
        let fd = self.raw();
        context::with_worker(|w| {
            if let Ok(mut d) = w.driver.try_borrow_mut() {
                if let Some(d) = d.epoll() {
                    d.deregister(fd, token);
                }
            }
        });
    }
}
