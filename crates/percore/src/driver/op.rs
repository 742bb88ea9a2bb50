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
//! fd) are cleaned up.
//!
//! An op belongs to the ring it was submitted on until its final CQE. If its
//! task was stolen meanwhile, polling or dropping it on the new worker sends
//! mail to the ring's worker (`uring/forward.rs`): the result comes back
//! through a shared cell, the resources go to that worker to keep until the
//! CQE. If the future is dropped where no worker can be reached (a non-worker
//! thread, or the ring's worker has exited), `data` is leaked, never freed
//! early.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use io_uring::squeue;

use super::uring::forward::{Forwarded, Mail, SendData};
use crate::runtime::context;
use crate::sched::Remote;

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
    /// Submitted on the ring of worker `worker` (process-unique id), which
    /// sits at `index` in its runtime.
    InFlight {
        slot: u32,
        worker: u64,
        index: usize,
    },
    /// Its task moved; the result arrives in `cell` from `ring_owner`.
    Forwarded {
        slot: u32,
        ring_owner: Arc<Remote>,
        cell: Arc<Forwarded>,
    },
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
        if let State::Forwarded { cell, .. } = &this.state {
            return match cell.poll(cx.waker()) {
                Poll::Pending => Poll::Pending,
                Poll::Ready((res, flags)) => {
                    this.state = State::Finished;
                    let data = this.data.take().expect("op resources taken twice");
                    Poll::Ready(Completion { res, flags, data })
                }
            };
        }
        let polled = context::with_worker(|w| match this.state {
            State::Unsubmitted(ref entry) => {
                let entry = entry.clone();
                let mut driver = w.driver.borrow_mut();
                // SAFETY: the SQE points into `this.data`, which stays in this
                // Op until the final CQE or is handed to the driver on drop.
                let slot = unsafe { driver.uring().start(entry, cx.waker().clone(), &w.metrics) };
                this.state = State::InFlight {
                    slot,
                    worker: w.id,
                    index: w.remote.index,
                };
                Poll::Pending
            }
            State::InFlight { slot, worker, .. } if worker == w.id => {
                w.driver.borrow_mut().uring().poll_op(slot, cx.waker())
            }
            State::InFlight {
                slot,
                worker,
                index,
            } => {
                // The task was stolen: ask the ring's worker for the result.
                let ring_owner = ring_owner(w, worker, index);
                let cell = Forwarded::new(cx.waker().clone());
                w.metrics.ops_forwarded.bump();
                ring_owner.post(Mail::Forward {
                    slot,
                    cell: cell.clone(),
                });
                this.state = State::Forwarded {
                    slot,
                    ring_owner,
                    cell,
                };
                Poll::Pending
            }
            State::Forwarded { .. } => unreachable!("handled above"),
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

/// The worker at `index` of `w`'s runtime, which must be worker `id`.
fn ring_owner(w: &crate::runtime::worker::Worker, id: u64, index: usize) -> Arc<Remote> {
    let r = w.shared.remotes.get(index).cloned();
    match r {
        Some(r) if r.worker_id() == id => r,
        _ => panic!("a percore I/O future was moved to another runtime while in flight"),
    }
}

impl<T: OpData> Drop for Op<T> {
    fn drop(&mut self) {
        let state = mem::replace(&mut self.state, State::Finished);
        let Some(data) = self.data.take() else {
            return;
        };
        let mut data: Option<Box<dyn OpData>> = Some(Box::new(data));
        let back = match state {
            State::Unsubmitted(_) | State::Finished => return,
            State::InFlight {
                slot,
                worker,
                index,
            } => context::with_worker(|w| {
                if w.id != worker {
                    // Stolen task: the ring's worker keeps the resources.
                    w.metrics.ops_forwarded.bump();
                    let d = SendData(data.take()?);
                    ring_owner(w, worker, index).post(Mail::Orphan { slot, data: d });
                    return None;
                }
                let mut driver = w.driver.try_borrow_mut().ok()?;
                driver.uring().orphan(slot, data.take()?, &w.metrics)
            })
            .flatten(),
            State::Forwarded {
                slot,
                ring_owner,
                cell,
            } => match cell.abandon() {
                // The ring already released the slot: clean up here.
                Some(res) => data.take().map(|d| (d, res)),
                None => {
                    let d = SendData(data.take().expect("op data"));
                    ring_owner.post(Mail::Orphan { slot, data: d });
                    None
                }
            },
        };
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
