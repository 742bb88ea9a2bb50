//! A global allocator that catches writes into freed memory.
//!
//! Every freed block is filled with a poison byte (its first `CHECK_CAP`
//! bytes) and held in a FIFO quarantine instead of being returned to the
//! system allocator, so nothing reuses it for a while. When a block leaves
//! the quarantine (or at [`flush`]) its poison is checked: a byte that
//! changed was written after the free, which in this runtime can only be
//! the kernel completing an op into a buffer percore freed too early
//! (PITFALLS 1). Such blocks are counted and the first one is described.
//!
//! The allocator never allocates itself: the quarantine is a fixed array
//! behind a spin lock.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

const POISON: u8 = 0xDB;
/// Blocks held at once.
const SLOTS: usize = 1 << 15;
/// Bytes held at once (sizes of whole blocks).
const MAX_BYTES: usize = 256 << 20;
/// Bytes poisoned and checked per block (the head; recv writes start there).
const CHECK_CAP: usize = 256 << 10;

pub struct Quarantine;

#[derive(Clone, Copy)]
struct Entry {
    ptr: usize,
    size: usize,
    align: usize,
}

struct Ring {
    entries: [Entry; SLOTS],
    head: usize,
    len: usize,
    bytes: usize,
}

struct Locked(UnsafeCell<Ring>);
// SAFETY: the ring is only touched while LOCK is held.
unsafe impl Sync for Locked {}

static LOCK: AtomicBool = AtomicBool::new(false);
static RING: Locked = Locked(UnsafeCell::new(Ring {
    entries: [Entry {
        ptr: 0,
        size: 0,
        align: 1,
    }; SLOTS],
    head: 0,
    len: 0,
    bytes: 0,
}));
static CORRUPTED: AtomicUsize = AtomicUsize::new(0);
static FIRST_SIZE: AtomicUsize = AtomicUsize::new(0);
static FIRST_OFFSET: AtomicUsize = AtomicUsize::new(0);
static CHECKED: AtomicUsize = AtomicUsize::new(0);

fn with_ring<R>(f: impl FnOnce(&mut Ring) -> R) -> R {
    while LOCK
        .compare_exchange_weak(false, true, Acquire, Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
    // SAFETY: LOCK is held, so this is the only reference.
    let r = f(unsafe { &mut *RING.0.get() });
    LOCK.store(false, Release);
    r
}

/// Checks a block's poison and returns it to the system allocator.
///
/// # Safety
///
/// `e` was freed by the program and quarantined by `dealloc`.
unsafe fn release(e: Entry) {
    let n = e.size.min(CHECK_CAP);
    // SAFETY: the block is still allocated from the system's view (we hold
    // it), `n` bytes long at least.
    let bytes = unsafe { std::slice::from_raw_parts(e.ptr as *const u8, n) };
    if let Some(off) = bytes.iter().position(|&b| b != POISON) {
        if CORRUPTED.fetch_add(1, Relaxed) == 0 {
            FIRST_SIZE.store(e.size, Relaxed);
            FIRST_OFFSET.store(off, Relaxed);
        }
    }
    CHECKED.fetch_add(1, Relaxed);
    // SAFETY: the layout the block was allocated with.
    unsafe {
        System.dealloc(
            e.ptr as *mut u8,
            Layout::from_size_align_unchecked(e.size, e.align),
        )
    };
}

// SAFETY: allocation is System's; dealloc defers System's dealloc with the
// same layout; realloc uses the default (alloc, copy, dealloc).
unsafe impl GlobalAlloc for Quarantine {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        // SAFETY: the program no longer uses the block; it is ours to fill.
        unsafe { std::ptr::write_bytes(ptr, POISON, layout.size().min(CHECK_CAP)) };
        let entry = Entry {
            ptr: ptr as usize,
            size: layout.size(),
            align: layout.align(),
        };
        let mut evicted = [None; 4];
        with_ring(|r| {
            let tail = (r.head + r.len) % SLOTS;
            r.entries[tail] = entry;
            r.len += 1;
            r.bytes += entry.size;
            // Keep room: evict the oldest (at most a few per free).
            for slot in &mut evicted {
                if r.len < SLOTS && r.bytes <= MAX_BYTES {
                    break;
                }
                let e = r.entries[r.head];
                r.head = (r.head + 1) % SLOTS;
                r.len -= 1;
                r.bytes -= e.size;
                *slot = Some(e);
            }
        });
        for e in evicted.into_iter().flatten() {
            // SAFETY: a quarantined block.
            unsafe { release(e) };
        }
    }
}

/// Checks and releases everything in quarantine.
pub fn flush() {
    loop {
        let next = with_ring(|r| {
            if r.len == 0 {
                return None;
            }
            let e = r.entries[r.head];
            r.head = (r.head + 1) % SLOTS;
            r.len -= 1;
            r.bytes -= e.size;
            Some(e)
        });
        match next {
            // SAFETY: a quarantined block.
            Some(e) => unsafe { release(e) },
            None => return,
        }
    }
}

/// Blocks found written after their free, blocks checked, and a
/// description of the first corrupted one.
pub fn report() -> (usize, usize, String) {
    (
        CORRUPTED.load(Relaxed),
        CHECKED.load(Relaxed),
        format!(
            "first corrupted block: {} bytes, first changed byte at offset {}",
            FIRST_SIZE.load(Relaxed),
            FIRST_OFFSET.load(Relaxed)
        ),
    )
}
