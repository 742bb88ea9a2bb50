//! The atomics, locks and queue the scheduler's cross-thread protocols are
//! written against: `std` and crossbeam normally, `loom` under `--cfg loom`,
//! so the model tests in `sched/loom_tests.rs` explore every interleaving of
//! the real protocol code (task state, park latch, remote queues, stealing
//! and ownership transfer) rather than a copy.
//!
//! ## The queue stand-in
//!
//! loom cannot look inside crossbeam's lock-free `SegQueue`, so under loom
//! [`SegQueue`] is a `loom::sync::Mutex<VecDeque>` with the same methods.
//! What the protocols rely on from the queue is that it is linearizable and
//! sequentially consistent: each `push`, `pop`, `len` and `is_empty` takes
//! effect at one instant in a single total order that agrees with program
//! order, so a `pop` or `is_empty` that follows a `push` in that order sees
//! it, and no element is popped twice. crossbeam's `SegQueue` provides that
//! (head and tail move by `SeqCst` compare-exchange, `len`/`is_empty` read
//! both with `SeqCst` loads), and a mutex-protected deque provides exactly
//! that and nothing stronger the protocols could lean on: the models never
//! hold the lock across other operations. So interleavings loom finds
//! against the stand-in are interleavings the real queue allows.

pub(crate) use std::sync::atomic::Ordering;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU8, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::Mutex;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU8, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;

/// Locks `m`, ignoring poisoning: the protected data are plain collections
/// that stay consistent even if a holder panicked (we never panic while
/// holding these locks, but a poisoned lock must not take the runtime down).
#[cfg(not(loom))]
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(loom)]
pub(crate) fn lock<T>(m: &Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
    m.lock().unwrap()
}

#[cfg(not(loom))]
pub(crate) use crossbeam_queue::SegQueue;

/// loom stand-in for crossbeam's `SegQueue` (see the module docs).
#[cfg(loom)]
pub(crate) struct SegQueue<T>(loom::sync::Mutex<std::collections::VecDeque<T>>);

#[cfg(loom)]
impl<T> SegQueue<T> {
    pub(crate) fn new() -> SegQueue<T> {
        SegQueue(loom::sync::Mutex::new(std::collections::VecDeque::new()))
    }
    pub(crate) fn push(&self, t: T) {
        self.0.lock().unwrap().push_back(t);
    }
    pub(crate) fn pop(&self) -> Option<T> {
        self.0.lock().unwrap().pop_front()
    }
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
}
