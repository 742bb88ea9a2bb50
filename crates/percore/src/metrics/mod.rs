//! Per-worker counters, readable from any thread while the runtime runs.
//!
//! Most counters have a single writer (their worker), so `bump` is a plain
//! load + store, not a locked read-modify-write; `add_shared` is for the few
//! written from other threads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

mod histogram;
pub use histogram::{Histogram, HistogramSnapshot, BUCKETS};

static LEAKED_OPS: AtomicU64 = AtomicU64::new(0);

/// Operations whose resources (buffers, fds, addresses) percore leaked on
/// purpose, process-wide: the kernel might still have used them and no
/// worker could take them over (their ring's worker had exited, or a
/// runtime shut down before the kernel finished). Leaking is the safe
/// outcome (DESIGN invariant 8); a growing count means futures outlive their
/// runtime or shutdown deadlines are too short.
pub fn leaked_ops() -> u64 {
    LEAKED_OPS.load(Relaxed)
}

pub(crate) fn count_leaked_op() {
    LEAKED_OPS.fetch_add(1, Relaxed);
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// +1 from the counter's only writer thread.
    pub(crate) fn bump(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_add(1), Relaxed);
    }
    /// +n from any thread.
    pub(crate) fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down, set by one thread.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Task polls.
    pub polls: Counter,
    /// Tasks spawned onto this worker.
    pub spawned: Counter,
    /// SQEs queued (ops, cancels, unpark reads).
    pub submitted: Counter,
    /// CQEs reaped.
    pub completed: Counter,
    /// `io_uring_enter` calls.
    pub enters: Counter,
    /// Times the CQ had overflowed into the kernel's backlog and was flushed.
    pub overflow_flushes: Counter,
    /// Times the worker parked in the kernel.
    pub parks: Counter,
    /// Wakes from other threads that found this worker parked and signalled
    /// it (by eventfd or `MSG_RING`).
    pub remote_unparks: Counter,
    /// Tasks scheduled onto this worker from other threads.
    pub remote_schedules: Counter,
    /// Signals that ended this worker's wait: eventfd reads and `MSG_RING` completions it reaped.
    pub remote_wakes: Counter,
    /// Times this worker, out of work, looked for a sibling to steal from.
    pub steal_attempts: Counter,
    /// Attempts that took at least one task.
    pub steals: Counter,
    /// Tasks moved to this worker by its steals.
    pub stolen_tasks: Counter,
    /// Times this worker woke a parked sibling because its own stealable queue was long.
    pub idle_wakes: Counter,
    /// Ops this worker polled or dropped whose ring is another worker's (their task was stolen mid-flight).
    pub ops_forwarded: Counter,
    /// Wakes this worker sent to a parked sibling with `IORING_OP_MSG_RING` (the rest went through the eventfd).
    pub msg_ring_wakes: Counter,
    /// Panics in user code the worker ran outside any task's poll (a
    /// waker, the `Drop` of a cancelled op's buffer), caught and reported.
    pub user_panics: Counter,
    /// `IORING_OP_MSG_RING` wakes this worker's ring received (reaped).
    pub msg_ring_received: Counter,
    /// Multishot accepts this worker armed (one per listener, plus one per
    /// re-arm after the kernel or backpressure ended the previous one).
    pub accept_arms: Counter,
    /// Multishot ops this worker cancelled because their consumer had not
    /// taken the queued results (the queue's cap was reached).
    pub multishot_backpressure: Counter,
    /// Multishot recvs this worker armed (one per stream, plus re-arms).
    pub recv_arms: Counter,
    /// `recv_pooled` receives not taken from the provided-buffer pool: an
    /// owned receive after the pool ran empty (`ENOBUFS`), or a direct
    /// `recv(2)` after a readiness wait while the pool was low.
    pub recv_fallbacks: Counter,
    /// Zero-copy send notifications reaped (one per completed `write_zc`
    /// on io_uring).
    pub zc_notifs: Counter,
    /// Polls longer than the stall threshold (`Builder::stall_threshold`).
    pub stalls: Counter,
    /// Task polls that ended because the task had taken its budget of
    /// ready I/O results (128) in that poll: a loop whose resource never
    /// made it wait (a full accept backlog, a socket with data queued, a
    /// full channel) letting the worker's other tasks run.
    pub budget_yields: Counter,
    /// How long each task poll took.
    pub poll_time: Histogram,
    /// Loop lag: from a task's wake (or spawn) to the start of its poll.
    pub loop_lag: Histogram,
    /// Gauge: unfinished tasks this worker owns.
    pub live_tasks: Gauge,
    /// Gauge: runnable tasks queued on this worker (local and stealable),
    /// sampled once per loop pass.
    pub run_queue: Gauge,
    /// Gauge: I/O ops submitted and not yet completed (queued SQEs and
    /// ops in the kernel), sampled once per loop pass.
    pub in_flight_ops: Gauge,
    /// Gauge: armed timers, sampled once per loop pass.
    pub timers: Gauge,
    /// Gauge: SQEs queued in the submission ring and not yet submitted
    /// (io_uring), sampled once per loop pass.
    pub sq_pending: Gauge,
    /// Gauge: CQEs posted in the completion ring and not yet reaped
    /// (io_uring), sampled once per loop pass.
    pub cq_ready: Gauge,
}

/// A point-in-time copy of [`WorkerMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Task polls.
    pub polls: u64,
    /// Tasks spawned onto this worker.
    pub spawned: u64,
    /// SQEs queued.
    pub submitted: u64,
    /// CQEs reaped.
    pub completed: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// CQ overflow backlog flushes.
    pub overflow_flushes: u64,
    /// Parks.
    pub parks: u64,
    /// Eventfd signals received.
    pub remote_unparks: u64,
    /// Tasks scheduled from other threads.
    pub remote_schedules: u64,
    /// Signals that ended this worker's wait: eventfd reads and `MSG_RING` completions it reaped.
    pub remote_wakes: u64,
    /// Times this worker, out of work, looked for a sibling to steal from.
    pub steal_attempts: u64,
    /// Attempts that took at least one task.
    pub steals: u64,
    /// Tasks moved to this worker by its steals.
    pub stolen_tasks: u64,
    /// Times this worker woke a parked sibling because its own stealable queue was long.
    pub idle_wakes: u64,
    /// Ops this worker polled or dropped whose ring is another worker's (their task was stolen mid-flight).
    pub ops_forwarded: u64,
    /// Wakes this worker sent to a parked sibling with `IORING_OP_MSG_RING` (the rest went through the eventfd).
    pub msg_ring_wakes: u64,
    /// Panics in user code the worker ran outside any task's poll.
    pub user_panics: u64,
    /// `IORING_OP_MSG_RING` wakes this worker's ring received.
    pub msg_ring_received: u64,
    /// See [`WorkerMetrics::accept_arms`].
    pub accept_arms: u64,
    /// See [`WorkerMetrics::multishot_backpressure`].
    pub multishot_backpressure: u64,
    /// See [`WorkerMetrics::recv_arms`].
    pub recv_arms: u64,
    /// See [`WorkerMetrics::recv_fallbacks`].
    pub recv_fallbacks: u64,
    /// See [`WorkerMetrics::zc_notifs`].
    pub zc_notifs: u64,
    /// See [`WorkerMetrics::stalls`].
    pub stalls: u64,
    /// See [`WorkerMetrics::budget_yields`].
    pub budget_yields: u64,
    /// See [`WorkerMetrics::poll_time`].
    pub poll_time: HistogramSnapshot,
    /// See [`WorkerMetrics::loop_lag`].
    pub loop_lag: HistogramSnapshot,
    /// See [`WorkerMetrics::live_tasks`].
    pub live_tasks: u64,
    /// See [`WorkerMetrics::run_queue`].
    pub run_queue: u64,
    /// See [`WorkerMetrics::in_flight_ops`].
    pub in_flight_ops: u64,
    /// See [`WorkerMetrics::timers`].
    pub timers: u64,
    /// See [`WorkerMetrics::sq_pending`].
    pub sq_pending: u64,
    /// See [`WorkerMetrics::cq_ready`].
    pub cq_ready: u64,
}

impl WorkerMetrics {
    /// Copies the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            polls: self.polls.get(),
            spawned: self.spawned.get(),
            submitted: self.submitted.get(),
            completed: self.completed.get(),
            enters: self.enters.get(),
            overflow_flushes: self.overflow_flushes.get(),
            parks: self.parks.get(),
            remote_unparks: self.remote_unparks.get(),
            remote_schedules: self.remote_schedules.get(),
            remote_wakes: self.remote_wakes.get(),
            steal_attempts: self.steal_attempts.get(),
            steals: self.steals.get(),
            stolen_tasks: self.stolen_tasks.get(),
            idle_wakes: self.idle_wakes.get(),
            ops_forwarded: self.ops_forwarded.get(),
            msg_ring_wakes: self.msg_ring_wakes.get(),
            user_panics: self.user_panics.get(),
            msg_ring_received: self.msg_ring_received.get(),
            accept_arms: self.accept_arms.get(),
            multishot_backpressure: self.multishot_backpressure.get(),
            recv_arms: self.recv_arms.get(),
            recv_fallbacks: self.recv_fallbacks.get(),
            zc_notifs: self.zc_notifs.get(),
            stalls: self.stalls.get(),
            budget_yields: self.budget_yields.get(),
            poll_time: self.poll_time.snapshot(),
            loop_lag: self.loop_lag.snapshot(),
            live_tasks: self.live_tasks.get(),
            run_queue: self.run_queue.get(),
            in_flight_ops: self.in_flight_ops.get(),
            timers: self.timers.get(),
            sq_pending: self.sq_pending.get(),
            cq_ready: self.cq_ready.get(),
        }
    }
}
