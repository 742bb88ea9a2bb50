//! Socket operations on the epoll driver: clear the cached readiness, try
//! the non-blocking syscall, and on `EAGAIN` wait for the next edge.
//!
//! Buffers never leave the future here (the kernel copies during the
//! syscall), so dropping an operation frees its buffer at once; the only
//! thing to undo is the stored waker.

use std::future::Future;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::Interest;
use crate::driver::buf::{IoBuf, IoBufMut};
use crate::net::sockaddr::RawAddr;
use crate::net::socket::Socket;
use crate::runtime::context;
use crate::sched::mail::Mail;
use crate::sched::registry;
use crate::task::coop;

fn with_epoll<R>(f: impl FnOnce(&mut super::Driver) -> R) -> R {
    context::with_worker(|w| {
        let mut d = w.driver.borrow_mut();
        f(d.epoll().expect("epoll op on a worker that runs io_uring"))
    })
    .expect("percore I/O must run on a percore worker: use Runtime::block_on or spawn a task")
}

/// Waits for the next readiness edge of `fd` on the current worker.
struct Ready {
    fd: RawFd,
    interest: Interest,
    waiting: bool,
}

impl Future for Ready {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (fd, interest) = (self.fd, self.interest);
        let r = with_epoll(|d| d.poll_ready(fd, interest, cx.waker()));
        self.waiting = r.is_pending();
        r
    }
}

/// Runs no user code: the stored waker is retired to the driver, which the
/// worker drops later under its user-code guard.
impl Drop for Ready {
    fn drop(&mut self) {
        if self.waiting {
            let (fd, interest) = (self.fd, self.interest);
            context::with_worker(|w| {
                if let Ok(mut d) = w.driver.try_borrow_mut() {
                    if let Some(d) = d.epoll() {
                        d.unwait(fd, interest);
                    }
                }
            });
        }
    }
}

/// Retries `attempt` until it does not return `WouldBlock`.
async fn retry<T>(
    sock: &Socket,
    interest: Interest,
    mut attempt: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    // A syscall that succeeds at once never makes the task wait: take
    // turns with the worker's other tasks (`task/coop.rs`).
    std::future::poll_fn(|cx| coop::poll_budget(cx)).await;
    let fd = sock.raw();
    loop {
        let moved = context::with_worker(|w| -> io::Result<_> {
            let mut d = w.driver.borrow_mut();
            let d = d.epoll().expect("epoll op on a worker that runs io_uring");
            let token = d.register(fd, sock.token())?;
            d.clear(fd, interest);
            Ok(sock.set_token(token, w.id))
        })
        .expect(
            "percore I/O must run on a percore worker: use Runtime::block_on or spawn a task",
        )?;
        // The socket was registered on another worker (its task moved):
        // that worker forgets it, so it neither keeps delivering the fd's
        // edges there nor holds this task's wakers.
        if let Some((worker, token)) = moved {
            if let Some(old) = registry::find(worker) {
                old.post(Mail::Deregister {
                    fd,
                    token,
                    keep: Some(sock.clone()),
                });
            }
        }
        match attempt() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Ready {
                    fd,
                    interest,
                    waiting: false,
                }
                .await
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => {
                coop::consume();
                return r;
            }
        }
    }
}

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

pub(crate) async fn accept(sock: &Socket) -> io::Result<(OwnedFd, Box<RawAddr>)> {
    let mut addr = RawAddr::empty();
    let fd = retry(sock, Interest::Read, || {
        addr.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: storage and len point into `addr`, alive for the call.
        let r = unsafe {
            libc::accept4(
                sock.raw(),
                (&mut addr.storage as *mut libc::sockaddr_storage).cast(),
                &mut addr.len,
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        cvt(r as isize)
    })
    .await?;
    // SAFETY: accept4 returned a new fd that nobody owns.
    Ok((unsafe { OwnedFd::from_raw_fd(fd as RawFd) }, addr))
}

pub(crate) async fn connect(sock: &Socket, addr: &RawAddr) -> io::Result<()> {
    // SAFETY: `addr` is a valid sockaddr of `addr.len` bytes.
    let r = unsafe { libc::connect(sock.raw(), addr.ptr(), addr.len) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EINPROGRESS) {
        return Err(e);
    }
    // Connected (or failed) when writable; SO_ERROR says which.
    retry(sock, Interest::Write, || {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: out-pointers to live locals of the right size.
        let r = unsafe {
            libc::getsockopt(
                sock.raw(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        cvt(r as isize)?;
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
        // Still in progress (a spurious edge): wait for the next one.
        let mut peer = RawAddr::empty();
        // SAFETY: out-pointers into `peer`, alive for the call.
        let r = unsafe {
            libc::getpeername(
                sock.raw(),
                (&mut peer.storage as *mut libc::sockaddr_storage).cast(),
                &mut peer.len,
            )
        };
        if r < 0 {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(())
    })
    .await
}

pub(crate) async fn recv<B: IoBufMut>(sock: &Socket, mut buf: B) -> (io::Result<usize>, B) {
    let b = &mut buf;
    let res = retry(sock, Interest::Read, || {
        let len = b.bytes_total();
        // SAFETY: the pointer is valid for `bytes_total` bytes of writes
        // (IoBufMut) and `buf` outlives the call.
        cvt(unsafe {
            libc::recv(
                sock.raw(),
                b.stable_mut_ptr().cast(),
                len,
                libc::MSG_DONTWAIT,
            )
        })
    })
    .await;
    if let Ok(n) = res {
        // SAFETY: the kernel wrote `n` bytes at the start of the buffer.
        unsafe { buf.set_init(n) };
    }
    (res, buf)
}

/// `read(2)` on a non-socket fd (a signalfd) when it is readable.
pub(crate) async fn read<B: IoBufMut>(sock: &Socket, mut buf: B) -> (io::Result<usize>, B) {
    let b = &mut buf;
    let res = retry(sock, Interest::Read, || {
        let len = b.bytes_total();
        // SAFETY: the pointer is valid for `bytes_total` bytes of writes
        // (IoBufMut) and `buf` outlives the call.
        cvt(unsafe { libc::read(sock.raw(), b.stable_mut_ptr().cast(), len) })
    })
    .await;
    if let Ok(n) = res {
        // SAFETY: the kernel wrote `n` bytes at the start of the buffer.
        unsafe { buf.set_init(n) };
    }
    (res, buf)
}

pub(crate) async fn send<B: IoBuf>(sock: &Socket, buf: B) -> (io::Result<usize>, B) {
    let b = &buf;
    let res = retry(sock, Interest::Write, || {
        // SAFETY: the pointer is valid for `bytes_init` bytes of reads
        // (IoBuf) and `buf` outlives the call.
        cvt(unsafe {
            libc::send(
                sock.raw(),
                b.stable_ptr().cast(),
                b.bytes_init(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        })
    })
    .await;
    (res, buf)
}

/// Sends `buf[0..bytes_init]` as one datagram to `addr`.
pub(crate) async fn send_to<B: IoBuf>(
    sock: &Socket,
    buf: B,
    addr: &RawAddr,
) -> (io::Result<usize>, B) {
    let b = &buf;
    let res = retry(sock, Interest::Write, || {
        // SAFETY: the buffer pointer is valid for `bytes_init` bytes of
        // reads (IoBuf), `addr` for `addr.len` bytes; both outlive the call.
        cvt(unsafe {
            libc::sendto(
                sock.raw(),
                b.stable_ptr().cast(),
                b.bytes_init(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                addr.ptr(),
                addr.len,
            )
        })
    })
    .await;
    (res, buf)
}

/// Receives one datagram into `buf[0..bytes_total]` and its sender.
pub(crate) async fn recv_from<B: IoBufMut>(
    sock: &Socket,
    mut buf: B,
) -> (io::Result<(usize, Box<RawAddr>)>, B) {
    let mut addr = RawAddr::empty();
    let b = &mut buf;
    let a = &mut addr;
    let res = retry(sock, Interest::Read, || {
        let len = b.bytes_total();
        a.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the buffer pointer is valid for `bytes_total` bytes of
        // writes (IoBufMut); storage and len point into `addr`; all outlive
        // the call.
        cvt(unsafe {
            libc::recvfrom(
                sock.raw(),
                b.stable_mut_ptr().cast(),
                len,
                libc::MSG_DONTWAIT,
                (&mut a.storage as *mut libc::sockaddr_storage).cast(),
                &mut a.len,
            )
        })
    })
    .await;
    match res {
        Ok(n) => {
            // SAFETY: the kernel wrote `n` bytes at the start of the buffer.
            unsafe { buf.set_init(n) };
            (Ok((n, addr)), buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// Sends the initialized bytes of `bufs`, in order, with one `sendmsg`.
pub(crate) async fn send_vectored<B: IoBuf>(
    sock: &Socket,
    bufs: Vec<B>,
) -> (io::Result<usize>, Vec<B>) {
    let iovs = crate::driver::uring::msg::IoVecs::of(&bufs);
    let res = retry(sock, Interest::Write, || {
        // SAFETY: msghdr is plain old data; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iovs.as_slice().as_ptr().cast_mut();
        msg.msg_iovlen = iovs.as_slice().len();
        // SAFETY: the iovecs point at the initialized bytes of `bufs`,
        // which outlive the call; msg points at the iovecs.
        cvt(unsafe { libc::sendmsg(sock.raw(), &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) })
    })
    .await;
    (res, bufs)
}
