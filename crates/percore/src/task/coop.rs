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
//! stays queued for the next one. `WorkerMetrics::budget_yields` counts
//! the task polls that ended so.
//!
//! Only results handed out count (a `Pending` costs nothing), so a task
//! polling many resources at once (a `join` of hundreds of reads) still
//! progresses by up to `BUDGET` results per poll rather than starving its
//! tail end. Off a worker there is no budget.
//!
//! Where it is checked: multishot accept and receive queues
//! (`driver/uring/{accept,recv}.rs`), every epoll op (`driver/epoll/ops.rs`,
//! `retry`), and `sync::mpsc` sends and receives. A single io_uring op needs no check:
//! its first poll submits it and is always `Pending`.

use std::task::{Context, Poll};

use crate::runtime::context;

/// Ready results one task poll may take (tokio uses the same figure).
pub(crate) const BUDGET: u32 = 128;

/// The budget outside a task poll (wakers, drops, shutdown): none.
pub(crate) const UNLIMITED: u32 = u32::MAX;

/// `Ready` if the current task may take one more ready result; otherwise
/// wakes it and returns `Pending`, so its worker runs the others first.
///
/// The budget belongs to the worker's current task poll, not to the waker
/// passed in: a future polled inside a task with a waker of its own (a
/// nested executor's `block_on`, `now_or_never`) is refused too once the
/// task's budget is spent, and such a nested loop would spin. Do not run
/// executors inside percore tasks.
pub(crate) fn poll_budget(cx: &Context<'_>) -> Poll<()> {
    let refused = context::with_worker(|w| {
        let refused = w.budget.get() == 0;
        if refused {
            w.budget_refused.set(true);
        }
        refused
    });
    if refused == Some(true) {
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

fn left() -> Option<u32> {
    context::with_worker(|w| w.budget.get())
}

/// `poll` under the budget: refused (woken, `Pending`) once it is spent;
/// one unit consumed when `poll` is `Ready` with a result that `counts`,
/// unless an op inside it already consumed one (an epoll `recv_pooled`
/// falls back to a receive that is budgeted itself).
pub(crate) fn budgeted<T>(
    cx: &mut Context<'_>,
    counts: impl FnOnce(&T) -> bool,
    poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    if poll_budget(cx).is_pending() {
        return Poll::Pending;
    }
    let before = left();
    let r = poll(cx);
    if let Poll::Ready(v) = &r {
        if counts(v) && left() == before {
            consume();
        }
    }
    r
}
