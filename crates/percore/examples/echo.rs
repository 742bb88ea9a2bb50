//! A TCP echo server: one pinned worker per core, each with its own
//! `SO_REUSEPORT` listener, every connection served on the worker that
//! accepted it.
//!
//!     cargo run --release -p percore --example echo -- 127.0.0.1:7000
//!
//! With `--demo` it starts on a free loopback port, connects a few clients,
//! checks that every byte comes back, prints a summary and exits.

use std::net::SocketAddr;

use percore::net::{ListenOptions, TcpListener, TcpStream};

async fn serve(stream: TcpStream) {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let (res, b) = stream.read(buf).await;
        match res {
            Ok(0) | Err(_) => return, // closed or reset: this connection is done
            Ok(_) => {}
        }
        let (res, mut b) = stream.write_all(b).await;
        if res.is_err() {
            return;
        }
        b.clear();
        buf = b;
    }
}

/// Binds one listener per worker on `addr` (port 0: the first one picks
/// it) and accepts forever; returns the bound address.
fn start(rt: &percore::Runtime, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let opts = ListenOptions {
        reuse_port: true,
        ..ListenOptions::default()
    };
    let mut addr = addr;
    for i in 0..rt.workers().len() {
        let l = TcpListener::bind_with(addr, opts)?;
        addr = l.local_addr()?;
        let l = l.into_std()?;
        rt.handle().spawn_local_on(i, move || async move {
            let l = TcpListener::from_std(l).expect("adopt the listener");
            loop {
                match l.accept().await {
                    Ok((s, _)) => drop(percore::spawn_local(serve(s))),
                    Err(e) => eprintln!("echo: accept: {e}"),
                }
            }
        });
    }
    Ok(addr)
}

fn main() -> std::io::Result<()> {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let rt = percore::Runtime::new()?;
    if arg != "--demo" {
        let addr: SocketAddr = arg.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{arg:?}: {e}"))
        })?;
        let bound = start(&rt, addr)?;
        println!(
            "echo: listening on {bound} with {} workers",
            rt.workers().len()
        );
        loop {
            std::thread::park();
        }
    }
    let addr = start(&rt, "127.0.0.1:0".parse().unwrap())?;
    let total: usize = rt.block_on(async move {
        let clients: Vec<_> = (0..8u8)
            .map(|c| {
                percore::spawn(async move {
                    let s = TcpStream::connect(addr).await?;
                    let msg = vec![c; 10_000];
                    s.write_all(msg.clone()).await.0?;
                    let (res, back) = s.read_exact(vec![0u8; msg.len()]).await;
                    res?;
                    assert_eq!(back, msg);
                    Ok::<usize, std::io::Error>(back.len())
                })
            })
            .collect();
        let mut total = 0;
        for c in clients {
            total += c.await.expect("client task")?;
        }
        Ok::<usize, std::io::Error>(total)
    })?;
    println!("echo demo: 8 clients, {total} bytes echoed and checked");
    Ok(())
}
