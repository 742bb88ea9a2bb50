//! `epoll-loop`: epoll at its best, the yardstick percore's epoll driver
//! and every readiness-based server is compared with. No runtime: one
//! pinned thread per worker, each with its own `SO_REUSEPORT` listener and
//! epoll set, edge-triggered, a fixed buffer per connection, no allocation
//! or syscall per message beyond the `recv`/`send` pair and the wait.
//!
//! Per event on a connection: finish any unsent bytes; then read until
//! `EAGAIN`, echoing each read. A partial send keeps the rest and waits
//! for the `EPOLLOUT` edge before reading again (backpressure, no loss).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{Conn, BUFFER};

const LISTENER: u64 = u64::MAX;

pub fn run(listen: SocketAddr, workers: usize) -> io::Result<()> {
    super::per_core(listen, workers, serve)
}

fn serve(l: TcpListener) -> io::Result<()> {
    l.set_nonblocking(true)?;
    // SAFETY: plain syscall.
    let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: a fresh fd nobody else owns.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    add(&ep, l.as_raw_fd(), LISTENER, libc::EPOLLIN as u32)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    loop {
        // SAFETY: `events` has `len` writable slots.
        let n = unsafe {
            libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == LISTENER {
                accept_all(&l, &ep, &mut conns, &mut free)?;
                continue;
            }
            let i = token as usize;
            let Some(c) = conns[i].as_mut() else { continue };
            if !drive(c) {
                conns[i] = None; // closes the fd, which leaves the epoll set
                free.push(i);
            }
        }
    }
}

fn accept_all(
    l: &TcpListener,
    ep: &OwnedFd,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
) -> io::Result<()> {
    loop {
        // SAFETY: no address out-parameters.
        let fd = unsafe {
            libc::accept4(
                l.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(()),
                // Out of fds or a connection reset before accept: skip it,
                // keep serving the others.
                Some(libc::EMFILE | libc::ENFILE | libc::ECONNABORTED | libc::EINTR) => Ok(()),
                _ => Err(e),
            };
        }
        // SAFETY: accept4 returned a new fd nobody owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        super::set_nodelay(fd.as_raw_fd());
        let i = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        let flags = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        add(ep, fd.as_raw_fd(), i as u64, flags)?;
        conns[i] = Some(Conn {
            fd,
            buf: vec![0u8; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        });
    }
}

/// Handles an edge on `c`; false when the connection is finished.
fn drive(c: &mut Conn) -> bool {
    let fd = c.fd.as_raw_fd();
    loop {
        while c.start < c.end {
            // SAFETY: the range lies inside `c.buf`.
            let r = unsafe {
                libc::send(
                    fd,
                    c.buf[c.start..].as_ptr().cast(),
                    c.end - c.start,
                    libc::MSG_NOSIGNAL,
                )
            };
            if r < 0 {
                return would_block(); // wait for EPOLLOUT, or closed
            }
            c.start += r as usize;
        }
        // SAFETY: `c.buf` has `len` writable bytes.
        let r = unsafe { libc::recv(fd, c.buf.as_mut_ptr().cast(), c.buf.len(), 0) };
        match r {
            0 => return false,
            r if r < 0 => return would_block(),
            r => {
                c.start = 0;
                c.end = r as usize;
            }
        }
    }
}

/// After a failed call: true (keep the connection) on EAGAIN/EINTR.
fn would_block() -> bool {
    matches!(
        io::Error::last_os_error().raw_os_error(),
        Some(libc::EAGAIN | libc::EINTR)
    )
}

fn add(ep: &OwnedFd, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: valid fds and a live event.
    cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

fn cvt(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
