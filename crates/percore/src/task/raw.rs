//! The task record: state bits, the future and its output slot, the join
//! handle's slot, and how a wake schedules it.
//!
//! ## One allocation
//!
//! A task is one `Arc<Task<Core<F>>>`: the fields below, then the future
//! and its output (`task/body.rs`) at the end, type-erased to `Arc<Task>`
//! (`Task<dyn Body>`) for the queues, the owned map and the join handle.
//! Wakers are thin pointers into the same allocation (`task/waker.rs`).
//!
//! ## State protocol
//!
//! See `task/state.rs`: a task is in at most one queue at a time, so queues
//! hold at most one entry per live task — that is their bound.
//!
//! ## Who touches the body (future and output)
//!
//! - Until the task is over, only its home worker thread: the worker whose
//!   `owned` map holds the task (`sched/remote.rs`) polls it, cancels it or
//!   leaks it. The one exception is `cancel_foreign` (see there).
//! - Once the home worker has published the outcome (join status `Ready`,
//!   under the join mutex), only the join handle, which takes the output
//!   under the same mutex. If the handle was dropped before (`Detached`),
//!   the worker drops the output itself, on the task's own thread.
//!
//! Wakers and join handles on other threads otherwise only touch the atomics
//! and the join mutex.
//!
//! The home changes only by a steal (`sched/steal.rs`), and only for
//! `stealable` tasks, whose futures are `Send`: the thief pops the task from
//! the victim's queue (so it is SCHEDULED, not running) and moves its
//! `owned` entry before polling it. `spawn_local` futures are never
//! `stealable`, so they are only ever touched on the thread that created
//! them — that is what makes `unsafe impl Send/Sync` sound for them.

use std::cell::UnsafeCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, RawWakerVTable};

use super::body::{Body, Core};
use super::join::{JoinHandle, JoinSlot, JoinStatus};
use super::state::{AfterPoll, TaskState};
use super::waker::{self, VTableFor};
use crate::runtime::context;
use crate::runtime::shared::Shared;

pub(crate) struct Task<B: ?Sized = dyn Body> {
    pub(crate) id: u64,
    pub(crate) state: TaskState,
    aborted: AtomicBool,
    /// Registered in its home worker's `owned` map (false only while a task
    /// spawned from another thread waits in its first queue).
    pub(crate) registered: AtomicBool,
    /// May move to another worker (`spawn`); false for `spawn_local`.
    pub(crate) stealable: bool,
    /// Index of the worker that owns and polls this task.
    home: AtomicUsize,
    pub(crate) shared: Arc<Shared>,
    /// The wakers' vtable, made for this task's concrete body type.
    pub(crate) waker_vtable: &'static RawWakerVTable,
    /// `task::Builder::name`, for stall reports.
    pub(crate) name: Option<Box<str>>,
    /// When it last became runnable, in ns since the runtime's epoch (for
    /// the loop-lag histogram).
    woken_at: AtomicU64,
    join: Mutex<JoinSlot>,
    body: UnsafeCell<B>,
}

// SAFETY: `body` is only accessed as the module docs say (one thread at a
// time, handed over under the join mutex); every other field is atomic,
// behind a mutex, or immutable.
unsafe impl<B: ?Sized> Send for Task<B> {}
// SAFETY: as above.
unsafe impl<B: ?Sized> Sync for Task<B> {}

impl<B: ?Sized> Task<B> {
    /// When the task last became runnable (ns since the runtime's epoch).
    pub(crate) fn woken_at(&self) -> u64 {
        self.woken_at.load(Relaxed)
    }

    /// It just became runnable at `ns` (since the runtime's epoch), for
    /// the loop-lag histogram.
    pub(crate) fn set_woken_at(&self, ns: u64) {
        self.woken_at.store(ns, Relaxed);
    }
}

/// What [`Task::run`] observed.
pub(crate) enum RunResult {
    /// Parked until a wake.
    Idle,
    /// Woken while running: put it back in the run queue.
    Requeue,
    /// Completed, aborted or panicked: the future has been dropped.
    Done,
}

impl Task {
    /// A new task in state SCHEDULED, and its join handle: the caller must
    /// enqueue the task once. The caller guarantees `future` is `Send` if
    /// `stealable`, and until its first poll in any case when the task is
    /// created off its home worker.
    pub(crate) fn new<F>(
        shared: Arc<Shared>,
        home: usize,
        stealable: bool,
        name: Option<String>,
        future: F,
    ) -> (Arc<Task>, JoinHandle<F::Output>)
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let woken_at = AtomicU64::new(shared.now_ns());
        let task: Arc<Task<Core<F>>> = Arc::new(Task {
            id: shared.next_task_id(),
            state: TaskState::new_scheduled(),
            aborted: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            stealable,
            home: AtomicUsize::new(home),
            shared,
            waker_vtable: &VTableFor::<Core<F>>::VTABLE,
            name: name.map(String::into_boxed_str),
            woken_at,
            join: Mutex::new(JoinSlot::new()),
            body: UnsafeCell::new(Core::new(future)),
        });
        let task: Arc<Task> = task;
        let handle = JoinHandle::new(task.clone());
        (task, handle)
    }

    pub(crate) fn home(&self) -> usize {
        self.home.load(Acquire)
    }

    /// A thief took this task: it now belongs to worker `index`. Called
    /// between popping it (SCHEDULED) and polling it.
    pub(crate) fn set_home(&self, index: usize) {
        debug_assert!(self.stealable, "a spawn_local task was stolen");
        self.home.store(index, Release);
    }

    /// Polls the future once. Must be called on the home worker's thread,
    /// on a task it took from a queue (so one that is not over).
    pub(crate) fn run(self: &Arc<Self>) -> RunResult {
        self.state.start_run();
        // User code the poll runs (the future, its `Drop`) may wake or abort
        // this task, which touches only atomics, never `body`; its panics
        // are caught by `Core`. Loom: loom_wake_during_poll_is_never_lost_or_
        // doubled, loom_owner_and_thief_never_run_a_task_twice. A task
        // queued while live is only ever ended by its home worker
        // (`cancel_foreign` runs on closed queues, after the worker stopped
        // running tasks), and polls do not nest (a wake while RUNNING only
        // sets NOTIFIED).
        // SAFETY: home worker, task not over: nobody else touches the body.
        let body = unsafe { &mut *self.body.get() };
        let over = if self.aborted.load(Acquire) {
            body.cancel();
            true
        } else {
            let waker = waker::borrowed(self);
            let mut cx = Context::from_waker(&waker);
            body.poll(&mut cx)
        };
        if over {
            // Only this thread ends a task that is not over (see `cancel`,
            // `cancel_foreign`), so the swap cannot find DONE here.
            let _ = self.state.set_done();
            self.publish();
            return RunResult::Done;
        }
        match self.state.finish_pending() {
            AfterPoll::Idle => RunResult::Idle,
            AfterPoll::Requeue => RunResult::Requeue,
        }
    }

    /// Drops the future without polling (shutdown). Home worker only.
    pub(crate) fn cancel(&self) {
        if !self.state.set_done() {
            return;
        }
        // SAFETY: called by the home worker, not during a poll of this task,
        // before the outcome is published.
        unsafe { &mut *self.body.get() }.cancel();
        self.publish();
    }

    /// Forgets the future without dropping it (shutdown, when dropping
    /// futures kept spawning new tasks past the round cap). Home worker only.
    /// The record is leaked with it, and so is the runtime's shared state it
    /// points to: a pinned future's memory must never be freed without its
    /// drop, and the future lives inside the record.
    pub(crate) fn leak_future(self: &Arc<Self>) {
        if !self.state.set_done() {
            return;
        }
        // SAFETY: called by the home worker, not during a poll of this task,
        // before the outcome is published.
        unsafe { &mut *self.body.get() }.forget_future();
        std::mem::forget(self.clone());
        self.publish();
    }

    /// Hands the outcome (in the body's output slot) to the join handle, or
    /// drops it here if the handle is gone. After this, the worker never
    /// touches the body again.
    fn publish(&self) {
        let (waker, discard) = {
            let mut join = self.join_slot();
            match join.status {
                JoinStatus::Pending => {
                    join.status = JoinStatus::Ready;
                    (join.waker.take(), false)
                }
                JoinStatus::Detached => (None, true),
                JoinStatus::Ready | JoinStatus::Taken => (None, false),
            }
        };
        if discard {
            // SAFETY: the handle is gone, so nobody else will ever touch the
            // body; we are on the thread that owned the task.
            unsafe { &mut *self.body.get() }.discard_output();
        }
        // The handle's waker is user code (any executor may poll a
        // JoinHandle): its panic must not unwind out of the worker's loop.
        if let Some(w) = waker {
            crate::runtime::guard::run_user_code("a JoinHandle's waker", || w.wake());
        }
    }

    pub(crate) fn join_slot(&self) -> MutexGuard<'_, JoinSlot> {
        self.join.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The output slot of the body, typed by the caller.
    ///
    /// # Safety
    ///
    /// `T` must be the output type of the future this task was created
    /// with, and the caller must hold the join mutex with status `Ready`
    /// (the home worker is done with the body; `publish`).
    pub(crate) unsafe fn output_slot<T>(&self) -> *mut Option<Result<T, super::JoinError>> {
        // SAFETY: per the contract, this thread has the body to itself.
        unsafe { &mut *self.body.get() }.output_slot().cast()
    }

    /// Requests cancellation: the next run drops the future instead of
    /// polling it.
    pub(crate) fn abort(self: &Arc<Self>) {
        self.aborted.store(true, Release);
        self.schedule();
    }

    /// Makes the task runnable (the wake path).
    pub(crate) fn schedule(self: &Arc<Self>) {
        if self.state.schedule() {
            enqueue(self.clone());
        }
    }

    /// Drops the future from another thread after the home worker exited.
    /// Only reached through a closed remote queue; see `sched/remote.rs`.
    ///
    /// Why that is sound: the home worker closes its queue only after taking
    /// the futures of all tasks it owned, so it no longer touches this one.
    /// What is left is either gone or the future of a task spawned from
    /// another thread that never ran, which is `Send` (`Runtime::spawn`, or
    /// `Runtime::spawn_local_on` before its first poll). A task is in the
    /// queue at most once, so no other thread pops it concurrently.
    pub(crate) fn cancel_foreign(self: &Arc<Self>) {
        // A wake that won IDLE → SCHEDULED may push the task into a closed
        // queue after its worker cancelled it: then it is over and its
        // outcome published; leave it alone.
        if !self.state.set_done() {
            return;
        }
        // SAFETY: exclusive access to a gone or `Send` future (see above).
        let body = unsafe { &mut *self.body.get() };
        if self.stealable || !self.registered.load(Acquire) {
            body.cancel();
        } else {
            // Defence in depth: a pinned task that its worker had already
            // taken in may hold a `!Send` future; never drop it here.
            body.forget_future();
            std::mem::forget(self.clone());
        }
        self.publish();
    }
}

/// Puts a SCHEDULED task into its home worker's queues: directly when we are
/// on that worker, through its remote side (and an unpark) otherwise.
///
/// The wake time for the loop-lag histogram: on the home worker, the
/// worker's last clock reading (taken before it runs a batch of wakers or a
/// poll, so one clock read serves every wake in it); from anywhere else, a
/// fresh one. A wake made by another task's poll is therefore stamped with
/// that poll's start: its lag is overstated by up to that poll's length
/// (the price of not reading the clock on every wake).
pub(crate) fn enqueue(task: Arc<Task>) {
    let mut task = Some(task);
    context::with_worker(|w| {
        let t = task.as_ref().expect("task");
        if w.remote.index == t.home() && Arc::ptr_eq(&w.shared, &t.shared) {
            t.set_woken_at(w.shared.ns_at(w.now.get()));
            w.push_local(task.take().expect("task"));
        }
    });
    if let Some(task) = task {
        task.set_woken_at(task.shared.now_ns());
        let home = task.shared.remotes[task.home()].clone();
        home.push(task);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::metrics::WorkerMetrics;
    use crate::sched::{Remote, StealPolicy};

    /// The shared parts of a two-worker runtime, without threads or rings.
    fn two_workers() -> Arc<Shared> {
        let remotes = (0..2)
            .map(|i| Arc::new(Remote::new(i, Arc::new(WorkerMetrics::default())).unwrap()))
            .collect();
        Arc::new(Shared::new(
            remotes,
            StealPolicy::new(true, 1),
            Duration::from_secs(1),
        ))
    }

    /// A wake that won IDLE → SCHEDULED but pushes only after the worker
    /// cancelled the task at shutdown and closed its queue: the closed
    /// queue's drain must leave the finished task alone (not touch its
    /// published output, not leak its record).
    #[test]
    fn a_late_push_of_a_cancelled_task_leaves_it_alone() {
        for stealable in [false, true] {
            let shared = two_workers();
            let (task, handle) = Task::new(shared.clone(), 1, stealable, None, async { 7u32 });
            task.registered.store(true, Release);
            assert!(!task.state.schedule(), "a new task is already SCHEDULED");
            task.cancel();
            shared.remotes[1].close();
            shared.remotes[1].push(task.clone());
            let weak = Arc::downgrade(&task);
            drop((task, handle));
            assert!(
                weak.upgrade().is_none(),
                "record leaked (stealable: {stealable})"
            );
        }
    }

    /// `is_finished` means the handle's next poll is ready.
    #[test]
    fn finished_means_ready() {
        let shared = two_workers();
        let (task, handle) = Task::new(shared, 0, true, None, async { 1u8 });
        let _ = task.state.set_done();
        assert!(
            !handle.is_finished(),
            "finished before the outcome was published"
        );
        task.publish();
        assert!(handle.is_finished());
    }
}
