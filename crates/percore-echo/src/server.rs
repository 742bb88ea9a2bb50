//! One worker's share of the server: its own listener and its connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use percore::net::{ListenOptions, TcpListener, TcpStream};
use percore::sync::oneshot;

/// Counters of one worker's listener.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Bytes echoed.
    pub bytes: AtomicU64,
    /// Connections that ended with an error other than a reset.
    pub errors: AtomicU64,
    /// Connections closed at once because `--max-conns` were open.
    pub refused: AtomicU64,
    /// Connections closed by `--idle-timeout`.
    pub idle_closed: AtomicU64,
    /// `--block-us` calls made (inline or offloaded).
    pub blocked: AtomicU64,
    /// `--block-us` calls that ran on the blocking pool.
    pub offloaded: AtomicU64,
    /// `--offload` calls the full blocking pool refused (skipped).
    pub offload_refused: AtomicU64,
}

/// `--block-us`, `--block-every`, `--offload`.
#[derive(Debug, Clone)]
pub struct Block {
    pub sleep: Duration,
    pub every: u64,
    pub offload: bool,
    /// Messages seen, process-wide.
    pub seen: Arc<AtomicU64>,
}

/// Binds this worker's listener (reporting the outcome through `bound`;
/// the `first` worker also makes sure no other process holds the port),
/// then accepts until the task is aborted. Each connection becomes its own
/// task.
/// How every worker serves (from the flags).
#[derive(Debug, Clone)]
pub struct Serve {
    pub path: RecvPath,
    /// `--buffer`.
    pub buffer: usize,
    /// `--work-us`.
    pub work: Duration,
    /// `--steer cpu`: the cores of the accepting workers, in worker order.
    pub steer: Option<Arc<[Option<usize>]>>,
    /// `--send-zc-min`: echoes of at least this many bytes use zero-copy
    /// sends.
    pub zc_min: Option<usize>,
    /// `--max-conns`, for the whole process.
    pub max_conns: Option<usize>,
    /// `--idle-timeout`.
    pub idle: Option<Duration>,
    /// `--block-us` and friends.
    pub block: Option<Block>,
}

pub async fn serve_worker(
    addr: SocketAddr,
    conf: Serve,
    stats: Arc<Stats>,
    open: Arc<AtomicUsize>,
    first: bool,
    bound: oneshot::Sender<io::Result<SocketAddr>>,
) {
    if first && addr.port() != 0 {
        // SO_REUSEPORT would let us silently join another server's listener
        // group on this port; an exclusive bind first makes that an error.
        if let Err(e) = std::net::TcpListener::bind(addr) {
            let _ = bound.send(Err(io::Error::new(
                e.kind(),
                format!("bind {addr}: {e} (another process is listening there; pick another port or stop it)"),
            )));
            return;
        }
    }
    let opts = ListenOptions {
        reuse_port: true,
        backlog: 4096,
    };
    let listener = match TcpListener::bind_with(addr, opts) {
        Ok(l) => l,
        Err(e) => {
            let _ = bound.send(Err(e));
            return;
        }
    };
    if let Some(cores) = &conf.steer {
        if let Err(e) = listener.steer_by_cpu(cores) {
            let _ = bound.send(Err(e));
            return;
        }
    }
    let _ = bound.send(listener.local_addr());
    let Serve {
        path,
        buffer,
        work,
        zc_min,
        max_conns,
        idle,
        block,
        ..
    } = conf;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                stats.accepted.fetch_add(1, Relaxed);
                let now_open = open.fetch_add(1, Relaxed) + 1;
                if max_conns.is_some_and(|max| now_open > max) {
                    // Accepted and closed at once: the client learns now,
                    // rather than waiting in a backlog that never drains.
                    open.fetch_sub(1, Relaxed);
                    stats.refused.fetch_add(1, Relaxed);
                    drop(stream);
                    continue;
                }
                let stats = stats.clone();
                let open = open.clone();
                let block = block.clone();
                percore::spawn(async move {
                    let how = How {
                        path,
                        buffer,
                        work,
                        zc_min,
                        idle,
                        block,
                    };
                    if echo(&stream, &how, &stats).await.is_err() {
                        stats.errors.fetch_add(1, Relaxed);
                    }
                    open.fetch_sub(1, Relaxed);
                });
            }
            Err(e) if is_transient(&e) => {
                // Out of fds, or the peer gave up before we accepted:
                // keep serving; the connection attempt is the client's loss.
                stats.errors.fetch_add(1, Relaxed);
                percore::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => {
                eprintln!(
                    "percore-echo: accept on {addr} failed: {e}; this worker stops accepting"
                );
                return;
            }
        }
    }
}

/// `--work-us`: keeps this core busy for `d`, as request handling would.
fn burn(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::EPERM
        )
    )
}

/// How a connection receives (`--recv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvPath {
    /// `recv_pooled`: one multishot receive into the worker's provided
    /// buffers, written back from the same buffer (no copy, no SQE per
    /// received message).
    Pooled,
    /// `read` into the connection's own buffer of `--buffer` bytes.
    Owned,
}

/// How one connection is served.
#[derive(Debug, Clone)]
struct How {
    path: RecvPath,
    buffer: usize,
    work: Duration,
    zc_min: Option<usize>,
    idle: Option<Duration>,
    block: Option<Block>,
}

impl How {
    fn zero_copy(&self, n: usize) -> bool {
        self.zc_min.is_some_and(|m| n >= m)
    }

    /// What the server does with a message before echoing it: `--work-us`
    /// and `--block-us`.
    async fn handle(&self, stats: &Stats) {
        if !self.work.is_zero() {
            burn(self.work);
        }
        let Some(b) = &self.block else { return };
        if b.seen.fetch_add(1, Relaxed) % b.every != b.every - 1 {
            return;
        }
        stats.blocked.fetch_add(1, Relaxed);
        let sleep = b.sleep;
        if !b.offload {
            std::thread::sleep(sleep);
            return;
        }
        match percore::task::try_spawn_blocking(move || std::thread::sleep(sleep)) {
            Ok(h) => {
                let _ = h.await;
                stats.offloaded.fetch_add(1, Relaxed);
            }
            Err(_) => {
                stats.offload_refused.fetch_add(1, Relaxed);
            }
        }
    }
}

/// `f`, or `None` if `--idle-timeout` passes first (the connection is
/// then closed; an owned buffer in flight goes with it).
///
/// A plain function returning [`Within`], not an `async fn`: an `async fn`
/// would keep `f` both as its argument and inside the awaited future, and
/// this wraps every read and write of every connection, so the copy would
/// be paid per connection in memory (measured: the echo task's future fell
/// from 2,552 to 1,648 bytes; see docs/benchmarks.md, "Per-connection
/// memory").
fn within<F: Future>(idle: Option<Duration>, f: F) -> Within<F> {
    match idle {
        None => Within::Plain { f },
        Some(d) => Within::Timed {
            t: percore::time::timeout(d, f),
        },
    }
}

pin_project_lite::pin_project! {
    /// The future of [`within`]: `Some(output)`, or `None` on idle timeout.
    #[project = WithinProj]
    enum Within<F: Future> {
        Plain { #[pin] f: F },
        Timed { #[pin] t: percore::time::Timeout<F> },
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            WithinProj::Plain { f } => f.poll(cx).map(Some),
            WithinProj::Timed { t } => t.poll(cx).map(Result::ok),
        }
    }
}

/// Echoes until the peer closes; an error ends only this connection.
async fn echo(stream: &TcpStream, how: &How, stats: &Stats) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let r = match how.path {
        RecvPath::Pooled => echo_pooled(stream, how, stats).await,
        RecvPath::Owned => echo_owned(stream, how, stats).await,
    };
    if let Err(Idle) = r? {
        stats.idle_closed.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// The connection moved no bytes for `--idle-timeout`.
struct Idle;

/// Writes `buf` back, zero-copy if it is large enough.
async fn send_back<B: percore::IoBuf>(
    stream: &TcpStream,
    buf: B,
    how: &How,
) -> (io::Result<()>, B) {
    if how.zero_copy(buf.bytes_init()) {
        // Boxed: the zero-copy future is the larger one, and unboxed it
        // would set the size of every connection's task, zero-copy or not.
        Box::pin(stream.write_all_zc(buf)).await
    } else {
        stream.write_all(buf).await
    }
}

/// A reset or broken pipe ends the connection quietly: the peer left.
fn peer_left(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

async fn echo_pooled(stream: &TcpStream, how: &How, stats: &Stats) -> io::Result<Result<(), Idle>> {
    loop {
        let chunk = match within(how.idle, stream.recv_pooled()).await {
            None => return Ok(Err(Idle)),
            Some(Ok(c)) if c.is_empty() => return Ok(Ok(())),
            Some(Ok(c)) => c,
            Some(Err(e)) if peer_left(&e) => return Ok(Ok(())),
            Some(Err(e)) => return Err(e),
        };
        how.handle(stats).await;
        let n = chunk.len();
        match within(how.idle, send_back(stream, chunk, how))
            .await
            .map(|r| r.0)
        {
            None => return Ok(Err(Idle)),
            Some(Ok(())) => {
                stats.bytes.fetch_add(n as u64, Relaxed);
            }
            Some(Err(e)) if peer_left(&e) => return Ok(Ok(())),
            Some(Err(e)) => return Err(e),
        }
    }
}

async fn echo_owned(stream: &TcpStream, how: &How, stats: &Stats) -> io::Result<Result<(), Idle>> {
    let mut buf = Vec::with_capacity(how.buffer);
    loop {
        buf.clear();
        let Some((res, b)) = within(how.idle, stream.read(buf)).await else {
            return Ok(Err(Idle));
        };
        buf = b;
        let n = match res {
            Ok(0) => return Ok(Ok(())),
            Ok(n) => n,
            Err(e) if peer_left(&e) => return Ok(Ok(())),
            Err(e) => return Err(e),
        };
        how.handle(stats).await;
        let Some((res, b)) = within(how.idle, send_back(stream, buf, how)).await else {
            return Ok(Err(Idle));
        };
        buf = b;
        match res {
            Ok(()) => {
                stats.bytes.fetch_add(n as u64, Relaxed);
            }
            Err(e) if peer_left(&e) => return Ok(Ok(())),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `within` wraps every read and write of every connection: it must add
    /// a few bytes to the future it wraps, not a second copy of it (an
    /// `async fn` keeps its argument and the awaited future both).
    #[test]
    fn within_adds_no_copy_of_the_wrapped_future() {
        let payload = [7u8; 1000];
        let inner = async move { payload.len() };
        let inner_size = std::mem::size_of_val(&inner);
        let wrapped = within(None, inner);
        let size = std::mem::size_of_val(&wrapped);
        assert!(
            size < inner_size + 100,
            "within(f) is {size} bytes for an f of {inner_size}"
        );
    }
}
