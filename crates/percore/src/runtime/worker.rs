//! One worker: its exclusively-owned state and its loop.
//!
//! Loop iteration (see `docs/architecture.md`, "Worker loop"):
//! 1. take in what other threads handed over: pinned tasks into the local
//!    queue, mail about this ring's ops to the driver;
//! 2. run up to `TASK_BUDGET` tasks, alternating between the local queue
//!    (`spawn_local`) and the stealable queue (`spawn`), FIFO within each;
//! 3. fire due timers;
//! 4. with nothing runnable: steal from a sibling (`sched/steal.rs`), and if
//!    there is nothing worth stealing, park: one `io_uring_enter` submits
//!    every queued SQE and waits for a completion, the nearest timer, or an
//!    unpark (it returns at once if a completion is ready);
//! 5. otherwise one non-waiting `io_uring_enter`: submit every queued SQE,
//!    reap every CQE;
//! 6. call the wakers and drop the orphaned resources the reap collected.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::guard::run_user_code;
use super::shared::Shared;
use super::stall::{Stall, StallLog};
use crate::driver::{IoDriver, Released};
use crate::metrics::WorkerMetrics;
use crate::sched::mail::Mail;
use crate::sched::primitives::lock;
use crate::sched::{steal, Remote};
use crate::task::coop;
use crate::task::join::JoinHandle;
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
    /// Runnable `spawn_local` tasks (the stealable ones are in
    /// `remote`). Bounded by the number of live tasks (a task is queued at
    /// most once; see `task/state.rs`).
    local: RefCell<VecDeque<Arc<Task>>>,
    /// Which queue `run_tasks` serves next.
    local_next: Cell<bool>,
    /// Victim order for stealing.
    rng: Cell<u64>,
    /// Wake parked siblings with `IORING_OP_MSG_RING` (else: eventfd).
    msg_ring: bool,
    /// This worker has told `shared` its tasks are dropped (shutdown).
    tasks_marked: Cell<bool>,
    /// Rate limit of stall lines on stderr.
    stall_log: StallLog,
    /// The last clock reading of this worker's loop (before a batch of
    /// wakers, at each poll's end): the wake time of tasks woken on it.
    pub(crate) now: Cell<Instant>,
    /// Ready results the task being polled may still take (`task/coop.rs`);
    /// `coop::UNLIMITED` outside a task poll.
    pub(crate) budget: Cell<u32>,
    /// The task being polled was refused a result for want of budget.
    pub(crate) budget_refused: Cell<bool>,
}

type Dead = Released;

impl Worker {
    pub(crate) fn new(
        id: u64,
        shared: Arc<Shared>,
        remote: Arc<Remote>,
        driver: IoDriver,
        msg_ring: bool,
    ) -> Worker {
        Worker {
            id,
            metrics: remote.metrics.clone(),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (id << 17) ^ remote.index as u64 | 1),
            shared,
            remote,
            driver: RefCell::new(driver),
            timers: RefCell::new(Timers::default()),
            local: RefCell::new(VecDeque::new()),
            local_next: Cell::new(false),
            msg_ring,
            tasks_marked: Cell::new(false),
            stall_log: StallLog::default(),
            now: Cell::new(Instant::now()),
            budget: Cell::new(coop::UNLIMITED),
            budget_refused: Cell::new(false),
        }
    }

    /// Creates a task on this worker and queues it. `stealable` tasks may
    /// move to other workers; the caller guarantees their future is `Send`.
    pub(crate) fn spawn_here<F>(
        &self,
        future: F,
        stealable: bool,
        name: Option<String>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let index = self.remote.index;
        let (task, handle) = Task::new(self.shared.clone(), index, stealable, name, future);
        self.register(&task);
        // Shared: other threads add to this counter too (`spawn_on`).
        self.metrics.spawned.add_shared(1);
        self.push_local(task);
        handle
    }

    fn register(&self, task: &Arc<Task>) {
        task.registered.store(true, Release);
        self.remote.own(task);
    }

    /// Queues a SCHEDULED task whose home is this worker, from its thread.
    pub(crate) fn push_local(&self, task: Arc<Task>) {
        if task.stealable {
            self.remote.push_own(task);
            steal::wake_idle_sibling(&self.shared, &self.remote);
        } else {
            self.local.borrow_mut().push_back(task);
        }
    }

    /// Wakes parked worker `target` with `IORING_OP_MSG_RING` from this
    /// worker's ring; false if that is not possible here (the caller then
    /// writes the target's eventfd).
    pub(crate) fn send_wake(&self, target: &Remote) -> bool {
        if !self.msg_ring {
            return false;
        }
        let Ok(mut driver) = self.driver.try_borrow_mut() else {
            return false;
        };
        let IoDriver::Uring(ring) = &mut *driver else {
            return false;
        };
        let sent = target
            .with_ring_fd(|fd| ring.send_wake(fd, target.worker_id(), &self.metrics))
            .unwrap_or(false);
        if sent {
            self.metrics.msg_ring_wakes.bump();
        }
        sent
    }

    /// The loop; returns when the runtime shuts down, or with the error of
    /// the driver call that failed (the caller fails the runtime).
    pub(crate) fn run(&self) -> io::Result<()> {
        let mut wakers: Vec<Waker> = Vec::new();
        let mut dead = Dead::default();
        loop {
            self.take_inbox(&mut wakers, &mut dead);
            self.run_tasks();
            self.fire_timers(&mut wakers);
            // Before the kernel entry: SQEs the tasks queued are still in
            // the ring, CQEs that arrived meanwhile not yet reaped.
            self.sample_gauges();
            let shutdown = self.shared.is_shutdown();
            if !shutdown && self.local.borrow().is_empty() && !self.remote.has_work() {
                // Nothing runnable: one kernel entry submits what the tasks
                // queued *and* waits (returning at once if a completion is
                // already there), instead of a non-blocking submit followed
                // by a separate wait.
                match steal::steal(&self.shared, &self.remote, &self.rng) {
                    Some(0) => {
                        self.park(&mut wakers, &mut dead, true)?;
                        continue;
                    }
                    // Others are searching already: park without re-checking
                    // siblings (they take care of the surplus).
                    None => {
                        self.park(&mut wakers, &mut dead, false)?;
                        continue;
                    }
                    Some(_) => {}
                }
            }
            // Tasks are waiting: submit and collect without waiting.
            let submit = self.driver.borrow_mut().submit_and_reap(&self.metrics);
            submit.map_err(|e| self.driver_error("submitting and reaping", e))?;
            self.deliver(&mut wakers, &mut dead);
            if shutdown {
                return Ok(());
            }
        }
    }

    /// Names the failing driver call in a worker error.
    fn driver_error(&self, doing: &str, e: io::Error) -> io::Error {
        let call = match self.driver.borrow().kind() {
            crate::driver::Driver::Epoll => "epoll_wait",
            _ => "io_uring_enter",
        };
        io::Error::new(e.kind(), format!("{call} failed while {doing}: {e}"))
    }

    /// Pinned tasks woken from other threads, and mail about ops on this
    /// worker's ring from tasks that moved.
    fn take_inbox(&self, wakers: &mut Vec<Waker>, dead: &mut Dead) {
        while let Some(task) = self.remote.pop_pinned() {
            if !task.registered.load(Acquire) {
                self.register(&task);
            }
            self.local.borrow_mut().push_back(task);
        }
        let mut got_mail = false;
        while let Some(mail) = self.remote.pop_mail() {
            got_mail = true;
            match mail {
                Mail::Forward { slot, cell } => {
                    wakers.extend(self.driver.borrow_mut().uring().forward(slot, cell));
                }
                Mail::Orphan { slot, data } => {
                    let mut driver = self.driver.borrow_mut();
                    dead.orphans
                        .extend(driver.uring().orphan(slot, data.0, &self.metrics));
                }
                Mail::CancelMultishot { slot, cell } => {
                    self.driver
                        .borrow_mut()
                        .uring()
                        .cancel_multishot(slot, &cell, &self.metrics);
                }
                Mail::CancelTimer { deadline, id } => {
                    let waker = self.timers.borrow_mut().remove(deadline, id);
                    // A waker's drop is user code: not under the borrow.
                    run_user_code("the drop of a timer's waker", move || drop(waker));
                }
                Mail::Deregister { fd, token, keep } => {
                    let wakers = match self.driver.borrow_mut().epoll() {
                        Some(ep) => ep.deregister(fd, token, true),
                        None => Vec::new(),
                    };
                    run_user_code("the drop of a waker", move || drop(wakers));
                    // Closes the fd if this was the last holder (after the
                    // DEL above, which needed it open).
                    drop(keep);
                }
            }
        }
        if got_mail {
            self.run_ready(wakers, dead);
        }
    }

    /// The next runnable `Send` task of this worker's own queue.
    fn pop_own(&self) -> Option<Arc<Task>> {
        let task = self.remote.pop_task()?;
        if !task.registered.load(Acquire) {
            self.register(&task);
        }
        Some(task)
    }

    fn run_tasks(&self) {
        // One clock read per poll: the end of one is the start of the next.
        let mut start = Instant::now();
        self.now.set(start);
        for _ in 0..TASK_BUDGET {
            let local_first = self.local_next.get();
            self.local_next.set(!local_first);
            let task = if local_first {
                let t = self.local.borrow_mut().pop_front();
                t.or_else(|| self.pop_own())
            } else {
                self.pop_own()
                    .or_else(|| self.local.borrow_mut().pop_front())
            };
            let Some(task) = task else {
                return;
            };
            self.metrics.polls.bump();
            let lag = self.shared.ns_at(start).saturating_sub(task.woken_at());
            self.metrics.loop_lag.record(Duration::from_nanos(lag));
            self.budget.set(coop::BUDGET);
            let ran = task.run();
            self.budget.set(coop::UNLIMITED);
            if self.budget_refused.replace(false) {
                self.metrics.budget_yields.bump();
            }
            let end = Instant::now();
            self.now.set(end);
            let took = end.saturating_duration_since(start);
            self.metrics.poll_time.record(took);
            start = end;
            if took > self.shared.stall.threshold {
                self.stalled(&task, took);
                // The report (a hook, a stderr line) is not the next
                // task's time.
                start = Instant::now();
                self.now.set(start);
            }
            match ran {
                RunResult::Idle => {}
                RunResult::Requeue => {
                    task.set_woken_at(self.shared.ns_at(end));
                    self.push_local(task)
                }
                RunResult::Done => self.remote.disown(task.id),
            }
        }
    }

    /// The gauges, once per loop pass (plain stores; `live_tasks` is kept
    /// by the owned map itself).
    fn sample_gauges(&self) {
        let queued = self.local.borrow().len() + self.remote.stealable_len();
        self.metrics.run_queue.set(queued as u64);
        let mut driver = self.driver.borrow_mut();
        self.metrics.in_flight_ops.set(driver.in_flight() as u64);
        let (sq, cq) = driver.occupancy();
        drop(driver);
        self.metrics.sq_pending.set(sq as u64);
        self.metrics.cq_ready.set(cq as u64);
        self.metrics.timers.set(self.timers.borrow().len() as u64);
    }

    /// A poll of `task` kept this worker for `took`: count and report it.
    fn stalled(&self, task: &Task, took: Duration) {
        self.metrics.stalls.bump();
        let stall = Stall {
            worker: self.remote.index,
            task_id: task.id,
            task_name: task.name.as_deref(),
            duration: took,
        };
        self.stall_log.report(&self.shared.stall, &stall);
    }

    fn fire_timers(&self, wakers: &mut Vec<Waker>) {
        let mut timers = self.timers.borrow_mut();
        if timers.len() > 0 {
            let now = Instant::now();
            self.now.set(now);
            timers.fire(now, wakers);
        }
        drop(timers);
        for w in wakers.drain(..) {
            run_user_code("a timer's waker", || w.wake());
        }
    }

    /// Runs what the last reap collected, with the driver unborrowed.
    fn deliver(&self, wakers: &mut Vec<Waker>, dead: &mut Dead) {
        loop {
            let failed = {
                let mut driver = self.driver.borrow_mut();
                driver.take_ready(wakers, dead);
                match &mut *driver {
                    IoDriver::Uring(ring) => ring.take_failed_wakes(),
                    IoDriver::Epoll(_) => Vec::new(),
                }
            };
            // A MSG_RING wake that failed: use the target's eventfd (found
            // by id: it may belong to another runtime).
            for id in failed {
                if let Some(target) = crate::sched::registry::find(id) {
                    target.unparker.signal();
                }
            }
            if wakers.is_empty() && dead.is_empty() {
                return;
            }
            self.run_ready(wakers, dead);
        }
    }

    /// Wakers and orphaned resources' drops are user code: a panic in one
    /// is reported and the worker carries on (`runtime/guard.rs`).
    fn run_ready(&self, wakers: &mut Vec<Waker>, dead: &mut Dead) {
        if !wakers.is_empty() {
            self.now.set(Instant::now());
        }
        for w in wakers.drain(..) {
            run_user_code("a waker", || w.wake());
        }
        for (data, res) in dead.orphans.drain(..) {
            run_user_code("the drop of a cancelled op's buffer", || data.orphaned(res));
        }
        for w in dead.retired.drain(..) {
            run_user_code("the drop of a waker", move || drop(w));
        }
    }

    /// Parks unless something turns up in the re-check (`sched/park.rs`).
    /// `siblings`: also stay up if a sibling's queue is worth stealing from.
    fn park(&self, wakers: &mut Vec<Waker>, dead: &mut Dead, siblings: bool) -> io::Result<()> {
        let latch = &self.remote.unparker.latch;
        let policy = &self.shared.steal;
        latch.prepare_park();
        if policy.enabled {
            policy.enter_idle();
        }
        let stay = self.remote.has_work()
            || !self.local.borrow().is_empty()
            || self.shared.is_shutdown()
            || self.driver.borrow().has_ready()
            || (siblings && steal::sibling_has_surplus(&self.shared, &self.remote));
        let parked = if stay {
            Ok(())
        } else {
            let timeout = self
                .timers
                .borrow()
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            self.metrics.parks.bump();
            self.driver.borrow_mut().park(timeout, &self.metrics)
        };
        if policy.enabled {
            policy.leave_idle();
        }
        latch.finish_park();
        parked.map_err(|e| self.driver_error("parking", e))?;
        self.deliver(wakers, dead);
        Ok(())
    }

    /// After `shutdown` itself panicked: drop what tasks are left (on this,
    /// their home thread; each drop's panic contained), refuse further
    /// tasks and mail (leaking orphans mailed here), and let the other
    /// workers proceed. The caller then leaks the worker, ring and all.
    pub(crate) fn abandon(&self) {
        let tasks: Vec<Arc<Task>> = lock(&self.remote.owned).drain().map(|(_, t)| t).collect();
        for t in tasks {
            t.cancel();
        }
        self.remote.close();
        self.mark_tasks_dropped();
        self.metrics.live_tasks.set(0);
    }

    /// Shutdown, after phase 1: drops the futures of tasks taken in since
    /// (their drops' own spawns are left to the next call or to the
    /// closed queues).
    fn cancel_owned(&self) {
        let tasks: Vec<Arc<Task>> = lock(&self.remote.owned).drain().map(|(_, t)| t).collect();
        for t in tasks {
            t.cancel();
        }
        self.local.borrow_mut().clear();
    }

    /// Tells the runtime this worker has dropped its tasks, once.
    fn mark_tasks_dropped(&self) {
        if !self.tasks_marked.replace(true) {
            self.shared.mark_tasks_dropped();
        }
    }

    /// Shutdown, in three phases (`docs/architecture.md`, "Shutdown"):
    ///
    /// 1. drop every task this worker owns (cancelling their ops);
    /// 2. wait until every worker has done so, handling mail meanwhile: a
    ///    dropped stolen task may send its ops' resources to this ring;
    /// 3. close the queues, then wait for the kernel to finish with every op
    ///    until `deadline`. Whatever is still in flight after that is leaked
    ///    by the driver, never freed.
    pub(crate) fn shutdown(&self, deadline: Instant) {
        let mut wakers = Vec::new();
        let mut dead = Dead::default();
        // Dropping futures may wake or even spawn tasks; repeat until none.
        for _ in 0..1000 {
            self.take_inbox(&mut wakers, &mut dead);
            while self.pop_own().is_some() {}
            let tasks: Vec<Arc<Task>> = lock(&self.remote.owned).drain().map(|(_, t)| t).collect();
            if tasks.is_empty() {
                break;
            }
            for t in tasks {
                t.cancel();
            }
            self.local.borrow_mut().clear();
            self.deliver(&mut wakers, &mut dead);
        }
        // Past the round cap (drops that keep spawning): whatever is still
        // owned is leaked, not left for another thread to drop, since a
        // `spawn_local` future must never be dropped off its worker.
        // Collected first: leaking publishes the outcome, which wakes the
        // join handle (user code, which may spawn: the map's lock must be
        // free).
        let left: Vec<Arc<Task>> = lock(&self.remote.owned).drain().map(|(_, t)| t).collect();
        for t in left {
            t.leak_future();
        }
        self.mark_tasks_dropped();
        while !self.shared.all_tasks_dropped() && Instant::now() < deadline {
            self.take_inbox(&mut wakers, &mut dead);
            // Tasks handed over since phase 1 (`spawn_local_on` from another
            // thread): never run, so dropped here, once.
            self.cancel_owned();
            let _ = self.driver.borrow_mut().submit_and_reap(&self.metrics);
            self.deliver(&mut wakers, &mut dead);
            // Shutdown only: a short sleep, not a spin.
            std::thread::sleep(Duration::from_micros(200));
        }
        self.take_inbox(&mut wakers, &mut dead);
        self.cancel_owned();
        self.remote.close();
        self.local.borrow_mut().clear();
        // Dropped after the borrow ends: the wakers' drops are user code.
        let timers = self.timers.borrow_mut().clear();
        run_user_code("the drop of a timer's waker", move || drop(timers));
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
            self.local.borrow_mut().clear();
            while self.remote.pop_task().is_some() {}
        }
        self.remote.detach_ring();
        self.metrics.live_tasks.set(0);
    }
}
