//! One worker: its exclusively-owned state and its loop.
//!
//! Loop iteration (see `docs/architecture.md`, "Worker loop"):
//! 1. move tasks handed over by other threads into the local run queue;
//! 2. run up to `TASK_BUDGET` tasks, FIFO;
//! 3. fire due timers;
//! 4. one `io_uring_enter`: submit every queued SQE, reap every CQE;
//! 5. call the wakers and drop the orphaned resources the reap collected;
//! 6. with nothing runnable, park in the ring until a completion, the
//!    nearest timer, or an unpark.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use super::shared::Shared;
use crate::driver::op::OpData;
use crate::driver::IoDriver;
use crate::metrics::WorkerMetrics;
use crate::sched::Remote;
use crate::task::join::{Harness, JoinHandle, JoinState};
use crate::task::raw::{RunResult, Task};
use crate::time::timers::Timers;

/// Tasks run between two visits to the ring, so I/O is never starved.
const TASK_BUDGET: usize = 64;

pub(crate) struct Worker {
    /// Process-unique id (never reused), for "is this my worker?" checks.
    pub(crate) id: u64,
    pub(crate) shared: Arc<Shared>,
    pub(crate) remote: Arc<Remote>,
    pub(crate) metrics: Arc<WorkerMetrics>,
    pub(crate) driver: RefCell<IoDriver>,
    pub(crate) timers: RefCell<Timers>,
    /// Runnable tasks. Bounded by the number of live tasks (a task is queued
    /// at most once; see `task/raw.rs`).
    pub(crate) run_queue: RefCell<VecDeque<Arc<Task>>>,
    /// Every unfinished task this worker runs, so shutdown can drop them.
    owned: RefCell<HashMap<u64, Arc<Task>>>,
}

impl Worker {
    pub(crate) fn new(
        id: u64,
        shared: Arc<Shared>,
        remote: Arc<Remote>,
        driver: IoDriver,
    ) -> Worker {
        Worker {
            id,
            metrics: remote.metrics.clone(),
            shared,
            remote,
            driver: RefCell::new(driver),
            timers: RefCell::new(Timers::default()),
            run_queue: RefCell::new(VecDeque::new()),
            owned: RefCell::new(HashMap::new()),
        }
    }

    /// Creates a task on this worker and queues it.
    pub(crate) fn spawn_here<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let join = JoinState::new();
        let harness = Harness::new(future, join.clone());
        let task = Task::new(
            self.shared.next_task_id(),
            self.remote.clone(),
            Box::pin(harness),
        );
        self.register(&task);
        self.metrics.spawned.bump();
        self.run_queue.borrow_mut().push_back(task.clone());
        JoinHandle::new(join, task)
    }

    fn register(&self, task: &Arc<Task>) {
        task.registered.store(true, Relaxed);
        self.owned.borrow_mut().insert(task.id, task.clone());
    }

    /// The loop; returns when the runtime shuts down.
    pub(crate) fn run(&self) {
        let mut wakers: Vec<Waker> = Vec::new();
        let mut dead: Vec<(Box<dyn OpData>, i32)> = Vec::new();
        loop {
            self.drain_remote();
            self.run_tasks();
            self.fire_timers(&mut wakers);
            let submit = self.driver.borrow_mut().submit_and_reap(&self.metrics);
            submit.expect("io_uring_enter failed");
            self.deliver(&mut wakers, &mut dead);
            if self.shared.is_shutdown() {
                return;
            }
            if self.run_queue.borrow().is_empty() {
                self.park(&mut wakers, &mut dead);
            }
        }
    }

    fn drain_remote(&self) {
        while let Some(task) = self.remote.pop() {
            if !task.registered.load(Relaxed) {
                self.register(&task);
            }
            self.run_queue.borrow_mut().push_back(task);
        }
    }

    fn run_tasks(&self) {
        for _ in 0..TASK_BUDGET {
            let Some(task) = self.run_queue.borrow_mut().pop_front() else {
                return;
            };
            self.metrics.polls.bump();
            match task.run() {
                RunResult::Idle => {}
                RunResult::Requeue => self.run_queue.borrow_mut().push_back(task),
                RunResult::Done => {
                    self.owned.borrow_mut().remove(&task.id);
                }
            }
        }
    }

    fn fire_timers(&self, wakers: &mut Vec<Waker>) {
        let mut timers = self.timers.borrow_mut();
        if timers.len() > 0 {
            timers.fire(Instant::now(), wakers);
        }
        drop(timers);
        for w in wakers.drain(..) {
            w.wake();
        }
    }

    /// Runs what the last reap collected, with the driver unborrowed.
    fn deliver(&self, wakers: &mut Vec<Waker>, dead: &mut Vec<(Box<dyn OpData>, i32)>) {
        loop {
            self.driver.borrow_mut().take_ready(wakers, dead);
            if wakers.is_empty() && dead.is_empty() {
                return;
            }
            for w in wakers.drain(..) {
                w.wake();
            }
            for (data, res) in dead.drain(..) {
                data.orphaned(res);
            }
        }
    }

    fn park(&self, wakers: &mut Vec<Waker>, dead: &mut Vec<(Box<dyn OpData>, i32)>) {
        let unparker = &self.remote.unparker;
        unparker.prepare_park();
        if !self.remote.is_empty() || self.shared.is_shutdown() || self.driver.borrow().has_ready()
        {
            unparker.finish_park();
            return;
        }
        let timeout = self
            .timers
            .borrow()
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        self.metrics.parks.bump();
        let parked = self.driver.borrow_mut().park(timeout, &self.metrics);
        unparker.finish_park();
        parked.expect("io_uring_enter failed while parking");
        self.deliver(wakers, dead);
    }

    /// Shutdown: drop every task (cancelling their ops), then wait for the
    /// kernel to finish with every op until `deadline`. Whatever is still in
    /// flight after that is leaked by the driver, never freed.
    pub(crate) fn shutdown(&self, deadline: Instant) {
        let mut wakers = Vec::new();
        let mut dead = Vec::new();
        // Dropping futures may wake or even spawn tasks; repeat until none.
        for _ in 0..1000 {
            self.drain_remote();
            let tasks: Vec<Arc<Task>> = self.owned.borrow_mut().drain().map(|(_, t)| t).collect();
            if tasks.is_empty() {
                break;
            }
            for t in tasks {
                t.cancel();
            }
            self.run_queue.borrow_mut().clear();
            self.deliver(&mut wakers, &mut dead);
        }
        self.remote.close();
        while let Some(t) = self.remote.pop() {
            t.cancel();
        }
        self.run_queue.borrow_mut().clear();
        drop(self.timers.borrow_mut().clear());
        let _ = self.driver.borrow_mut().submit_and_reap(&self.metrics);
        self.deliver(&mut wakers, &mut dead);
        self.driver.borrow_mut().cancel_all(&self.metrics);
        while self.driver.borrow().in_flight() > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let r = self.driver.borrow_mut().wait(deadline - now, &self.metrics);
            if r.is_err() {
                break;
            }
            // Waking here only re-queues already-cancelled tasks.
            self.deliver(&mut wakers, &mut dead);
            self.run_queue.borrow_mut().clear();
        }
    }
}
