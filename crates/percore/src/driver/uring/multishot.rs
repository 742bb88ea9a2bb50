//! Multishot ops: one SQE, many CQEs (today: multishot accept).
//!
//! A multishot op's results queue up in a [`Multishot`] cell shared by its
//! driver slot, which fills it at every CQE on the ring's worker, and its
//! consumer (a listener), which takes them on whatever thread it is polled:
//! a stolen task, another runtime. Results are therefore never stranded on
//! the ring's worker, and nothing about the op needs forwarding.
//!
//! The slot, not the consumer, keeps the op's resources (for accept, a
//! clone of the listener's `Socket`: the fd lifetime rule) until the final
//! CQE, the one without `IORING_CQE_F_MORE`. The op ends when:
//! - the kernel ends it (an error such as `EMFILE`, which is delivered as a
//!   result; a CQ overflow);
//! - its queue reaches the cap: the driver cancels it (backpressure; further
//!   connections wait in the kernel's backlog, counted in
//!   `multishot_backpressure`);
//! - its consumer is gone: the consumer asks the ring's worker to cancel it
//!   (`Mail::CancelMultishot` from elsewhere).
//!
//! Once ended and drained, the consumer arms a new op on the worker it runs
//! on. Results nobody will take (the consumer is gone) are discarded with
//! the cell's `discard` (accept: the fd is closed), never leaked.
//!
//! Several tasks may wait on one cell (two tasks accepting on one
//! listener): every result and the end wake all of them; each re-polls and
//! one takes the result.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use crate::driver::op::ring_owner;
use crate::runtime::context;
use crate::runtime::guard::run_user_code;
use crate::sched::mail::Mail;

/// The shared result queue of one multishot op.
pub(crate) struct Multishot {
    inner: Mutex<Inner>,
    /// Cleans up a result nobody will take, given its CQE's `res` and
    /// `flags` (closes an accepted fd, gives a buffer back).
    discard: Box<dyn Fn(i32, u32) + Send + Sync>,
    /// Queue length at which the driver cancels the op.
    cap: usize,
}

struct Inner {
    results: VecDeque<(i32, u32)>,
    waiters: Vec<Waker>,
    at: Armed,
    /// The consumer dropped the cell's other end: discard every result.
    closed: bool,
}

/// Where the op stands, as the consumer needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Armed {
    /// Not submitted yet.
    No,
    /// In flight as slot `slot` of the ring of worker `worker` (its
    /// process-unique id), which sits at `index` in its runtime.
    On {
        worker: u64,
        index: usize,
        slot: u32,
    },
    /// Its final CQE was reaped (or its ring is gone): arm a new one.
    Ended,
}

/// What [`Multishot::poll_next`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A result: a CQE's `res` and `flags`.
    Result(i32, u32),
    /// The op ended (or was never armed) and every result was taken.
    Ended,
}

impl Multishot {
    pub(crate) fn new(discard: Box<dyn Fn(i32, u32) + Send + Sync>, cap: usize) -> Multishot {
        Multishot {
            inner: Mutex::new(Inner {
                results: VecDeque::new(),
                waiters: Vec::new(),
                at: Armed::No,
                closed: false,
            }),
            discard,
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned one still holds
        // consistent state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cleans up a CQE that is not a result (the final `-ECANCELED`).
    pub(crate) fn discard_now(&self, res: i32, flags: u32) {
        (self.discard)(res, flags);
    }

    /// Where the op stands.
    pub(crate) fn armed(&self) -> Armed {
        self.lock().at
    }

    /// The consumer armed the op as `slot` on worker `worker`'s ring.
    pub(crate) fn set_armed(&self, worker: u64, index: usize, slot: u32) {
        self.lock().at = Armed::On {
            worker,
            index,
            slot,
        };
    }

    /// Ring's worker, at a CQE: queues `res`, moves the waiters to wake into
    /// `wake` (draining, so the cell keeps its allocation: this runs per
    /// message) and says whether the queue has reached its cap (then the op
    /// should be cancelled). A result for a closed cell is discarded at once.
    pub(crate) fn push(&self, res: i32, flags: u32, wake: &mut Vec<Waker>) -> bool {
        let mut g = self.lock();
        if g.closed {
            drop(g);
            (self.discard)(res, flags);
            return false;
        }
        g.results.push_back((res, flags));
        wake.append(&mut g.waiters);
        g.results.len() >= self.cap
    }

    /// Ring's worker, at the final CQE (or its teardown): the op is over.
    /// Moves the waiters to wake into `wake`.
    pub(crate) fn end(&self, wake: &mut Vec<Waker>) {
        let mut g = self.lock();
        g.at = Armed::Ended;
        wake.append(&mut g.waiters);
    }

    /// Consumer, any thread: the next result, or `Ended` once the op is over
    /// and drained; else remembers `waker` and returns `Pending`.
    pub(crate) fn poll_next(&self, waker: &Waker) -> Poll<Next> {
        // A waker's clone is user code: never under the lock, which the
        // ring's worker takes at every CQE.
        let mut clone: Option<Waker> = None;
        loop {
            let mut g = self.lock();
            if let Some((res, flags)) = g.results.pop_front() {
                return Poll::Ready(Next::Result(res, flags));
            }
            if !matches!(g.at, Armed::On { .. }) {
                return Poll::Ready(Next::Ended);
            }
            if g.waiters.iter().any(|w| w.will_wake(waker)) {
                return Poll::Pending;
            }
            match clone.take() {
                Some(w) => {
                    g.waiters.push(w);
                    return Poll::Pending;
                }
                None => {
                    drop(g);
                    clone = Some(waker.clone());
                }
            }
        }
    }

    /// Consumer, when it is dropped: no result will be taken from now on.
    /// Discards the queued ones and returns where the op is still armed (the
    /// caller asks that ring's worker to cancel it) and the waiters, to drop
    /// outside the lock.
    pub(crate) fn close(&self) -> (Armed, Vec<Waker>) {
        let mut g = self.lock();
        g.closed = true;
        let queued: Vec<(i32, u32)> = g.results.drain(..).collect();
        let out = (g.at, std::mem::take(&mut g.waiters));
        drop(g);
        for (res, flags) in queued {
            (self.discard)(res, flags);
        }
        out
    }
}

/// The consumer of `cell` is gone: discards its queued results and has the
/// ring's worker cancel the op.
pub(crate) fn release(cell: Arc<Multishot>) {
    let (at, waiters) = cell.close();
    run_user_code("the drop of a waker", move || drop(waiters));
    cancel(&cell, at);
}

/// Has the ring's worker cancel `cell`'s op armed at `at`: directly when
/// called on that worker, else by mail; if that worker has exited, its
/// teardown ended the op. Results still arrive until the final CQE (unless
/// the cell was closed).
pub(crate) fn cancel(cell: &Arc<Multishot>, at: Armed) {
    let Armed::On {
        worker,
        index,
        slot,
    } = at
    else {
        return;
    };
    let here = context::with_worker(|w| {
        if w.id != worker {
            return false;
        }
        match w.driver.try_borrow_mut() {
            Ok(mut d) => d.uring().cancel_multishot(slot, cell, &w.metrics),
            // Called while the driver is borrowed: by mail to ourselves.
            Err(_) => w.remote.post(Mail::CancelMultishot {
                slot,
                cell: cell.clone(),
            }),
        }
        true
    })
    .unwrap_or(false);
    if !here {
        if let Some(owner) = ring_owner(worker, index) {
            owner.post(Mail::CancelMultishot {
                slot,
                cell: cell.clone(),
            });
        }
    }
}

impl Drop for Multishot {
    /// Both ends are gone: clean up what was never taken.
    fn drop(&mut self) {
        let g = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        for (res, flags) in g.results.drain(..) {
            (self.discard)(res, flags);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;
    use std::task::Wake;

    static DISCARDED: AtomicUsize = AtomicUsize::new(0);

    fn count(_: i32, _: u32) {
        DISCARDED.fetch_add(1, Relaxed);
    }

    struct Flag(AtomicUsize);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn results_queue_wake_every_waiter_and_are_discarded_once_closed() {
        let m = Multishot::new(Box::new(count), 2);
        let (a, b) = (
            Arc::new(Flag(AtomicUsize::new(0))),
            Arc::new(Flag(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        assert_eq!(m.poll_next(&wa), Poll::Ready(Next::Ended), "not armed yet");
        m.set_armed(1, 0, 7);
        assert!(m.poll_next(&wa).is_pending());
        assert!(m.poll_next(&wa).is_pending(), "registered once");
        assert!(m.poll_next(&wb).is_pending());
        let mut woken = Vec::new();
        let full = m.push(10, 0, &mut woken);
        assert_eq!((woken.len(), full), (2, false));
        let full = m.push(11, 0, &mut woken);
        assert!(full, "cap reached");
        assert_eq!(m.poll_next(&wa), Poll::Ready(Next::Result(10, 0)));
        let before = DISCARDED.load(Relaxed);
        let (at, _) = m.close();
        assert_eq!(
            at,
            Armed::On {
                worker: 1,
                index: 0,
                slot: 7
            }
        );
        assert_eq!(DISCARDED.load(Relaxed) - before, 1, "the queued 11");
        let _ = m.push(12, 0, &mut woken);
        assert_eq!(DISCARDED.load(Relaxed) - before, 2, "a late result");
        m.end(&mut woken);
    }
}
