//! Offloading blocking calls: [`spawn_blocking`] and [`try_spawn_blocking`]
//! run a closure on the runtime's bounded blocking pool (`pool.rs`) and
//! give a [`JoinHandle`](crate::JoinHandle) for its result. Awaiting the
//! handle from a task wakes that task on its own worker when the closure
//! returns.

mod pool;
pub(crate) mod slot;

pub use pool::{BlockingError, BlockingStats};
pub(crate) use pool::{Limits, Pool};

use crate::runtime::context;
use crate::task::JoinHandle;

/// Runs `f` on the current runtime's blocking pool; the handle resolves to
/// its return value, or to a [`JoinError`](crate::JoinError) if it panicked
/// or never ran.
///
/// **When the pool is full** (every thread busy, the queue at
/// `Builder::blocking_queue`) the job is refused, not queued without bound:
/// the handle resolves at once to a cancelled `JoinError`, and the refusal
/// is counted in [`BlockingStats::rejected`]. Use [`try_spawn_blocking`] to
/// learn of the refusal when it happens and shed the request instead.
///
/// [`JoinHandle::abort`](crate::JoinHandle::abort) cancels a job that has
/// not started; a running closure cannot be interrupted.
///
/// # Panics
///
/// Outside a percore worker thread; use `Runtime::spawn_blocking` there.
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let pool = current_pool("spawn_blocking");
    submit(&pool, f).unwrap_or_else(|(_, handle)| handle)
}

/// Like [`spawn_blocking`], but a refusal (pool full, runtime shutting
/// down) is returned as an error at once, and the closure is dropped.
///
/// # Panics
///
/// Outside a percore worker thread; use `Runtime::try_spawn_blocking` there.
pub fn try_spawn_blocking<F, T>(f: F) -> Result<JoinHandle<T>, BlockingError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let pool = current_pool("try_spawn_blocking");
    submit(&pool, f).map_err(|(e, _)| e)
}

fn current_pool(what: &str) -> std::sync::Arc<Pool> {
    context::with_worker(|w| w.shared.blocking.clone()).unwrap_or_else(|| {
        panic!("percore::task::{what} called outside a percore worker: use Runtime::{what}")
    })
}

/// Queues `f`; on refusal, the error and the handle (already resolved to
/// cancelled).
pub(crate) fn submit<F, T>(
    pool: &std::sync::Arc<Pool>,
    f: F,
) -> Result<JoinHandle<T>, (BlockingError, JoinHandle<T>)>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (job, handle) = slot::job(f);
    match pool.submit(job) {
        Ok(()) => Ok(handle),
        Err(e) => Err((e, handle)),
    }
}
