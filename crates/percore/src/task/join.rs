//! `JoinHandle` and `JoinError`, and the harness that feeds them.
//!
//! The harness wraps a spawned future: it catches a panic of a poll and
//! stores the outcome (value, panic, or — when dropped unfinished — cancelled)
//! in a shared slot the handle reads. Dropping a `JoinHandle` detaches the
//! task: it keeps running and its output is dropped.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::raw::Task;

/// Why a task produced no value.
pub struct JoinError {
    repr: Repr,
    /// The panic message, read once when the error is made, so that no
    /// `&self` method ever touches the payload.
    message: Option<String>,
}

// SAFETY: the only non-Sync part is the panic payload, which no `&self`
// method reads; it is reachable only by value (`into_panic`).
unsafe impl Sync for JoinError {}

enum Repr {
    Cancelled,
    Panic(Box<dyn Any + Send + 'static>),
}

impl JoinError {
    /// The task was aborted, or the runtime shut down before it finished.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }
    /// The task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }
    /// The panic payload. Panics if the task was cancelled instead.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self.repr {
            Repr::Panic(p) => p,
            Repr::Cancelled => panic!("JoinError::into_panic on a cancelled task"),
        }
    }
    fn panic_message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    fn cancelled() -> JoinError {
        JoinError {
            repr: Repr::Cancelled,
            message: None,
        }
    }

    fn panic(p: Box<dyn Any + Send + 'static>) -> JoinError {
        let message = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned());
        JoinError {
            repr: Repr::Panic(p),
            message,
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.repr, self.panic_message()) {
            (Repr::Cancelled, _) => f.write_str("task was cancelled"),
            (Repr::Panic(_), Some(m)) => write!(f, "task panicked: {m}"),
            (Repr::Panic(_), None) => f.write_str("task panicked"),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinError({self})")
    }
}

impl std::error::Error for JoinError {}

struct Inner<T> {
    result: Option<Result<T, JoinError>>,
    waker: Option<Waker>,
    taken: bool,
}

/// The slot shared by a task's harness and its handle.
pub(crate) struct JoinState<T> {
    inner: Mutex<Inner<T>>,
}

impl<T> JoinState<T> {
    pub(crate) fn new() -> Arc<JoinState<T>> {
        Arc::new(JoinState {
            inner: Mutex::new(Inner {
                result: None,
                waker: None,
                taken: false,
            }),
        })
    }

    fn complete(&self, result: Result<T, JoinError>) {
        let waker = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if g.result.is_some() || g.taken {
                return;
            }
            g.result = Some(result);
            g.waker.take()
        };
        // The handle's waker is user code (any executor may poll a
        // JoinHandle): its panic must not unwind out of the worker's loop.
        if let Some(w) = waker {
            crate::runtime::guard::run_user_code("a JoinHandle's waker", || w.wake());
        }
    }
}

/// Wraps a spawned future; see the module docs.
pub(crate) struct Harness<F: Future> {
    future: F,
    join: Arc<JoinState<F::Output>>,
    finished: bool,
}

impl<F: Future> Harness<F> {
    pub(crate) fn new(future: F, join: Arc<JoinState<F::Output>>) -> Harness<F> {
        Harness {
            future,
            join,
            finished: false,
        }
    }
}

impl<F: Future> Future for Harness<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `future` is structurally pinned: it is never moved out of
        // the harness, and the harness itself is pinned in a Box by the task.
        // A panic of the poll is caught below (tests/tasks.rs: panics).
        let this = unsafe { self.get_unchecked_mut() };
        if this.finished {
            return Poll::Ready(());
        }
        // SAFETY: see above; `future` is not moved while pinned.
        let fut = unsafe { Pin::new_unchecked(&mut this.future) };
        let out = match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(p) => Err(JoinError::panic(p)),
        };
        this.finished = true;
        this.join.complete(out);
        Poll::Ready(())
    }
}

/// Runs where the task's future is dropped (its worker, inside
/// `drop_future`'s `catch_unwind`); the future's own drop (user code) runs
/// after this, and a panic in it is contained there too.
impl<F: Future> Drop for Harness<F> {
    fn drop(&mut self) {
        if !self.finished {
            self.join.complete(Err(JoinError::cancelled()));
        }
    }
}

/// A handle to a spawned task: a future of its output.
///
/// Dropping the handle **detaches** the task (it runs on, its output is
/// dropped); [`JoinHandle::abort`] cancels it.
pub struct JoinHandle<T> {
    state: Arc<JoinState<T>>,
    task: Arc<Task>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(state: Arc<JoinState<T>>, task: Arc<Task>) -> JoinHandle<T> {
        JoinHandle { state, task }
    }

    /// Cancels the task: its future is dropped at its worker's next chance
    /// (cancelling its in-flight I/O) and the handle resolves to a cancelled
    /// `JoinError`, unless the task had already finished.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Whether the task has finished (completed, panicked or cancelled).
    pub fn is_finished(&self) -> bool {
        self.task.is_done()
            || self
                .state
                .inner
                .lock()
                .map(|g| g.result.is_some())
                .unwrap_or(true)
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut g = self.state.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = g.result.take() {
            g.taken = true;
            return Poll::Ready(r);
        }
        assert!(!g.taken, "JoinHandle polled after it returned its result");
        match &g.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => g.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("task", &self.task.id)
            .finish()
    }
}
