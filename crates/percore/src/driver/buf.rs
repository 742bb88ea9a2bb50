//! Owned buffers that may be handed to the kernel.
//!
//! An I/O operation takes its buffer by value and hands it back with the
//! result: `let (res, buf) = stream.read(buf).await;`. While the kernel may
//! touch the memory, the runtime owns the buffer (see `driver/op.rs`), so no
//! safe code can read, write, move or free that memory early.

use std::ops::{Bound, RangeBounds};

/// A buffer whose initialized bytes the kernel may read (e.g. `write`).
///
/// # Safety
///
/// Implementors promise that:
/// - `stable_ptr()` points to memory valid for reads of `bytes_total()` bytes,
///   of which the first `bytes_init()` are initialized;
/// - that pointer and that memory stay valid and unchanged **while the value
///   is alive, even if the value itself is moved** (heap storage, or
///   `'static` data) — an array stored inline in the value does not qualify;
/// - `bytes_init() <= bytes_total()`, and neither changes except through
///   [`IoBufMut::set_init`].
pub unsafe trait IoBuf: Unpin + 'static {
    /// Start of the buffer's memory.
    fn stable_ptr(&self) -> *const u8;
    /// Number of initialized bytes (what a write sends).
    fn bytes_init(&self) -> usize;
    /// Capacity: the number of bytes a read may fill.
    fn bytes_total(&self) -> usize;

    /// A window `range` of this buffer, itself a buffer; `into_inner` gives the
    /// whole buffer back. Panics if the range is outside `0..bytes_total()`.
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n + 1,
            Bound::Excluded(&n) => n,
            Bound::Unbounded => self.bytes_total(),
        };
        assert!(
            begin <= end && end <= self.bytes_total(),
            "slice {begin}..{end} out of bounds for a buffer of {} bytes",
            self.bytes_total()
        );
        Slice {
            buf: self,
            begin,
            end,
        }
    }
}

/// A buffer the kernel may write into (e.g. `read`).
///
/// ## What a read does to the buffer
///
/// A read writes the received bytes at the start of the buffer (of the
/// window, for a [`Slice`]) and then marks them initialized with
/// [`set_init`](IoBufMut::set_init), which only ever *grows* the initialized
/// length. So after `Ok(n)`:
/// - `buf[..n]` holds the bytes received;
/// - a `Vec` that was empty has `len() == n`; a `Vec` that already held more
///   than `n` bytes keeps its length, and its bytes from `n` on are the old
///   ones. Clear a `Vec` before reusing it for a read (or slice the unread
///   part) if you want `len()` to say how much arrived;
/// - a read into `vec.slice(begin..)` where `begin` is past `vec.len()`
///   zero-fills `vec[len..begin]` first, so the `Vec` never exposes bytes
///   that nobody wrote.
///
/// # Safety
///
/// Everything [`IoBuf`] promises, plus: `stable_mut_ptr()` is the same
/// address as `stable_ptr()` and is valid for writes of `bytes_total()` bytes.
pub unsafe trait IoBufMut: IoBuf {
    /// Start of the buffer's memory, for writing.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Marks the first `pos` bytes as initialized (grows, never shrinks).
    ///
    /// # Safety
    ///
    /// The first `pos` bytes must really be initialized.
    unsafe fn set_init(&mut self, pos: usize);

    /// Zeroes the bytes from the initialized length up to `upto` and marks
    /// them initialized (a [`Slice`] does this before a window past the
    /// initialized part is marked initialized). The default writes through
    /// `stable_mut_ptr`; a type whose pointer is not valid for Rust writes
    /// past its initialized length overrides it.
    fn zero_init_to(&mut self, upto: usize) {
        let init = self.bytes_init();
        if init >= upto {
            return;
        }
        assert!(upto <= self.bytes_total(), "zero_init_to past the capacity");
        // SAFETY: `init..upto` lies inside the buffer, which is valid for
        // writes of bytes_total bytes (IoBufMut); the bytes are then zeros.
        unsafe {
            std::ptr::write_bytes(self.stable_mut_ptr().add(init), 0, upto - init);
            self.set_init(upto);
        }
    }
}

// SAFETY: a Vec's heap allocation does not move when the Vec moves, and it is
// only reallocated through `&mut Vec`, which the runtime holds while in flight.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: same allocation as `stable_ptr`, capacity bytes writable.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len() < pos {
            // SAFETY: the caller guarantees the first `pos` bytes are
            // initialized, and pos <= capacity by the IoBuf contract.
            unsafe { self.set_len(pos) };
        }
    }
}

// SAFETY: a boxed slice is a fixed heap allocation, fully initialized.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: same allocation as `stable_ptr`, all of it writable.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _pos: usize) {}
}

// SAFETY: 'static data never moves and is never freed.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: 'static data never moves and is never freed.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

/// A window `begin..end` of a buffer, used as a buffer of its own: I/O on a
/// slice reads or writes only the window (e.g. the unsent tail in
/// `write_all`). Built with [`IoBuf::slice`].
#[derive(Debug)]
pub struct Slice<T> {
    buf: T,
    begin: usize,
    end: usize,
}

impl<T> Slice<T> {
    /// Offset of the window's start in the whole buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }
    /// Offset of the window's end in the whole buffer.
    pub fn end(&self) -> usize {
        self.end
    }
    /// The whole underlying buffer.
    pub fn get_ref(&self) -> &T {
        &self.buf
    }
    /// Gives the whole buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

// SAFETY: the window lies inside the inner buffer (checked in `slice`), whose
// memory is stable by its own IoBuf contract.
unsafe impl<T: IoBuf> IoBuf for Slice<T> {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr().wrapping_add(self.begin)
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init().clamp(self.begin, self.end) - self.begin
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
}

// SAFETY: as for IoBuf; writes stay inside the window.
unsafe impl<T: IoBufMut> IoBufMut for Slice<T> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.buf.stable_mut_ptr().wrapping_add(self.begin)
    }
    /// Marks `begin..begin + pos` of the whole buffer initialized. If the
    /// window starts past the whole buffer's initialized length, the gap
    /// between them is zeroed first: growing the initialized length over it
    /// would otherwise expose bytes nobody wrote.
    unsafe fn set_init(&mut self, pos: usize) {
        if pos == 0 {
            return;
        }
        // begin <= end <= bytes_total (checked in `slice`); no op is using
        // the buffer now.
        self.buf.zero_init_to(self.begin);
        // SAFETY: the caller initialized `pos` bytes from the window start,
        // and everything before the window is initialized (above).
        unsafe { self.buf.set_init(self.begin + pos) };
    }
}

// SAFETY: a `Bytes` never stores its bytes inline: it points at a heap
// allocation (shared by its clones, freed after the last) or at 'static
// data, so moving it moves no byte; its contents never change.
#[cfg(feature = "bytes")]
unsafe impl IoBuf for bytes::Bytes {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: a `BytesMut` keeps its bytes in a heap allocation that does not
// move when it moves, and is only reallocated through `&mut BytesMut`,
// which the runtime holds while in flight.
#[cfg(feature = "bytes")]
unsafe impl IoBuf for bytes::BytesMut {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: same allocation as `stable_ptr`, capacity bytes writable by the
// kernel. `BytesMut` offers no raw pointer whose Rust provenance covers its
// spare capacity (its `as_mut_ptr` comes from a `&mut [u8]` of `len`), so
// Rust code never writes past `len` through it: the one place percore
// would, `zero_init_to`, is overridden with `resize`.
#[cfg(feature = "bytes")]
unsafe impl IoBufMut for bytes::BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn zero_init_to(&mut self, upto: usize) {
        if self.len() < upto {
            assert!(upto <= self.capacity(), "zero_init_to past the capacity");
            // Within the capacity: no reallocation, the memory stays put.
            self.resize(upto, 0);
        }
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len() < pos {
            // SAFETY: the caller guarantees the first `pos` bytes are
            // initialized, and pos <= capacity by the IoBuf contract.
            unsafe { self.set_len(pos) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_window_reports_its_own_lengths() {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(b"hello world");
        let s = v.slice(6..);
        assert_eq!(s.bytes_init(), 5);
        assert_eq!(s.bytes_total(), s.get_ref().capacity() - 6);
        let s = s.into_inner().slice(2..4);
        assert_eq!(s.bytes_init(), 2);
        assert_eq!(s.bytes_total(), 2);
    }

    #[test]
    fn init_past_the_initialized_length_zeroes_the_gap() {
        let mut v: Vec<u8> = Vec::with_capacity(16);
        v.resize(16, 0x5A);
        v.clear();
        let mut s = v.slice(8..);
        // SAFETY: writes 2 bytes inside the window, then marks them.
        unsafe {
            s.stable_mut_ptr().write_bytes(b'x', 2);
            s.set_init(2);
        }
        let v = s.into_inner();
        assert_eq!(v, [0, 0, 0, 0, 0, 0, 0, 0, b'x', b'x']);
        // Nothing received: nothing marked, no gap filled.
        let mut s = Vec::<u8>::with_capacity(8).slice(4..);
        // SAFETY: zero bytes marked.
        unsafe { s.set_init(0) };
        assert!(s.into_inner().is_empty());
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn slice_past_capacity_panics() {
        let v: Vec<u8> = Vec::with_capacity(4);
        let cap = v.capacity();
        let _ = v.slice(..cap + 1);
    }
}
