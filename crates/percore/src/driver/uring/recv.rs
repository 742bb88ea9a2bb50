//! Multishot recv into provided buffers: the consumer side, kept in each
//! `TcpStream`.
//!
//! The first `recv_pooled` on an io_uring worker arms one
//! `IORING_OP_RECV` with `IORING_RECV_MULTISHOT` and buffer select from the
//! worker's pool (`bufring.rs`): from then on every arrival of data is a
//! CQE carrying a filled pool buffer, with no SQE per message and no buffer
//! held while the connection is idle. Chunks queue in the stream's
//! [`Multishot`] cell (up to [`QUEUE_CAP`]; then the driver cancels the op
//! and TCP flow control holds the peer until the chunks are taken).
//!
//! The op ends at end of stream, on an error, at the cap, and when the pool
//! is empty (`ENOBUFS`): then the caller receives once into an owned buffer
//! (counted in `recv_fallbacks`; the bytes stayed in the socket, nothing is
//! lost) and the next call re-arms, unless fewer than an eighth of the
//! pool's buffers are free. Then it first waits for the socket to be
//! readable (a poll op, no buffer held: under 10,000 idle connections an
//! owned buffer per waiting receive would be 40 MiB), and once there are
//! bytes it arms again if buffers came back, else takes them with one
//! non-blocking `recv(2)` into a buffer of exactly their size. A call on a worker without a pool (the epoll driver, an
//! old kernel) receives into an owned buffer.
//!
//! Because the chunks live in the stream, dropping a `recv_pooled` or `read`
//! future loses no bytes, and `read` after `recv_pooled` returns the queued
//! chunks first (copying), so the two can be mixed.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, types};

use super::bufring::{BufPool, RecvBuf, GROUP};
use super::multishot::{self, Multishot, Next};
use crate::driver::op::OpData;
use crate::driver::IoDriver;
use crate::net::socket::Socket;
use crate::runtime::context;
use crate::task::coop;

/// Received chunks queued per stream before the driver cancels its
/// multishot recv: 32, or an eighth of the pool if that is less, so a few
/// slow readers cannot hold the whole pool.
const QUEUE_CAP: usize = 32;

/// What a multishot recv keeps until its final CQE: the stream's socket.
struct MultiRecvData {
    _socket: Socket,
}

/// Results are handed out through the cell, never through `orphaned`.
impl OpData for MultiRecvData {}

/// A receive into an owned buffer, or a wait for bytes to read, kept in the
/// stream so that dropping the caller's future loses none of its bytes.
type Fallback = Pin<Box<dyn Future<Output = FallbackDone> + Send>>;

enum FallbackDone {
    /// An owned receive ended: its result and buffer.
    Received(io::Result<usize>, Vec<u8>),
    /// The socket has bytes (or an end or error) to read.
    Readable(io::Result<()>),
}

#[derive(Default)]
struct State {
    /// The armed (or ended but not yet drained) op, the pool its buffers
    /// come from, and the id of the worker whose ring has it.
    armed: Option<(Arc<Multishot>, Arc<BufPool>, u64)>,
    /// The consumer moved to another worker: the op was asked to end, so
    /// the next one is armed where the consumer runs now.
    moving: bool,
    /// Chunks a `read` took only part of, oldest first.
    partial: VecDeque<RecvBuf>,
    /// A receive into an owned buffer (no pool here, or it was empty) or a
    /// wait for readability (the pool was low) in progress, and every
    /// caller waiting on it.
    fallback: Option<Fallback>,
    /// The last readability wait ended: bytes are there, so if the pool is
    /// still low, take them now with `recv_now` (set and consumed within
    /// one poll).
    readable: bool,
    fallback_waiters: Vec<std::task::Waker>,
}

/// A stream's multishot recv state.
#[derive(Default)]
pub(crate) struct MultiRecv {
    state: Mutex<State>,
    /// `recv_pooled` was ever called: until then `read` need not look at
    /// (or lock) the state, which keeps the plain read path lock-free.
    used: AtomicBool,
}

impl MultiRecv {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether bytes may be queued here: `read` must take them first.
    pub(crate) fn active(&self) -> bool {
        if !self.used.load(Relaxed) {
            return false;
        }
        let s = self.lock();
        s.armed.is_some() || !s.partial.is_empty() || s.fallback.is_some()
    }

    /// Keeps the unread rest of a chunk for the next call, ahead of
    /// anything queued after it.
    pub(crate) fn put_back(&self, rest: RecvBuf) {
        self.lock().partial.push_front(rest);
    }

    /// The next received chunk of `sock` (empty: end of stream), arming a
    /// multishot recv on the current worker when none is armed.
    pub(crate) fn poll_recv(
        &self,
        sock: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<RecvBuf>> {
        // Queued chunks are always ready: take turns (`task/coop.rs`).
        coop::budgeted(cx, |_| true, |cx| self.poll_recv_now(sock, cx))
    }

    fn poll_recv_now(&self, sock: &Socket, cx: &mut Context<'_>) -> Poll<io::Result<RecvBuf>> {
        self.used.store(true, Relaxed);
        let mut s = self.lock();
        if let Some(p) = s.partial.pop_front() {
            return Poll::Ready(Ok(p));
        }
        loop {
            // Taken out while polled: a panic in it leaves no half-run
            // future behind.
            if let Some(mut f) = s.fallback.take() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(FallbackDone::Received(res, v)) => {
                        // Other callers waiting on this receive (the op
                        // wakes only its last poller) look again.
                        let others = std::mem::take(&mut s.fallback_waiters);
                        drop(s);
                        others.into_iter().for_each(Waker::wake);
                        return Poll::Ready(res.map(|_| RecvBuf::owned(v)));
                    }
                    Poll::Ready(FallbackDone::Readable(res)) => {
                        // Whatever comes next (an armed receive, bytes taken
                        // now, an error), the other callers waiting on this
                        // wait (the op wakes only its last poller) must look
                        // again and register with it.
                        let others = std::mem::take(&mut s.fallback_waiters);
                        if let Err(e) = res {
                            drop(s);
                            others.into_iter().for_each(Waker::wake);
                            return Poll::Ready(Err(e));
                        }
                        others.into_iter().for_each(Waker::wake);
                        s.readable = true;
                        continue;
                    }
                    Poll::Pending => {
                        s.fallback = Some(f);
                        if !s.fallback_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                            s.fallback_waiters.push(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                }
            }
            let State {
                armed,
                moving,
                fallback,
                ..
            } = &mut *s;
            if let Some((cell, pool, ring_worker)) = armed.as_ref() {
                if !*moving && moved_from(*ring_worker) {
                    multishot::cancel(cell, cell.armed());
                    *moving = true;
                }
                match cell.poll_next(cx.waker()) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Next::Result(res, flags)) => match chunk(pool, res, flags) {
                        Chunk::Data(c) => return Poll::Ready(c),
                        // The pool was empty and the op ended: the bytes
                        // are still in the socket; receive them into an
                        // owned buffer, then re-arm.
                        Chunk::Empty => *fallback = Some(owned_recv(sock, pool.size() as usize)),
                        Chunk::Skip => {}
                    },
                    Poll::Ready(Next::Ended) => {
                        *armed = None;
                        *moving = false;
                    }
                }
                continue;
            }
            match arm(sock, std::mem::take(&mut s.readable)) {
                Armed::No(size) => s.fallback = Some(owned_recv(sock, size)),
                Armed::Low => s.fallback = Some(wait_readable(sock)),
                Armed::ReadNow(max) => match recv_now(sock, max) {
                    Ok(Some(v)) => {
                        let others = std::mem::take(&mut s.fallback_waiters);
                        drop(s);
                        others.into_iter().for_each(Waker::wake);
                        return Poll::Ready(Ok(RecvBuf::exact(v)));
                    }
                    // Spurious readiness: wait again.
                    Ok(None) => s.fallback = Some(wait_readable(sock)),
                    Err(e) => return Poll::Ready(Err(e)),
                },
                Armed::Failed(e) => return Poll::Ready(Err(e)),
                // Polled at the top of the loop: registers the waker.
                Armed::Yes(cell, pool, worker) => s.armed = Some((cell, pool, worker)),
            }
        }
    }
}

/// Whether the consumer now runs on another io_uring worker than the one
/// whose ring has `cell`'s op (a stolen task, a stream sent elsewhere).
fn moved_from(ring_worker: u64) -> bool {
    context::with_worker(|w| {
        w.id != ring_worker
            && match &*w.driver.borrow() {
                IoDriver::Uring(d) => d.can_recv_multishot(),
                IoDriver::Epoll(_) => false,
            }
    })
    .unwrap_or(false)
}

fn owned_recv(sock: &Socket, size: usize) -> Fallback {
    let sock = sock.clone();
    let buf = super::bufring::spare_take(size);
    Box::pin(async move {
        let (res, buf) = crate::net::ops::recv(&sock, buf).await;
        FallbackDone::Received(res, buf)
    })
}

thread_local! {
    /// Where `recv_now` receives before copying out exactly what came.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One non-blocking `recv(2)` of up to `max` bytes from a socket that was
/// just reported readable, into a buffer of exactly the size received (a
/// 64-byte message costs 64 bytes, not a pool-sized buffer). `None`: nothing
/// there after all. No receive op of this stream's `recv_pooled` is in
/// flight (its multishot ended and the wait completed), so the bytes stay
/// in order; a plain `read` racing on the same stream from another task
/// could take bytes in between, as with any two concurrent readers.
fn recv_now(sock: &Socket, max: usize) -> io::Result<Option<Vec<u8>>> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        scratch.reserve(max);
        let room = scratch.spare_capacity_mut();
        let len = room.len().min(max);
        // SAFETY: the kernel writes at most `len` bytes into `room`, which
        // has that much capacity and lives across the call; nothing else
        // touches the thread-local meanwhile (borrowed mutably).
        let n = unsafe {
            libc::recv(
                sock.raw(),
                room.as_mut_ptr().cast(),
                len,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: the kernel initialised the first `n` (≤ `len`) bytes.
        unsafe { scratch.set_len(n as usize) };
        Ok(Some(scratch.as_slice().to_vec()))
    })
}

fn wait_readable(sock: &Socket) -> Fallback {
    let sock = sock.clone();
    Box::pin(async move { FallbackDone::Readable(super::ops::readable(&sock).await) })
}

/// What one CQE of a multishot recv gives the caller.
enum Chunk {
    /// Bytes (empty: end of stream) or an error.
    Data(io::Result<RecvBuf>),
    /// The pool was empty (`ENOBUFS`) and the op ended.
    Empty,
    /// Nothing to hand out (an `ENOBUFS` the op continues after).
    Skip,
}

fn chunk(pool: &Arc<BufPool>, res: i32, flags: u32) -> Chunk {
    if res > 0 {
        let Some(bid) = io_uring::cqueue::buffer_select(flags) else {
            return Chunk::Data(Err(io::Error::other(
                "percore: a multishot recv completed without a buffer",
            )));
        };
        return Chunk::Data(Ok(pool.take(bid, res as usize)));
    }
    // A zero-length result carries no data; give back any buffer anyway.
    pool.discard(flags);
    match res {
        0 => Chunk::Data(Ok(RecvBuf::owned(Vec::new()))),
        // Kernels end the op here; one that did not would still be
        // receiving, and an owned receive beside it could reorder bytes.
        e if e == -libc::ENOBUFS && io_uring::cqueue::more(flags) => Chunk::Skip,
        e if e == -libc::ENOBUFS => {
            context::with_worker(|w| w.metrics.recv_fallbacks.bump());
            Chunk::Empty
        }
        e => Chunk::Data(Err(io::Error::from_raw_os_error(-e))),
    }
}

enum Armed {
    Yes(Arc<Multishot>, Arc<BufPool>, u64),
    /// Not available here: receive into an owned buffer of this size.
    No(usize),
    /// The pool is low and nothing says bytes are waiting: wait until the
    /// socket is readable, holding no buffer.
    Low,
    /// The pool is low and bytes are waiting: take up to this many now.
    ReadNow(usize),
    Failed(io::Error),
}

/// Owned-buffer size where no pool tells one.
const OWNED_SIZE: usize = 16 * 1024;

/// `readable`: the socket is known to have bytes waiting.
fn arm(sock: &Socket, readable: bool) -> Armed {
    context::with_worker(|w| {
        let mut driver = w.driver.borrow_mut();
        let IoDriver::Uring(ring) = &mut *driver else {
            return Armed::No(OWNED_SIZE);
        };
        if !ring.features().multishot {
            return Armed::No(OWNED_SIZE);
        }
        let Some(pool) = ring.buf_pool(w.id) else {
            return Armed::No(OWNED_SIZE);
        };
        // A pool running low would end the new op at once with ENOBUFS
        // (an arm, a failed CQE and a re-arm per message under load):
        // wait for bytes without a buffer, then receive them into an owned
        // one if buffers have not come back by then.
        if pool.available() < (usize::from(pool.count()) / 8).max(1) {
            if !readable {
                return Armed::Low;
            }
            w.metrics.recv_fallbacks.bump();
            return Armed::ReadNow(pool.size() as usize);
        }
        let discard = pool.clone();
        let cap = QUEUE_CAP.min(usize::from(pool.count()) / 8).max(1);
        let cell = Arc::new(Multishot::new(
            Box::new(move |_res, flags| discard.discard(flags)),
            cap,
        ));
        let entry = opcode::RecvMulti::new(types::Fd(sock.raw()), GROUP).build();
        let keep = Box::new(MultiRecvData {
            _socket: sock.clone(),
        });
        // SAFETY: no pointer of ours in the SQE; the kernel writes only pool
        // buffers, and the pool outlives every op that can select one (held
        // by the driver, leaked at teardown with ops in flight); the fd stays
        // open through `keep` until the final CQE.
        match unsafe { ring.start_multishot(entry, cell.clone(), keep, &w.metrics) } {
            Ok(slot) => {
                w.metrics.recv_arms.bump();
                cell.set_armed(w.id, w.remote.index, slot);
                Armed::Yes(cell, pool, w.id)
            }
            Err(e) => Armed::Failed(e),
        }
    })
    .unwrap_or(Armed::No(OWNED_SIZE))
}

impl Drop for MultiRecv {
    /// The stream is gone: queued chunks go back to the pool and the ring's
    /// worker cancels the op.
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        s.partial.clear();
        s.fallback = None;
        s.fallback_waiters.clear();
        if let Some((cell, _pool, _)) = s.armed.take() {
            super::multishot::release(cell);
        }
    }
}
