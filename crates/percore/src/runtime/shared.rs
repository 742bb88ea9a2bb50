//! State shared by all workers of one runtime and its handle: the workers'
//! remote sides, the stealing policy and idle count, the shutdown flag and
//! its phases, id counters.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::stall::StallConfig;
use crate::blocking::{Limits, Pool};
use crate::sched::{Remote, StealPolicy};
use crate::task::join::JoinHandle;
use crate::task::raw::Task;

pub(crate) struct Shared {
    pub(crate) remotes: Vec<Arc<Remote>>,
    pub(crate) steal: StealPolicy,
    pub(crate) shutdown: AtomicBool,
    /// Workers done dropping their tasks at shutdown (or that never started):
    /// a ring closes only after every worker has, since dropping a stolen
    /// task may send its ops' resources to any ring (`worker.rs`).
    tasks_dropped: AtomicUsize,
    drain_deadline: Mutex<Option<Instant>>,
    /// How long in-flight work may drain when the runtime shuts down.
    shutdown_timeout: Duration,
    /// Why the runtime stopped on its own: a worker's driver failed.
    failure: Mutex<Option<String>>,
    next_task: AtomicU64,
    next_worker: AtomicUsize,
    /// The bounded pool for `spawn_blocking`.
    pub(crate) blocking: Arc<Pool>,
    /// Stall threshold and hook (`Builder::stall_threshold`, `on_stall`).
    pub(crate) stall: StallConfig,
    /// Time zero for task wake stamps.
    epoch: Instant,
}

impl Shared {
    pub(crate) fn new(
        remotes: Vec<Arc<Remote>>,
        steal: StealPolicy,
        shutdown_timeout: Duration,
    ) -> Shared {
        Shared {
            remotes,
            steal,
            shutdown: AtomicBool::new(false),
            tasks_dropped: AtomicUsize::new(0),
            drain_deadline: Mutex::new(None),
            shutdown_timeout,
            failure: Mutex::new(None),
            next_task: AtomicU64::new(1),
            next_worker: AtomicUsize::new(0),
            blocking: Pool::new(Limits::default(), "percore-blocking".into()),
            stall: StallConfig::default(),
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since this runtime's epoch.
    pub(crate) fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    pub(crate) fn ns_at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn next_task_id(&self) -> u64 {
        self.next_task.fetch_add(1, Relaxed)
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(SeqCst)
    }

    /// Asks every worker to stop; in-flight ops may drain until `deadline`.
    pub(crate) fn begin_shutdown(&self, deadline: Instant) {
        *self
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.shutdown.store(true, SeqCst);
        for r in &self.remotes {
            r.unpark();
        }
        // After the workers are told: dropping queued jobs runs user code.
        self.blocking.shutdown();
    }

    /// Worker `index` cannot go on (its driver failed, or percore itself
    /// panicked): the runtime fails loudly rather than leaving everything
    /// routed to that worker waiting forever. One line on stderr names the
    /// cause; every worker shuts down as for `Runtime::shutdown_timeout`, so
    /// tasks are dropped (their `JoinHandle`s return a cancelled error) and
    /// `block_on` panics with this cause.
    pub(crate) fn fail(&self, index: usize, cause: &str) {
        let msg = format!("worker {index} failed: {cause}");
        super::guard::report(format_args!("percore: {msg}; shutting the runtime down"));
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(msg);
        }
        drop(f);
        if !self.is_shutdown() {
            self.begin_shutdown(Instant::now() + self.shutdown_timeout);
        }
    }

    /// Why the runtime stopped on its own, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A worker finished dropping its tasks (or failed to start).
    pub(crate) fn mark_tasks_dropped(&self) {
        self.tasks_dropped.fetch_add(1, SeqCst);
    }

    pub(crate) fn all_tasks_dropped(&self) -> bool {
        self.tasks_dropped.load(SeqCst) >= self.remotes.len()
    }

    pub(crate) fn drain_deadline(&self) -> Instant {
        self.drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(Instant::now)
    }

    /// Round-robin choice of worker for tasks spawned from outside.
    pub(crate) fn pick_worker(&self) -> usize {
        self.next_worker.fetch_add(1, Relaxed) % self.remotes.len()
    }

    /// Spawns a `Send` task onto worker `index` from any thread.
    pub(crate) fn spawn_on<F>(self: &Arc<Self>, index: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_boxed(index, true, future)
    }

    /// Spawns onto worker `index` a task whose future `make()` builds there,
    /// on its first poll; that future never leaves the worker.
    ///
    /// # Panics
    ///
    /// If `index` is not a worker index.
    pub(crate) fn spawn_local_on<M, F>(
        self: &Arc<Self>,
        index: usize,
        make: M,
    ) -> JoinHandle<F::Output>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        assert!(
            index < self.remotes.len(),
            "worker index {index} out of range (runtime has {} workers)",
            self.remotes.len()
        );
        self.spawn_boxed(
            index,
            false,
            Launch {
                make: Some(make),
                future: None,
            },
        )
    }

    /// `Runtime::spawn` / `Handle::spawn`: onto the calling worker if it
    /// belongs to this runtime, else round-robin.
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // On one of our workers: the local spawn path (its own queue, the
        // idle-sibling wake), not a remote push to itself.
        let mut future = Some(future);
        let here = super::context::with_worker(|w| {
            Arc::ptr_eq(&w.shared, self)
                .then(|| w.spawn_here(future.take().expect("future"), true, None))
        })
        .flatten();
        match here {
            Some(handle) => handle,
            None => {
                let future = future.take().expect("future");
                self.spawn_on(self.pick_worker(), future)
            }
        }
    }

    /// Both spawn paths: the future crosses to the worker before its first
    /// poll. Callers guarantee it is `Send` until then (`Launch` holds only
    /// its `Send` closure before its first poll), and for good if
    /// `stealable`.
    fn spawn_boxed<F>(
        self: &Arc<Self>,
        index: usize,
        stealable: bool,
        future: F,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let remote = self.remotes[index].clone();
        let (task, handle) = Task::new(self.clone(), index, stealable, None, future);
        remote.metrics.spawned.add_shared(1);
        // Always through the remote queue, even from the target worker
        // itself: the worker registers tasks as it takes them from there.
        remote.push(task);
        handle
    }
}

/// Builds a worker-local future on the worker itself; see `spawn_local_on`.
struct Launch<M, F> {
    make: Option<M>,
    future: Option<Pin<Box<F>>>,
}

impl<M, F> Future for Launch<M, F>
where
    M: FnOnce() -> F,
    F: Future,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: neither field is structurally pinned (the inner future is
        // boxed), so Launch may be treated as Unpin.
        let this = unsafe { self.get_unchecked_mut() };
        if let Some(make) = this.make.take() {
            this.future = Some(Box::pin(make()));
        }
        this.future
            .as_mut()
            .expect("Launch polled after completion")
            .as_mut()
            .poll(cx)
    }
}
