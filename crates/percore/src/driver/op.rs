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
//! future left that ring's worker meanwhile (a stolen task, a future sent to
//! another runtime or to a plain thread), polling or dropping it elsewhere
//! sends mail to the ring's worker, found through the process-wide registry
//! (`sched/registry.rs`; `uring/forward.rs`): the result comes back through a
//! shared cell, the resources go to that worker to keep until the CQE. If
//! the ring's worker has exited, `data` is leaked (and counted in
//! `metrics::leaked_ops`), never freed early.
//!
//! Nothing percore does in `Drop` panics, and while `data` may still be in
//! the kernel it sits in a leak-on-unwind guard, so even a panic from user
//! code reached on the way (a waker's `Drop`) cannot free it early. The only
//! user code `Drop` runs directly is the drop of `data` itself once its op has
//! completed, as for any value. `poll` may panic where the op cannot complete
//! (not on a worker before submission, or its ring is gone); that is safe
//! because the unwinding then runs `Drop`, which keeps or leaks `data`.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use io_uring::squeue;

use super::uring::forward::{Abandon, Forwarded, Lost};
use crate::runtime::context;
use crate::sched::mail::{Mail, SendData};
use crate::sched::{registry, Remote};

/// Resources an op hands to the kernel (buffers, socket addresses, fds).
///
/// Every pointer placed in the op's SQE must point into heap memory owned by
/// the value (or `'static` memory), so that moving the value does not move
/// what the kernel sees.
pub(crate) trait OpData: 'static {
    /// Called once with the final result when the op's future was dropped
    /// before it saw that result. Default: just drop the resources.
    fn orphaned(self: Box<Self>, _res: i32) {}

    /// The op was issued and its first CQE came, but it is not over (a
    /// zero-copy send waiting for its notification): the kernel no longer
    /// resolves the SQE's fd number, so what was kept only for the fd
    /// lifetime rule (a socket clone) may go now, letting the socket close.
    /// Default: nothing to release.
    fn release_fd(&mut self) {}
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
                Poll::Ready(Ok((res, flags))) => this.finish(res, flags),
                // Safe to unwind: `Drop` finds the cell lost and leaks.
                Poll::Ready(Err(Lost)) => panic!(
                    "percore: the worker whose ring ran this I/O operation exited before it \
                     completed; its buffer is leaked (a future outlived its runtime)"
                ),
            };
        }
        let polled = context::with_worker(|w| match this.state {
            State::Unsubmitted(ref entry) => {
                let entry = entry.clone();
                let mut driver = w.driver.borrow_mut();
                // `this.data` stays in this Op until the final CQE or, if
                // the Op is dropped first, goes to the ring's worker (`Drop`),
                // which keeps it until that CQE or leaks it. Exercised by
                // tests/quarantine, tests/cancellation, tests/soundness.
                // SAFETY: the SQE points into `this.data` (the `OpData` rule),
                // which outlives the op as said above.
                let started =
                    unsafe { driver.uring().start(entry, cx.waker().clone(), &w.metrics) };
                match started {
                    Ok(slot) => {
                        this.state = State::InFlight {
                            slot,
                            worker: w.id,
                            index: w.remote.index,
                        };
                        Some(Poll::Pending)
                    }
                    // Never queued: the op fails with the ring's error.
                    Err(e) => Some(Poll::Ready((-e.raw_os_error().unwrap_or(libc::EIO), 0))),
                }
            }
            State::InFlight { slot, worker, .. } if worker == w.id => {
                Some(w.driver.borrow_mut().uring().poll_op(slot, cx.waker()))
            }
            // Another worker: forwarded below.
            _ => None,
        });
        match (polled.flatten(), &this.state) {
            (Some(Poll::Pending), _) => Poll::Pending,
            (Some(Poll::Ready((res, flags))), _) => this.finish(res, flags),
            (None, State::Unsubmitted(_)) => panic!(
                "percore I/O must run on a percore worker: use Runtime::block_on or spawn a task"
            ),
            (
                None,
                &State::InFlight {
                    slot,
                    worker,
                    index,
                },
            ) => {
                // The future left its ring's worker (a stolen task, another
                // runtime, a plain thread): ask that worker for the result.
                let Some(owner) = ring_owner(worker, index) else {
                    // Safe to unwind: `Drop` cannot reach the ring and leaks.
                    panic!(
                        "percore: the worker whose ring ran this I/O operation has exited; \
                         it cannot complete (a future outlived its runtime)"
                    )
                };
                let cell = Forwarded::new(cx.waker().clone());
                context::with_worker(|w| w.metrics.ops_forwarded.bump());
                owner.post(Mail::Forward {
                    slot,
                    cell: cell.clone(),
                });
                this.state = State::Forwarded {
                    slot,
                    ring_owner: owner,
                    cell,
                };
                Poll::Pending
            }
            (None, _) => panic!("a percore I/O future was polled after it completed"),
        }
    }
}

impl<T: OpData> Op<T> {
    fn finish(&mut self, res: i32, flags: u32) -> Poll<Completion<T>> {
        self.state = State::Finished;
        match self.data.take() {
            Some(data) => Poll::Ready(Completion { res, flags, data }),
            None => unreachable!("op resources taken twice"),
        }
    }
}

/// The worker whose ring has op state `(id, index)`: in the current
/// runtime at `index` (the usual case, a stolen task), else anywhere in the
/// process (`sched/registry.rs`). `None` if it has exited.
pub(crate) fn ring_owner(id: u64, index: usize) -> Option<Arc<Remote>> {
    let here = context::with_worker(|w| {
        w.shared
            .remotes
            .get(index)
            .filter(|r| r.worker_id() == id)
            .cloned()
    })
    .flatten();
    here.or_else(|| registry::find(id))
}

impl<T: OpData> Drop for Op<T> {
    /// Never frees memory the kernel may still write (DESIGN invariant 8):
    /// resources of an op in flight go to its ring's worker, or are leaked
    /// (and counted) when it cannot be reached. Until they are handed on they
    /// sit in a [`Held`], so a panic on the way (a waker's `Drop` run by
    /// something this calls) leaks them instead of unwinding through them.
    /// Resources whose op already completed are dropped here, which runs
    /// their own `Drop` (user code) in the dropping context, as for any value.
    fn drop(&mut self) {
        let state = mem::replace(&mut self.state, State::Finished);
        let Some(data) = self.data.take() else {
            return;
        };
        match state {
            State::Unsubmitted(_) | State::Finished => drop(data),
            State::InFlight {
                slot,
                worker,
                index,
            } => release_in_flight(slot, worker, index, Held(Some(Box::new(data)))),
            State::Forwarded {
                slot,
                ring_owner,
                cell,
            } => {
                let mut held = Held(Some(Box::new(data)));
                match cell.abandon() {
                    // The ring already released the slot: clean up here.
                    Abandon::Done(res) => held.take().orphaned(res),
                    Abandon::Pending => ring_owner.post(Mail::Orphan {
                        slot,
                        data: SendData(held.take()),
                    }),
                    // `held` leaks them.
                    Abandon::Lost => {}
                }
            }
        }
    }
}

/// Resources of an op in flight on their way out of its `Op`. Dropped while
/// still holding them (a panic unwinding, or no worker to take them), it
/// leaks them: the kernel may still use that memory.
struct Held(Option<Box<dyn OpData>>);

impl Held {
    fn take(&mut self) -> Box<dyn OpData> {
        match self.0.take() {
            Some(d) => d,
            None => unreachable!("op resources handed on twice"),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(data) = self.0.take() {
            crate::metrics::count_leaked_op();
            mem::forget(data);
        }
    }
}

/// Hands the resources of op `slot`, in flight on worker `worker`'s ring,
/// to that worker; see `Drop for Op`.
fn release_in_flight(slot: u32, worker: u64, index: usize, mut held: Held) {
    let mut done = None;
    let on_ring = context::with_worker(|w| {
        if w.id != worker {
            return false;
        }
        match w.driver.try_borrow_mut() {
            Ok(mut driver) => done = driver.uring().orphan(slot, held.take(), &w.metrics),
            // Dropped while the driver is borrowed (from a `Drop` the driver
            // itself triggered): mail it to this worker's own inbox, handled
            // at the top of the next loop pass.
            Err(_) => w.remote.post(Mail::Orphan {
                slot,
                data: SendData(held.take()),
            }),
        }
        true
    })
    .unwrap_or(false);
    if let Some((data, res)) = done {
        // The op had completed but nobody looked: clean up its result.
        data.orphaned(res);
    }
    if on_ring {
        return;
    }
    // If the ring's worker exited, `held` leaks the resources.
    if let Some(owner) = ring_owner(worker, index) {
        context::with_worker(|w| w.metrics.ops_forwarded.bump());
        owner.post(Mail::Orphan {
            slot,
            data: SendData(held.take()),
        });
    }
}
