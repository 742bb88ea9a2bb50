//! The task record: state bits, the boxed future, and how a wake schedules it.
//!
//! ## State protocol
//!
//! ```text
//! IDLE ──wake──▶ SCHEDULED ──worker pops──▶ RUNNING ──Pending──▶ IDLE
//!                    ▲                        │  ▲
//!                    └──(re-queued)◀─ NOTIFIED ◀─┘ wake during poll
//! RUNNING ──Ready / aborted / shutdown──▶ DONE (future dropped)
//! ```
//!
//! A task is in at most one run queue at a time: only the wake that moves it
//! IDLE → SCHEDULED enqueues it, and a wake during a poll only sets NOTIFIED;
//! the worker re-queues it after the poll. So run queues hold at most one
//! entry per live task — that is their bound.
//!
//! ## Who touches the future
//!
//! Only the task's home worker thread polls or drops `future` (that is what
//! makes `unsafe impl Send/Sync` sound for `!Send` futures of `spawn_local`):
//! the worker that runs a task owns it through its `owned` map until the task
//! is DONE, and takes futures out of all its tasks at shutdown. Wakers and
//! join handles on other threads only touch the atomics and the queue.

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::runtime::context;
use crate::sched::Remote;

pub(crate) const IDLE: u8 = 0;
pub(crate) const SCHEDULED: u8 = 1;
pub(crate) const RUNNING: u8 = 2;
pub(crate) const NOTIFIED: u8 = 3;
pub(crate) const DONE: u8 = 4;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

pub(crate) struct Task {
    pub(crate) id: u64,
    state: AtomicU8,
    aborted: AtomicBool,
    /// Registered in its worker's `owned` map (false only while a task spawned
    /// from another thread waits in the remote queue).
    pub(crate) registered: AtomicBool,
    /// The worker that polls this task.
    pub(crate) home: Arc<Remote>,
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
    pub(crate) fn new(id: u64, home: Arc<Remote>, future: BoxFuture) -> Arc<Task> {
        Arc::new(Task {
            id,
            state: AtomicU8::new(SCHEDULED),
            aborted: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            home,
            future: UnsafeCell::new(Some(future)),
        })
    }

    /// Polls the future once. Must be called on the home worker's thread.
    pub(crate) fn run(self: &Arc<Self>) -> RunResult {
        self.state.store(RUNNING, Release);
        // SAFETY: we are on the home worker (the only caller), and polls do
        // not nest: a task cannot run itself, since a wake while RUNNING only
        // sets NOTIFIED.
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
            self.state.store(DONE, Release);
            let fut = slot.take();
            drop_future(fut);
            return RunResult::Done;
        }
        match self.state.compare_exchange(RUNNING, IDLE, AcqRel, Acquire) {
            Ok(_) => RunResult::Idle,
            Err(_) => {
                self.state.store(SCHEDULED, Release);
                RunResult::Requeue
            }
        }
    }

    /// Drops the future without polling (shutdown). Home worker only.
    pub(crate) fn cancel(&self) {
        self.state.store(DONE, Release);
        // SAFETY: called by the home worker, not during a poll of this task.
        let fut = unsafe { &mut *self.future.get() }.take();
        drop_future(fut);
    }

    /// Requests cancellation: the next run drops the future instead of
    /// polling it.
    pub(crate) fn abort(self: &Arc<Self>) {
        self.aborted.store(true, Release);
        self.schedule();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Acquire) == DONE
    }

    /// Makes the task runnable (the wake path).
    pub(crate) fn schedule(self: &Arc<Self>) {
        let mut cur = self.state.load(Acquire);
        loop {
            let next = match cur {
                IDLE => SCHEDULED,
                RUNNING => NOTIFIED,
                _ => return,
            };
            match self.state.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) if next == SCHEDULED => break,
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
        enqueue(self.clone());
    }
}

/// Puts a SCHEDULED task into its home worker's queue: the local run queue
/// when we are on that worker, the remote queue (and an unpark) otherwise.
pub(crate) fn enqueue(task: Arc<Task>) {
    let mut task = Some(task);
    context::with_worker(|w| {
        if Arc::ptr_eq(&w.remote, &task.as_ref().expect("task").home) {
            w.run_queue
                .borrow_mut()
                .push_back(task.take().expect("task"));
        }
    });
    if let Some(task) = task {
        let home = task.home.clone();
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
        self.state.store(DONE, Release);
        // SAFETY: exclusive access to a `None` or `Send` future (see above).
        let fut = unsafe { &mut *self.future.get() }.take();
        drop_future(fut);
    }
}
