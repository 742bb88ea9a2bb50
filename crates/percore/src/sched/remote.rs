//! The part of a worker that other threads may touch: its queues, the tasks
//! it owns, its mail, and how to wake it.
//!
//! - `tasks`: runnable `Send` tasks. Any thread pushes (wakes), the owner
//!   pops, and idle siblings steal from it (`sched/steal.rs`).
//! - `pinned`: runnable `spawn_local` tasks woken from other threads; the
//!   owner moves them to its local queue. Nobody else may take them.
//! - `mail`: messages about ops in flight on this worker's ring whose task
//!   moved elsewhere (`driver/uring/forward.rs`).
//! - `owned`: every unfinished task this worker is responsible for (the one
//!   that polls it and drops it at shutdown). A steal moves a task's entry
//!   from the victim's map to the thief's before the thief may poll it.
//!
//! The queues are unbounded by type but bounded in practice: a task is
//! enqueued only on its IDLE → SCHEDULED transition (`task/state.rs`), so
//! they never hold more entries than there are live tasks.

use std::collections::HashMap;
use std::mem;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use super::park::Unparker;
use super::primitives::{lock, AtomicBool, Mutex, Ordering::*, SegQueue};
use crate::metrics::WorkerMetrics;
use crate::runtime::context;
use crate::sched::mail::Mail;
use crate::task::raw::Task;

pub(crate) struct Remote {
    pub(crate) index: usize,
    /// Process-unique id of the worker serving this slot (0 before start).
    worker_id: AtomicU64,
    tasks: SegQueue<Arc<Task>>,
    pinned: SegQueue<Arc<Task>>,
    mail: SegQueue<Mail>,
    pub(crate) owned: Mutex<HashMap<u64, Arc<Task>, IdHash>>,
    pub(crate) unparker: Unparker,
    /// The worker's ring fd while it runs io_uring (target of `MSG_RING`
    /// wakes). Senders hold the read lock across their submit; the worker
    /// takes the write lock to clear it before closing the ring.
    ring_fd: RwLock<Option<RawFd>>,
    closed: AtomicBool,
    pub(crate) metrics: Arc<WorkerMetrics>,
}

impl Remote {
    pub(crate) fn new(index: usize, metrics: Arc<WorkerMetrics>) -> std::io::Result<Remote> {
        Ok(Remote {
            index,
            worker_id: AtomicU64::new(0),
            tasks: SegQueue::new(),
            pinned: SegQueue::new(),
            mail: SegQueue::new(),
            owned: Mutex::new(HashMap::default()),
            unparker: Unparker::new()?,
            ring_fd: RwLock::new(None),
            closed: AtomicBool::new(false),
            metrics,
        })
    }

    pub(crate) fn worker_id(&self) -> u64 {
        self.worker_id.load(Acquire)
    }

    /// Worker start-up: who serves this slot, and its ring (if io_uring).
    pub(crate) fn attach(&self, worker_id: u64, ring_fd: Option<RawFd>) {
        self.worker_id.store(worker_id, Release);
        *self.ring_fd.write().unwrap_or_else(|e| e.into_inner()) = ring_fd;
    }

    /// Worker exit, before its ring closes: no more `MSG_RING` to it.
    pub(crate) fn detach_ring(&self) {
        *self.ring_fd.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Runs `f` with the ring fd held open, if the worker has a ring.
    pub(crate) fn with_ring_fd<R>(&self, f: impl FnOnce(RawFd) -> R) -> Option<R> {
        let fd = self.ring_fd.read().unwrap_or_else(|e| e.into_inner());
        fd.map(f)
    }

    /// Owner thread: queue a runnable `Send` task of its own.
    pub(crate) fn push_own(&self, task: Arc<Task>) {
        self.tasks.push(task);
    }

    /// Any other thread: hand a SCHEDULED task to this worker.
    pub(crate) fn push(&self, task: Arc<Task>) {
        if task.stealable {
            self.tasks.push(task);
        } else {
            self.pinned.push(task);
        }
        self.metrics.remote_schedules.add_shared(1);
        if self.closed.load(SeqCst) {
            // The worker has exited: nobody will run these. Their futures are
            // Send or gone (see `Task::cancel_foreign`), so dropping them here
            // is allowed.
            self.drain_closed();
            return;
        }
        self.unpark();
    }

    /// Any other thread: a message about an op on this worker's ring.
    pub(crate) fn post(&self, mail: Mail) {
        self.mail.push(mail);
        if self.closed.load(SeqCst) {
            self.drain_closed();
            return;
        }
        self.unpark();
    }

    /// Makes sure the worker sees what was just published. Signals it only
    /// if it is parked: with `MSG_RING` from the caller's own ring when the
    /// caller is an io_uring worker (`Worker::send_wake`), else by eventfd.
    pub(crate) fn unpark(&self) -> bool {
        if !self.unparker.latch.notify() {
            return false;
        }
        self.metrics.remote_unparks.add_shared(1);
        let sent = context::with_worker(|w| w.send_wake(self)).unwrap_or(false);
        if !sent {
            self.unparker.signal();
        }
        true
    }

    /// The next runnable `Send` task (the owner, or a thief).
    pub(crate) fn pop_task(&self) -> Option<Arc<Task>> {
        self.tasks.pop()
    }

    pub(crate) fn stealable_len(&self) -> usize {
        self.tasks.len()
    }

    pub(crate) fn pop_pinned(&self) -> Option<Arc<Task>> {
        self.pinned.pop()
    }

    pub(crate) fn pop_mail(&self) -> Option<Mail> {
        self.mail.pop()
    }

    /// Whether anything is waiting for the owner.
    pub(crate) fn has_work(&self) -> bool {
        !self.tasks.is_empty() || !self.pinned.is_empty() || !self.mail.is_empty()
    }

    /// Worker, at exit: refuse further tasks and mail.
    pub(crate) fn close(&self) {
        self.closed.store(true, SeqCst);
        self.drain_closed();
    }

    fn drain_closed(&self) {
        while let Some(t) = self.tasks.pop().or_else(|| self.pinned.pop()) {
            t.cancel_foreign();
        }
        while let Some(m) = self.mail.pop() {
            match m {
                Mail::Orphan { data, .. } => {
                    // Its ring may still be writing into it: never free it.
                    crate::metrics::count_leaked_op();
                    mem::forget(data);
                }
                // No result will come: the waiter's next poll says so.
                Mail::Forward { cell, .. } => {
                    if let Some(w) = cell.lose() {
                        crate::runtime::guard::run_user_code("a waker", || w.wake());
                    }
                }
                // The worker's timers, epoll set and ring (ending its
                // multishot ops) are gone with it.
                Mail::CancelTimer { .. }
                | Mail::Deregister { .. }
                | Mail::CancelMultishot { .. } => {}
            }
        }
    }

    /// Registers `task` as owned by this worker.
    pub(crate) fn own(&self, task: &Arc<Task>) {
        let mut owned = lock(&self.owned);
        owned.insert(task.id, task.clone());
        self.metrics.live_tasks.set(owned.len() as u64);
    }

    pub(crate) fn disown(&self, id: u64) {
        let mut owned = lock(&self.owned);
        owned.remove(&id);
        self.metrics.live_tasks.set(owned.len() as u64);
    }
}

/// Hashing for task ids (sequential `u64`s from one counter): a
/// multiplicative (Fibonacci) hash instead of SipHash, which has nothing to
/// defend against here and costs a spawn and a completion each time.
pub(crate) type IdHash = std::hash::BuildHasherDefault<IdHasher>;

#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
