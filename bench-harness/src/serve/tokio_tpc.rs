//! Thread-per-core on epoll: one current-thread tokio runtime per worker,
//! pinned, each with its own SO_REUSEPORT listener (the closest epoll
//! analogue of percore-echo's layout).

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;

pub fn run(listen: SocketAddr, workers: usize) -> io::Result<()> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    // Worker 0 binds first, so port 0 resolves once for the whole group.
    let first = super::listener(listen, true)?;
    let addr = first.local_addr()?;
    let (tx, rx) = mpsc::channel::<io::Result<()>>();
    let mut first = Some(first);
    let mut threads = Vec::new();
    for i in 0..workers.max(1) {
        let l = match first.take() {
            Some(l) => l,
            None => super::listener(addr, true)?,
        };
        let core = cores.get(i % cores.len().max(1)).copied();
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            let r = serve(l);
            let _ = tx.send(r);
        }));
    }
    super::announce(addr);
    drop(tx);
    // Any worker failing ends the server.
    rx.recv().unwrap_or(Ok(()))
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
