//! The task state machine, separate from the task record so the loom models
//! (`sched/loom_tests.rs`) run exactly this code.
//!
//! ```text
//! IDLE ──wake──▶ SCHEDULED ──worker pops──▶ RUNNING ──Pending──▶ IDLE
//!                    ▲                        │  ▲
//!                    └──(re-queued)◀─ NOTIFIED ◀─┘ wake during poll
//! RUNNING ──Ready / aborted / shutdown──▶ DONE (future dropped)
//! ```
//!
//! Only the wake that moves a task IDLE → SCHEDULED enqueues it, and a wake
//! during a poll only sets NOTIFIED (the runner re-queues it), so a task is
//! in at most one queue at a time and never runs on two threads at once.

use crate::sched::primitives::{AtomicU8, Ordering::*};

pub(crate) const IDLE: u8 = 0;
pub(crate) const SCHEDULED: u8 = 1;
pub(crate) const RUNNING: u8 = 2;
pub(crate) const NOTIFIED: u8 = 3;
pub(crate) const DONE: u8 = 4;

/// How a poll ended, for the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterPoll {
    /// Back to IDLE: the next wake enqueues it.
    Idle,
    /// Woken during the poll: the runner must enqueue it again.
    Requeue,
}

pub(crate) struct TaskState(AtomicU8);

impl TaskState {
    /// A new task is SCHEDULED: its creator enqueues it once.
    pub(crate) fn new_scheduled() -> TaskState {
        TaskState(AtomicU8::new(SCHEDULED))
    }

    /// The wake path: true when the caller must enqueue the task.
    ///
    /// Always a read-modify-write, even when the task is already SCHEDULED
    /// or NOTIFIED (it rewrites the same value): together with the swap in
    /// `start_run` this orders the waker's writes (the data it woke the task
    /// for) before the next poll. With a plain load here, a waker could see
    /// SCHEDULED while the runner, having just stored RUNNING, reads stale
    /// data — a lost wakeup. The loom model
    /// `loom_wake_during_poll_is_never_lost_or_doubled` found exactly that.
    pub(crate) fn schedule(&self) -> bool {
        let mut cur = self.0.load(Acquire);
        loop {
            let next = match cur {
                IDLE => SCHEDULED,
                RUNNING => NOTIFIED,
                SCHEDULED | NOTIFIED => cur,
                _ => return false,
            };
            match self.0.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => return cur == IDLE,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The runner took the task from a queue and is about to poll it.
    ///
    /// A swap (acquire): it reads the latest wake's write to the state, so
    /// the poll sees everything that waker published.
    pub(crate) fn start_run(&self) {
        self.0.swap(RUNNING, AcqRel);
    }

    /// The poll returned Pending.
    pub(crate) fn finish_pending(&self) -> AfterPoll {
        match self.0.compare_exchange(RUNNING, IDLE, AcqRel, Acquire) {
            Ok(_) => AfterPoll::Idle,
            Err(_) => {
                // NOTIFIED: only we leave that state, so a plain store is
                // enough; wakes from now on see SCHEDULED and do nothing.
                self.0.store(SCHEDULED, Release);
                AfterPoll::Requeue
            }
        }
    }

    /// The task is over; false if it already was. Whoever moves it to DONE
    /// first owns what is left of its body (the runner, the home worker's
    /// cancel, or the drain of a closed queue); the others leave it alone.
    #[must_use]
    pub(crate) fn set_done(&self) -> bool {
        self.0.swap(DONE, AcqRel) != DONE
    }
}
