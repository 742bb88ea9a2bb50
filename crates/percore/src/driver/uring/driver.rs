//! The per-worker io_uring driver: op slots, submission, reaping, parking.
//!
//! Only the owning worker thread ever touches a `Driver` (it lives in that
//! thread's context, see `runtime/context.rs`). `user_data` of every SQE is
//! the index of its slot, or one of the reserved tags below.
//!
//! Reaping never runs user code: wakers to call and orphaned resources to
//! drop are collected and handed to the worker (`take_ready`), which runs
//! them after the driver is no longer borrowed.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

use super::bufring::BufPool;
use super::forward::Forwarded;
use super::multishot::Multishot;
use super::setup::{build_ring, RingFeatures, RingSetup};
use crate::driver::op::OpData;
use crate::driver::Released;
use crate::metrics::WorkerMetrics;
use crate::runtime::guard::run_user_code;

/// `io_uring_enter` flag: wait for / reap completions (and run deferred
/// task work). The io-uring crate keeps its `sys` module private.
const IORING_ENTER_GETEVENTS: u32 = 1;
/// CQE flag: the op used a provided buffer (only multishot recvs select
/// from the pool, group 0).
const IORING_CQE_F_BUFFER: u32 = 1;
/// CQE flags: more CQEs follow for this op; this CQE is a zero-copy send's
/// notification (the kernel no longer reads the buffer).
const IORING_CQE_F_MORE: u32 = 1 << 1;
const IORING_CQE_F_NOTIF: u32 = 1 << 3;

/// CQEs of async-cancel requests: nothing to do, the target's own CQE matters.
const CANCEL_TAG: u64 = u64::MAX;
/// CQE of the read on the worker's unpark eventfd.
const UNPARK_TAG: u64 = u64::MAX - 1;
/// CQE a sibling posted into this ring with `IORING_OP_MSG_RING`: a wake.
const WAKE_TAG: u64 = u64::MAX - 2;
/// CQE of a `MSG_RING` this ring sent to the worker whose process-unique id
/// is `tag - WAKE_SENT_BASE`; only posted on failure
/// (`IOSQE_CQE_SKIP_SUCCESS`), and then that worker gets its eventfd written
/// instead. An id, not an index: the target may be a worker of another
/// runtime (a future sent there woke it).
const WAKE_SENT_BASE: u64 = 1 << 62;

/// Where one op stands. See `docs/architecture.md`, "Op lifecycle".
pub(crate) enum Slot {
    /// Unused; its index is on the free list.
    Free,
    /// Submitted; the future is alive and waits (or has not polled yet).
    InFlight(Option<Waker>),
    /// The final CQE arrived; the future has not picked the result up.
    Done { res: i32, flags: u32 },
    /// The future was dropped while the op was in flight: the driver owns the
    /// op's resources until the final CQE, then drops them.
    Orphaned(Box<dyn OpData>),
    /// Submitted, and its task now runs on another worker: the result goes
    /// into the cell (`forward.rs`).
    Forwarded(Arc<Forwarded>),
    /// A multishot op (`multishot.rs`): every CQE's result goes into `cell`;
    /// `keep` holds the op's resources until the final CQE; `cancelling`
    /// once a cancel is on its way (backpressure or consumer gone).
    Multishot {
        cell: Arc<Multishot>,
        keep: Box<dyn OpData>,
        cancelling: bool,
    },
}

pub(crate) struct Driver {
    ring: IoUring,
    features: RingFeatures,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Ops whose final CQE has not been reaped (live and orphaned).
    in_flight: usize,
    wakers: Vec<Waker>,
    dead: Released,
    /// The worker's unpark eventfd, and the 8 bytes the kernel reads it into.
    unpark_fd: RawFd,
    unpark_buf: Box<u64>,
    unpark_armed: bool,
    /// Ids of workers whose `MSG_RING` wake failed: signal their eventfd
    /// instead.
    failed_wakes: Vec<u64>,
    /// CQEs reaped so far (all kinds): tells `park` whether arming the
    /// unpark read flushed the SQ and consumed completions.
    reaped: u64,
    /// Multishot slots whose queue reached its cap during a reap: cancelled
    /// once the reap no longer borrows the CQ.
    over_cap: Vec<u32>,
    /// Provided buffers for multishot recv (`bufring.rs`): `(count, size)`
    /// asked for, the pool once made, and whether making it failed (then
    /// recvs use owned buffers).
    pool_config: (u16, u32),
    pool: Option<Arc<BufPool>>,
    pool_failed: bool,
    /// Zero-copy sends whose result CQE arrived (the value) and whose
    /// notification has not: the op is not over until it does.
    zc_results: std::collections::HashMap<u32, i32>,
}

impl Driver {
    /// Creates the ring on the calling thread (the worker).
    pub(crate) fn new(
        entries: u32,
        setup: RingSetup,
        unpark_fd: RawFd,
        pool_config: (u16, u32),
    ) -> io::Result<Driver> {
        let (ring, features) = build_ring(entries, setup)?;
        Ok(Driver {
            ring,
            features,
            slots: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            wakers: Vec::new(),
            dead: Released::default(),
            unpark_fd,
            unpark_buf: Box::new(0),
            unpark_armed: false,
            failed_wakes: Vec::new(),
            reaped: 0,
            over_cap: Vec::new(),
            pool_config,
            pool: None,
            pool_failed: pool_config.0 == 0,
            zc_results: std::collections::HashMap::new(),
        })
    }

    /// This worker's provided-buffer pool, made on first use. `None` if it
    /// is turned off or the kernel refused it (Linux < 5.19, or
    /// `io_uring_register` forbidden): callers use owned buffers.
    pub(crate) fn buf_pool(&mut self, worker: u64) -> Option<Arc<BufPool>> {
        if self.pool.is_none() && !self.pool_failed {
            let (count, size) = self.pool_config;
            match BufPool::new(&self.ring, worker, count, size) {
                Ok(p) => self.pool = Some(p),
                Err(e) => {
                    self.pool_failed = true;
                    crate::runtime::guard::report(format_args!(
                        "percore: no provided-buffer ring ({count} x {size} B): {e}; \
                         recv_pooled receives into owned buffers \
                         (Builder::recv_buffers sets the size; Linux 6.0+ needed)"
                    ));
                }
            }
        }
        self.pool.clone()
    }

    /// Whether a multishot recv can be armed here (a stream moving here
    /// from another worker re-arms only then).
    pub(crate) fn can_recv_multishot(&self) -> bool {
        self.features.multishot && !self.pool_failed
    }

    /// The ring's fd: the target of siblings' `MSG_RING` wakes.
    pub(crate) fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    pub(crate) fn features(&self) -> RingFeatures {
        self.features
    }

    /// SQEs queued and not yet submitted, and CQEs posted and not yet
    /// reaped (the rings' occupancy, for the gauges).
    pub(crate) fn occupancy(&mut self) -> (usize, usize) {
        let sq = self.ring.submission().len();
        let cq = self.ring.completion().len();
        (sq, cq)
    }

    /// Ops whose final completion has not been reaped yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight + usize::from(self.unpark_armed)
    }

    /// Takes a slot for a new op and queues its SQE. Fails only if the SQ
    /// was full and flushing it failed; the SQE was then not queued, so the
    /// kernel never sees the op and the caller keeps its resources.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid until the op's final CQE is
    /// reaped: the caller keeps the resources in its `Op` and, if dropped
    /// early, hands them to [`Driver::orphan`].
    pub(crate) unsafe fn start(
        &mut self,
        entry: squeue::Entry,
        waker: Waker,
        metrics: &WorkerMetrics,
    ) -> io::Result<u32> {
        let idx = self.take_slot(Slot::InFlight(Some(waker)));
        // SAFETY: forwarded from this function's contract.
        match unsafe { self.push(entry.user_data(u64::from(idx)), metrics) } {
            Ok(()) => {
                self.in_flight += 1;
                Ok(idx)
            }
            Err(e) => {
                self.slots[idx as usize] = Slot::Free;
                self.free.push(idx);
                Err(e)
            }
        }
    }

    /// Puts `slot` in a free slot (or a new one) and returns its index.
    fn take_slot(&mut self, slot: Slot) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).expect("more than 2^32 ops in flight")
            }
        }
    }

    /// Takes a slot for a multishot op whose CQEs go into `cell`, keeping
    /// `keep` until its final CQE, and queues its SQE. Fails as [`start`]
    /// does, and then `keep` comes back dropped-never-submitted.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must point into `keep` (or `'static`
    /// memory): the driver holds `keep` until the final CQE, or leaks it.
    ///
    /// [`start`]: Driver::start
    pub(crate) unsafe fn start_multishot(
        &mut self,
        entry: squeue::Entry,
        cell: Arc<Multishot>,
        keep: Box<dyn OpData>,
        metrics: &WorkerMetrics,
    ) -> io::Result<u32> {
        let slot = Slot::Multishot {
            cell,
            keep,
            cancelling: false,
        };
        let idx = self.take_slot(slot);
        // SAFETY: forwarded from this function's contract.
        match unsafe { self.push(entry.user_data(u64::from(idx)), metrics) } {
            Ok(()) => {
                self.in_flight += 1;
                Ok(idx)
            }
            Err(e) => {
                // Never queued: the kernel never saw `keep`; drop it with
                // the worker's other released resources.
                if let Slot::Multishot { keep, .. } =
                    mem::replace(&mut self.slots[idx as usize], Slot::Free)
                {
                    self.dead
                        .orphans
                        .push((keep, e.raw_os_error().map_or(-libc::EIO, |n| -n)));
                }
                self.free.push(idx);
                Err(e)
            }
        }
    }

    /// Cancels multishot op `idx` if it is still `cell`'s (its consumer is
    /// gone). A slot already freed, or reused by another op, is left alone:
    /// this runs on the ring's worker, the only thread that frees slots, and
    /// the cancel SQE reaches the kernel before any later SQE reusing `idx`.
    pub(crate) fn cancel_multishot(
        &mut self,
        idx: u32,
        cell: &Arc<Multishot>,
        metrics: &WorkerMetrics,
    ) {
        let Some(Slot::Multishot {
            cell: c,
            cancelling,
            ..
        }) = self.slots.get_mut(idx as usize)
        else {
            return;
        };
        if !Arc::ptr_eq(c, cell) || *cancelling {
            return;
        }
        let cancel = opcode::AsyncCancel::new(u64::from(idx))
            .build()
            .user_data(CANCEL_TAG);
        // SAFETY: an async-cancel SQE references no memory. If it cannot be
        // queued, the op stays armed with its resources here and its
        // results are discarded by the closed cell: nothing leaks.
        if unsafe { self.push(cancel, metrics) }.is_ok() {
            if let Some(Slot::Multishot { cancelling, .. }) = self.slots.get_mut(idx as usize) {
                *cancelling = true;
            }
        }
    }

    /// Polls op `idx`: its result once the final CQE arrived (freeing the
    /// slot), else records `waker`.
    pub(crate) fn poll_op(&mut self, idx: u32, waker: &Waker) -> Poll<(i32, u32)> {
        let slot = &mut self.slots[idx as usize];
        match slot {
            Slot::Done { res, flags } => {
                let out = (*res, *flags);
                *slot = Slot::Free;
                self.free.push(idx);
                Poll::Ready(out)
            }
            Slot::InFlight(w) => {
                match w {
                    Some(w) if w.will_wake(waker) => {}
                    _ => self.dead.retired.extend(w.replace(waker.clone())),
                }
                Poll::Pending
            }
            Slot::Free | Slot::Orphaned(_) | Slot::Forwarded(_) | Slot::Multishot { .. } => {
                unreachable!("op slot {idx} polled after it was released or forwarded")
            }
        }
    }

    /// The future of op `idx` is gone. If the op already completed, the
    /// resources come back to the caller to drop (outside any borrow);
    /// otherwise the driver keeps them until the final CQE and asks the
    /// kernel to cancel the op.
    pub(crate) fn orphan(
        &mut self,
        idx: u32,
        data: Box<dyn OpData>,
        metrics: &WorkerMetrics,
    ) -> Option<(Box<dyn OpData>, i32)> {
        let slot = &mut self.slots[idx as usize];
        match slot {
            Slot::Done { res, .. } => {
                let res = *res;
                *slot = Slot::Free;
                self.free.push(idx);
                Some((data, res))
            }
            Slot::InFlight(_) | Slot::Forwarded(_) => {
                if let Slot::InFlight(Some(w)) = mem::replace(slot, Slot::Orphaned(data)) {
                    self.dead.retired.push(w);
                }
                // A zero-copy send past its result: only its buffer matters.
                if self.zc_results.contains_key(&idx) {
                    if let Slot::Orphaned(d) = &mut self.slots[idx as usize] {
                        d.release_fd();
                    }
                }
                let cancel = opcode::AsyncCancel::new(u64::from(idx))
                    .build()
                    .user_data(CANCEL_TAG);
                // SAFETY: an async-cancel SQE references no memory. If it
                // cannot be queued (the ring is failing), the op stays in
                // flight with its resources here: nothing is freed early.
                let _ = unsafe { self.push(cancel, metrics) };
                None
            }
            Slot::Free | Slot::Orphaned(_) | Slot::Multishot { .. } => {
                unreachable!("op slot {idx} released twice")
            }
        }
    }

    /// Mail from another worker: op `idx`'s task moved there; deliver the
    /// result into `cell`. Returns the waker to call if it is already here.
    pub(crate) fn forward(&mut self, idx: u32, cell: Arc<Forwarded>) -> Option<Waker> {
        let slot = &mut self.slots[idx as usize];
        match slot {
            Slot::Done { res, flags } => match cell.complete(*res, *flags) {
                Ok(w) => {
                    *slot = Slot::Free;
                    self.free.push(idx);
                    w
                }
                // Dropped meanwhile: the slot waits for the orphan mail.
                Err(()) => None,
            },
            Slot::InFlight(_) => {
                if let Slot::InFlight(Some(w)) = mem::replace(slot, Slot::Forwarded(cell)) {
                    self.dead.retired.push(w);
                }
                None
            }
            Slot::Free | Slot::Orphaned(_) | Slot::Forwarded(_) | Slot::Multishot { .. } => {
                unreachable!("forward mail for op slot {idx}, which is not live")
            }
        }
    }

    /// Wakes the worker whose ring is `target_ring` by posting a CQE into it
    /// (`IORING_OP_MSG_RING`), submitted at once. False if it could not be
    /// queued or submitted: the caller writes the target's eventfd instead.
    /// The caller keeps `target_ring` open until this returns (the kernel
    /// resolves the fd during the submit).
    pub(crate) fn send_wake(
        &mut self,
        target_ring: RawFd,
        target_id: u64,
        metrics: &WorkerMetrics,
    ) -> bool {
        let msg = opcode::MsgRingData::new(types::Fd(target_ring), 0, WAKE_TAG, None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(WAKE_SENT_BASE + target_id);
        // SAFETY: a MSG_RING data SQE references no memory of ours; it names
        // the target ring's fd, which the caller holds open until we return.
        if unsafe { self.ring.submission().push(&msg) }.is_err() {
            return false;
        }
        metrics.submitted.bump();
        // Submit while the caller still holds the target's fd open. Retry
        // transient errors here: an SQE left queued would be issued at our
        // next enter, when that fd number might name something else. A
        // persistent error fails this worker's next enter anyway.
        for _ in 0..8 {
            metrics.enters.bump();
            match self.ring.submit() {
                Ok(_) => return true,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => self.reap(metrics),
                Err(_) => return false,
            }
        }
        false
    }

    /// Workers whose `MSG_RING` wake failed since the last call.
    pub(crate) fn take_failed_wakes(&mut self) -> Vec<u64> {
        mem::take(&mut self.failed_wakes)
    }

    /// Asks the kernel to cancel every op still in flight (shutdown).
    pub(crate) fn cancel_all(&mut self, metrics: &WorkerMetrics) {
        let targets: Vec<u64> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(
                    s,
                    Slot::InFlight(_)
                        | Slot::Orphaned(_)
                        | Slot::Forwarded(_)
                        | Slot::Multishot { .. }
                )
            })
            .map(|(i, _)| i as u64)
            .chain(self.unpark_armed.then_some(UNPARK_TAG))
            .collect();
        for target in targets {
            let cancel = opcode::AsyncCancel::new(target)
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: an async-cancel SQE references no memory.
            if unsafe { self.push(cancel, metrics) }.is_err() {
                return; // the drain deadline bounds what follows
            }
        }
    }

    /// Keeps one read posted on the unpark eventfd, so a remote wake
    /// completes it and ends a park.
    pub(crate) fn arm_unpark(&mut self, metrics: &WorkerMetrics) {
        if self.unpark_armed {
            return;
        }
        let buf: *mut u64 = &mut *self.unpark_buf;
        let read = opcode::Read::new(types::Fd(self.unpark_fd), buf.cast(), 8)
            .build()
            .user_data(UNPARK_TAG);
        // SAFETY: `unpark_buf` is a heap allocation owned by the driver; it is
        // leaked, not freed, if the driver is dropped while this read is armed.
        // If it cannot be queued, the park's enter reports the ring's error.
        self.unpark_armed = unsafe { self.push(read, metrics) }.is_ok();
    }

    /// Queues an SQE, flushing to the kernel when the SQ is full. Fails only
    /// if that flush fails, and then `entry` was not queued.
    ///
    /// # Safety
    ///
    /// As for [`Driver::start`].
    unsafe fn push(&mut self, entry: squeue::Entry, metrics: &WorkerMetrics) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from this function's contract.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                metrics.submitted.bump();
                return Ok(());
            }
            // SQ full: hand the queued SQEs to the kernel, reap, retry.
            self.submit_and_reap(metrics)?;
        }
    }

    /// Submits queued SQEs and reaps every completion, without waiting.
    pub(crate) fn submit_and_reap(&mut self, metrics: &WorkerMetrics) -> io::Result<()> {
        self.refill();
        self.enter(0, None, metrics)?;
        self.reap(metrics);
        Ok(())
    }

    /// Submits queued SQEs and waits for at least one completion, or until
    /// `timeout` (the nearest timer) passes; then reaps. A remote wake
    /// completes the unpark read and so ends the wait.
    pub(crate) fn park(
        &mut self,
        timeout: Option<Duration>,
        metrics: &WorkerMetrics,
    ) -> io::Result<()> {
        let reaped = self.reaped;
        self.refill();
        self.arm_unpark(metrics);
        // Arming the unpark read may have found the SQ full (the loop parks
        // with the tasks' SQEs still queued) and flushed it, reaping
        // completions: wakers now waiting in `self.wakers`, or a sibling's
        // MSG_RING wake meant to end *this* park (its latch is NOTIFIED, so
        // nobody signals again). Then only submit, never wait: the loop
        // delivers and comes back. Likewise if the read could not be armed
        // (no eventfd wake could end the wait).
        let min_complete = if self.reaped != reaped || self.has_ready() || !self.unpark_armed {
            0
        } else {
            1
        };
        self.enter(min_complete, timeout, metrics)?;
        self.reap(metrics);
        Ok(())
    }

    /// Waits up to `timeout` for at least one completion without arming the
    /// unpark read (shutdown drain), then reaps.
    pub(crate) fn wait(&mut self, timeout: Duration, metrics: &WorkerMetrics) -> io::Result<()> {
        self.enter(1, Some(timeout), metrics)?;
        self.reap(metrics);
        Ok(())
    }

    /// Gives the kernel back the pool buffers dropped on other threads.
    fn refill(&self) {
        if let Some(pool) = &self.pool {
            pool.take_returned();
        }
    }

    fn enter(
        &mut self,
        mut min_complete: u32,
        mut timeout: Option<Duration>,
        metrics: &WorkerMetrics,
    ) -> io::Result<()> {
        // EBUSY/EAGAIN retries before the error is the worker's (bounded:
        // a kernel that keeps refusing must fail loudly, not spin).
        let mut busy_retries = 0;
        loop {
            let to_submit = self.ring.submission().len() as u32;
            metrics.enters.bump();
            let res = match timeout {
                Some(t) => {
                    let ts = types::Timespec::from(t);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring
                        .submitter()
                        .submit_with_args(min_complete as usize, &args)
                }
                // SAFETY: no argument pointer is passed; flags are valid.
                None => unsafe {
                    self.ring.submitter().enter::<libc::sigset_t>(
                        to_submit,
                        min_complete,
                        IORING_ENTER_GETEVENTS,
                        None,
                    )
                },
            };
            match res {
                Ok(_) => return Ok(()),
                Err(e) => match e.raw_os_error() {
                    // A timed wait ended by its deadline, or a signal: done.
                    Some(libc::ETIME) => return Ok(()),
                    Some(libc::EINTR) if min_complete > 0 => return Ok(()),
                    Some(libc::EINTR) => continue,
                    // CQ overflow backlog or no memory for requests: make
                    // room by reaping, then try again without waiting.
                    Some(libc::EBUSY) | Some(libc::EAGAIN) if busy_retries < 100 => {
                        busy_retries += 1;
                        self.reap(metrics);
                        min_complete = 0;
                        timeout = None;
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Moves every available CQE into its slot. If the kernel holds
    /// overflowed CQEs (no-drop mode), enters again to flush and repeats.
    fn reap(&mut self, metrics: &WorkerMetrics) {
        loop {
            let mut cq = self.ring.completion();
            let overflowed = {
                for cqe in &mut cq {
                    metrics.completed.bump();
                    self.reaped += 1;
                    let (ud, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
                    if flags & IORING_CQE_F_BUFFER != 0 {
                        if let Some(pool) = &self.pool {
                            pool.kernel_took();
                        }
                    }
                    match ud {
                        CANCEL_TAG => {}
                        UNPARK_TAG => {
                            self.unpark_armed = false;
                            metrics.remote_wakes.bump();
                        }
                        WAKE_TAG => {
                            metrics.remote_wakes.bump();
                            metrics.msg_ring_received.bump();
                        }
                        ud if ud >= WAKE_SENT_BASE => self.failed_wakes.push(ud - WAKE_SENT_BASE),
                        // A zero-copy send's first CQE: its result, with a
                        // notification still to come. Keep the result; the
                        // op (and its buffer) stays in flight.
                        ud if flags & (IORING_CQE_F_MORE | IORING_CQE_F_NOTIF)
                            == IORING_CQE_F_MORE
                            && !matches!(
                                self.slots.get(ud as usize),
                                Some(Slot::Multishot { .. })
                            ) =>
                        {
                            self.zc_results.insert(ud as u32, res);
                            if let Some(Slot::Orphaned(d)) = self.slots.get_mut(ud as usize) {
                                d.release_fd();
                            }
                        }
                        _ => {
                            // A zero-copy send's notification: now the op
                            // is over, with the result its first CQE carried
                            // (0 if a kernel ever posted the notification
                            // first).
                            let (res, flags) = if flags & IORING_CQE_F_NOTIF != 0 {
                                metrics.zc_notifs.bump();
                                (self.zc_results.remove(&(ud as u32)).unwrap_or(0), 0)
                            } else {
                                (res, flags)
                            };
                            complete_slot(
                                &mut self.slots,
                                &mut self.free,
                                &mut self.in_flight,
                                &mut self.wakers,
                                &mut self.dead,
                                &mut self.over_cap,
                                ud as u32,
                                res,
                                flags,
                            )
                        }
                    }
                }
                drop(cq);
                self.ring.submission().cq_overflow()
            };
            self.cancel_over_cap(metrics);
            if !overflowed {
                return;
            }
            metrics.overflow_flushes.bump();
            metrics.enters.bump();
            // SAFETY: no argument pointer is passed; flags are valid.
            let _ = unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(0, 0, IORING_ENTER_GETEVENTS, None)
            };
        }
    }

    /// Backpressure: cancels the multishot ops whose queue reached its cap
    /// in the reap that just ended (unless that reap also saw their end).
    /// Their consumers re-arm once they have taken the queued results.
    fn cancel_over_cap(&mut self, metrics: &WorkerMetrics) {
        for idx in mem::take(&mut self.over_cap) {
            let Some(Slot::Multishot {
                cancelling: false, ..
            }) = self.slots.get(idx as usize)
            else {
                continue;
            };
            let cancel = opcode::AsyncCancel::new(u64::from(idx))
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: an async-cancel SQE references no memory. If it cannot
            // be queued, the op stays armed and its queue grows past the
            // cap until the next CQE asks again.
            if unsafe { self.push(cancel, metrics) }.is_ok() {
                metrics.multishot_backpressure.bump();
                if let Some(Slot::Multishot { cancelling, .. }) = self.slots.get_mut(idx as usize) {
                    *cancelling = true;
                }
            }
        }
    }

    /// Hands over wakers to call and orphaned resources to drop, collected
    /// while reaping. The caller runs them with the driver unborrowed.
    pub(crate) fn take_ready(&mut self, wakers: &mut Vec<Waker>, dead: &mut Released) {
        mem::swap(&mut self.wakers, wakers);
        mem::swap(&mut self.dead, dead);
    }

    /// Work the worker must hand out before it may wait: wakers, orphans
    /// and retired wakers collected by a reap, and failed MSG_RING wakes
    /// whose targets still need their eventfd written.
    pub(crate) fn has_ready(&self) -> bool {
        !self.wakers.is_empty() || !self.dead.is_empty() || !self.failed_wakes.is_empty()
    }
}

#[allow(clippy::too_many_arguments)]
fn complete_slot(
    slots: &mut [Slot],
    free: &mut Vec<u32>,
    in_flight: &mut usize,
    wakers: &mut Vec<Waker>,
    dead: &mut Released,
    over_cap: &mut Vec<u32>,
    idx: u32,
    res: i32,
    flags: u32,
) {
    let slot = &mut slots[idx as usize];
    match slot {
        Slot::Multishot {
            cell, cancelling, ..
        } => {
            let more = io_uring::cqueue::more(flags);
            // The CQE that ends a cancelled op carries no result (but give
            // back a buffer should one ever come with it).
            if !more && res == -libc::ECANCELED {
                cell.discard_now(res, flags);
            } else {
                let full = cell.push(res, flags, wakers);
                if full && more && !*cancelling {
                    over_cap.push(idx);
                }
            }
            if !more {
                let Slot::Multishot { cell, keep, .. } = mem::replace(slot, Slot::Free) else {
                    unreachable!()
                };
                cell.end(wakers);
                // `keep` holds only what the kernel used (the socket):
                // released like an orphan's, with a neutral result, since
                // `res` (an accepted fd, a byte count) went to the cell.
                dead.orphans.push((keep, -libc::ECANCELED));
                free.push(idx);
                *in_flight -= 1;
            }
        }
        Slot::InFlight(w) => {
            if let Some(w) = w.take() {
                wakers.push(w);
            }
            *slot = Slot::Done { res, flags };
            *in_flight -= 1;
        }
        Slot::Orphaned(_) => {
            let Slot::Orphaned(data) = mem::replace(slot, Slot::Free) else {
                unreachable!()
            };
            dead.orphans.push((data, res));
            free.push(idx);
            *in_flight -= 1;
        }
        Slot::Forwarded(cell) => {
            *in_flight -= 1;
            match cell.complete(res, flags) {
                Ok(w) => {
                    wakers.extend(w);
                    *slot = Slot::Free;
                    free.push(idx);
                }
                // Its future was dropped on the other worker: the orphan
                // mail with the resources frees the slot.
                Err(()) => *slot = Slot::Done { res, flags },
            }
        }
        Slot::Free | Slot::Done { .. } => {
            unreachable!("completion for op slot {idx}, which has no op in flight")
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The worker drains before dropping us; whatever is still in flight
        // (the drain deadline passed) may yet be written by the kernel, so its
        // memory is leaked rather than freed (PITFALLS 1 and 6). The ring
        // itself (the first field) closes after this body.
        if self.unpark_armed {
            mem::forget(mem::replace(&mut self.unpark_buf, Box::new(0)));
        }
        // A recv still in flight may yet pick a pool buffer and write it.
        if self.in_flight > 0 {
            mem::forget(self.pool.take());
        }
        let slots = mem::take(&mut self.slots);
        let mut wakers = Vec::new();
        for slot in slots {
            match slot {
                Slot::Orphaned(data) => {
                    crate::metrics::count_leaked_op();
                    mem::forget(data);
                }
                // Its future waits elsewhere: its next poll learns that no
                // result will come (and its drop leaks the resources).
                Slot::Forwarded(cell) => wakers.extend(cell.lose()),
                Slot::InFlight(w) => self.dead.retired.extend(w),
                // The kernel may still hold the op (the drain deadline
                // passed): its resources are leaked; its consumer learns the
                // op ended and re-arms wherever it runs next.
                Slot::Multishot { cell, keep, .. } => {
                    crate::metrics::count_leaked_op();
                    mem::forget(keep);
                    cell.end(&mut wakers);
                }
                Slot::Free | Slot::Done { .. } => {}
            }
        }
        // User code last, each call guarded, so no panic can unwind through
        // the loop above while it still holds orphans.
        for w in wakers.into_iter().chain(mem::take(&mut self.wakers)) {
            run_user_code("a waker", || w.wake());
        }
        for (data, res) in mem::take(&mut self.dead.orphans) {
            run_user_code("the drop of a cancelled op's buffer", || data.orphaned(res));
        }
        for w in mem::take(&mut self.dead.retired) {
            run_user_code("the drop of a waker", move || drop(w));
        }
    }
}
