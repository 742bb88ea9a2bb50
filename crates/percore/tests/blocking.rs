//! The bounded blocking pool (`task::spawn_blocking`): results and panics
//! through the handle, the waiting task woken on its own worker, the full
//! queue refused at once, the thread cap, idle threads ending, threads not
//! pinned to a worker's core, abort before start, shutdown.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use percore::task::{spawn_blocking, try_spawn_blocking};
use percore::Runtime;

fn pool_runtime(workers: usize, threads: usize, queue: usize, keep_alive: Duration) -> Runtime {
    Runtime::builder()
        .driver(driver())
        .workers(workers)
        .blocking_threads(threads)
        .blocking_queue(queue)
        .blocking_keep_alive(keep_alive)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("runtime")
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn results_and_panics_come_back_and_the_waiter_stays_on_its_worker() {
    let _w = watchdog("results", 60);
    let rt = pool_runtime(2, 4, 16, Duration::from_secs(10));
    let (before, on, after, v) = rt.block_on(async {
        let before = thread_name();
        let h = spawn_blocking(|| (thread_name(), 6 * 7));
        let (on, v) = h.await.unwrap();
        (before, on, thread_name(), v)
    });
    assert_eq!(v, 42);
    assert_eq!(before, after, "the awaiting task moved");
    assert!(on.contains("blocking"), "ran on {on:?}");
    let e = rt.block_on(async {
        spawn_blocking(|| -> u8 { panic!("blocking boom") })
            .await
            .unwrap_err()
    });
    assert!(e.is_panic());
    assert_eq!(e.to_string(), "task panicked: blocking boom");
    // From a plain thread too.
    assert_eq!(rt.block_on(rt.spawn_blocking(|| 5)).unwrap(), 5);
}

/// One thread, one queue slot: a third job is refused at once, by
/// `try_spawn_blocking` with an error and by `spawn_blocking` with a
/// handle that is already cancelled; the queued one still runs.
#[test]
fn a_full_pool_refuses_at_once() {
    let _w = watchdog("full pool", 60);
    let rt = pool_runtime(1, 1, 1, Duration::from_secs(10));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let (started_tx, started) = mpsc::channel::<()>();
    let first = rt.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        gate.lock().unwrap().recv().unwrap()
    });
    started.recv().unwrap();
    let queued = rt.spawn_blocking(|| 2);
    let refused = rt.try_spawn_blocking(|| 3).unwrap_err();
    assert!(refused.is_full(), "{refused}");
    assert!(
        refused.to_string().contains("blocking pool is full"),
        "{refused}"
    );
    let also = rt.block_on(async { spawn_blocking(|| 4).await });
    assert!(also.unwrap_err().is_cancelled());
    let in_task = rt.block_on(async { try_spawn_blocking(|| 5).map(drop) });
    assert!(in_task.unwrap_err().is_full());
    assert_eq!(rt.blocking_stats().rejected, 3);
    assert_eq!(rt.blocking_stats().queued, 1);
    release.send(()).unwrap();
    rt.block_on(first).unwrap();
    assert_eq!(rt.block_on(queued).unwrap(), 2);
}

#[test]
fn never_more_threads_than_the_cap_and_every_job_runs() {
    let _w = watchdog("thread cap", 60);
    let rt = pool_runtime(2, 3, 100, Duration::from_secs(10));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let (running, most) = (running.clone(), most.clone());
            rt.spawn_blocking(move || {
                let now = running.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                std::thread::sleep(Duration::from_millis(15));
                running.fetch_sub(1, SeqCst);
                i
            })
        })
        .collect();
    assert!(rt.blocking_stats().threads <= 3);
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(rt.block_on(h).unwrap(), i);
    }
    let most = most.load(SeqCst);
    assert!((1..=3).contains(&most), "{most} jobs ran at once");
    // Counted just after each handle is resolved.
    wait_until("20 completions counted", || {
        rt.blocking_stats().completed == 20
    });
}

#[test]
fn idle_threads_end_after_the_keep_alive() {
    let _w = watchdog("keep-alive", 60);
    let rt = pool_runtime(1, 4, 16, Duration::from_millis(50));
    let hs: Vec<_> = (0..4)
        .map(|_| rt.spawn_blocking(|| std::thread::sleep(Duration::from_millis(20))))
        .collect();
    for h in hs {
        rt.block_on(h).unwrap();
    }
    assert!(rt.blocking_stats().threads >= 1);
    wait_until("idle threads exit", || rt.blocking_stats().threads == 0);
    // And the pool starts threads again afterwards.
    assert_eq!(rt.block_on(rt.spawn_blocking(|| 9)).unwrap(), 9);
}

/// A blocking thread started from a pinned worker does not keep the
/// worker's one-core mask: it may run wherever the process may.
#[test]
fn blocking_threads_are_not_pinned_to_the_worker_core() {
    let _w = watchdog("affinity", 60);
    fn cpus() -> usize {
        // SAFETY: an all-zero cpu_set_t is a valid empty mask, filled by
        // the call for this thread (pid 0).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
                0
            );
            libc::CPU_COUNT(&set) as usize
        }
    }
    let here = cpus();
    let rt = Runtime::builder()
        .driver(driver())
        .workers(1)
        .pin(true)
        .build()
        .unwrap();
    let (on_worker, on_pool) = rt.block_on(async {
        let w = cpus();
        (w, spawn_blocking(cpus).await.unwrap())
    });
    if here > 1 && rt.workers()[0].core.is_some() {
        assert_eq!(on_worker, 1, "the worker is pinned to one core");
    }
    assert_eq!(on_pool, here, "the blocking thread kept a narrower mask");
}

#[test]
fn an_aborted_job_that_has_not_started_never_runs() {
    let _w = watchdog("abort", 60);
    let rt = pool_runtime(1, 1, 4, Duration::from_secs(10));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let first = rt.spawn_blocking(move || gate.lock().unwrap().recv().unwrap());
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let second = rt.spawn_blocking(move || r.store(true, SeqCst));
    second.abort();
    release.send(()).unwrap();
    rt.block_on(first).unwrap();
    assert!(rt.block_on(second).unwrap_err().is_cancelled());
    assert!(!ran.load(SeqCst));
}

/// Shutdown cancels queued jobs (their handles say so) and refuses new
/// ones; the running one finishes on its own thread.
#[test]
fn shutdown_cancels_queued_jobs() {
    let _w = watchdog("shutdown", 60);
    let rt = pool_runtime(1, 1, 4, Duration::from_secs(10));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let (started_tx, started) = mpsc::channel::<()>();
    let running = rt.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        gate.lock().unwrap().recv().unwrap();
        7
    });
    started.recv().unwrap();
    let queued = rt.spawn_blocking(|| 8);
    rt.shutdown_timeout(Duration::from_millis(100));
    assert!(block_on_thread(queued).unwrap_err().is_cancelled());
    release.send(()).unwrap();
    assert_eq!(block_on_thread(running).unwrap(), 7);
}
/// Panics on drop: user code the pool runs outside the closure.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb");
    }
}

/// A value whose drop panics, left on the pool thread because its handle
/// was dropped first, must not cost the pool its thread count: the next
/// job still runs.
#[test]
fn a_panicking_drop_on_a_pool_thread_does_not_leak_a_thread() {
    let _w = watchdog("bomb", 60);
    let rt = pool_runtime(1, 1, 4, Duration::from_secs(10));
    drop(rt.spawn_blocking(|| {
        std::thread::sleep(Duration::from_millis(50));
        Bomb
    }));
    std::thread::sleep(Duration::from_millis(200));
    let h = rt.spawn_blocking(|| 1);
    wait_until("the next job runs", || h.is_finished());
    assert_eq!(rt.block_on(h).unwrap(), 1);
}

/// Shutdown drops a queued job whose closure panics on drop: contained,
/// and the runtime still shuts down.
#[test]
fn a_panicking_queued_job_does_not_stop_shutdown() {
    let _w = watchdog("shutdown bomb", 60);
    let rt = pool_runtime(1, 1, 4, Duration::from_secs(10));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let (started_tx, started) = mpsc::channel::<()>();
    let _running = rt.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        let _ = gate.lock().unwrap().recv();
    });
    started.recv().unwrap();
    let b = Bomb;
    let queued = rt.spawn_blocking(move || drop(b));
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.shutdown_timeout(Duration::from_secs(1))
    }));
    assert!(dropped.is_ok(), "shutdown panicked");
    assert!(block_on_thread(queued).unwrap_err().is_cancelled());
    drop(release);
}
