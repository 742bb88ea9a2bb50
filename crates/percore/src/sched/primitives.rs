//! The atomics and locks the scheduler's lock-free protocols are written
//! against: `std` normally, `loom` under `--cfg loom`, so the model tests in
//! `sched/loom_tests.rs` explore every interleaving of the real protocol code
//! (task state, park latch, steal/ownership transfer) rather than a copy.

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
