//! `bench-harness serve <impl>`: the baseline echo servers, each printing
//! `listening on ADDR` on stdout once ready and running until killed.
//!
//! - `tokio_mt` — tokio multi-thread runtime, a task per connection.
//! - `tokio_tpc` — thread-per-core on epoll: one current-thread tokio
//!   runtime per worker, each with its own `SO_REUSEPORT` listener.
//! - `threads` — blocking thread-per-connection.
//!
//! percore itself is served by the `percore-echo` binary.

mod threads;
mod tokio_mt;
mod tokio_tpc;

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
}

pub fn run(kind: ServerKind, listen: SocketAddr, workers: usize) -> io::Result<()> {
    match kind {
        ServerKind::TokioMt => tokio_mt::run(listen, workers),
        ServerKind::TokioTpc => tokio_tpc::run(listen, workers),
        ServerKind::Threads => threads::run(listen),
    }
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
