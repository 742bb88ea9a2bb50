//! `monoio`: the io_uring runtime users would otherwise pick, set up as a
//! user tuning it for this workload would. One pinned thread per worker,
//! each a monoio runtime on its own `SO_REUSEPORT` listener, its ring with
//! `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` (the same flags as
//! `uring-loop`), a task per connection, an owned 16 KiB buffer reused for
//! every read and write (monoio's rent-style API, like percore's).
//!
//! monoio 0.2 is built without its `sync` feature: nothing here crosses
//! threads, so its eventfd wake path never runs.

use std::io;
use std::net::SocketAddr;

use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::{IoUringDriver, RuntimeBuilder};

use super::BUFFER;

pub fn run(listen: SocketAddr, workers: usize) -> io::Result<()> {
    super::per_core(listen, workers, serve)
}

fn serve(std: std::net::TcpListener) -> io::Result<()> {
    let mut urb = io_uring_06::IoUring::builder();
    urb.setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_cqsize(16384);
    let mut rt = RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(4096)
        .uring_builder(urb)
        .build()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("monoio with SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+): {e}"),
            )
        })?;
    rt.block_on(async move {
        let l = monoio::net::TcpListener::from_std(std)?;
        loop {
            let (s, _) = match l.accept().await {
                Ok(c) => c,
                // A failed accept (a reset before it was taken, EMFILE) ends
                // neither the listener nor the server.
                Err(_) => continue,
            };
            monoio::spawn(echo(s));
        }
    })
}

/// One connection: read into the owned buffer, write all of it back.
async fn echo(mut s: monoio::net::TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; BUFFER];
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (res, b) = s.write_all(buf.slice(..n)).await;
        buf = b.into_inner();
        if res.is_err() {
            return;
        }
    }
}
