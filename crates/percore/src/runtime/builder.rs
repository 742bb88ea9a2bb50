//! `Builder`: how many workers, pinning, ring size; starting the threads.

use std::io;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::context;
use super::guard::panic_message;
use super::info::WorkerInfo;
use super::shared::Shared;
use super::stall::{Stall, StallConfig};
use super::worker::Worker;
use super::Runtime;
use crate::blocking::{Limits, Pool};
use crate::driver::uring::{self, RingSetup};
use crate::driver::{Driver, IoDriver};
use crate::metrics::WorkerMetrics;
use crate::sched::{Remote, StealPolicy};

static NEXT_WORKER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Configures and starts a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    workers: Option<usize>,
    pin: bool,
    ring_entries: u32,
    ring_setup: RingSetup,
    driver: Driver,
    shutdown_timeout: Duration,
    thread_name: String,
    steal: bool,
    steal_threshold: usize,
    wake_mode: WakeMode,
    recv_buffers: (u16, u32),
    blocking: Limits,
    stall: StallConfig,
}

/// How a worker wakes a parked sibling (`Builder::wake_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WakeMode {
    /// `IORING_OP_MSG_RING` where the kernel has it, else the eventfd.
    #[default]
    Auto,
    /// Post a completion into the sibling's ring with `IORING_OP_MSG_RING`
    /// (Linux 5.18+); `build` fails if the kernel lacks it. Threads that are
    /// not io_uring workers still use the eventfd.
    MsgRing,
    /// Write the sibling's eventfd, on which its ring keeps a read posted.
    Eventfd,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: None,
            pin: true,
            ring_entries: 256,
            ring_setup: RingSetup::Auto,
            driver: Driver::Auto,
            shutdown_timeout: Duration::from_secs(5),
            thread_name: "percore-worker".into(),
            steal: true,
            steal_threshold: 8,
            wake_mode: WakeMode::Auto,
            recv_buffers: (1024, 4096),
            blocking: Limits {
                threads: 32,
                queue: 1024,
                keep_alive: Duration::from_secs(10),
            },
            stall: StallConfig::default(),
        }
    }
}

impl Builder {
    /// Number of worker threads. Default: the cores this process may run on.
    pub fn workers(&mut self, n: usize) -> &mut Self {
        self.workers = Some(n);
        self
    }

    /// Pin worker `i` to the i-th allowed core (default: on).
    pub fn pin(&mut self, pin: bool) -> &mut Self {
        self.pin = pin;
        self
    }

    /// Submission queue entries per worker ring (rounded up to a power of
    /// two, clamped to 2..=32768); the completion queue gets four times as
    /// many. Default 256. A full SQ is flushed, never an error.
    pub fn ring_entries(&mut self, n: u32) -> &mut Self {
        self.ring_entries = n;
        self
    }

    /// The I/O driver (default `Auto`: io_uring, else epoll with one line
    /// on stderr naming the cause).
    pub fn driver(&mut self, driver: Driver) -> &mut Self {
        self.driver = driver;
        self
    }

    /// Which io_uring setup flags to ask for (default: the best available).
    pub fn ring_setup(&mut self, setup: RingSetup) -> &mut Self {
        self.ring_setup = setup;
        self
    }

    /// The provided-buffer pool of each io_uring worker, from which
    /// [`TcpStream::recv_pooled`](crate::net::TcpStream::recv_pooled)
    /// receives: `count` buffers (rounded up to a power of two, at most
    /// 32768; 0 turns the pool off) of `size` bytes. Default 1024 × 4 KiB
    /// (4 MiB of address space per worker, touched as buffers are used;
    /// keep `count` at most the completion queue size, 4 × `ring_entries`).
    /// While fewer than an eighth are free, receives use owned buffers.
    pub fn recv_buffers(&mut self, count: u16, size: u32) -> &mut Self {
        let count = if count == 0 {
            0
        } else {
            count.min(1 << 15).next_power_of_two()
        };
        self.recv_buffers = (count, size.max(1));
        self
    }

    /// How long dropping the runtime waits for the kernel to finish
    /// cancelled in-flight ops (default 5 s).
    pub fn shutdown_timeout(&mut self, d: Duration) -> &mut Self {
        self.shutdown_timeout = d;
        self
    }

    /// Prefix of worker thread names (`{name}-{index}`).
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.thread_name = name.into();
        self
    }

    /// Work stealing between workers (default on): an idle worker takes
    /// about half of a busy sibling's queued `spawn` tasks. `spawn_local`
    /// tasks never move.
    pub fn steal(&mut self, on: bool) -> &mut Self {
        self.steal = on;
        self
    }

    /// The shortest sibling queue worth stealing from (default 8, minimum
    /// 1): below it, moving a task costs more than waiting for it.
    pub fn steal_threshold(&mut self, tasks: usize) -> &mut Self {
        self.steal_threshold = tasks.max(1);
        self
    }

    /// How workers wake parked siblings (default `WakeMode::Auto`).
    pub fn wake_mode(&mut self, mode: WakeMode) -> &mut Self {
        self.wake_mode = mode;
        self
    }

    /// Most threads of the blocking pool (`task::spawn_blocking`; default
    /// 32, minimum 1). Threads start on demand and end after
    /// `blocking_keep_alive` idle.
    pub fn blocking_threads(&mut self, n: usize) -> &mut Self {
        self.blocking.threads = n.max(1);
        self
    }

    /// Most blocking jobs waiting for a thread (default 1,024). Beyond it,
    /// `try_spawn_blocking` returns an error at once and `spawn_blocking`'s
    /// handle resolves to a cancelled `JoinError`: never an unbounded
    /// backlog.
    pub fn blocking_queue(&mut self, n: usize) -> &mut Self {
        self.blocking.queue = n;
        self
    }

    /// How long an idle blocking thread waits for work before it ends
    /// (default 10 s).
    pub fn blocking_keep_alive(&mut self, d: Duration) -> &mut Self {
        self.blocking.keep_alive = d;
        self
    }

    /// A poll longer than this is a stall (default 10 ms): counted in
    /// `WorkerMetrics::stalls` and reported (see [`Builder::on_stall`]).
    /// Every poll's duration goes into `WorkerMetrics::poll_time` whatever
    /// the threshold.
    pub fn stall_threshold(&mut self, d: Duration) -> &mut Self {
        self.stall.threshold = d;
        self
    }

    /// Called on the worker, right after the poll, once per stall, instead
    /// of the default report (one stderr line per worker per second at
    /// most). A panic in it is contained.
    pub fn on_stall(&mut self, hook: impl Fn(&Stall<'_>) + Send + Sync + 'static) -> &mut Self {
        self.stall.hook = Some(Arc::new(hook));
        self
    }

    /// Starts the workers. Fails if any worker cannot set up its ring, with
    /// the worker's index and what to change.
    pub fn build(&self) -> io::Result<Runtime> {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let n = self.workers.unwrap_or(cores.len().max(1));
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Builder::workers(0): a runtime needs at least one worker",
            ));
        }
        let mut remotes = Vec::with_capacity(n);
        for i in 0..n {
            remotes.push(Arc::new(Remote::new(
                i,
                Arc::new(WorkerMetrics::default()),
            )?));
        }
        // With one worker there is no sibling to steal from or to wake: the policy
        // is off, so wakes and parks skip its fences.
        let policy = StealPolicy::new(self.steal && n > 1, self.steal_threshold);
        let mut shared = Shared::new(remotes, policy, self.shutdown_timeout);
        shared.stall = self.stall.clone();
        // Built here, on the caller's thread, whose CPU mask (not a pinned
        // worker's) the pool's threads take.
        // Not `{thread_name}-…`: Linux keeps 15 bytes of a thread name, and
        // "percore-worker-" would hide which threads are the pool's.
        shared.blocking = Pool::new(self.blocking, "percore-blocking".into());
        let shared = Arc::new(shared);
        let (tx, rx) = mpsc::channel::<(usize, io::Result<WorkerInfo>)>();
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let core = if self.pin && !cores.is_empty() {
                Some(cores[i % cores.len()])
            } else {
                None
            };
            let shared = shared.clone();
            let worker_tx = tx.clone();
            let ring = (
                self.ring_entries,
                self.ring_setup,
                self.driver,
                self.wake_mode,
                self.recv_buffers,
            );
            let spawned = thread::Builder::new()
                .name(format!("{}-{i}", self.thread_name))
                .spawn(move || worker_main(i, core, ring, shared, worker_tx));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let _ = tx.send((
                        i,
                        Err(io::Error::new(
                            e.kind(),
                            format!("spawning the thread: {e}"),
                        )),
                    ));
                }
            }
        }
        drop(tx);
        let mut infos: Vec<Option<WorkerInfo>> = vec![None; n];
        let mut first_err = None;
        for (i, r) in rx.iter().take(n) {
            match r {
                Ok(info) => infos[i] = Some(info),
                Err(e) if first_err.is_none() => {
                    first_err = Some(io::Error::new(e.kind(), format!("percore worker {i}: {e}")))
                }
                Err(_) => {}
            }
        }
        let workers: Vec<WorkerInfo> = infos.into_iter().flatten().collect();
        if let Some(cause) = workers.iter().find_map(|w| w.fallback.as_ref()) {
            super::guard::report(format_args!(
                "percore: io_uring is unavailable, using the epoll driver: {cause}"
            ));
        }
        let rt = Runtime {
            shared,
            threads,
            workers,
            shutdown_timeout: self.shutdown_timeout,
        };
        if let Some(e) = first_err {
            drop(rt);
            return Err(e);
        }
        Ok(rt)
    }
}

fn worker_main(
    index: usize,
    core: Option<core_affinity::CoreId>,
    (entries, setup, kind, wake_mode, pool): (u32, RingSetup, Driver, WakeMode, (u16, u32)),
    shared: Arc<Shared>,
    tx: mpsc::Sender<(usize, io::Result<WorkerInfo>)>,
) {
    let pinned = core.is_some_and(core_affinity::set_for_current);
    let remote = shared.remotes[index].clone();
    // The ring is created here, on the thread that will submit to it
    // (IORING_SETUP_SINGLE_ISSUER binds it to its creator).
    let unpark = remote.unparker.fd();
    let mut fallback = None;
    let made = match kind {
        Driver::IoUring => uring::Driver::new(entries, setup, unpark, pool).map(IoDriver::Uring),
        Driver::Epoll => crate::driver::epoll::Driver::new(unpark).map(IoDriver::Epoll),
        Driver::Auto => match uring::Driver::new(entries, setup, unpark, pool) {
            Ok(d) => Ok(IoDriver::Uring(d)),
            Err(e) => {
                fallback = Some(e.to_string());
                crate::driver::epoll::Driver::new(unpark).map(IoDriver::Epoll)
            }
        },
    };
    let msg_ring = match &made {
        Ok(IoDriver::Uring(d)) => d.features().msg_ring,
        _ => false,
    };
    let made = match made {
        Ok(_) if wake_mode == WakeMode::MsgRing && !msg_ring => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "WakeMode::MsgRing needs io_uring with IORING_OP_MSG_RING (Linux 5.18+): \
             use WakeMode::Auto or WakeMode::Eventfd",
        )),
        other => other,
    };
    let driver = match made {
        Ok(d) => d,
        Err(e) => {
            remote.close();
            shared.mark_tasks_dropped();
            let _ = tx.send((index, Err(e)));
            return;
        }
    };
    let ring_fd = match &driver {
        IoDriver::Uring(d) => Some(d.ring_fd()),
        IoDriver::Epoll(_) => None,
    };
    let id = NEXT_WORKER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    remote.attach(id, ring_fd);
    crate::sched::registry::register(id, &remote);
    let info = WorkerInfo {
        index,
        core: core.filter(|_| pinned).map(|c| c.id),
        driver: driver.kind(),
        ring: match &driver {
            IoDriver::Uring(d) => Some(d.features()),
            IoDriver::Epoll(_) => None,
        },
        fallback,
    };
    let _ = tx.send((index, Ok(info)));
    drop(tx);
    let use_msg_ring = msg_ring && wake_mode != WakeMode::Eventfd;
    let worker = Rc::new(Worker::new(
        id,
        shared.clone(),
        remote,
        driver,
        use_msg_ring,
    ));
    context::set(Some(worker.clone()));
    match catch_unwind(AssertUnwindSafe(|| worker.run())) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => shared.fail(index, &e.to_string()),
        Err(p) => shared.fail(index, &format!("percore panicked: {}", panic_message(&*p))),
    }
    let deadline = shared.drain_deadline();
    let shutdown = catch_unwind(AssertUnwindSafe(|| {
        worker.shutdown(deadline.max(Instant::now()))
    }));
    if let Err(p) = shutdown {
        // Never leave the others waiting on this worker, or its tasks'
        // handles unresolved; and never free what its ring may still write.
        super::guard::report(format_args!(
            "percore: worker {index}: shutdown panicked: {}; its ring and remaining ops are leaked",
            panic_message(&*p)
        ));
        worker.abandon();
        crate::sched::registry::unregister(id);
        context::set(None);
        std::mem::forget(worker);
        return;
    }
    crate::sched::registry::unregister(id);
    context::set(None);
    drop(worker);
}
