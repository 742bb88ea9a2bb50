//! The op lifecycle: a future that owns one io_uring operation's resources.
//!
//! States (see `docs/architecture.md`):
//! 1. `Unsubmitted` — the SQE is built, pointing into `data`'s heap memory.
//! 2. `InFlight(slot)` — first poll queued the SQE; the driver slot is
//!    `InFlight`. `data` still lives here; it moves only by moving the
//!    `Box`/`Vec` handles, never the memory the kernel sees.
//! 3. `Finished` — the final CQE was picked up; `data` went to the caller.
//!
//! Dropping the future in state 2 moves `data` into the driver slot
//! (`Slot::Orphaned`) and submits an async cancel; the driver frees it at the
//! op's final CQE, calling [`OpData::orphaned`] so late results (an accepted
//! fd) are cleaned up. If the future is dropped where its driver cannot be
//! reached (another thread, after the worker exited), `data` is leaked, never
//! freed early.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};

use io_uring::squeue;

use crate::runtime::context;

/// Resources an op hands to the kernel (buffers, socket addresses, fds).
///
/// Every pointer placed in the op's SQE must point into heap memory owned by
/// the value (or `'static` memory), so that moving the value does not move
/// what the kernel sees.
pub(crate) trait OpData: 'static {
    /// Called once with the final result when the op's future was dropped
    /// before it saw that result. Default: just drop the resources.
    fn orphaned(self: Box<Self>, _res: i32) {}
}

enum State {
    Unsubmitted(squeue::Entry),
    InFlight { slot: u32, worker: u64 },
    Finished,
}

/// The outcome of a completed op.
pub(crate) struct Completion<T> {
    pub(crate) res: i32,
    #[allow(dead_code)]
    pub(crate) flags: u32,
    pub(crate) data: T,
}

/// A single io_uring operation as a future.
pub(crate) struct Op<T: OpData> {
    data: Option<T>,
    state: State,
}

impl<T: OpData> Op<T> {
    /// Builds the op. `build` makes the SQE from the resources; every pointer
    /// it uses must satisfy the [`OpData`] rule.
    pub(crate) fn new(mut data: T, build: impl FnOnce(&mut T) -> squeue::Entry) -> Op<T> {
        let entry = build(&mut data);
        Op {
            data: Some(data),
            state: State::Unsubmitted(entry),
        }
    }
}

impl<T: OpData + Unpin> Future for Op<T> {
    type Output = Completion<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion<T>> {
        let this = self.get_mut();
        let polled = context::with_worker(|w| match this.state {
            State::Unsubmitted(ref entry) => {
                let entry = entry.clone();
                let mut driver = w.driver.borrow_mut();
                // SAFETY: the SQE points into `this.data`, which stays in this
                // Op until the final CQE or is handed to the driver on drop.
                let slot = unsafe { driver.uring().start(entry, cx.waker().clone(), &w.metrics) };
                this.state = State::InFlight { slot, worker: w.id };
                Poll::Pending
            }
            State::InFlight { slot, worker } => {
                assert_eq!(
                    worker, w.id,
                    "a percore I/O future was moved to another worker while its operation was in flight"
                );
                w.driver.borrow_mut().uring().poll_op(slot, cx.waker())
            }
            State::Finished => panic!("a percore I/O future was polled after it completed"),
        });
        match polled {
            None => panic!(
                "percore I/O must run on a percore worker: use Runtime::block_on or spawn a task"
            ),
            Some(Poll::Pending) => Poll::Pending,
            Some(Poll::Ready((res, flags))) => {
                this.state = State::Finished;
                let data = this.data.take().expect("op resources taken twice");
                Poll::Ready(Completion { res, flags, data })
            }
        }
    }
}

impl<T: OpData> Drop for Op<T> {
    fn drop(&mut self) {
        let State::InFlight { slot, worker } = self.state else {
            return;
        };
        let Some(data) = self.data.take() else {
            return;
        };
        let mut data: Option<Box<dyn OpData>> = Some(Box::new(data));
        let back = context::with_worker(|w| {
            if w.id != worker {
                return None;
            }
            let mut driver = w.driver.try_borrow_mut().ok()?;
            driver.uring().orphan(slot, data.take()?, &w.metrics)
        })
        .flatten();
        if let Some((data, res)) = back {
            // The op had completed but nobody looked: clean up its result.
            data.orphaned(res);
        }
        if let Some(data) = data {
            // The driver is out of reach: the kernel may still use this memory.
            mem::forget(data);
        }
    }
}
