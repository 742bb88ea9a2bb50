//! tokio multi-thread echo server: what most users would write first.

use std::io;
use std::net::SocketAddr;

pub fn run(listen: SocketAddr, workers: usize) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let std = super::listener(listen, false)?;
        std.set_nonblocking(true)?;
        let l = tokio::net::TcpListener::from_std(std)?;
        super::announce(l.local_addr()?);
        loop {
            let (s, _) = match l.accept().await {
                Ok(c) => c,
                Err(_) => continue,
            };
            tokio::spawn(super::echo_tokio(s));
        }
    })
}
