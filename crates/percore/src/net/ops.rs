//! The socket operations, dispatched to the current worker's driver:
//! io_uring ops (`driver/uring/ops.rs`) or epoll readiness loops
//! (`driver/epoll/ops.rs`). Same semantics to the caller on both.

use std::io;
use std::os::fd::OwnedFd;

use crate::driver::buf::{IoBuf, IoBufMut};
use crate::driver::{epoll, uring, Driver};
use crate::net::sockaddr::RawAddr;
use crate::net::socket::Socket;
use crate::runtime::context;

pub(crate) fn current() -> Driver {
    context::with_worker(|w| w.driver.borrow().kind())
        .expect("percore I/O must run on a percore worker: use Runtime::block_on or spawn a task")
}

pub(crate) async fn accept(sock: &Socket) -> io::Result<(OwnedFd, Box<RawAddr>)> {
    match current() {
        Driver::Epoll => epoll::ops::accept(sock).await,
        _ => uring::ops::accept(sock).await,
    }
}

/// Connects `sock` (consumed: on failure it is closed).
pub(crate) async fn connect(sock: Socket, addr: Box<RawAddr>) -> io::Result<Socket> {
    match current() {
        Driver::Epoll => epoll::ops::connect(&sock, &addr).await.map(|()| sock),
        _ => uring::ops::connect(sock, addr).await,
    }
}

pub(crate) async fn recv<B: IoBufMut>(sock: &Socket, buf: B) -> (io::Result<usize>, B) {
    let total = buf.bytes_total();
    let (res, buf) = match current() {
        Driver::Epoll => epoll::ops::recv(sock, buf).await,
        _ => uring::ops::recv(sock, buf, sock.drained()).await,
    };
    // A read that did not fill the buffer emptied the socket.
    sock.set_drained(matches!(res, Ok(n) if n < total && n > 0));
    (res, buf)
}

/// Receives one datagram on a connected datagram socket. Unlike a stream
/// read, a short datagram says nothing about what is still queued, so the
/// socket's `drained` hint is neither read nor set.
pub(crate) async fn recv_datagram<B: IoBufMut>(sock: &Socket, buf: B) -> (io::Result<usize>, B) {
    match current() {
        Driver::Epoll => epoll::ops::recv(sock, buf).await,
        _ => uring::ops::recv(sock, buf, false).await,
    }
}

/// `read(2)` of a non-blocking, non-socket fd (the signalfd of
/// `signal::Signals`) once it is readable. The read itself is always the
/// caller's own syscall, never an op in flight: a dropped future then
/// consumes nothing (an io_uring read op would take a signal off the
/// signalfd and lose it with the dropped future).
pub(crate) async fn read_when_ready<B: IoBufMut>(
    sock: &Socket,
    mut buf: B,
) -> (io::Result<usize>, B) {
    if current() == Driver::Epoll {
        return epoll::ops::read(sock, buf).await;
    }
    loop {
        if let Err(e) = uring::ops::readable(sock).await {
            return (Err(e), buf);
        }
        let len = buf.bytes_total();
        // SAFETY: the pointer is valid for `bytes_total` bytes of writes
        // (IoBufMut) and `buf` outlives the call.
        let n = unsafe { libc::read(sock.raw(), buf.stable_mut_ptr().cast(), len) };
        if n >= 0 {
            // SAFETY: the kernel wrote `n` bytes at the start of the buffer.
            unsafe { buf.set_init(n as usize) };
            return (Ok(n as usize), buf);
        }
        let e = io::Error::last_os_error();
        if !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ) {
            return (Err(e), buf);
        }
    }
}

pub(crate) async fn send<B: IoBuf>(sock: &Socket, buf: B) -> (io::Result<usize>, B) {
    match current() {
        Driver::Epoll => epoll::ops::send(sock, buf).await,
        _ => uring::ops::send(sock, buf).await,
    }
}

/// Sends one datagram to `addr`.
pub(crate) async fn send_to<B: IoBuf>(
    sock: &Socket,
    buf: B,
    addr: Box<RawAddr>,
) -> (io::Result<usize>, B) {
    match current() {
        Driver::Epoll => epoll::ops::send_to(sock, buf, &addr).await,
        _ => uring::msg::send_to(sock, buf, addr).await,
    }
}

/// Receives one datagram and its sender's address.
pub(crate) async fn recv_from<B: IoBufMut>(
    sock: &Socket,
    buf: B,
) -> (io::Result<(usize, Box<RawAddr>)>, B) {
    match current() {
        Driver::Epoll => epoll::ops::recv_from(sock, buf).await,
        _ => uring::msg::recv_from(sock, buf).await,
    }
}

/// Sends several buffers' bytes in order with one syscall or op.
pub(crate) async fn send_vectored<B: IoBuf>(
    sock: &Socket,
    bufs: Vec<B>,
) -> (io::Result<usize>, Vec<B>) {
    match current() {
        Driver::Epoll => epoll::ops::send_vectored(sock, bufs).await,
        _ => uring::msg::send_vectored(sock, bufs).await,
    }
}

/// A zero-copy send where the worker's ring has it (Linux 6.0+), else a
/// plain send.
pub(crate) async fn send_zc<B: IoBuf>(sock: &Socket, buf: B) -> (io::Result<usize>, B) {
    let zc = context::with_worker(|w| match &*w.driver.borrow() {
        crate::driver::IoDriver::Uring(d) => d.features().multishot,
        crate::driver::IoDriver::Epoll(_) => false,
    })
    .unwrap_or(false);
    if zc {
        uring::ops::send_zc(sock, buf).await
    } else {
        send(sock, buf).await
    }
}

/// One round trip through the current worker's driver: a no-op SQE and its
/// completion on io_uring; a yield to the back of the run queue on epoll.
pub async fn nop() -> io::Result<()> {
    match current() {
        Driver::Epoll => {
            crate::task::yield_now().await;
            Ok(())
        }
        _ => uring::ops::nop().await,
    }
}
