//! An HTTP/1.1 server on hyper 1.x: `GET /` answers `200 Hello, world!`,
//! anything else `404`.
//!
//!     cargo run --release -p percore --example http -- --listen 127.0.0.1:8080
//!
//! `--runtime percore` (default): one pinned percore worker per core, each
//! with its own `SO_REUSEPORT` listener; connections are served on the
//! worker that accepted them (`spawn_local`), through `percore::io::Compat`
//! (hyper's I/O traits) and `HyperTimer`.
//!
//! For comparison on the same machine, `--runtime tokio` runs the same
//! service on one current-thread tokio runtime per core, each with its own
//! `SO_REUSEPORT` listener (the same shape), and `--runtime tokio-mt` on
//! tokio's default multi-thread runtime with one listener (what most tokio
//! services run).
//!
//! It prints `listening on ADDR` (the real port when given port 0) once
//! every listener is bound, and exits on SIGINT or SIGTERM.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};

#[derive(Parser, Debug)]
#[command(about = "hyper HTTP/1.1 hello-world server on percore (or tokio, to compare)")]
struct Args {
    /// Address to listen on (loopback or any local address; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Which runtime serves.
    #[arg(long, value_enum, default_value_t = Rt::Percore)]
    runtime: Rt,
    /// percore's I/O driver.
    #[arg(long, value_enum, default_value_t = DriverArg::Auto)]
    driver: DriverArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Rt {
    Percore,
    Tokio,
    TokioMt,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DriverArg {
    Auto,
    Uring,
    Epoll,
}

/// The service: the same function on every runtime.
async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let res = if req.method() == Method::GET && req.uri().path() == "/" {
        Response::new(Full::new(Bytes::from_static(b"Hello, world!")))
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    Ok(res)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Before any thread starts, so every thread inherits the mask and the
    // signals reach the signalfd (percore) or the waiting thread (tokio).
    if let Err(e) = percore::signal::block(&[libc::SIGINT, libc::SIGTERM]) {
        eprintln!("http: cannot block SIGINT/SIGTERM: {e}");
        return ExitCode::FAILURE;
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let res = match args.runtime {
        Rt::Percore => run_percore(&args, workers),
        Rt::Tokio => run_tokio_per_core(&args, workers),
        Rt::TokioMt => run_tokio_mt(&args, workers),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A std listener with `SO_REUSEPORT` on `addr`, non-blocking.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Binds one listener per worker on `addr`; the first fixes the port when
/// `addr` has port 0. A port another process listens on is an error, even
/// if that process also set `SO_REUSEPORT` (it would otherwise silently get
/// half of our connections): a plain bind is tried first.
fn listeners(
    addr: SocketAddr,
    n: usize,
) -> std::io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    if addr.port() != 0 {
        std::net::TcpListener::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    }
    let first = reuseport_listener(addr)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(reuseport_listener(bound)?);
    }
    Ok((bound, all))
}

fn announce(addr: SocketAddr) {
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
}

fn wait_for_signal() -> Result<i32, String> {
    let set: libc::sigset_t = signal_set();
    let mut sig = 0;
    // SAFETY: `set` is initialised and `sig` is a live out-pointer.
    let r = unsafe { libc::sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(format!("sigwait: {}", std::io::Error::from_raw_os_error(r)));
    }
    Ok(sig)
}

/// The set {SIGINT, SIGTERM}.
fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

fn run_percore(args: &Args, workers: usize) -> Result<(), String> {
    let driver = match args.driver {
        DriverArg::Auto => percore::Driver::Auto,
        DriverArg::Uring => percore::Driver::IoUring,
        DriverArg::Epoll => percore::Driver::Epoll,
    };
    let rt = percore::Runtime::builder()
        .workers(workers)
        .driver(driver)
        .build()
        .map_err(|e| format!("cannot start the percore runtime: {e}"))?;
    let (addr, listeners) = listeners(args.listen, workers).map_err(|e| e.to_string())?;
    let (ready_tx, ready) = mpsc::channel();
    let mut acceptors = Vec::new();
    for (i, std_listener) in listeners.into_iter().enumerate() {
        let ready_tx = ready_tx.clone();
        acceptors.push(rt.spawn_local_on(i, move || async move {
            let listener = match percore::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of fds and the like: say so, keep accepting.
                        eprintln!("http: accept: {e}");
                        percore::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                percore::spawn_local(async move {
                    let io = percore::io::Compat::new(stream);
                    let conn = http1::Builder::new()
                        .timer(percore::io::HyperTimer)
                        .serve_connection(io, service_fn(hello));
                    // A client that resets or sends garbage ends only its
                    // own connection.
                    let _ = conn.await;
                });
            }
        }));
    }
    // Only the workers hold senders now: if one stops, recv() sees it.
    drop(ready_tx);
    for _ in 0..workers {
        ready
            .recv()
            .map_err(|_| "a worker stopped before listening".to_string())?
            .map_err(|e| format!("adopting a listener: {e}"))?;
    }
    announce(addr);
    let mut signals = percore::signal::Signals::new(&[libc::SIGINT, libc::SIGTERM])
        .map_err(|e| format!("signalfd: {e}"))?;
    let sig = rt
        .block_on(async move { signals.recv().await })
        .map_err(|e| format!("waiting for a signal: {e}"))?;
    eprintln!("http: signal {sig}, exiting");
    for a in &acceptors {
        a.abort();
    }
    Ok(())
}

/// The next tokio connection; accept errors (out of fds and the like) are
/// reported and retried after 10 ms, as on percore.
async fn tokio_accept(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                return s;
            }
            Err(e) => {
                eprintln!("http: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection served by hyper on tokio.
async fn serve_tokio(stream: tokio::net::TcpStream) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(io, service_fn(hello))
        .await;
}

fn run_tokio_per_core(args: &Args, workers: usize) -> Result<(), String> {
    let (addr, listeners) = listeners(args.listen, workers).map_err(|e| e.to_string())?;
    for (i, std_listener) in listeners.into_iter().enumerate() {
        std::thread::Builder::new()
            .name(format!("tokio-core-{i}"))
            .spawn(move || {
                // Pinned like percore's workers, for the same shape.
                if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.get(i).copied()) {
                    core_affinity::set_for_current(core);
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let listener =
                        tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
                    loop {
                        tokio::task::spawn_local(serve_tokio(tokio_accept(&listener).await));
                    }
                });
            })
            .map_err(|e| format!("cannot start thread {i}: {e}"))?;
    }
    announce(addr);
    let sig = wait_for_signal()?;
    eprintln!("http: signal {sig}, exiting");
    Ok(())
}

fn run_tokio_mt(args: &Args, workers: usize) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let std_listener = reuseport_listener(args.listen).map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
        loop {
            tokio::spawn(serve_tokio(tokio_accept(&listener).await));
        }
    });
    announce(addr);
    let sig = wait_for_signal()?;
    eprintln!("http: signal {sig}, exiting");
    Ok(())
}
