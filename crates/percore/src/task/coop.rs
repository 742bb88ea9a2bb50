//! Cooperative yielding: a budget of ready results per task poll.
//!
//! A future whose resource is always ready (an accept backlog of thousands,
//! a socket with megabytes queued, a full channel; on epoll every syscall
//! that succeeds at once) never returns `Pending`, so a task looping on it
//! would keep its worker, and every other task of that core would wait.
//! The worker therefore gives each task poll [`BUDGET`] ready results.
//! Once they are spent, the resources below answer `Pending` after waking
//! the task, which goes to the back of its queue and resumes after the
//! others have run. Nothing is consumed by the refused poll: the result
//! stays queued for the next one.
//!
//! Only results handed out count (a `Pending` costs nothing), so a task
//! polling many resources at once (a `join` of hundreds of reads) still
//! progresses by up to `BUDGET` results per poll rather than starving its
//! tail end. Off a worker there is no budget.
//!
//! Where it is checked: multishot accept and receive queues
//! (`driver/uring/{accept,recv}.rs`), every epoll op (`driver/epoll/ops.rs`,
//! `retry`), and `sync::mpsc` receives. A single io_uring op needs no check:
//! its first poll submits it and is always `Pending`.

use std::task::{Context, Poll};

use crate::runtime::context;

/// Ready results one task poll may take (tokio uses the same figure).
pub(crate) const BUDGET: u32 = 128;

/// `Ready` if the current task may take one more ready result; otherwise
/// wakes it and returns `Pending`, so its worker runs the others first.
pub(crate) fn poll_budget(cx: &Context<'_>) -> Poll<()> {
    let spent = context::with_worker(|w| {
        let spent = w.budget.get() == 0;
        if spent {
            w.metrics.budget_yields.bump();
        }
        spent
    });
    if spent == Some(true) {
        cx.waker().wake_by_ref();
        Poll::Pending
    } else {
        Poll::Ready(())
    }
}

/// The current task took one ready result.
pub(crate) fn consume() {
    context::with_worker(|w| w.budget.set(w.budget.get().saturating_sub(1)));
}

/// `poll` under the budget: refused (woken, `Pending`) once it is spent,
/// and one unit consumed when `poll` is `Ready`.
pub(crate) fn budgeted<T>(
    cx: &mut Context<'_>,
    poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    if poll_budget(cx).is_pending() {
        return Poll::Pending;
    }
    let r = poll(cx);
    if r.is_ready() {
        consume();
    }
    r
}
