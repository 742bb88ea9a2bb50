//! `spawn` and `spawn_local`: creating tasks from inside a worker.

use std::future::Future;

use super::join::JoinHandle;
use crate::runtime::context;

/// Spawns a `Send` task on the current worker. It may later run on another
/// worker (work stealing); its output is delivered through the handle.
///
/// # Panics
///
/// Outside a percore worker thread; use `Runtime::spawn` there.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    context::with_worker(|w| w.spawn_here(future, true, None)).unwrap_or_else(|| {
        panic!(
            "percore::spawn called outside a percore worker: use Runtime::spawn from other threads"
        )
    })
}

/// Spawns a task that never leaves the current worker, so the future need
/// not be `Send` (it may hold `Rc`, `RefCell`, ...).
///
/// # Panics
///
/// Outside a percore worker thread; use `Runtime::spawn_local_on` there.
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    context::with_worker(|w| w.spawn_here(future, false, None)).unwrap_or_else(|| {
        panic!("percore::spawn_local called outside a percore worker: use Runtime::spawn_local_on")
    })
}
