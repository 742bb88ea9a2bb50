//! The result slot between a blocking job and its join handle.
//!
//! The job runs once on a pool thread and stores the closure's value or
//! panic; if it is dropped without running (refused, or queued at
//! shutdown) its `Drop` stores "cancelled". Either way the handle's waker
//! is woken once. `abort` before the job starts makes it skip the closure.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::pool::Job;
use crate::task::{JoinError, JoinHandle};

pub(crate) struct Slot<T> {
    inner: Mutex<Inner<T>>,
    aborted: AtomicBool,
}

struct Inner<T> {
    result: Option<Result<T, JoinError>>,
    done: bool,
    taken: bool,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn complete(&self, r: Result<T, JoinError>) {
        let waker = {
            let mut g = self.lock();
            if g.done {
                return;
            }
            g.done = true;
            if !g.taken {
                g.result = Some(r);
            }
            g.waker.take()
        };
        // The waker is user code: a panic in it must not end a pool thread.
        if let Some(w) = waker {
            crate::runtime::guard::run_user_code("a JoinHandle's waker", || w.wake());
        }
    }

    pub(crate) fn abort(&self) {
        self.aborted.store(true, Release);
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.lock().done
    }

    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>> {
        let mut g = self.lock();
        assert!(!g.taken, "JoinHandle polled after it returned its result");
        if let Some(r) = g.result.take() {
            g.taken = true;
            return Poll::Ready(r);
        }
        match &g.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => g.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The handle is gone: drop an untaken value here. (A value that comes
    /// after this is dropped on the pool thread: `T` is `Send`.)
    pub(crate) fn detach(&self) {
        let (value, waker) = {
            let mut g = self.lock();
            g.taken = true;
            (g.result.take(), g.waker.take())
        };
        drop(value);
        drop(waker);
    }
}

struct BlockingJob<F, T> {
    f: Option<F>,
    slot: Arc<Slot<T>>,
}

impl<F, T> Job for BlockingJob<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn run(mut self: Box<Self>) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        if self.slot.aborted.load(Acquire) {
            return false; // `Drop` reports the cancellation
        }
        let r = catch_unwind(AssertUnwindSafe(f)).map_err(JoinError::panic);
        self.slot.complete(r);
        true
    }
}

impl<F, T> Drop for BlockingJob<F, T> {
    /// Never run (refused, aborted, or queued at shutdown): cancelled.
    fn drop(&mut self) {
        self.slot.complete(Err(JoinError::cancelled()));
    }
}

/// A job for `f` and the handle of its result.
pub(crate) fn job<F, T>(f: F) -> (Box<dyn Job>, JoinHandle<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = Arc::new(Slot {
        inner: Mutex::new(Inner {
            result: None,
            done: false,
            taken: false,
            waker: None,
        }),
        aborted: AtomicBool::new(false),
    });
    let job = Box::new(BlockingJob {
        f: Some(f),
        slot: slot.clone(),
    });
    (job, JoinHandle::blocking(slot))
}
