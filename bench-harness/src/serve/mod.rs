//! `bench-harness serve <impl>`: the baseline echo servers, each printing
//! `listening on ADDR` on stdout once ready and running until killed.
//!
//! - `tokio_mt` — tokio multi-thread runtime, a task per connection.
//! - `tokio_tpc` — thread-per-core on epoll: one current-thread tokio
//!   runtime per worker, each with its own `SO_REUSEPORT` listener.
//! - `threads` — blocking thread-per-connection.
//! - `epoll_loop` — a hand-written edge-triggered epoll loop per core: epoll
//!   at its best, no runtime.
//! - `uring_loop` — a hand-written io_uring loop per core with
//!   `SINGLE_ISSUER | DEFER_TASKRUN`: the floor for percore's own design.
//! - `monoio` — the io_uring runtime users would otherwise pick, its ring
//!   flags as `uring_loop`'s.
//!
//! percore itself is served by the `percore-echo` binary.

mod epoll_loop;
mod monoio;
mod threads;
mod tokio_mt;
mod tokio_tpc;
mod uring_loop;

use std::io::{self, Write};
use std::net::SocketAddr;

use clap::ValueEnum;

/// Echo read buffer per connection (same as percore-echo's default).
pub const BUFFER: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerKind {
    /// tokio multi-thread, a task per connection.
    TokioMt,
    /// One tokio current-thread runtime per worker, SO_REUSEPORT listeners.
    TokioTpc,
    /// Blocking thread per connection.
    Threads,
    /// Hand-written edge-triggered epoll loop per core (no runtime).
    EpollLoop,
    /// Hand-written io_uring loop per core, SINGLE_ISSUER|DEFER_TASKRUN.
    UringLoop,
    /// monoio 0.2 runtime per core, SINGLE_ISSUER|DEFER_TASKRUN ring.
    Monoio,
}

pub fn run(kind: ServerKind, listen: SocketAddr, workers: usize) -> io::Result<()> {
    match kind {
        ServerKind::TokioMt => tokio_mt::run(listen, workers),
        ServerKind::TokioTpc => tokio_tpc::run(listen, workers),
        ServerKind::Threads => threads::run(listen),
        ServerKind::EpollLoop => epoll_loop::run(listen, workers),
        ServerKind::UringLoop => uring_loop::run(listen, workers),
        ServerKind::Monoio => monoio::run(listen, workers),
    }
}

/// Thread-per-core layout shared by the per-core servers: worker `i` runs
/// `serve` on its own `SO_REUSEPORT` listener, pinned to core `i`. Worker 0
/// binds first, so port 0 resolves once for the whole group. Announces the
/// address once every listener is bound; any worker failing ends the server.
fn per_core(
    listen: SocketAddr,
    workers: usize,
    serve: fn(std::net::TcpListener) -> io::Result<()>,
) -> io::Result<()> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let first = listener(listen, true)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers.max(1) {
        listeners.push(listener(addr, true)?);
    }
    let (tx, rx) = std::sync::mpsc::channel::<io::Result<()>>();
    for (i, l) in listeners.into_iter().enumerate() {
        let core = cores.get(i % cores.len().max(1)).copied();
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            let _ = tx.send(serve(l));
        });
    }
    announce(addr);
    drop(tx);
    rx.recv().unwrap_or(Ok(()))
}

/// Sets `TCP_NODELAY` on a raw socket fd (as every server here does).
fn set_nodelay(fd: std::os::fd::RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a live int of the right size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// One connection of either tokio server: the same echo loop for both.
async fn echo_tokio(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; BUFFER];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One connection of the hand-written loops: its socket and a fixed
/// buffer, of which `buf[start..end]` is still to be sent.
struct Conn {
    fd: std::os::fd::OwnedFd,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// The start-up line the comparison runner waits for.
fn announce(addr: SocketAddr) {
    println!("listening on {addr}");
    let _ = io::stdout().flush();
}

/// A listening socket, optionally in a SO_REUSEPORT group; std flavour.
fn listener(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    s.listen(4096)?;
    Ok(s.into())
}
