//! The wake path's claims (`docs/architecture.md`, "Cross-thread wake
//! path"), each observed through the per-worker counters.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::*;
use percore::{Runtime, WakeMode};

/// A future completed from outside: it stores its waker, and `fire` sets
/// the flag and wakes it from whatever thread calls it.
#[derive(Clone, Default)]
struct Trigger(Arc<(AtomicBool, Mutex<Option<Waker>>)>);

impl Trigger {
    fn fire(&self) {
        self.0 .0.store(true, SeqCst);
        let w = self.0 .1.lock().unwrap().take();
        w.expect("the task registered its waker").wake();
    }
    fn armed(&self) -> bool {
        self.0 .1.lock().unwrap().is_some()
    }
}

impl Future for Trigger {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 .0.load(SeqCst) {
            return Poll::Ready(());
        }
        *self.0 .1.lock().unwrap() = Some(cx.waker().clone());
        if self.0 .0.load(SeqCst) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A parked worker whose only way out is a wake from a plain thread (no
/// I/O, no timer, no `block_on` waiting on it): the wake must unpark it.
#[test]
fn a_foreign_thread_wake_unparks_a_worker_nothing_else_would_wake() {
    let _w = watchdog("foreign wake", 30);
    let rt = runtime(1, 64);
    let trigger = Trigger::default();
    let (tx, rx) = mpsc::channel();
    let t = trigger.clone();
    let parks = rt.metrics()[0].parks;
    // Detached: nobody awaits its handle, so nothing else touches worker 0.
    drop(rt.spawn(async move {
        t.await;
        tx.send(()).unwrap();
    }));
    wait_until("the task to wait", || trigger.armed());
    // The first park after the spawn comes after the task ran and waited.
    wait_until("the worker to park", || rt.metrics()[0].parks > parks);
    std::thread::sleep(Duration::from_millis(20));
    let signals = rt.metrics()[0].remote_unparks;
    trigger.fire();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the woken task never ran: the worker stayed parked");
    let m = rt.metrics()[0];
    assert_eq!(m.remote_unparks, signals + 1, "one signal for the park");
    assert!(m.remote_wakes >= 1);
}

/// Worker 0 wakes a task that waits on parked worker 1: with MSG_RING the
/// wake is a completion posted into worker 1's ring, counted where it is
/// sent and where it is received.
#[test]
fn msg_ring_wakes_are_counted_where_they_arrive() {
    if driver() != percore::Driver::IoUring {
        return;
    }
    let _w = watchdog("msg_ring", 30);
    let rt = Runtime::builder()
        .workers(2)
        .wake_mode(WakeMode::MsgRing)
        .steal(false)
        .build()
        .unwrap();
    let trigger = Trigger::default();
    let t = trigger.clone();
    let before = rt.metrics()[1];
    let waiter = rt.spawn_local_on(1, move || async move {
        t.await;
    });
    wait_until("the task to wait", || trigger.armed());
    wait_until("worker 1 to park", || rt.metrics()[1].parks > before.parks);
    std::thread::sleep(Duration::from_millis(20));
    let t = trigger.clone();
    let sent_before = rt.metrics()[0].msg_ring_wakes;
    rt.spawn_local_on(0, move || async move { t.fire() });
    rt.block_on(async move { waiter.await.unwrap() });
    let m = rt.metrics();
    assert!(
        m[0].msg_ring_wakes > sent_before,
        "worker 0 sent by MSG_RING"
    );
    assert!(
        m[1].msg_ring_received > before.msg_ring_received,
        "worker 1 received it: {:?}",
        m[1]
    );
}

/// Waking tasks on a worker that is busy running costs no signal: the
/// latch says it is running, so wakers only queue.
#[test]
fn waking_a_running_worker_costs_no_signal() {
    let _w = watchdog("running worker", 30);
    let rt = runtime(1, 64);
    let stop = Arc::new(AtomicBool::new(false));
    let (running_tx, running_rx) = mpsc::channel();
    let s = stop.clone();
    let spinner = rt.spawn(async move {
        running_tx.send(()).unwrap();
        while !s.load(SeqCst) {
            percore::yield_now().await;
        }
    });
    running_rx.recv().unwrap();
    let signals = rt.metrics()[0].remote_unparks;
    let handles: Vec<_> = (0..1000).map(|i| rt.spawn(async move { i })).collect();
    let scheduled = rt.metrics()[0].remote_schedules;
    let after = rt.metrics()[0].remote_unparks;
    stop.store(true, SeqCst);
    let sum: u64 = rt.block_on(async move {
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        spinner.await.unwrap();
        sum
    });
    assert_eq!(sum, 999 * 1000 / 2);
    assert!(scheduled >= 1000);
    assert_eq!(after, signals, "a running worker was signalled");
}
