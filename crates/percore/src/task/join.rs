//! `JoinHandle` and `JoinError`, and the join slot between a task and its
//! handle.
//!
//! A task's outcome (value, panic, or — when dropped unfinished —
//! cancelled) stays in the task record (`task/body.rs`) until the handle
//! takes it; the join slot (status and the handle's waker, under the
//! record's mutex) says whose turn it is (`task/raw.rs`). Dropping a
//! `JoinHandle` detaches the task: it keeps running and its output is
//! dropped.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::raw::Task;
use crate::blocking::slot::Slot as BlockingSlot;

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

    pub(crate) fn cancelled() -> JoinError {
        JoinError {
            repr: Repr::Cancelled,
            message: None,
        }
    }

    pub(crate) fn panic(p: Box<dyn Any + Send + 'static>) -> JoinError {
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

/// Where a task's outcome stands, for its join handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinStatus {
    /// Not over yet.
    Pending,
    /// Over: the output waits in the task's body for the handle.
    Ready,
    /// The handle took the output (or dropped it).
    Taken,
    /// The handle was dropped first: the worker drops the output.
    Detached,
}

/// The join handle's side of a task record, under the record's mutex.
pub(crate) struct JoinSlot {
    pub(crate) status: JoinStatus,
    pub(crate) waker: Option<Waker>,
}

impl JoinSlot {
    pub(crate) fn new() -> JoinSlot {
        JoinSlot {
            status: JoinStatus::Pending,
            waker: None,
        }
    }
}

/// A handle to a spawned task (or a blocking job): a future of its output.
///
/// Dropping the handle **detaches** the task (it runs on, its output is
/// dropped); [`JoinHandle::abort`] cancels it.
pub struct JoinHandle<T> {
    repr: Source<T>,
}

/// Where the handle's result comes from.
enum Source<T> {
    Task(Arc<Task>, PhantomData<T>),
    Blocking(Arc<BlockingSlot<T>>),
}

impl<T> JoinHandle<T> {
    /// The handle of `task`, whose future's output type is `T`.
    pub(crate) fn new(task: Arc<Task>) -> JoinHandle<T> {
        JoinHandle {
            repr: Source::Task(task, PhantomData),
        }
    }

    /// The handle of a job on the blocking pool.
    pub(crate) fn blocking(slot: Arc<BlockingSlot<T>>) -> JoinHandle<T> {
        JoinHandle {
            repr: Source::Blocking(slot),
        }
    }

    /// Cancels the task: its future is dropped at its worker's next chance
    /// (cancelling its in-flight I/O) and the handle resolves to a cancelled
    /// `JoinError`, unless the task had already finished. A blocking job
    /// that has not started is skipped when its turn comes (it keeps its
    /// queue slot until then); one already running runs to its end (a
    /// thread cannot be interrupted) and the handle returns its value.
    pub fn abort(&self) {
        match &self.repr {
            Source::Task(task, _) => task.abort(),
            Source::Blocking(slot) => slot.abort(),
        }
    }

    /// Whether the task has finished (completed, panicked or cancelled).
    pub fn is_finished(&self) -> bool {
        match &self.repr {
            // The join status, not the task state: DONE comes a moment
            // before the outcome is published, and "finished" promises a
            // ready poll.
            Source::Task(task, _) => task.join_slot().status != JoinStatus::Pending,
            Source::Blocking(slot) => slot.is_finished(),
        }
    }
}

// Auto traits as a join slot of `T` behind a mutex would have them: the
// handle moves `T` out (so `Send` needs `T: Send`, which `PhantomData<T>`
// gives), its `&self` methods never touch `T` (so `Sync` needs only
// `T: Send`), and it never pins `T`.
// SAFETY: `abort` and `is_finished`, the only `&self` methods, touch the
// task's atomics and join status (or the blocking slot's flag and done
// bit), never the output.
unsafe impl<T: Send> Sync for JoinHandle<T> {}
impl<T> Unpin for JoinHandle<T> {}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task = match &self.repr {
            Source::Task(task, _) => task,
            Source::Blocking(slot) => return slot.poll(cx),
        };
        let mut join = task.join_slot();
        match join.status {
            JoinStatus::Ready => {
                join.status = JoinStatus::Taken;
                // SAFETY: this handle was made with the task's output type
                // (`Task::new`), and we hold the join mutex with status
                // `Ready`: the worker is done with the body for good.
                let out = unsafe { (*task.output_slot::<T>()).take() };
                drop(join);
                Poll::Ready(out.expect("a Ready task has an output"))
            }
            JoinStatus::Taken => panic!("JoinHandle polled after it returned its result"),
            JoinStatus::Pending | JoinStatus::Detached => {
                match &join.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => join.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    /// Detaches a running task, or drops an output nobody took, here: the
    /// output's type lives where its handle does.
    fn drop(&mut self) {
        let task = match &self.repr {
            Source::Task(task, _) => task,
            Source::Blocking(slot) => return slot.detach(),
        };
        let mut join = task.join_slot();
        match join.status {
            JoinStatus::Pending => {
                join.status = JoinStatus::Detached;
                let waker = join.waker.take();
                drop(join);
                drop(waker);
            }
            JoinStatus::Ready => {
                join.status = JoinStatus::Taken;
                // SAFETY: as in `poll`.
                let out = unsafe { (*task.output_slot::<T>()).take() };
                drop(join);
                drop(out);
            }
            JoinStatus::Taken | JoinStatus::Detached => {}
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Source::Task(task, _) => f
                .debug_struct("JoinHandle")
                .field("task", &task.id)
                .finish(),
            Source::Blocking(_) => f
                .debug_struct("JoinHandle")
                .field("blocking", &true)
                .finish(),
        }
    }
}
