//! Safe code must not reach freed memory, uninitialized bytes, or a worker
//! that died silently (issue 9's holes 2–4; DESIGN invariant 8).

// Tests here hand pending futures from one runtime to another on purpose.
#![allow(clippy::async_yields_async)]

mod common;

use std::future::Future;
use std::io::Write;
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::*;
use percore::net::TcpStream;
use percore::{IoBuf, IoBufMut, Runtime};

/// A connected pair: a percore stream (not yet used on any worker) and its
/// std peer, so the test thread can write to it.
fn std_pair() -> (TcpStream, StdStream) {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let c = StdStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (TcpStream::from_std(s).unwrap(), c)
}

/// Runs `f` on a helper thread and fails if it does not return in `secs`
/// (the runtime it holds is leaked then, since dropping it could hang too).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what}: no answer within {secs} s (a dead worker?)"))
}

/// Hole 2: an op in flight on runtime A, moved to runtime B and dropped
/// there. Its buffer must stay alive until A's ring is done with it; the
/// drop must not panic (a panic would unwind through the buffer's drop).
#[test]
fn an_op_dropped_on_another_runtime_never_frees_memory_the_kernel_writes() {
    let _w = watchdog("foreign drop", 60);
    const LEN: usize = 64 * 1024;
    let rt_a = runtime(1, 64);
    let rt_b = runtime(1, 64);
    for round in 0..10 {
        let (stream, mut peer) = std_pair();
        let fut = rt_a.block_on(async move {
            let mut f = Box::pin(async move {
                let (r, buf) = stream.read(Vec::with_capacity(LEN)).await;
                (r, buf, stream)
            });
            assert!(poll_once(&mut f).await.is_pending());
            f
        });
        // Let A's loop submit the read: it is now in the kernel.
        rt_a.block_on(async {
            percore::nop().await.unwrap();
        });
        let dropped =
            rt_b.block_on(async move { catch_unwind(AssertUnwindSafe(move || drop(fut))).is_ok() });
        assert!(
            dropped,
            "round {round}: dropping the op on runtime B panicked"
        );
        // A fresh allocation of the same size, on the thread (arena) the read
        // buffer came from: if that buffer was freed, this likely reuses it.
        let canary = rt_a.block_on(async { vec![0u8; LEN] });
        peer.write_all(&vec![0xABu8; LEN]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        rt_a.block_on(async {
            percore::nop().await.unwrap();
        });
        assert!(
            canary.iter().all(|&b| b == 0),
            "round {round}: the kernel wrote into freed memory ({} bytes of 0xAB in a fresh allocation)",
            canary.iter().filter(|&&b| b == 0xAB).count()
        );
    }
}

/// Hole 2, poll side: polling an in-flight op on another runtime's worker
/// completes it (its ring's worker forwards the result), never panics.
#[test]
fn an_op_polled_on_another_runtime_gets_its_result() {
    let _w = watchdog("foreign poll", 60);
    let rt_a = runtime(1, 64);
    let rt_b = runtime(1, 64);
    let (stream, mut peer) = std_pair();
    let fut = rt_a.block_on(async move {
        let mut f = Box::pin(async move {
            let (r, buf) = stream.read(Vec::with_capacity(64)).await;
            (r.map(|n| buf[..n].to_vec()), stream)
        });
        assert!(poll_once(&mut f).await.is_pending());
        f
    });
    rt_a.block_on(async {
        percore::nop().await.unwrap();
    });
    peer.write_all(b"hello").unwrap();
    let (got, _stream) = rt_b.block_on(fut);
    assert_eq!(got.unwrap(), b"hello");
}

/// Hole 3: a read into a window that starts past the buffer's initialized
/// length must not make stale, never-written bytes part of the `Vec`.
#[test]
fn a_read_into_a_slice_past_the_initialized_length_exposes_no_stale_bytes() {
    let _w = watchdog("slice gap", 30);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let (a, b) = tcp_pair().await;
        let mut v: Vec<u8> = Vec::with_capacity(64);
        v.resize(64, 0x5A);
        v.clear();
        b.write_all(b"hi".to_vec()).await.0.unwrap();
        let (r, s) = a.read(v.slice(32..)).await;
        assert_eq!(r.unwrap(), 2);
        let v = s.into_inner();
        assert_eq!(v.len(), 34);
        assert!(
            !v.contains(&0x5A),
            "stale bytes exposed through Vec::len: {v:?}"
        );
        assert_eq!(&v[32..], b"hi");
        assert!(v[..32].iter().all(|&b| b == 0), "the gap is zeroed");
    });
}

/// A buffer whose `Drop` panics: user code the worker may run outside any
/// task (when it frees an orphaned op's resources).
struct PanicOnDrop(Vec<u8>);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PanicOnDrop dropped");
        }
    }
}

// SAFETY: delegates to the inner Vec, whose heap memory is stable.
unsafe impl IoBuf for PanicOnDrop {
    fn stable_ptr(&self) -> *const u8 {
        self.0.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.0.bytes_init()
    }
    fn bytes_total(&self) -> usize {
        self.0.bytes_total()
    }
}

// SAFETY: delegates to the inner Vec.
unsafe impl IoBufMut for PanicOnDrop {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.0.stable_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.set_init(pos) }
    }
}

/// Hole 4: a panic in a buffer's `Drop`, run by the worker when it frees a
/// cancelled read's resources, must not kill the worker silently.
#[test]
fn a_panicking_buffer_drop_does_not_kill_the_worker() {
    let _w = watchdog("panicking drop", 60);
    let rt = Arc::new(runtime(1, 64));
    let r = rt.clone();
    within(20, "block_on after a panicking drop", move || {
        r.block_on(async {
            let (a, _b) = tcp_pair().await;
            let mut read = Box::pin(a.read(PanicOnDrop(Vec::with_capacity(64))));
            assert!(poll_once(&mut read).await.is_pending());
            percore::nop().await.unwrap();
            // io_uring: the read is in the kernel, so the drop hands the
            // buffer to the worker, which drops it (and its panic) after the
            // cancel's CQE. epoll: the buffer drops (and panics) right here,
            // in this task, as any value's drop would.
            let here = catch_unwind(AssertUnwindSafe(move || drop(read)));
            assert_eq!(here.is_err(), driver() == percore::Driver::Epoll);
            percore::time::sleep(Duration::from_millis(20)).await;
        });
    });
    let r = rt.clone();
    assert_eq!(
        within(10, "block_on(1)", move || r.block_on(async { 1 })),
        1
    );
    let panics: u64 = rt.metrics().iter().map(|m| m.user_panics).sum();
    if driver() == percore::Driver::IoUring {
        assert_eq!(panics, 1, "the panic is counted");
    }
}

/// A waker that panics when woken.
struct PanickyWaker(AtomicUsize);

impl Wake for PanickyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
        panic!("PanickyWaker woken");
    }
}

/// Hole 4: a waker the worker calls when an op completes panics; the
/// worker reports it and keeps serving.
#[test]
fn a_panicking_waker_does_not_kill_the_worker() {
    let _w = watchdog("panicking waker", 60);
    let rt = Arc::new(runtime(1, 64));
    let r = rt.clone();
    let woken = Arc::new(PanickyWaker(AtomicUsize::new(0)));
    let w2 = woken.clone();
    within(20, "an op woken through a panicking waker", move || {
        r.block_on(async move {
            let (a, b) = tcp_pair().await;
            let mut read = Box::pin(a.read(Vec::with_capacity(64)));
            {
                let waker = Waker::from(w2);
                let mut cx = Context::from_waker(&waker);
                assert!(read.as_mut().poll(&mut cx).is_pending());
            }
            b.write_all(b"x".to_vec()).await.0.unwrap();
            // A park in the driver: it reaps the completion (io_uring) or
            // the readiness event (epoll) and calls the panicking waker.
            percore::time::sleep(Duration::from_millis(20)).await;
            // The result is there for the next poll.
            let (res, _) = read.await;
            assert_eq!(res.unwrap(), 1);
        });
    });
    assert_eq!(woken.0.load(SeqCst), 1);
    let r = rt.clone();
    assert_eq!(
        within(10, "block_on(2)", move || r.block_on(async { 2 })),
        2
    );
}

/// Hole 4's other half: a runtime whose worker failed (here: one that is
/// asked to run after shutdown) answers `block_on` with a clear panic
/// rather than hanging.
#[test]
fn spawn_onto_a_runtime_that_stopped_resolves_instead_of_hanging() {
    let _w = watchdog("stopped runtime", 30);
    let rt = Runtime::builder()
        .driver(driver())
        .workers(1)
        .build()
        .unwrap();
    let h = rt.spawn(async { std::future::pending::<()>().await });
    rt.shutdown_timeout(Duration::from_secs(1));
    let out = within(10, "a handle of a task dropped at shutdown", move || {
        futures_lite_block_on(h)
    });
    assert!(out.unwrap_err().is_cancelled());
}

/// Polls a future on this thread until ready (std only).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    struct T(std::thread::Thread);
    impl Wake for T {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(T(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// Never free early, the dangerous case: the read is in the kernel, then
/// its future is dropped, then data arrives. The buffer must outlive the
/// drop and be freed only by the read's own final CQE (which, with data on
/// the way, may carry the bytes rather than a cancel).
#[test]
fn a_dropped_read_keeps_its_buffer_until_its_own_final_cqe() {
    let _w = watchdog("never free early", 30);
    let rt = runtime(1, 64);
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    rt.block_on(async move {
        for _ in 0..100 {
            let (a, b) = tcp_pair().await;
            let mut read = Box::pin(a.read(CountedBuf::new(&c, 4096)));
            assert!(poll_once(&mut read).await.is_pending());
            percore::nop().await.unwrap(); // submitted: the recv is armed
            let before = c.live();
            drop(read);
            if driver() == percore::Driver::IoUring {
                assert_eq!(c.live(), before, "freed while the recv was armed");
            }
            b.write_all(vec![0xEE; 4096]).await.0.unwrap();
            for _ in 0..3 {
                percore::nop().await.unwrap();
            }
            percore::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(c.live(), 0, "freed at the final CQE");
        }
    });
}

/// Leak, never free: an op in flight whose ring's worker has exited (its
/// runtime was dropped) is dropped on a plain thread. Nothing can tell
/// whether the kernel is done with it, so its buffer is leaked, counted.
#[test]
fn an_op_dropped_after_its_runtime_is_gone_is_leaked_not_freed() {
    let _w = watchdog("leak after exit", 30);
    let counts = Arc::new(Counts::default());
    let (stream, _peer) = std_pair();
    let c = counts.clone();
    let rt = runtime(1, 64);
    let fut = rt.block_on(async move {
        let mut f = Box::pin(async move {
            let (r, buf) = stream.read(CountedBuf::new(&c, 4096)).await;
            (r, buf, stream)
        });
        assert!(poll_once(&mut f).await.is_pending());
        f
    });
    drop(rt);
    let leaked = percore::metrics::leaked_ops();
    drop(fut);
    if driver() == percore::Driver::IoUring {
        assert_eq!(counts.live(), 1, "the buffer must not be freed");
        assert!(
            percore::metrics::leaked_ops() > leaked,
            "the leak is counted"
        );
    } else {
        assert_eq!(counts.live(), 0, "epoll holds no buffer in the kernel");
    }
}

/// Forwarded results and orphaned resources go by mail; each path is
/// counted on the worker that sent it.
#[test]
fn ops_that_leave_their_worker_are_forwarded_and_counted() {
    if driver() != percore::Driver::IoUring {
        return; // epoll ops never leave their poll
    }
    let _w = watchdog("forward counters", 30);
    let rt_a = runtime(1, 64);
    let rt_b = runtime(1, 64);
    for drop_it in [false, true] {
        let (stream, mut peer) = std_pair();
        let fut = rt_a.block_on(async move {
            let mut f = Box::pin(async move {
                let (r, buf) = stream.read(Vec::with_capacity(16)).await;
                (r.map(|n| buf[..n].to_vec()), stream)
            });
            assert!(poll_once(&mut f).await.is_pending());
            f
        });
        let before = rt_b.metrics()[0].ops_forwarded;
        if drop_it {
            rt_b.block_on(async move { drop(fut) });
        } else {
            peer.write_all(b"moved").unwrap();
            let (got, _s) = rt_b.block_on(fut);
            assert_eq!(got.unwrap(), b"moved");
        }
        assert_eq!(
            rt_b.metrics()[0].ops_forwarded,
            before + 1,
            "drop: {drop_it}"
        );
    }
}

/// Fairness: a task that yields forever does not stop another task's I/O
/// or timers on the same worker.
#[test]
fn a_task_that_yields_forever_does_not_starve_io_or_timers() {
    let _w = watchdog("fairness", 30);
    let rt = runtime(1, 64);
    let spinner = rt.spawn(async {
        loop {
            percore::yield_now().await;
        }
    });
    rt.block_on(async {
        let (a, b) = tcp_pair().await;
        for _ in 0..50 {
            b.write_all(b"ping".to_vec()).await.0.unwrap();
            let (r, _) = a.read(Vec::with_capacity(8)).await;
            assert_eq!(r.unwrap(), 4);
            percore::time::sleep(Duration::from_micros(200)).await;
        }
    });
    spinner.abort();
}

/// A waker that counts its drops (each clone counts once when dropped).
struct DropCounting(Arc<AtomicUsize>);

impl Wake for DropCounting {
    fn wake(self: Arc<Self>) {}
}

impl Drop for DropCounting {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Polls `fut` once on the current worker with a drop-counting waker.
async fn poll_with_counting_waker<F: Future + Unpin>(fut: &mut F, drops: &Arc<AtomicUsize>) {
    let waker = Waker::from(Arc::new(DropCounting(drops.clone())));
    let mut cx = Context::from_waker(&waker);
    assert!(std::pin::Pin::new(fut).poll(&mut cx).is_pending());
}

/// Waits up to 2 s for `drops` to reach 1.
fn dropped_within(drops: &AtomicUsize) -> bool {
    for _ in 0..200 {
        if drops.load(SeqCst) >= 1 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A `Sleep` that moves to another worker re-registers there and its old
/// worker drops the old entry (and the waker in it) at once, not at the
/// deadline; likewise an epoll registration of a socket whose task moved.
#[test]
fn a_moved_future_leaves_no_timer_or_registration_behind() {
    let _w = watchdog("moved leftovers", 60);
    let rt_a = runtime(1, 64);
    let rt_b = runtime(1, 64);

    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let sleep = rt_a.block_on(async move {
        let mut s = Box::pin(percore::time::sleep(Duration::from_secs(30)));
        poll_with_counting_waker(&mut s, &d).await;
        s
    });
    // The waker stored on A is a clone; the one made for the poll is gone.
    drops.store(0, SeqCst);
    let h = rt_b.spawn(async move {
        let mut s = sleep;
        assert!(poll_once(&mut s).await.is_pending()); // registers on B, mails A
        s
    });
    let sleep = rt_b.block_on(h).unwrap();
    assert!(
        dropped_within(&drops),
        "worker A still holds the moved sleep's waker"
    );
    drop(sleep);

    if driver() != percore::Driver::Epoll {
        return; // io_uring reads hold no registration
    }
    let (stream, _peer) = std_pair();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let read = rt_a.block_on(async move {
        let mut r = Box::pin(async move {
            let (res, _buf) = stream.read(Vec::with_capacity(16)).await;
            (res, stream)
        });
        poll_with_counting_waker(&mut r, &d).await;
        r
    });
    drops.store(0, SeqCst);
    let h = rt_b.spawn(async move {
        let mut r = read;
        // The cached readiness makes the first try on B an attempt; the
        // wait after it registers there.
        assert!(poll_once(&mut r).await.is_pending());
        r
    });
    let read = rt_b.block_on(h).unwrap();
    assert!(
        dropped_within(&drops),
        "worker A still holds the moved read's waker"
    );
    drop(read);
}

/// A waker whose last clone panics when dropped (safe code can build one).
struct PanicOnLastDrop;

impl Wake for PanicOnLastDrop {
    fn wake(self: Arc<Self>) {}
}

impl Drop for PanicOnLastDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PanicOnLastDrop dropped");
        }
    }
}

/// Review finding: an op forwarded to another runtime holds the only clone
/// of a waker whose drop panics; dropping the op must still hand its buffer
/// to the ring's worker (not unwind through it) and not panic itself.
#[test]
fn a_panicking_waker_drop_cannot_unwind_through_a_forwarded_op() {
    if driver() != percore::Driver::IoUring {
        return;
    }
    let _w = watchdog("forwarded waker drop", 30);
    let rt_a = runtime(1, 64);
    let rt_b = runtime(1, 64);
    let counts = Arc::new(Counts::default());
    let (stream, mut peer) = std_pair();
    let c = counts.clone();
    let fut = rt_a.block_on(async move {
        let mut f = Box::pin(async move {
            let (r, buf) = stream.read(CountedBuf::new(&c, 4096)).await;
            (r, buf, stream)
        });
        assert!(poll_once(&mut f).await.is_pending());
        f
    });
    let dropped_cleanly = rt_b.block_on(async move {
        let mut fut = fut;
        {
            let waker = Waker::from(Arc::new(PanicOnLastDrop));
            let mut cx = Context::from_waker(&waker);
            // Forwarded: the cell keeps a clone; ours goes now, so the
            // cell's is the last one.
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            drop(waker);
        }
        catch_unwind(AssertUnwindSafe(move || drop(fut))).is_ok()
    });
    // Before the fix the waker's panic unwound out of `abandon`, through
    // the buffer, while the recv was armed on A's ring.
    assert!(dropped_cleanly, "Op::drop let a waker's panic out");
    peer.write_all(&[1u8; 64]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counts.live() != 0 && std::time::Instant::now() < deadline {
        rt_a.block_on(async { percore::nop().await.unwrap() });
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        counts.live(),
        0,
        "freed by the ring's worker at the final CQE"
    );
}

/// Review finding: a runtime dropped while a slot holds a waker whose drop
/// panics shuts down normally (the panic is reported, not propagated).
#[test]
fn a_runtime_drop_survives_a_panicking_waker_in_a_slot() {
    let _w = watchdog("driver drop waker", 30);
    let rt = Arc::new(runtime(1, 64));
    let (stream, _peer) = std_pair();
    let r = rt.clone();
    let fut = within(10, "setup", move || {
        r.block_on(async move {
            let mut f = Box::pin(async move {
                let (res, buf) = stream.read(Vec::with_capacity(64)).await;
                (res, buf, stream)
            });
            {
                let waker = Waker::from(Arc::new(PanicOnLastDrop));
                let mut cx = Context::from_waker(&waker);
                assert!(f.as_mut().poll(&mut cx).is_pending());
                drop(waker); // the slot's clone is now the last
            }
            f
        })
    });
    let rt = Arc::try_unwrap(rt).unwrap();
    within(10, "dropping the runtime", move || drop(rt));
    // Its ring is gone: dropping the op now leaks its buffer (io_uring).
    let r = catch_unwind(AssertUnwindSafe(move || drop(fut)));
    assert!(r.is_ok());
}

/// A waker whose drop drops a registered `Sleep` (user code reaching back
/// into the worker's timers).
struct DropsASleep(Mutex<Option<Pin<Box<percore::time::Sleep>>>>);

impl Wake for DropsASleep {
    fn wake(self: Arc<Self>) {}
}

impl Drop for DropsASleep {
    fn drop(&mut self) {
        drop(self.0.lock().unwrap().take());
    }
}

/// Hole 6: wakers were dropped while the timers' cell was borrowed, so a
/// waker whose drop touches the timers (here: drops another registered
/// sleep) panicked with "already borrowed".
#[test]
fn a_waker_dropped_by_the_timers_may_touch_the_timers() {
    let _w = watchdog("timers reentry", 30);
    let rt = runtime(1, 64);
    rt.block_on(async {
        // Sleep 2, registered with the worker's timers.
        let mut s2 = Box::pin(percore::time::sleep(Duration::from_secs(30)));
        assert!(poll_once(&mut s2).await.is_pending());
        // Sleep 1, registered with a waker that owns sleep 2.
        let mut s1 = Box::pin(percore::time::sleep(Duration::from_secs(30)));
        {
            let waker = Waker::from(Arc::new(DropsASleep(Mutex::new(Some(s2)))));
            let mut cx = Context::from_waker(&waker);
            assert!(s1.as_mut().poll(&mut cx).is_pending());
        } // the timers now hold the last clone
          // Re-polling with another waker replaces (drops) it inside the
          // timer update.
        assert!(poll_once(&mut s1).await.is_pending());
        drop(s1);
    });
}
