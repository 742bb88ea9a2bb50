//! The thread-local "current worker": set for the life of a worker thread,
//! absent on every other thread.
//!
//! Everything a worker owns exclusively (driver, timers, run queue, owned
//! tasks) sits behind `RefCell`s in [`Worker`]; only that worker's thread can
//! reach it, through [`with_worker`]. Borrows are short and never held while
//! user code runs (polls, wakers, drops of user values), so they cannot nest.

use std::cell::RefCell;
use std::rc::Rc;

use super::worker::Worker;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Worker>>> = const { RefCell::new(None) };
}

/// Runs `f` with the current worker, or returns `None` off-worker (or while
/// the thread is being torn down).
///
/// `f` runs under a shared borrow of the thread-local (no `Rc` clone per
/// call: this is on every op and wake). Only [`set`] borrows it mutably, and
/// only at the start and end of a worker thread, never inside `f`.
pub(crate) fn with_worker<R>(f: impl FnOnce(&Worker) -> R) -> Option<R> {
    CURRENT
        .try_with(|c| c.borrow().as_deref().map(f))
        .ok()
        .flatten()
}

/// Installs `worker` as this thread's current worker.
pub(crate) fn set(worker: Option<Rc<Worker>>) {
    CURRENT.with(|c| *c.borrow_mut() = worker);
}
