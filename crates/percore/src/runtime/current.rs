//! `Handle`: the runtime a task runs on, from inside it
//! (`Handle::current()`), and `worker_index()` for per-core sharded state.

use std::future::Future;
use std::sync::Arc;

use super::context;
use super::shared::Shared;
use crate::blocking::BlockingError;
use crate::task::JoinHandle;

/// A cloneable, `Send` handle to a running runtime: spawn onto it from
/// anywhere (another runtime's task, a plain thread, a blocking closure).
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.shared.remotes.len())
            .finish()
    }
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Handle {
        Handle { shared }
    }

    /// The runtime of the calling worker thread.
    ///
    /// # Panics
    ///
    /// Off a percore worker thread; use [`Handle::try_current`] to check.
    pub fn current() -> Handle {
        Handle::try_current().expect(
            "Handle::current called outside a percore worker: keep a Handle from Runtime::handle",
        )
    }

    /// The runtime of the calling worker thread, if it is one.
    pub fn try_current() -> Option<Handle> {
        context::with_worker(|w| Handle::new(w.shared.clone()))
    }

    /// Workers of this runtime.
    pub fn workers(&self) -> usize {
        self.shared.remotes.len()
    }

    /// Spawns a `Send` task: onto the calling worker if it belongs to this
    /// runtime, else round-robin over the workers.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.spawn(future)
    }

    /// Spawns a task pinned to worker `index`, built there by `make` (see
    /// `Runtime::spawn_local_on`).
    ///
    /// # Panics
    ///
    /// If `index` is not a worker index.
    pub fn spawn_local_on<M, F>(&self, index: usize, make: M) -> JoinHandle<F::Output>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        self.shared.spawn_local_on(index, make)
    }

    /// Runs `f` on this runtime's blocking pool (see
    /// [`task::spawn_blocking`](crate::task::spawn_blocking)).
    pub fn spawn_blocking<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::blocking::submit(&self.shared.blocking, f).unwrap_or_else(|(_, h)| h)
    }

    /// Like [`Handle::spawn_blocking`], but a refusal is an error.
    pub fn try_spawn_blocking<F, T>(&self, f: F) -> Result<JoinHandle<T>, BlockingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::blocking::submit(&self.shared.blocking, f).map_err(|(e, _)| e)
    }
}

/// The index of the worker the caller runs on (0-based, below the
/// runtime's worker count), or `None` off a worker thread: the key for
/// per-core sharded state (one slot per worker, no locks between cores).
///
/// A `spawn` task may move to another worker between two awaits (work
/// stealing): read the index where you use it, or use `spawn_local`.
pub fn worker_index() -> Option<usize> {
    context::with_worker(|w| w.remote.index)
}
