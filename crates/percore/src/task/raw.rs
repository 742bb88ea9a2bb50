//! The task record: state bits, the boxed future, and how a wake schedules it.
//!
//! ## State protocol
//!
//! See `task/state.rs`: a task is in at most one queue at a time, so queues
//! hold at most one entry per live task — that is their bound.
//!
//! ## Who touches the future
//!
//! Only the task's home worker thread polls or drops `future`: the worker
//! whose `owned` map holds the task (`sched/remote.rs`). It owns the task
//! until it is DONE, and takes futures out of all its tasks at shutdown.
//! Wakers and join handles on other threads only touch the atomics and the
//! queues.
//!
//! The home changes only by a steal (`sched/steal.rs`), and only for
//! `stealable` tasks, whose futures are `Send`: the thief pops the task from
//! the victim's queue (so it is SCHEDULED, not running) and moves its
//! `owned` entry before polling it. `spawn_local` futures are never
//! `stealable`, so they are only ever touched on the thread that created
//! them — that is what makes `unsafe impl Send/Sync` sound for them.

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::state::{AfterPoll, TaskState};
use crate::runtime::context;
use crate::runtime::shared::Shared;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

pub(crate) struct Task {
    pub(crate) id: u64,
    state: TaskState,
    aborted: AtomicBool,
    /// Registered in its home worker's `owned` map (false only while a task
    /// spawned from another thread waits in its first queue).
    pub(crate) registered: AtomicBool,
    /// May move to another worker (`spawn`); false for `spawn_local`.
    pub(crate) stealable: bool,
    /// Index of the worker that owns and polls this task.
    home: AtomicUsize,
    pub(crate) shared: Arc<Shared>,
    future: UnsafeCell<Option<BoxFuture>>,
}

// SAFETY: `future` is only accessed by the home worker's thread (module docs);
// every other field is atomic or immutable.
unsafe impl Send for Task {}
// SAFETY: as above.
unsafe impl Sync for Task {}

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
    /// A new task in state SCHEDULED: the caller must enqueue it once.
    pub(crate) fn new(
        shared: Arc<Shared>,
        home: usize,
        stealable: bool,
        future: BoxFuture,
    ) -> Arc<Task> {
        Arc::new(Task {
            id: shared.next_task_id(),
            state: TaskState::new_scheduled(),
            aborted: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            stealable,
            home: AtomicUsize::new(home),
            shared,
            future: UnsafeCell::new(Some(future)),
        })
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

    /// Polls the future once. Must be called on the home worker's thread.
    pub(crate) fn run(self: &Arc<Self>) -> RunResult {
        self.state.start_run();
        // User code the poll or the drop below runs (the future, its `Drop`)
        // may wake or abort this task, which touches only atomics, never
        // `future`; its panics are caught by the harness (polls) and
        // `drop_future` (drops). Loom: loom_wake_during_poll_is_never_lost_or_
        // doubled, loom_owner_and_thief_never_run_a_task_twice.
        // SAFETY: we are on the home worker (the only caller), and polls do
        // not nest: a wake while RUNNING only sets NOTIFIED.
        let slot = unsafe { &mut *self.future.get() };
        let ready = match slot {
            None => true,
            Some(_) if self.aborted.load(Acquire) => true,
            Some(f) => {
                let waker = Waker::from(self.clone());
                let mut cx = Context::from_waker(&waker);
                // The harness catches panics of the user's future.
                f.as_mut().poll(&mut cx).is_ready()
            }
        };
        if ready {
            self.state.set_done();
            let fut = slot.take();
            drop_future(fut);
            return RunResult::Done;
        }
        match self.state.finish_pending() {
            AfterPoll::Idle => RunResult::Idle,
            AfterPoll::Requeue => RunResult::Requeue,
        }
    }

    /// Drops the future without polling (shutdown). Home worker only.
    pub(crate) fn cancel(&self) {
        self.state.set_done();
        // SAFETY: called by the home worker, not during a poll of this task.
        let fut = unsafe { &mut *self.future.get() }.take();
        drop_future(fut);
    }

    /// Forgets the future without dropping it (shutdown, when dropping
    /// futures kept spawning new tasks past the round cap). Home worker only.
    pub(crate) fn leak_future(&self) {
        self.state.set_done();
        // SAFETY: called by the home worker, not during a poll of this task.
        let fut = unsafe { &mut *self.future.get() }.take();
        std::mem::forget(fut);
    }

    /// Requests cancellation: the next run drops the future instead of
    /// polling it.
    pub(crate) fn abort(self: &Arc<Self>) {
        self.aborted.store(true, Release);
        self.schedule();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.is_done()
    }

    /// Makes the task runnable (the wake path).
    pub(crate) fn schedule(self: &Arc<Self>) {
        if self.state.schedule() {
            enqueue(self.clone());
        }
    }
}

/// Puts a SCHEDULED task into its home worker's queues: directly when we are
/// on that worker, through its remote side (and an unpark) otherwise.
pub(crate) fn enqueue(task: Arc<Task>) {
    let mut task = Some(task);
    context::with_worker(|w| {
        let t = task.as_ref().expect("task");
        if w.remote.index == t.home() && Arc::ptr_eq(&w.shared, &t.shared) {
            w.push_local(task.take().expect("task"));
        }
    });
    if let Some(task) = task {
        let home = task.shared.remotes[task.home()].clone();
        home.push(task);
    }
}

/// Drops a task's future, containing a panic from its destructor (the task
/// is over either way; its join handle already reports the outcome).
fn drop_future(fut: Option<BoxFuture>) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(fut)));
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.schedule();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule();
    }
}

/// Yields once: the task goes to the back of its worker's run queue.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// Future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Task {
    /// Drops the future from another thread after the home worker exited.
    /// Only reached through a closed remote queue; see `sched/remote.rs`.
    ///
    /// Why that is sound: the home worker closes its queue only after taking
    /// the futures of all tasks it owned, so it no longer touches this one.
    /// What is left is either `None` or the future of a task spawned from
    /// another thread that never ran, which is `Send` (`Runtime::spawn`, or
    /// `Runtime::spawn_local_on` before its first poll). A task is in the
    /// queue at most once, so no other thread pops it concurrently.
    pub(crate) fn cancel_foreign(&self) {
        self.state.set_done();
        // SAFETY: exclusive access to a `None` or `Send` future (see above).
        let fut = unsafe { &mut *self.future.get() }.take();
        if self.stealable || !self.registered.load(Acquire) {
            drop_future(fut);
        } else {
            // Defence in depth: a pinned task that its worker had already
            // taken in may hold a `!Send` future; never drop it here.
            std::mem::forget(fut);
        }
    }
}
