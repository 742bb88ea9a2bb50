//! `Runtime`: the owner of the worker threads.

use std::future::Future;
use std::io;
use std::panic::resume_unwind;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::block_on::wait;
use super::context;
use super::info::WorkerInfo;
use super::shared::Shared;
use super::Builder;
use crate::blocking::{BlockingError, BlockingStats};
use crate::metrics::MetricsSnapshot;
use crate::task::JoinHandle;

/// A running percore runtime: one pinned worker thread per core, each with
/// its own io_uring. Dropping it shuts it down (see [`Runtime::shutdown_timeout`]).
#[derive(Debug)]
pub struct Runtime {
    pub(super) shared: Arc<Shared>,
    pub(super) threads: Vec<thread::JoinHandle<()>>,
    pub(super) workers: Vec<WorkerInfo>,
    pub(super) shutdown_timeout: Duration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("workers", &self.remotes.len())
            .finish()
    }
}

/// Blocking the caller is wrong on a worker: it would stall that worker.
fn not_on_a_worker(what: &str) {
    assert!(
        context::with_worker(|_| ()).is_none(),
        "Runtime::{what} called from a percore worker: await the future instead"
    );
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime with the default configuration.
    pub fn new() -> io::Result<Runtime> {
        Builder::default().build()
    }

    /// Runs `future` to completion on worker 0 and returns its output,
    /// blocking the calling thread. A panic in the future is resumed here.
    ///
    /// # Panics
    ///
    /// When called from a worker thread (it would block that worker), or if
    /// the runtime shuts down before the future completes, including when a
    /// worker failed (its driver returned an error): the panic message names
    /// the cause, and the runtime has shut down.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        not_on_a_worker("block_on");
        self.wait_for(self.shared.spawn_on(0, future), "block_on")
    }

    /// Like [`block_on`](Self::block_on) for a future that is not `Send`:
    /// `make` is sent to worker 0 and builds the future there, where it
    /// then runs to completion (as a `spawn_local` task), so it may hold
    /// `Rc`s, `RefCell` borrows and other `!Send` state across awaits.
    ///
    /// Why worker 0 and not the calling thread: percore's I/O, timers and
    /// wakeups belong to a worker's ring and loop; the caller's thread has
    /// neither, so a future polled there could not do I/O. Only the output
    /// crosses back, so it must be `Send`.
    ///
    /// ```
    /// use std::rc::Rc;
    /// let rt = percore::Runtime::builder().workers(1).build()?;
    /// let n = rt.block_on_local(|| async {
    ///     let shared = Rc::new(std::cell::Cell::new(1));
    ///     percore::task::yield_now().await;
    ///     shared.set(shared.get() + 1);
    ///     shared.get()
    /// });
    /// assert_eq!(n, 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As for `block_on`.
    pub fn block_on_local<M, F>(&self, make: M) -> F::Output
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        not_on_a_worker("block_on_local");
        self.wait_for(self.shared.spawn_local_on(0, make), "block_on_local")
    }

    /// Blocks the caller until `handle`'s task ends; resumes its panic, or
    /// panics naming why the runtime stopped first.
    fn wait_for<T>(&self, handle: JoinHandle<T>, what: &str) -> T {
        match wait(handle) {
            Ok(v) => v,
            Err(e) if e.is_panic() => resume_unwind(e.into_panic()),
            Err(e) => match self.shared.failure() {
                Some(cause) => panic!("Runtime::{what}: {e}: the runtime stopped ({cause})"),
                None => panic!("Runtime::{what}: {e} (the runtime shut down)"),
            },
        }
    }

    /// Spawns a `Send` task from any thread (round-robin over workers; on a
    /// worker of this runtime, onto that worker).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.spawn(future)
    }

    /// Spawns a task pinned to worker `index`: `make` runs on that worker and
    /// builds the future there, so the future need not be `Send`. This is how
    /// per-worker services (a listener per core) start.
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

    /// Runs `f` on this runtime's blocking pool, from any thread; see
    /// [`task::spawn_blocking`](crate::task::spawn_blocking) for the
    /// policy when the pool is full.
    pub fn spawn_blocking<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::blocking::submit(&self.shared.blocking, f).unwrap_or_else(|(_, h)| h)
    }

    /// Like [`Runtime::spawn_blocking`], but a refusal is an error.
    pub fn try_spawn_blocking<F, T>(&self, f: F) -> Result<JoinHandle<T>, BlockingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::blocking::submit(&self.shared.blocking, f).map_err(|(e, _)| e)
    }

    /// A cloneable, `Send` handle to spawn onto this runtime from anywhere.
    pub fn handle(&self) -> super::Handle {
        super::Handle::new(self.shared.clone())
    }

    /// A handle to this runtime's metrics that can move into a task or a
    /// thread (to serve them, e.g. as Prometheus text).
    pub fn metrics_handle(&self) -> RuntimeMetrics {
        RuntimeMetrics {
            shared: self.shared.clone(),
        }
    }

    /// The blocking pool's threads, queue and counts.
    pub fn blocking_stats(&self) -> BlockingStats {
        self.shared.blocking.stats()
    }

    /// The workers: placement and ring setup.
    pub fn workers(&self) -> &[WorkerInfo] {
        &self.workers
    }

    /// A snapshot of every worker's counters.
    pub fn metrics(&self) -> Vec<MetricsSnapshot> {
        self.shared
            .remotes
            .iter()
            .map(|r| r.metrics.snapshot())
            .collect()
    }

    /// Shuts down: every task is dropped (their in-flight ops are cancelled),
    /// then each worker waits up to `timeout` for the kernel to finish those
    /// ops. Memory of ops still in flight after that is leaked, never freed
    /// while the kernel may write it.
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown_now(timeout);
    }

    fn shutdown_now(&mut self, timeout: Duration) {
        self.shared.begin_shutdown(Instant::now() + timeout);
        let me = thread::current().id();
        for t in self.threads.drain(..) {
            // Dropped from one of its own workers: cannot join itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

/// A cloneable, `Send` view of a runtime's metrics
/// ([`Runtime::metrics_handle`]).
#[derive(Clone)]
pub struct RuntimeMetrics {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RuntimeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeMetrics").finish_non_exhaustive()
    }
}

impl RuntimeMetrics {
    /// A snapshot of every worker's counters, gauges and histograms.
    pub fn workers(&self) -> Vec<MetricsSnapshot> {
        self.shared
            .remotes
            .iter()
            .map(|r| r.metrics.snapshot())
            .collect()
    }

    /// The blocking pool's threads, queue and counts.
    pub fn blocking(&self) -> BlockingStats {
        self.shared.blocking.stats()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let timeout = self.shutdown_timeout;
        self.shutdown_now(timeout);
    }
}
