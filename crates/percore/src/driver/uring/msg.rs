//! Datagram operations as io_uring ops: `IORING_OP_SENDMSG` with a target
//! address (`send_to`) and `IORING_OP_RECVMSG` that reports the sender
//! (`recv_from`). The `msghdr` and its one `iovec` live in a box owned by
//! the op's resources, beside the buffer and the address they point at, so
//! none of them moves while the kernel may read or write it.

use std::io;

use io_uring::{opcode, types};

use super::ops::cqe_result;
use crate::driver::buf::{IoBuf, IoBufMut};
use crate::driver::op::{Op, OpData};
use crate::net::sockaddr::RawAddr;
use crate::net::socket::Socket;

/// A `msghdr` and the `iovec` it points at.
struct Header {
    msg: libc::msghdr,
    iov: libc::iovec,
}

// SAFETY: the raw pointers in a `Header` point only into the same op's
// resources (its own `iov`, the `RawAddr` box and the buffer of the
// `MsgData` that owns it), which move between threads together with it and
// are never shared.
unsafe impl Send for Header {}

impl Header {
    fn new() -> Box<Header> {
        // SAFETY: msghdr and iovec are plain old data; all-zero is valid.
        Box::new(unsafe { std::mem::zeroed() })
    }

    /// Points the header at `len` bytes at `ptr` and at `addr`.
    fn aim(&mut self, ptr: *mut u8, len: usize, addr: &mut RawAddr) {
        self.iov.iov_base = ptr.cast();
        self.iov.iov_len = len;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_name = (&mut addr.storage as *mut libc::sockaddr_storage).cast();
        self.msg.msg_namelen = addr.len;
    }
}

/// What a sendmsg or recvmsg op points at until its final CQE.
pub(crate) struct MsgData<B> {
    buf: B,
    addr: Box<RawAddr>,
    hdr: Box<Header>,
    _socket: Socket,
}

impl<B: 'static> OpData for MsgData<B> {}

/// Sends `buf[0..bytes_init]` as one datagram to `addr`.
pub(crate) async fn send_to<B: IoBuf>(
    socket: &Socket,
    buf: B,
    addr: Box<RawAddr>,
) -> (io::Result<usize>, B) {
    let fd = socket.raw();
    let data = MsgData {
        buf,
        addr,
        hdr: Header::new(),
        _socket: socket.clone(),
    };
    let op = Op::new(data, |d| {
        // The kernel only reads through this pointer (sendmsg).
        let ptr = d.buf.stable_ptr().cast_mut();
        d.hdr.aim(ptr, d.buf.bytes_init(), &mut d.addr);
        opcode::SendMsg::new(types::Fd(fd), &d.hdr.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    });
    let c = op.await;
    (cqe_result(c.res).map(|n| n as usize), c.data.buf)
}

/// Receives one datagram into `buf[0..bytes_total]` (the rest of a longer
/// one is discarded, as `recvfrom(2)` does) and the sender's address.
pub(crate) async fn recv_from<B: IoBufMut>(
    socket: &Socket,
    buf: B,
) -> (io::Result<(usize, Box<RawAddr>)>, B) {
    let fd = socket.raw();
    let data = MsgData {
        buf,
        addr: RawAddr::empty(),
        hdr: Header::new(),
        _socket: socket.clone(),
    };
    let op = Op::new(data, |d| {
        let (ptr, len) = (d.buf.stable_mut_ptr(), d.buf.bytes_total());
        d.hdr.aim(ptr, len, &mut d.addr);
        opcode::RecvMsg::new(types::Fd(fd), &mut d.hdr.msg).build()
    });
    let c = op.await;
    let MsgData {
        mut buf,
        mut addr,
        hdr,
        ..
    } = c.data;
    match cqe_result(c.res) {
        Ok(n) => {
            // SAFETY: the kernel wrote `n` bytes at the start of the buffer.
            unsafe { buf.set_init(n as usize) };
            // recvmsg wrote the address's length back into the header.
            addr.len = hdr.msg.msg_namelen;
            (Ok((n as usize, addr)), buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// The `iovec`s of a vectored send: pointers into the op's own buffers.
pub(crate) struct IoVecs(Vec<libc::iovec>);

// SAFETY: as for `Header`: the pointers point only into buffers owned by the
// same op's resources, which move with it and are not shared.
unsafe impl Send for IoVecs {}

// SAFETY: an `IoVecs` has no interior mutability; a shared reference only
// reads the pointer values (the epoll driver holds one across an await,
// passing them to `sendmsg`), never the memory they point at.
unsafe impl Sync for IoVecs {}

impl IoVecs {
    /// One `iovec` per buffer's initialized bytes, at most `IOV_MAX` of them.
    pub(crate) fn of<B: IoBuf>(bufs: &[B]) -> IoVecs {
        const IOV_MAX: usize = 1024;
        IoVecs(
            bufs.iter()
                .take(IOV_MAX)
                .map(|b| libc::iovec {
                    iov_base: b.stable_ptr().cast_mut().cast(),
                    iov_len: b.bytes_init(),
                })
                .collect(),
        )
    }

    pub(crate) fn as_slice(&self) -> &[libc::iovec] {
        &self.0
    }
}

/// What a vectored send points at until its final CQE.
pub(crate) struct VecData<B> {
    bufs: Vec<B>,
    iovs: IoVecs,
    hdr: Box<Header>,
    _socket: Socket,
}

impl<B: 'static> OpData for VecData<B> {}

/// Sends the initialized bytes of `bufs`, in order, with one `sendmsg`
/// (possibly only some of them); returns how many bytes went.
pub(crate) async fn send_vectored<B: IoBuf>(
    socket: &Socket,
    bufs: Vec<B>,
) -> (io::Result<usize>, Vec<B>) {
    let fd = socket.raw();
    let iovs = IoVecs::of(&bufs);
    let data = VecData {
        bufs,
        iovs,
        hdr: Header::new(),
        _socket: socket.clone(),
    };
    let op = Op::new(data, |d| {
        // The iovec array lives in its own heap allocation, never resized.
        d.hdr.msg.msg_iov = d.iovs.0.as_mut_ptr();
        d.hdr.msg.msg_iovlen = d.iovs.0.len();
        opcode::SendMsg::new(types::Fd(fd), &d.hdr.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    });
    let c = op.await;
    (cqe_result(c.res).map(|n| n as usize), c.data.bufs)
}
