//! The bounded blocking pool: a capped set of threads, started on demand
//! and ending after an idle keep-alive, fed from a bounded FIFO queue.
//!
//! Admission (`Pool::submit`), under the pool's mutex:
//! 1. an idle thread is waiting for this job: queue it and wake one;
//! 2. else, below the thread cap: queue it and start a thread;
//! 3. else, room in the queue: queue it (a busy thread takes it later);
//! 4. else: refuse it at once with [`BlockingError`], never an unbounded
//!    backlog.
//!
//! Threads are not pinned: each one resets its CPU affinity to the mask the
//! process had when the runtime was built, because a thread inherits the
//! affinity of the thread that starts it, usually a pinned worker, and a
//! blocking call must not compete with that worker for its core.
//!
//! At shutdown, jobs still queued are dropped (their handles report
//! cancellation) and idle threads exit. A job already running cannot be
//! interrupted: its thread finishes it and exits, detached.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A queued job: runs once, or, dropped unrun, reports cancellation.
pub(crate) trait Job: Send {
    /// Runs the job; false if it was skipped (aborted before it started).
    fn run(self: Box<Self>) -> bool;
}

/// Runs `job` on a pool thread: user code runs there outside the closure's
/// own `catch_unwind` too (the drop of a value nobody waits for, of an
/// aborted closure, a handle's waker), and a panic in it must not end the
/// thread. Returns whether the job ran.
fn run_contained(job: Box<dyn Job>) -> bool {
    let mut ran = false;
    crate::runtime::guard::run_user_code("a blocking job", || ran = job.run());
    ran
}

/// Drops a job that will never run (its handle learns it was cancelled),
/// containing a panic of the closure's drop.
fn drop_contained(job: Box<dyn Job>) {
    crate::runtime::guard::run_user_code("the drop of a blocking job", move || drop(job));
}

/// Why the pool refused a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingError {
    kind: Refusal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    Full { threads: usize, queued: usize },
    ShutDown,
    Spawn(String),
}

impl BlockingError {
    /// The pool had every thread busy and its queue full (or could not
    /// start a thread).
    pub fn is_full(&self) -> bool {
        matches!(self.kind, Refusal::Full { .. } | Refusal::Spawn(_))
    }
    /// The runtime is shutting down.
    pub fn is_shutdown(&self) -> bool {
        matches!(self.kind, Refusal::ShutDown)
    }
}

impl fmt::Display for BlockingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Refusal::Full { threads, queued } => write!(
                f,
                "the blocking pool is full ({threads} threads busy, {queued} jobs queued): \
                 shed load or retry later, or raise Builder::blocking_threads / \
                 Builder::blocking_queue"
            ),
            Refusal::ShutDown => {
                f.write_str("the runtime is shutting down: its blocking pool takes no more jobs")
            }
            Refusal::Spawn(e) => write!(
                f,
                "the blocking pool could not start a thread ({e}): lower the load or \
                 Builder::blocking_threads, or raise the process's thread limit"
            ),
        }
    }
}

impl std::error::Error for BlockingError {}

/// A snapshot of the pool (`Runtime::blocking_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockingStats {
    /// Threads alive (busy or idle).
    pub threads: usize,
    /// Threads waiting for a job.
    pub idle: usize,
    /// Jobs queued, not yet started.
    pub queued: usize,
    /// Jobs whose closure ran (returned or panicked); not those skipped
    /// because they were aborted first.
    pub completed: u64,
    /// Jobs refused: the pool was full, the runtime was shutting down, or
    /// no thread could be started.
    pub rejected: u64,
}

/// The pool's limits (`Builder::blocking_threads`, `blocking_queue`,
/// `blocking_keep_alive`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) threads: usize,
    pub(crate) queue: usize,
    pub(crate) keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            threads: 32,
            queue: 1024,
            keep_alive: Duration::from_secs(10),
        }
    }
}

struct State {
    queue: VecDeque<Box<dyn Job>>,
    threads: usize,
    idle: usize,
    shutdown: bool,
}

pub(crate) struct Pool {
    state: Mutex<State>,
    work: Condvar,
    limits: Limits,
    name: String,
    /// The CPU mask threads take (the process's at build time).
    cpus: Option<libc::cpu_set_t>,
    completed: AtomicU64,
    rejected: AtomicU64,
}

impl Pool {
    pub(crate) fn new(limits: Limits, name: String) -> Arc<Pool> {
        Arc::new(Pool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            limits,
            name,
            cpus: current_cpus(),
            completed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` or refuses it (see the module docs). A refused job is
    /// dropped, after the lock is released: its drop reports cancellation
    /// to its handle.
    pub(crate) fn submit(self: &Arc<Self>, job: Box<dyn Job>) -> Result<(), BlockingError> {
        let mut st = self.lock();
        let kind = if st.shutdown {
            Refusal::ShutDown
        } else if st.idle > st.queue.len() {
            st.queue.push_back(job);
            drop(st);
            self.work.notify_one();
            return Ok(());
        } else if st.threads < self.limits.threads {
            st.threads += 1;
            drop(st);
            // The new thread runs this job first. If it cannot start, the
            // closure (and the job in it) is dropped: cancelled.
            let pool = self.clone();
            let started = std::thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || pool.thread_main(job));
            match started {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // Jobs queued meanwhile (they saw the thread count we
                    // had just raised) would wait for a thread that never
                    // came: with no thread left they are cancelled too.
                    let stranded: Vec<Box<dyn Job>> = {
                        let mut st = self.lock();
                        st.threads -= 1;
                        if st.threads == 0 {
                            st.queue.drain(..).collect()
                        } else {
                            Vec::new()
                        }
                    };
                    stranded.into_iter().for_each(drop_contained);
                    Refusal::Spawn(e.to_string())
                }
            }
        } else if st.queue.len() < self.limits.queue {
            st.queue.push_back(job);
            return Ok(());
        } else {
            let kind = Refusal::Full {
                threads: st.threads,
                queued: st.queue.len(),
            };
            drop(st);
            drop_contained(job);
            kind
        };
        self.rejected.fetch_add(1, Relaxed);
        Err(BlockingError { kind })
    }

    fn thread_main(self: Arc<Self>, first: Box<dyn Job>) {
        if let Some(cpus) = &self.cpus {
            // SAFETY: `cpus` is a valid, initialised mask of the size passed;
            // pid 0 is this thread. A failure leaves the inherited mask.
            let _ = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(cpus), cpus) };
        }
        // Gives the thread back to the count however this function ends.
        struct Leaving<'a>(&'a Pool);
        impl Drop for Leaving<'_> {
            fn drop(&mut self) {
                self.0.lock().threads -= 1;
            }
        }
        let _leaving = Leaving(&self);
        if run_contained(first) {
            self.completed.fetch_add(1, Relaxed);
        }
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                if run_contained(job) {
                    self.completed.fetch_add(1, Relaxed);
                }
                st = self.lock();
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let (g, wait) = self
                .work
                .wait_timeout(st, self.limits.keep_alive)
                .unwrap_or_else(|e| e.into_inner());
            st = g;
            st.idle -= 1;
            if wait.timed_out() && st.queue.is_empty() {
                break;
            }
        }
        drop(st);
    }

    /// Runtime shutdown: no more jobs; queued ones are dropped (cancelled);
    /// idle threads exit; running jobs finish on their detached threads.
    pub(crate) fn shutdown(&self) {
        let dropped: Vec<Box<dyn Job>> = {
            let mut st = self.lock();
            st.shutdown = true;
            st.queue.drain(..).collect()
        };
        self.work.notify_all();
        // Outside the lock: each drop wakes a handle (user code).
        dropped.into_iter().for_each(drop_contained);
    }

    pub(crate) fn stats(&self) -> BlockingStats {
        let st = self.lock();
        BlockingStats {
            threads: st.threads,
            idle: st.idle,
            queued: st.queue.len(),
            completed: self.completed.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
        }
    }
}

/// The CPU mask for blocking threads: on a percore worker (a runtime built
/// inside another), that runtime's pool mask; else this thread's (the
/// builder's, not a pinned worker's). Masks of more than 1,024 CPUs do not
/// fit `cpu_set_t`: then threads keep the mask they inherit.
fn current_cpus() -> Option<libc::cpu_set_t> {
    if let Some(parent) = crate::runtime::context::with_worker(|w| w.shared.blocking.cpus) {
        return parent;
    }
    // SAFETY: an all-zero cpu_set_t is a valid empty mask.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid mask of the size passed; pid 0 is this thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    (r == 0).then_some(set)
}
