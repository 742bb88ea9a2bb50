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
//! The same two mails serve an op whose future was sent to another runtime
//! or to a plain thread: the ring's worker is found through the process-wide
//! registry (`sched/registry.rs`). If that worker has exited, the result
//! never comes (the cell says `Lost`) and the resources are leaked.
//!
//! Nothing here runs per op on the common path: the cell exists only for
//! ops whose future left their ring's worker mid-flight.

use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

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
    /// The ring's worker exited before the result arrived: there will be
    /// none, and the kernel may still hold the op's resources.
    Lost,
}

/// The op's ring is gone: no result will come (see [`Cell`]'s `Lost`).
#[derive(Debug)]
pub(crate) struct Lost;

/// What [`Forwarded::abandon`] found.
pub(crate) enum Abandon {
    /// The result had arrived: the ring released the slot, and the caller
    /// cleans up the resources itself.
    Done(i32),
    /// Not yet: the caller must mail the resources to the ring's worker.
    Pending,
    /// The ring's worker exited: the caller must leak the resources.
    Lost,
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
            // A forwarded slot completes once; a cell is lost only when its
            // Forward mail was never handled (or at the ring's teardown), so
            // neither happens before a completion. Tolerate rather than
            // panic in a reap.
            Cell::Ready(..) | Cell::Lost => Ok(None),
        }
    }

    /// The ring's worker exits with this op still in flight: wake the
    /// waiter, whose next poll learns that no result will come.
    pub(crate) fn lose(&self) -> Option<Waker> {
        let mut c = self.cell();
        match &mut *c {
            Cell::Waiting(w) => {
                let w = w.take();
                *c = Cell::Lost;
                w
            }
            _ => None,
        }
    }

    /// Any thread: the result if it arrived, else remembers `waker`.
    pub(crate) fn poll(&self, waker: &Waker) -> Poll<Result<(i32, u32), Lost>> {
        let mut c = self.cell();
        match &mut *c {
            Cell::Ready(res, flags) => Poll::Ready(Ok((*res, *flags))),
            Cell::Lost => Poll::Ready(Err(Lost)),
            Cell::Waiting(w) => {
                let old = match w {
                    Some(w) if w.will_wake(waker) => None,
                    _ => w.replace(waker.clone()),
                };
                drop(c);
                // A waker's drop is user code: never under the lock.
                drop(old);
                Poll::Pending
            }
            Cell::Abandoned => unreachable!("forwarded op polled after it was dropped"),
        }
    }

    /// The op's future is being dropped; see [`Abandon`].
    ///
    /// Never panics: the waker it replaces is dropped outside the lock and
    /// under the user-code guard, since `Op::drop` calls this.
    pub(crate) fn abandon(&self) -> Abandon {
        let mut c = self.cell();
        let (answer, old) = match &*c {
            Cell::Ready(res, _) => (Abandon::Done(*res), None),
            Cell::Lost => (Abandon::Lost, None),
            _ => (
                Abandon::Pending,
                Some(std::mem::replace(&mut *c, Cell::Abandoned)),
            ),
        };
        drop(c);
        if let Some(old) = old {
            crate::runtime::guard::run_user_code("the drop of a waker", move || drop(old));
        }
        answer
    }
}
