//! Tasks and wakeups: join handle results, panics, abort, detach; wakes
//! across workers and from foreign threads; spawn_local with !Send futures.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use percore::sync::oneshot;

fn worker_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

#[test]
fn join_handle_returns_values_and_reports_panics() {
    let _w = watchdog("join", 60);
    let rt = runtime(2, 64);
    assert_eq!(
        rt.block_on(async { percore::spawn(async { 7 }).await.unwrap() }),
        7
    );
    let err = rt.block_on(async {
        percore::spawn(async {
            if true {
                panic!("boom {}", 42);
            }
        })
        .await
        .unwrap_err()
    });
    assert!(err.is_panic() && !err.is_cancelled());
    assert_eq!(err.to_string(), "task panicked: boom 42");
    // The worker survived the panic.
    assert_eq!(rt.block_on(async { 1 }), 1);
    // block_on resumes a panic of its own future.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { panic!("inner") })
    }));
    assert_eq!(*r.unwrap_err().downcast::<&str>().unwrap(), "inner");
}

#[test]
fn abort_cancels_pending_tasks_and_their_io() {
    let _w = watchdog("abort", 60);
    let rt = runtime(2, 64);
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    rt.block_on(async move {
        let (_client, server) = tcp_pair().await;
        let c2 = c.clone();
        let h = percore::spawn(async move {
            let _ = server.read(CountedBuf::new(&c2, 64)).await;
            unreachable!("no data is ever sent");
        });
        percore::time::sleep(Duration::from_millis(10)).await;
        assert!(!h.is_finished());
        h.abort();
        let e = h.await.unwrap_err();
        assert!(e.is_cancelled(), "{e}");
        // Aborting a finished task changes nothing.
        let done = percore::spawn(async { "ok" });
        percore::time::sleep(Duration::from_millis(5)).await;
        done.abort();
        assert_eq!(done.await.unwrap(), "ok");
        // The aborted read's buffer is released at its final CQE.
        for _ in 0..3 {
            percore::nop().await.unwrap();
        }
        assert_eq!(c.live(), 0);
    });
}

#[test]
fn dropping_a_handle_detaches_the_task() {
    let _w = watchdog("detach", 60);
    let rt = runtime(2, 64);
    let (tx, rx) = oneshot::channel();
    drop(rt.spawn(async move {
        percore::time::sleep(Duration::from_millis(20)).await;
        tx.send("still ran").unwrap();
    }));
    assert_eq!(rx.blocking_recv().unwrap(), "still ran");
}

#[test]
fn wakes_cross_workers_and_land_on_the_task_worker() {
    let _w = watchdog("cross", 60);
    let rt = runtime(2, 64);
    // Ping-pong between a task pinned to worker 0 and one pinned to worker 1.
    let rounds = 2_000;
    let (to1_tx, to1_rx) = std::sync::mpsc::channel::<oneshot::Sender<u32>>();
    let a = rt.spawn_local_on(1, move || async move {
        let mut seen = 0;
        for i in 0..rounds {
            let (tx, rx) = oneshot::channel();
            to1_tx.send(tx).unwrap();
            assert_eq!(rx.await.unwrap(), i);
            assert_eq!(worker_name(), "percore-worker-1");
            seen += 1;
        }
        seen
    });
    let b = rt.spawn_local_on(0, move || async move {
        for i in 0..rounds {
            // The std channel may be empty for a moment: yield, don't block.
            let tx = loop {
                match to1_rx.try_recv() {
                    Ok(tx) => break tx,
                    Err(_) => percore::yield_now().await,
                }
            };
            tx.send(i).unwrap();
            assert_eq!(worker_name(), "percore-worker-0");
        }
    });
    assert_eq!(rt.block_on(a).unwrap(), rounds);
    rt.block_on(b).unwrap();
    // Wakes from worker 0 reach worker 1 through its remote queue (a wake that
    // lands while the task still runs only sets NOTIFIED, so not all do).
    assert!(rt.metrics()[1].remote_schedules > 0, "{:?}", rt.metrics());
}

#[test]
fn foreign_thread_wakes_a_parked_worker() {
    let _w = watchdog("foreign", 60);
    let rt = runtime(1, 64);
    let before = rt.metrics()[0].remote_unparks;
    for i in 0..200u32 {
        let (tx, rx) = oneshot::channel();
        let h = rt.spawn(async move { rx.await.unwrap() * 2 });
        // Give the worker time to run the task and park.
        std::thread::sleep(Duration::from_micros(300));
        std::thread::spawn(move || tx.send(i).unwrap())
            .join()
            .unwrap();
        assert_eq!(rt.block_on(h).unwrap(), i * 2);
    }
    // The worker was parked for (most of) these wakes: each unparked it.
    assert!(
        rt.metrics()[0].remote_unparks > before,
        "{:?}",
        rt.metrics()
    );
}

#[test]
fn spawn_local_runs_non_send_futures_on_their_worker() {
    let _w = watchdog("local", 60);
    let rt = runtime(2, 64);
    let h = rt.spawn_local_on(1, rt_spawn_local_counts);
    let n = rt.block_on(h).unwrap().expect("local tasks complete");
    assert_eq!(n, 100);
}

async fn rt_spawn_local_counts() -> Option<usize> {
    let shared = Rc::new(Cell::new(0usize));
    let me = worker_name();
    let mut hs = Vec::new();
    for _ in 0..100 {
        let s = shared.clone();
        let me = me.clone();
        hs.push(percore::spawn_local(async move {
            percore::yield_now().await;
            assert_eq!(worker_name(), me);
            s.set(s.get() + 1);
        }));
    }
    for h in hs {
        h.await.ok()?;
    }
    Some(shared.get())
}

#[test]
fn many_tasks_spawned_from_outside_all_run() {
    let _w = watchdog("many", 60);
    let rt = runtime(2, 64);
    let hits = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..10_000)
        .map(|_| {
            let h = hits.clone();
            rt.spawn(async move {
                percore::yield_now().await;
                h.fetch_add(1, SeqCst);
            })
        })
        .collect();
    for h in hs {
        rt.block_on(h).unwrap();
    }
    assert_eq!(hits.load(SeqCst), 10_000);
    let m = rt.metrics();
    assert!(
        m[0].spawned > 0 && m[1].spawned > 0,
        "round-robin over workers: {m:?}"
    );
}

#[test]
fn shutdown_cancels_unfinished_tasks() {
    let _w = watchdog("shutdown", 60);
    let rt = runtime(2, 64);
    let h = rt.spawn(async {
        percore::time::sleep(Duration::from_secs(3600)).await;
    });
    std::thread::sleep(Duration::from_millis(10));
    rt.shutdown_timeout(Duration::from_secs(1));
    let e = futures_wait(h).unwrap_err();
    assert!(e.is_cancelled());
}

/// Waits for a handle on a plain thread (the runtime is gone).
fn futures_wait<T: Send + 'static>(h: percore::JoinHandle<T>) -> Result<T, percore::JoinError> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        // Poll the handle with a thread waker via a oneshot-like bridge.
        let r = block_on_thread(h);
        let _ = tx.send(r);
    });
    rx.blocking_recv().unwrap()
}
