//! The typed part of a task record: the future and the slot for its output,
//! behind the object-safe [`Body`] trait so that queues, wakers and the
//! owned map handle every task as one `Arc<Task>` type.
//!
//! The future lives in place inside the task's single allocation and is
//! never moved (it is pinned there); it is dropped in place exactly once:
//! when it completes, when the task is cancelled, or never (leaked along
//! with the whole record, at a shutdown that could not drop it).

use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::join::JoinError;

/// What a task record needs from its future, without its type.
pub(crate) trait Body {
    /// Polls the future. `true` when the task is over: the future is
    /// dropped and the output (a value or the panic) is in the slot.
    fn poll(&mut self, cx: &mut Context<'_>) -> bool;
    /// Drops the future without polling it (a panic of its `Drop` is
    /// contained) and stores "cancelled" as the output, if there is none.
    fn cancel(&mut self);
    /// Marks the future as gone without dropping it: the caller keeps the
    /// whole record alive for ever (a leaked future must not be freed).
    fn forget_future(&mut self);
    /// Drops the output, if any (a panic of its `Drop` is contained).
    fn discard_output(&mut self);
    /// The output slot, an `Option<Result<F::Output, JoinError>>`.
    fn output_slot(&mut self) -> *mut ();
}

pub(crate) struct Core<F: Future> {
    /// Live while `live`; pinned: never moved out.
    future: ManuallyDrop<F>,
    live: bool,
    output: Option<Result<F::Output, JoinError>>,
}

impl<F: Future> Core<F> {
    pub(crate) fn new(future: F) -> Core<F> {
        Core {
            future: ManuallyDrop::new(future),
            live: true,
            output: None,
        }
    }

    fn drop_future(&mut self) {
        if !std::mem::replace(&mut self.live, false) {
            return;
        }
        // `live` is already false: a panicking `Drop` counts as dropped and
        // is never run again.
        let future = &mut self.future;
        // SAFETY: the future was live and is dropped in place exactly once
        // (`live` guards it); it is never touched afterwards.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { ManuallyDrop::drop(future) }));
    }
}

impl<F: Future> Body for Core<F> {
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.live {
            return true;
        }
        // SAFETY: the future is stored in place in the task's allocation
        // and never moved until it is dropped there (module docs).
        let future = unsafe { Pin::new_unchecked(&mut *self.future) };
        let out = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => return false,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(p) => Err(JoinError::panic(p)),
        };
        self.drop_future();
        self.output = Some(out);
        true
    }

    fn cancel(&mut self) {
        self.drop_future();
        if self.output.is_none() {
            self.output = Some(Err(JoinError::cancelled()));
        }
    }

    fn forget_future(&mut self) {
        self.live = false;
        if self.output.is_none() {
            self.output = Some(Err(JoinError::cancelled()));
        }
    }

    fn discard_output(&mut self) {
        let out = self.output.take();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(out)));
    }

    fn output_slot(&mut self) -> *mut () {
        (&mut self.output as *mut Option<Result<F::Output, JoinError>>).cast()
    }
}

impl<F: Future> Drop for Core<F> {
    /// Reached only when the last reference goes; the task protocol has
    /// dropped or leaked the future by then (`task/raw.rs`). This is the
    /// backstop for a record that was never run nor cancelled.
    fn drop(&mut self) {
        self.drop_future();
    }
}
