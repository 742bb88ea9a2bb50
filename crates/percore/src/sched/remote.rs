//! The part of a worker that other threads may touch: its remote run queue
//! and its unparker.
//!
//! The remote queue is unbounded by type but bounded in practice: a task is
//! enqueued only on its IDLE → SCHEDULED transition (see `task/raw.rs`), so
//! the queue never holds more entries than there are live tasks.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use crossbeam_queue::SegQueue;

use super::park::Unparker;
use crate::metrics::WorkerMetrics;
use crate::task::raw::Task;

pub(crate) struct Remote {
    pub(crate) index: usize,
    queue: SegQueue<Arc<Task>>,
    pub(crate) unparker: Unparker,
    closed: AtomicBool,
    pub(crate) metrics: Arc<WorkerMetrics>,
}

impl Remote {
    pub(crate) fn new(index: usize, metrics: Arc<WorkerMetrics>) -> std::io::Result<Remote> {
        Ok(Remote {
            index,
            queue: SegQueue::new(),
            unparker: Unparker::new()?,
            closed: AtomicBool::new(false),
            metrics,
        })
    }

    /// Hands a SCHEDULED task to this worker from another thread.
    pub(crate) fn push(&self, task: Arc<Task>) {
        self.queue.push(task);
        self.metrics.remote_schedules.add_shared(1);
        if self.closed.load(SeqCst) {
            // The worker has exited: nobody will run these. Their futures are
            // Send (local tasks never outlive their worker's shutdown), so
            // dropping them here is allowed.
            self.drain_closed();
            return;
        }
        if self.unparker.unpark() {
            self.metrics.remote_unparks.add_shared(1);
        }
    }

    /// Worker: the next task handed over from another thread.
    pub(crate) fn pop(&self) -> Option<Arc<Task>> {
        self.queue.pop()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Worker, at exit: refuse further tasks.
    pub(crate) fn close(&self) {
        self.closed.store(true, SeqCst);
    }

    fn drain_closed(&self) {
        while let Some(t) = self.queue.pop() {
            t.cancel_foreign();
        }
    }
}
