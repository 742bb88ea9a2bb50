//! Multishot accept: the consumer side of a listener's [`Multishot`] op.
//!
//! A listener arms one `IORING_OP_ACCEPT` with `IORING_ACCEPT_MULTISHOT` on
//! the ring of the worker its first `accept` runs on; every connection the
//! kernel accepts then arrives as a CQE without a new SQE. When the op ends
//! (an error such as `EMFILE`, backpressure, the ring's worker exiting) the
//! next `accept` arms a new one on the worker it runs on.
//!
//! The kernel cannot write a peer address per connection into one buffer,
//! so the multishot op asks for none and `TcpListener::accept` reads it with
//! `getpeername(2)`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use io_uring::{opcode, types};

use super::multishot::{Multishot, Next};
use crate::driver::op::OpData;
use crate::driver::IoDriver;
use crate::net::socket::Socket;
use crate::runtime::context;
use crate::task::coop;

/// Accepted connections queued per listener before the driver cancels the
/// multishot op; the rest wait in the kernel's backlog until the queue is
/// taken. A soft cap: the cancel goes out at the worker's next enter, and
/// the kernel may accept a burst beyond it first. Each queued connection
/// holds an fd: under a low `RLIMIT_NOFILE` the op takes the free fds ahead
/// of the caller (and then ends with `EMFILE`).
const QUEUE_CAP: usize = 128;

/// What a multishot accept keeps until its final CQE: the listener's
/// socket, so its fd number cannot be reused meanwhile.
struct MultiAcceptData {
    _listener: Socket,
}

/// Results are handed out through the cell, never through `orphaned`.
impl OpData for MultiAcceptData {}

/// Closes an accepted connection nobody will take.
fn close_fd(res: i32, _flags: u32) {
    if res >= 0 {
        // SAFETY: a successful accept result is a new fd that only this
        // result owns; the cell hands each result out or discards it, once.
        drop(unsafe { OwnedFd::from_raw_fd(res) });
    }
}

/// A listener's multishot accept, if one is armed (or was and still has
/// results to take).
#[derive(Default)]
pub(crate) struct MultiAccept {
    cell: Mutex<Option<Arc<Multishot>>>,
}

impl MultiAccept {
    fn lock(&self) -> MutexGuard<'_, Option<Arc<Multishot>>> {
        self.cell.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next accepted connection of `sock`, arming a multishot op on the
    /// current worker when none is armed. `Ready(None)`: multishot accept
    /// is not available here (an epoll worker, an old kernel, not on a
    /// worker); the caller accepts one connection the single-shot way.
    pub(crate) fn poll_accept(
        &self,
        sock: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<OwnedFd>>> {
        // A full backlog is always ready: take turns (`task/coop.rs`).
        // `Ready(None)` hands the caller over to a single-shot accept,
        // which is budgeted itself.
        coop::budgeted(cx, Option::is_some, |cx| self.poll_accept_now(sock, cx))
    }

    fn poll_accept_now(
        &self,
        sock: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<OwnedFd>>> {
        let mut current = self.lock();
        loop {
            if let Some(cell) = current.as_ref() {
                match cell.poll_next(cx.waker()) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Next::Result(res, _)) => {
                        return Poll::Ready(Some(if res < 0 {
                            Err(io::Error::from_raw_os_error(-res))
                        } else {
                            // SAFETY: a successful accept result is a new
                            // fd, handed out by the cell exactly once.
                            Ok(unsafe { OwnedFd::from_raw_fd(res) })
                        }));
                    }
                    Poll::Ready(Next::Ended) => *current = None,
                }
            }
            match arm(sock) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                // Polled again at the top: registers the waker.
                Some(Ok(cell)) => *current = Some(cell),
            }
        }
    }
}

/// Arms a multishot accept of `sock` on the current worker's ring.
fn arm(sock: &Socket) -> Option<io::Result<Arc<Multishot>>> {
    context::with_worker(|w| {
        let mut driver = w.driver.borrow_mut();
        let IoDriver::Uring(ring) = &mut *driver else {
            return None;
        };
        if !ring.features().multishot {
            return None;
        }
        let cell = Arc::new(Multishot::new(Box::new(close_fd), QUEUE_CAP));
        let entry = opcode::AcceptMulti::new(types::Fd(sock.raw()))
            .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
            .build();
        let keep = Box::new(MultiAcceptData {
            _listener: sock.clone(),
        });
        // SAFETY: the SQE holds no pointer (no peer address is asked for);
        // the fd it names stays open through `keep`, which the driver holds
        // until the final CQE.
        let started = unsafe { ring.start_multishot(entry, cell.clone(), keep, &w.metrics) };
        Some(started.map(|slot| {
            w.metrics.accept_arms.bump();
            cell.set_armed(w.id, w.remote.index, slot);
            cell
        }))
    })
    .flatten()
}

impl Drop for MultiAccept {
    /// The listener is gone: queued connections are closed and the ring's
    /// worker cancels the op; later ones are closed as they arrive, until
    /// its final CQE.
    fn drop(&mut self) {
        if let Some(cell) = self
            .cell
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            super::multishot::release(cell);
        }
    }
}
