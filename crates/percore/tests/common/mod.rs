//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use percore::net::{TcpListener, TcpStream};
use percore::{Driver, IoBuf, IoBufMut, Runtime};

/// The driver the I/O tests run on: `PERCORE_TEST_DRIVER=epoll` selects
/// epoll, anything else io_uring. `scripts/test` runs the suite with both.
pub fn driver() -> Driver {
    match std::env::var("PERCORE_TEST_DRIVER").as_deref() {
        Ok("epoll") => Driver::Epoll,
        _ => Driver::IoUring,
    }
}

/// A runtime for tests on [`driver()`]: `workers` threads, rings of
/// `entries` SQEs.
pub fn runtime(workers: usize, entries: u32) -> Runtime {
    Runtime::builder()
        .driver(driver())
        .workers(workers)
        .ring_entries(entries)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("runtime")
}

/// Aborts the whole test process if the guard lives longer than `secs`:
/// a hang must fail the run, not stall it.
pub struct Watchdog(Arc<AtomicBool>);

pub fn watchdog(name: &'static str, secs: u64) -> Watchdog {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        for _ in 0..secs * 10 {
            std::thread::sleep(Duration::from_millis(100));
            if d.load(SeqCst) {
                return;
            }
        }
        eprintln!("watchdog: test {name} still running after {secs} s: aborting");
        std::process::abort();
    });
    Watchdog(done)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// A connected pair on loopback: (client, server side).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    let accept = percore::spawn_local(async move { l.accept().await.unwrap().0 });
    let c = TcpStream::connect(addr).await.unwrap();
    (c, accept.await.unwrap())
}

/// A connected pair of UDP sockets on loopback.
pub async fn udp_pair() -> (percore::net::UdpSocket, percore::net::UdpSocket) {
    let a = percore::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let b = percore::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    a.connect(b.local_addr().unwrap()).await.unwrap();
    b.connect(a.local_addr().unwrap()).await.unwrap();
    (a, b)
}

/// Whether any epoll instance of this process watches the file with inode
/// `ino` (read from `/proc/self/fdinfo` of every eventpoll fd).
pub fn in_any_epoll_set(ino: u64) -> bool {
    let needle = format!("ino:{ino:x} ");
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|l| l.to_string_lossy().contains("eventpoll"))
                .unwrap_or(false)
        })
        .filter_map(|e| {
            std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .ok()
        })
        .any(|info| info.contains(&needle))
}

/// A fresh, empty directory under the system's temp dir for one test's
/// socket and data files; removed when the guard drops.
pub struct TempDir(pub std::path::PathBuf);

pub fn temp_dir(name: &str) -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, SeqCst);
    let dir = std::env::temp_dir().join(format!("percore-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    TempDir(dir)
}

impl TempDir {
    pub fn join(&self, p: &str) -> std::path::PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Counts creations and drops of [`CountedBuf`]s.
#[derive(Default, Debug)]
pub struct Counts {
    pub created: AtomicUsize,
    pub dropped: AtomicUsize,
}

impl Counts {
    pub fn live(&self) -> isize {
        self.created.load(SeqCst) as isize - self.dropped.load(SeqCst) as isize
    }
}

/// A heap buffer that records its drop, to prove each buffer handed to the
/// runtime is dropped exactly once.
pub struct CountedBuf {
    data: Vec<u8>,
    counts: Arc<Counts>,
}

impl CountedBuf {
    pub fn new(counts: &Arc<Counts>, cap: usize) -> CountedBuf {
        counts.created.fetch_add(1, SeqCst);
        CountedBuf {
            data: Vec::with_capacity(cap),
            counts: counts.clone(),
        }
    }
    pub fn filled(counts: &Arc<Counts>, bytes: &[u8]) -> CountedBuf {
        let mut b = Self::new(counts, bytes.len());
        b.data.extend_from_slice(bytes);
        b
    }
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for CountedBuf {
    fn drop(&mut self) {
        self.counts.dropped.fetch_add(1, SeqCst);
    }
}

// SAFETY: delegates to Vec<u8>, whose heap memory is stable across moves.
unsafe impl IoBuf for CountedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.data.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.data.bytes_init()
    }
    fn bytes_total(&self) -> usize {
        self.data.bytes_total()
    }
}

// SAFETY: delegates to Vec<u8>.
unsafe impl IoBufMut for CountedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.data.stable_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.data.set_init(pos) }
    }
}

/// Polls `fut` exactly once (submitting its op), without completing it.
pub async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx: &mut Context<'_>| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// A small deterministic PRNG (xorshift64*), so runs are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Polls `f` to completion on this (non-worker) thread, parking between
/// polls: for handles and futures awaited off any runtime.
pub fn block_on_thread<F: Future>(f: F) -> F::Output {
    struct W(std::thread::Thread);
    impl std::task::Wake for W {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(W(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}
