//! tokio multi-thread echo server: what most users would write first.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
            let (mut s, _) = match l.accept().await {
                Ok(c) => c,
                Err(_) => continue,
            };
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; super::BUFFER];
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
            });
        }
    })
}
