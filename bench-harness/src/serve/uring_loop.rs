//! `uring-loop`: a hand-written io_uring echo loop, the floor for
//! percore's own design. One pinned thread per worker, each with its own
//! `SO_REUSEPORT` listener and a ring set up with
//! `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` (the flags that decide
//! io_uring's cost on this class of machine), a fixed buffer per
//! connection, no runtime. Per connection exactly one op is in flight at a
//! time: recv, then send (repeated until all is sent), then recv again; so
//! closing a connection never races an op that names its fd.
//!
//! The loop submits everything queued and waits for at least one
//! completion in a single `io_uring_enter`, then handles every completion.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, squeue, types, IoUring};

use super::{Conn, BUFFER};

const ACCEPT: u64 = u64::MAX;
const KIND_RECV: u64 = 0;
const KIND_SEND: u64 = 1;

pub fn run(listen: SocketAddr, workers: usize) -> io::Result<()> {
    super::per_core(listen, workers, serve)
}

fn ring() -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_cqsize(16384)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun();
    b.build(4096).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("io_uring with SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+): {e}"),
        )
    })
}

fn serve(l: TcpListener) -> io::Result<()> {
    let mut ring = ring()?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let lfd = l.as_raw_fd();
    push(&mut ring, accept(lfd))?;
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let cqes: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, res) in cqes {
            if ud == ACCEPT {
                if res >= 0 {
                    // SAFETY: a successful accept CQE carries a new fd.
                    let fd = unsafe { OwnedFd::from_raw_fd(res) };
                    super::set_nodelay(fd.as_raw_fd());
                    let i = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    let c = conns[i].insert(Conn {
                        fd,
                        buf: vec![0u8; BUFFER].into_boxed_slice(),
                        start: 0,
                        end: 0,
                    });
                    push(&mut ring, recv(c, i))?;
                }
                push(&mut ring, accept(lfd))?;
                continue;
            }
            let (i, kind) = ((ud >> 1) as usize, ud & 1);
            let Some(c) = conns[i].as_mut() else { continue };
            let next = match (kind, res) {
                (_, r) if r < 0 && r != -libc::EINTR && r != -libc::EAGAIN => None,
                (KIND_RECV, 0) => None,
                (KIND_RECV, r) if r < 0 => Some(recv(c, i)),
                (KIND_RECV, r) => {
                    c.start = 0;
                    c.end = r as usize;
                    Some(send(c, i))
                }
                (_, r) => {
                    c.start += r.max(0) as usize;
                    Some(if c.start < c.end {
                        send(c, i)
                    } else {
                        recv(c, i)
                    })
                }
            };
            match next {
                Some(sqe) => push(&mut ring, sqe)?,
                // Its only op has completed: closing cannot race it.
                None => {
                    conns[i] = None;
                    free.push(i);
                }
            }
        }
    }
}

fn accept(lfd: i32) -> squeue::Entry {
    opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(ACCEPT)
}

fn recv(c: &mut Conn, i: usize) -> squeue::Entry {
    opcode::Recv::new(
        types::Fd(c.fd.as_raw_fd()),
        c.buf.as_mut_ptr(),
        c.buf.len() as u32,
    )
    .build()
    .user_data((i as u64) << 1 | KIND_RECV)
}

fn send(c: &mut Conn, i: usize) -> squeue::Entry {
    opcode::Send::new(
        types::Fd(c.fd.as_raw_fd()),
        c.buf[c.start..].as_ptr(),
        (c.end - c.start) as u32,
    )
    .flags(libc::MSG_NOSIGNAL)
    .build()
    .user_data((i as u64) << 1 | KIND_SEND)
}

/// Queues `sqe`, submitting first if the SQ is full.
fn push(ring: &mut IoUring, sqe: squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every buffer an SQE points at is a connection's boxed
        // buffer, which stays in `conns` (it is dropped only after that
        // connection's single op in flight has completed); accept passes
        // no pointers.
        if unsafe { ring.submission().push(&sqe) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}
