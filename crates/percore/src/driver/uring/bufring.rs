//! A worker's provided-buffer ring (`IORING_REGISTER_PBUF_RING`): a pool
//! of equal buffers the kernel picks from when a multishot recv has data,
//! so a connection without data holds no buffer.
//!
//! Memory: two anonymous mappings owned by the [`BufPool`]: the ring of
//! `io_uring_buf` entries (registered with the worker's ring as buffer
//! group [`GROUP`]) and the buffers themselves (`count × size` bytes, pages
//! touched only when the kernel first fills them).
//!
//! Ownership of buffer `bid` moves in a circle: in the ring (the kernel may
//! write it) → handed out by a CQE carrying `bid` (a [`PooledBuf`] owns it;
//! the kernel will not touch it) → given back on drop, which appends it to
//! the ring again. Only the owning worker's thread appends (the ring's tail
//! is single-producer); a buffer dropped on another thread goes through the
//! pool's `returned` queue, which the owning worker drains each loop pass.
//!
//! The pool lives as long as its longest holder (`Arc`): the driver, and
//! every `PooledBuf` out. A driver torn down with multishot recvs still in
//! flight leaks its reference, so the kernel can never write freed memory.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering::Release};
use std::sync::Arc;

use crossbeam_queue::SegQueue;

/// The buffer group id of every worker's pool (one pool per ring).
pub(crate) const GROUP: u16 = 0;

/// One `struct io_uring_buf` (linux/io_uring.h). In entry 0, `resv` is the
/// ring's tail, written by the application and read by the kernel.
#[repr(C)]
struct RawEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// An anonymous, private, read-write mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous mapping with no address hint touches no
        // existing memory; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).expect("mmap returned null"),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes; nobody uses it any more
        // (the pool that owns it is being dropped: no buffer is out and no
        // ring can pick one; see the module docs).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A worker's provided-buffer pool.
pub(crate) struct BufPool {
    entries: Mapping,
    buffers: Mapping,
    count: u16,
    size: u32,
    /// The owning worker's process-unique id: the only thread that appends.
    worker: u64,
    /// Next tail value; touched only by the owning worker's thread.
    tail: std::cell::Cell<u16>,
    /// Buffers in the ring (appended, not yet picked by the kernel): owner
    /// thread only, counted down as the driver reaps CQEs carrying a
    /// buffer. Arming stops while it is low (`recv.rs`).
    in_ring: std::cell::Cell<usize>,
    /// Buffers given back on other threads, appended by the owner later.
    returned: SegQueue<u16>,
}

// SAFETY: the only non-thread-safe state is `tail` and the ring entries,
// which only the owning worker's thread touches (`give_back` checks the
// current worker's id; every other caller goes through `returned`, a
// lock-free queue). The buffer memory of a handed-out `bid` is touched only
// through the one `PooledBuf` that owns it.
unsafe impl Send for BufPool {}
// SAFETY: as above.
unsafe impl Sync for BufPool {}

impl BufPool {
    /// Maps `count` buffers of `size` bytes (count a power of two, at most
    /// 32768) and registers them with `ring` as group [`GROUP`], all
    /// available to the kernel.
    pub(crate) fn new(
        ring: &io_uring::IoUring,
        worker: u64,
        count: u16,
        size: u32,
    ) -> io::Result<Arc<BufPool>> {
        assert!(count.is_power_of_two() && count <= 1 << 15 && size > 0);
        let entries = Mapping::new(usize::from(count) * std::mem::size_of::<RawEntry>())?;
        let buffers = Mapping::new(usize::from(count) * size as usize)?;
        let pool = Arc::new(BufPool {
            entries,
            buffers,
            count,
            size,
            worker,
            tail: std::cell::Cell::new(0),
            in_ring: std::cell::Cell::new(0),
            returned: SegQueue::new(),
        });
        for bid in 0..count {
            pool.append(bid);
        }
        pool.publish();
        // SAFETY: the entries mapping is page-aligned, `count` entries long,
        // and lives as long as the pool, which outlives the registration
        // (the driver holds it until the ring is closed, or leaks it).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                pool.entries.ptr.as_ptr() as u64,
                count,
                GROUP,
                0,
            )?
        };
        Ok(pool)
    }

    /// Owner thread, at a reaped CQE carrying one of this pool's buffers:
    /// the kernel took it from the ring.
    pub(crate) fn kernel_took(&self) {
        self.in_ring.set(self.in_ring.get().saturating_sub(1));
    }

    /// Owner thread: buffers the kernel can still pick (after giving back
    /// the ones returned on other threads).
    pub(crate) fn available(&self) -> usize {
        self.take_returned();
        self.in_ring.get()
    }

    /// Number of buffers.
    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// Size of each buffer.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    fn entry(&self, i: u16) -> *mut RawEntry {
        let i = usize::from(i & (self.count - 1));
        // SAFETY: `i < count`, within the entries mapping.
        unsafe { self.entries.ptr.as_ptr().cast::<RawEntry>().add(i) }
    }

    /// Start of buffer `bid`.
    fn buffer(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.count);
        // SAFETY: `bid < count`: within the buffers mapping.
        unsafe {
            self.buffers
                .ptr
                .as_ptr()
                .add(usize::from(bid) * self.size as usize)
        }
    }

    /// Owner thread only: writes buffer `bid` at the tail (not yet visible
    /// to the kernel; see `publish`).
    fn append(&self, bid: u16) {
        let tail = self.tail.get();
        let e = self.entry(tail);
        // SAFETY: owner thread only (callers); the entry at `tail` is not
        // one the kernel may read (it reads only between head and the
        // published tail). Fields are written one by one so entry 0's
        // `resv` (the shared tail) is never overwritten.
        unsafe {
            (&raw mut (*e).addr).write(self.buffer(bid) as u64);
            (&raw mut (*e).len).write(self.size);
            (&raw mut (*e).bid).write(bid);
        }
        self.tail.set(tail.wrapping_add(1));
        self.in_ring.set(self.in_ring.get() + 1);
    }

    /// Owner thread only: makes every appended entry visible to the kernel.
    fn publish(&self) {
        // SAFETY: entry 0's `resv` is the ring's tail, a u16 the kernel
        // reads with acquire semantics; 2-byte aligned inside our mapping.
        let shared = unsafe { AtomicU16::from_ptr(&raw mut (*self.entry(0)).resv) };
        shared.store(self.tail.get(), Release);
    }

    /// Gives buffer `bid` back: appended now on the owning worker's
    /// thread, else queued for it.
    fn give_back(&self, bid: u16) {
        let here = crate::runtime::context::with_worker(|w| w.id == self.worker).unwrap_or(false);
        if here {
            self.append(bid);
            self.publish();
        } else {
            self.returned.push(bid);
        }
    }

    /// Owner thread: appends the buffers given back elsewhere.
    pub(crate) fn take_returned(&self) {
        if self.returned.is_empty() {
            return;
        }
        while let Some(bid) = self.returned.pop() {
            self.append(bid);
        }
        self.publish();
    }

    /// A buffer the kernel filled with `len` bytes (a CQE's result and the
    /// `bid` its flags carried): its ownership passes to the caller.
    pub(crate) fn take(self: &Arc<Self>, bid: u16, len: usize) -> RecvBuf {
        assert!(bid < self.count && len <= self.size as usize);
        RecvBuf {
            kind: Kind::Pooled {
                pool: self.clone(),
                bid,
            },
            start: 0,
            end: len,
        }
    }

    /// Gives back the buffer a CQE handed out, if any (a result nobody
    /// takes).
    pub(crate) fn discard(&self, flags: u32) {
        if let Some(bid) = io_uring::cqueue::buffer_select(flags) {
            if bid < self.count {
                self.give_back(bid);
            }
        }
    }
}

/// Bytes received by [`TcpStream::recv_pooled`]: in a buffer of the
/// worker's provided-buffer pool, which goes back to the pool when this is
/// dropped (on any thread), or, when the pool was empty or is not
/// available (the epoll driver), in an owned `Vec`.
///
/// It dereferences to the received bytes and is itself an [`IoBuf`], so it
/// can be written out again without a copy.
///
/// [`TcpStream::recv_pooled`]: crate::net::TcpStream::recv_pooled
/// [`IoBuf`]: crate::IoBuf
pub struct RecvBuf {
    kind: Kind,
    /// The unread bytes are `start..end` of the buffer.
    start: usize,
    end: usize,
}

enum Kind {
    Pooled {
        pool: Arc<BufPool>,
        bid: u16,
    },
    /// `spare`: goes to the thread's spare list when dropped (a buffer
    /// sized for owned receives, not one cut to its bytes).
    Owned {
        v: Vec<u8>,
        spare: bool,
    },
}

impl RecvBuf {
    /// Received bytes in an owned buffer (`v`'s initialized bytes).
    pub(crate) fn owned(v: Vec<u8>) -> RecvBuf {
        let end = v.len();
        RecvBuf {
            kind: Kind::Owned { v, spare: true },
            start: 0,
            end,
        }
    }

    /// Received bytes in a buffer of exactly their size: freed when
    /// dropped, never kept as a spare (it would not fit the next receive).
    pub(crate) fn exact(v: Vec<u8>) -> RecvBuf {
        let end = v.len();
        RecvBuf {
            kind: Kind::Owned { v, spare: false },
            start: 0,
            end,
        }
    }

    /// Whether the bytes sit in the worker's provided-buffer pool (else in
    /// an owned buffer).
    pub fn is_pooled(&self) -> bool {
        matches!(self.kind, Kind::Pooled { .. })
    }

    fn base(&self) -> *const u8 {
        match &self.kind {
            Kind::Pooled { pool, bid } => pool.buffer(*bid),
            Kind::Owned { v, .. } => v.as_ptr(),
        }
    }

    /// Drops the first `n` unread bytes (a reader took them).
    pub(crate) fn consume(&mut self, n: usize) {
        assert!(n <= self.end - self.start);
        self.start += n;
    }
}

impl std::ops::Deref for RecvBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: a pooled buffer is owned by this value (the kernel handed
        // it out and will not touch it until it is given back) and the
        // kernel wrote `end` bytes into it; an owned one has `end`
        // initialized bytes. `start <= end`.
        unsafe { std::slice::from_raw_parts(self.base().add(self.start), self.end - self.start) }
    }
}

// SAFETY: the pointer is into the pool's mapping (alive as long as the
// `Arc` this value holds) or a `Vec`'s heap memory, so it does not move
// with the value; `start..end` are initialized and never change.
unsafe impl crate::IoBuf for RecvBuf {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `start <= end <= ` the buffer's length.
        unsafe { self.base().add(self.start) }
    }

    fn bytes_init(&self) -> usize {
        self.end - self.start
    }

    fn bytes_total(&self) -> usize {
        self.end - self.start
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        match &mut self.kind {
            Kind::Pooled { pool, bid } => pool.give_back(*bid),
            Kind::Owned { v, spare: true } => spare_put(std::mem::take(v)),
            Kind::Owned { spare: false, .. } => {}
        }
    }
}

/// Owned receive buffers kept for reuse on this thread, so a stream that
/// receives into owned buffers while the pool is low (many connections
/// with data at once) does not allocate and free one per message.
const SPARES: usize = 64;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn spare_put(mut v: Vec<u8>) {
    // Only workers receive into owned buffers: elsewhere a spare would
    // never be taken again.
    if v.capacity() < 512 || crate::runtime::context::with_worker(|_| ()).is_none() {
        return;
    }
    v.clear();
    let _ = SPARE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < SPARES {
                s.push(v);
            }
        }
    });
}

/// An empty buffer of at least `size` bytes' capacity, reused if one is
/// spare on this thread.
pub(crate) fn spare_take(size: usize) -> Vec<u8> {
    SPARE
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let i = s.iter().rposition(|v| v.capacity() >= size)?;
            Some(s.swap_remove(i))
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(size))
}

impl std::fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBuf")
            .field("len", &(self.end - self.start))
            .field("pooled", &self.is_pooled())
            .finish()
    }
}
