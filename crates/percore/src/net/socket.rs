//! `Socket`: a shared, non-blocking socket fd plus its epoll registration
//! token (0 until an epoll worker registers it; unused on io_uring).
//!
//! ## The fd lifetime rule (DESIGN invariant 7, PITFALLS 16)
//!
//! An io_uring SQE names its socket by fd *number*, and the kernel resolves
//! that number when it issues the SQE, which may be after the op's future,
//! and the stream that made it, are gone: an op polled once queues its SQE
//! for the loop's next enter, and a future dropped in flight leaves its op
//! in the kernel until the cancel lands. Had the number been closed and
//! reused by a new socket meanwhile, the stale op would send one client's
//! bytes to another, eat a new client's bytes, or steal a connection.
//!
//! So a `Socket` is reference-counted, and every io_uring op that names it
//! holds a clone in its resources (`driver/uring/ops.rs`). Those resources
//! live until the op's final CQE, on whichever ring has the op (an orphaned
//! op's stay in its ring's slot; a stolen task's travel by mail, see
//! `driver/uring/forward.rs`). The fd is closed when the last clone drops:
//! after the stream itself and after the last op that named it.
//! `tests/fd_reuse.rs` forces the number reuse and checks that no byte
//! reaches the wrong socket.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::runtime::context;
use crate::sched::mail::Mail;
use crate::sched::registry;

/// A socket fd shared by its owner (a stream or listener) and the ops in
/// flight on it; closed when the last of them lets go.
#[derive(Clone)]
pub(crate) struct Socket(Arc<Inner>);

struct Inner {
    fd: OwnedFd,
    token: AtomicU64,
    /// Id of the epoll worker holding registration `token` (0: none).
    registered_on: AtomicU64,
    /// The last read came back short: the receive queue was empty after it.
    drained: AtomicBool,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("fd", &self.raw()).finish()
    }
}

impl Socket {
    pub(crate) fn new(fd: OwnedFd) -> Socket {
        Socket(Arc::new(Inner {
            fd,
            token: AtomicU64::new(0),
            registered_on: AtomicU64::new(0),
            drained: AtomicBool::new(false),
        }))
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.fd.as_raw_fd()
    }

    pub(crate) fn owned(&self) -> &OwnedFd {
        &self.0.fd
    }

    pub(crate) fn token(&self) -> u64 {
        self.0.token.load(Relaxed)
    }

    /// Records a new epoll registration `t` on worker `worker`; returns the
    /// previous one, if it was on another worker (which must forget it).
    pub(crate) fn set_token(&self, t: u64, worker: u64) -> Option<(u64, u64)> {
        // The common case, on every operation: the registration is the one
        // this socket already has. No write, no atomic read-modify-write.
        if self.0.token.load(Relaxed) == t && self.0.registered_on.load(Relaxed) == worker {
            return None;
        }
        let old = self.0.token.swap(t, Relaxed);
        let old_worker = self.0.registered_on.swap(worker, Relaxed);
        (old != 0 && old != t && old_worker != worker).then_some((old_worker, old))
    }

    /// Gives the socket's fd to the caller as a new descriptor of the same
    /// socket (`dup`), taking it out of the driver: an epoll registration
    /// made on the current worker is removed from the epoll set here (one
    /// on another worker is forgotten there by mail). The original number
    /// closes when the last in-flight op that names it ends, as for a drop.
    pub(crate) fn into_owned(self) -> std::io::Result<OwnedFd> {
        let fd = self.0.fd.try_clone()?;
        let token = self.0.token.swap(0, Relaxed);
        let worker = self.0.registered_on.swap(0, Relaxed);
        if token != 0 {
            forget_registration(self.raw(), token, worker, Some(&self));
        }
        Ok(fd)
    }

    pub(crate) fn drained(&self) -> bool {
        self.0.drained.load(Relaxed)
    }

    pub(crate) fn set_drained(&self, d: bool) {
        self.0.drained.store(d, Relaxed);
    }
}

/// Runs where the last clone goes: the stream's owner, or the worker that
/// frees an op's resources. The only user code it can reach is the drop of
/// wakers the epoll registration held, run in that same context.
impl Drop for Inner {
    fn drop(&mut self) {
        let token = self.token.load(Relaxed);
        if token == 0 {
            return;
        }
        // Forget the registration (closing the fd takes it out of the
        // kernel's epoll sets unless `into_owned` made a second descriptor,
        // and then the token is 0 here; this clears the worker's own table
        // and the wakers it holds).
        forget_registration(
            self.fd.as_raw_fd(),
            token,
            self.registered_on.load(Relaxed),
            None,
        );
    }
}

/// Forgets epoll registration `token` of `fd` on worker `worker`: here
/// directly when that is the current worker and its driver is free, else by
/// mail. `stays_open`: the socket lives on (it leaves the runtime), so the
/// fd must also leave the epoll set, and a mailed request keeps the socket
/// open until the owner has done that (see `Mail::Deregister`); `None`:
/// the socket is closing, which takes it out of the set.
fn forget_registration(fd: RawFd, token: u64, worker: u64, stays_open: Option<&Socket>) {
    let done_here = context::with_worker(|w| {
        if w.id != worker {
            return false;
        }
        let Ok(mut d) = w.driver.try_borrow_mut() else {
            return false;
        };
        let wakers = d
            .epoll()
            .map(|d| d.deregister(fd, token, stays_open.is_some()));
        drop(d);
        drop(wakers);
        true
    });
    if done_here != Some(true) {
        if let Some(owner) = registry::find(worker) {
            owner.post(Mail::Deregister {
                fd,
                token,
                keep: stays_open.cloned(),
            });
        }
    }
}
