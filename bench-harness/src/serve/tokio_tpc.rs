//! Thread-per-core on epoll: one current-thread tokio runtime per worker,
//! pinned, each with its own SO_REUSEPORT listener (the closest epoll
//! analogue of percore-echo's layout).

use std::io;
use std::net::SocketAddr;

pub fn run(listen: SocketAddr, workers: usize) -> io::Result<()> {
    super::per_core(listen, workers, serve)
}

fn serve(std: std::net::TcpListener) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        std.set_nonblocking(true)?;
        let l = tokio::net::TcpListener::from_std(std)?;
        loop {
            let (s, _) = match l.accept().await {
                Ok(c) => c,
                Err(_) => continue,
            };
            tokio::task::spawn_local(super::echo_tokio(s));
        }
    })
}
