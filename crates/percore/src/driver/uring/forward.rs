//! Ops whose task moved to another worker while they were in flight.
//!
//! The rule (`docs/architecture.md`, "Work stealing"): an op belongs to the
//! ring it was submitted on until its final CQE, wherever its task runs. Its
//! slot and the kernel's use of its buffers stay with that ring; only the
//! *result* and the *resources* travel, by mail to the ring's worker:
//!
//! - polled on another worker, the op posts [`Mail::Forward`] with a
//!   [`Forwarded`] cell; the ring's worker delivers the result into the cell
//!   (now, or at the CQE) and wakes the task wherever it is;
//! - dropped on another worker before the result arrived, the op marks the
//!   cell abandoned and posts [`Mail::Orphan`] with its resources; the ring's
//!   worker keeps them until the final CQE (cancelling the op), exactly as
//!   for a local drop.
//!
//! Nothing here runs per op on the common path: the cell exists only for
//! ops whose task was stolen mid-flight.

use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::driver::op::OpData;

/// Where a forwarded op's result is delivered.
pub(crate) struct Forwarded(Mutex<Cell>);

enum Cell {
    /// No result yet; wake this when it comes.
    Waiting(Option<Waker>),
    /// The result, not yet picked up.
    Ready(i32, u32),
    /// The op's future was dropped first: a `Mail::Orphan` with its resources
    /// is on its way to the ring's worker.
    Abandoned,
}

impl Forwarded {
    pub(crate) fn new(waker: Waker) -> Arc<Forwarded> {
        Arc::new(Forwarded(Mutex::new(Cell::Waiting(Some(waker)))))
    }

    fn cell(&self) -> std::sync::MutexGuard<'_, Cell> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ring's worker: the final result. `Ok(waker to call)`; `Err(())` if the
    /// op was abandoned, in which case its slot must wait for the orphan mail.
    pub(crate) fn complete(&self, res: i32, flags: u32) -> Result<Option<Waker>, ()> {
        let mut c = self.cell();
        match &mut *c {
            Cell::Waiting(w) => {
                let w = w.take();
                *c = Cell::Ready(res, flags);
                Ok(w)
            }
            Cell::Abandoned => Err(()),
            Cell::Ready(..) => unreachable!("forwarded op completed twice"),
        }
    }

    /// Any worker: the result if it arrived, else remembers `waker`.
    pub(crate) fn poll(&self, waker: &Waker) -> Poll<(i32, u32)> {
        let mut c = self.cell();
        match &mut *c {
            Cell::Ready(res, flags) => Poll::Ready((*res, *flags)),
            Cell::Waiting(w) => {
                match w {
                    Some(w) if w.will_wake(waker) => {}
                    _ => *w = Some(waker.clone()),
                }
                Poll::Pending
            }
            Cell::Abandoned => unreachable!("forwarded op polled after it was dropped"),
        }
    }

    /// The op's future is being dropped: `Some(res)` if the result already
    /// arrived (the ring has released the slot; the caller cleans up the
    /// resources itself), else marks the cell abandoned and returns `None`
    /// (the caller must mail the resources to the ring's worker).
    pub(crate) fn abandon(&self) -> Option<i32> {
        let mut c = self.cell();
        match &*c {
            Cell::Ready(res, _) => Some(*res),
            _ => {
                *c = Cell::Abandoned;
                None
            }
        }
    }
}

/// Op resources crossing to the worker whose ring has them in flight.
pub(crate) struct SendData(pub(crate) Box<dyn OpData>);

// SAFETY: a `SendData` is only made for an op handled on a worker other
// than its ring's, which happens only to tasks that moved between workers.
// Only `spawn`/`Runtime::spawn` tasks move (their futures are `Send`, so
// every op resource held across an await in them is `Send` too); `spawn_local`
// tasks never leave their worker.
unsafe impl Send for SendData {}

/// A message to the worker that owns a ring, about one of its ops.
pub(crate) enum Mail {
    /// Deliver op `slot`'s result into `cell` (and wake its waker).
    Forward { slot: u32, cell: Arc<Forwarded> },
    /// Op `slot`'s future is gone; here are its resources.
    Orphan { slot: u32, data: SendData },
}
