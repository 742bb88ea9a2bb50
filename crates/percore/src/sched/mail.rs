//! Mail: what other threads tell a worker about state it keeps on behalf
//! of a task or future that has left it.
//!
//! A worker's ring, timers and epoll registrations are touched only by
//! that worker's thread. When a task moves (a steal) or a future is sent to
//! another runtime or thread, what it left behind on its old worker is put
//! right by mail to that worker, handled at the top of its next loop pass
//! (`Worker::take_inbox`):
//!
//! - [`Mail::Forward`] / [`Mail::Orphan`]: an op in flight on the worker's
//!   ring (`driver/uring/forward.rs`, `driver/op.rs`);
//! - [`Mail::CancelMultishot`]: a multishot op (a listener's accept) whose
//!   consumer was dropped elsewhere (`driver/uring/multishot.rs`);
//! - [`Mail::CancelTimer`]: a `Sleep` re-registered on another worker; its
//!   old entry would otherwise keep the task's waker until the deadline;
//! - [`Mail::Deregister`]: a socket re-registered with another worker's
//!   epoll set; the old registration would otherwise keep delivering its
//!   edges (and holding the task's wakers) here.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use crate::driver::op::OpData;
use crate::driver::uring::forward::Forwarded;
use crate::driver::uring::multishot::Multishot;

/// Op resources crossing to the worker whose ring has them in flight.
pub(crate) struct SendData(pub(crate) Box<dyn OpData>);

// SAFETY: a `SendData` is made for an op handled on a thread other than its
// ring's worker's (or mailed by that worker to itself). An op's future
// reaches another thread only inside a future that was sent there: a stolen
// `spawn` task, a future passed to another runtime's `block_on`/`spawn`, or
// one moved to a plain thread. Each of those required the future to be
// `Send`, so every op resource it holds across an await is `Send` too.
// `spawn_local` futures never leave their worker. Exercised by
// tests/soundness.rs (ops polled and dropped on another runtime) and
// tests/stealing.rs (ops in flight on stolen tasks).
unsafe impl Send for SendData {}

/// A message to the worker that owns a ring, about one of its ops.
pub(crate) enum Mail {
    /// Deliver op `slot`'s result into `cell` (and wake its waker).
    Forward { slot: u32, cell: Arc<Forwarded> },
    /// Op `slot`'s future is gone; here are its resources.
    Orphan { slot: u32, data: SendData },
    /// Cancel multishot op `slot` if it is still `cell`'s: its consumer is
    /// gone.
    CancelMultishot { slot: u32, cell: Arc<Multishot> },
    /// Remove timer `(deadline, id)`: its `Sleep` now waits elsewhere.
    CancelTimer { deadline: Instant, id: u64 },
    /// Forget epoll registration `token` of `fd` and take `fd` out of the
    /// epoll set: the socket is now registered with another worker, or left
    /// the runtime (`into_std`). `keep` holds the socket open until then,
    /// so the number still names it when `EPOLL_CTL_DEL` runs (None when
    /// the socket is being closed, which removes it from the set itself).
    Deregister {
        fd: RawFd,
        token: u64,
        keep: Option<crate::net::socket::Socket>,
    },
}
