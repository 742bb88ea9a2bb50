//! Work stealing (issue 4): tasks move between workers with ops in flight,
//! and everything still completes exactly once, every buffer is dropped
//! exactly once and no fd leaks. Also: `spawn_local` tasks never move,
//! `steal(false)` keeps tasks home, and both wake modes deliver.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use percore::time::timeout;
use percore::{Driver, Runtime, WakeMode};

fn on_uring() -> bool {
    driver() == Driver::IoUring
}

fn worker_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

/// Burns CPU so the spawning worker stays busy and its sibling steals.
fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// The tests here run one at a time: the stress test compares
/// `/proc/self/fd` counts, which another test's runtime would disturb.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn stolen_tasks_with_ops_in_flight_complete_once_and_leak_nothing() {
    let _s = serial();
    let _w = watchdog("stealing stress", 240);
    let baseline = fd_count();
    let counts = Arc::new(Counts::default());
    let rt = Runtime::builder()
        .driver(driver())
        .workers(2)
        .ring_entries(8)
        .steal_threshold(1)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("runtime");

    const PAIRS: usize = 100;
    const ROUNDS: usize = 20;
    const NOPS: usize = 2_000;
    let c = counts.clone();
    let echoed = Arc::new(AtomicUsize::new(0));
    let e = echoed.clone();
    let ran_on = Arc::new(Mutex::new([0usize; 2]));
    let r = ran_on.clone();
    let (nops_done, abandoned) = rt.block_on(async move {
        let mut handles = Vec::new();
        // Echo pairs: both ends are stealable tasks that keep a read or a
        // write in flight most of the time.
        for p in 0..PAIRS {
            let (client, server) = tcp_pair().await;
            let c1 = c.clone();
            handles.push(percore::spawn(async move {
                loop {
                    let (res, buf) = server.read(CountedBuf::new(&c1, 512)).await;
                    let n = res.expect("server read");
                    if n == 0 {
                        return;
                    }
                    let out = CountedBuf::filled(&c1, &buf.bytes()[..n]);
                    drop(buf);
                    server.write_all(out).await.0.expect("server write");
                }
            }));
            let (c2, e2) = (c.clone(), e.clone());
            handles.push(percore::spawn(async move {
                for round in 0..ROUNDS {
                    let msg = format!("pair {p} round {round}");
                    let (res, _) = client
                        .write_all(CountedBuf::filled(&c2, msg.as_bytes()))
                        .await;
                    res.expect("client write");
                    let mut got = Vec::new();
                    while got.len() < msg.len() {
                        let (res, buf) = client.read(CountedBuf::new(&c2, 512)).await;
                        let n = res.expect("client read");
                        assert!(n > 0, "server closed early");
                        got.extend_from_slice(&buf.bytes()[..n]);
                    }
                    assert_eq!(got, msg.as_bytes(), "echo mismatch");
                    e2.fetch_add(1, SeqCst);
                    if round % 4 == 0 {
                        spin(Duration::from_micros(50));
                    }
                }
            }));
        }
        // Thousands of short tasks with an op in flight at nearly every
        // yield point, all spawned on this worker so the other steals.
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..NOPS {
            let (d, r) = (done.clone(), r.clone());
            handles.push(percore::spawn(async move {
                for k in 0..5 {
                    percore::nop().await.expect("nop");
                    if (i + k) % 16 == 0 {
                        spin(Duration::from_micros(20));
                    }
                }
                let idx = if worker_name().ends_with("-1") { 1 } else { 0 };
                r.lock().unwrap()[idx] += 1;
                d.fetch_add(1, SeqCst);
            }));
        }
        // Reads dropped while in flight, possibly after their task moved:
        // the resources must go back to the ring that has them.
        let abandoned = Arc::new(AtomicUsize::new(0));
        let mut silent = Vec::new();
        for i in 0..50u64 {
            let (quiet, other) = tcp_pair().await;
            silent.push(other);
            let (c3, a) = (c.clone(), abandoned.clone());
            handles.push(percore::spawn(async move {
                spin(Duration::from_micros(30));
                let read = quiet.read(CountedBuf::new(&c3, 64));
                let r = timeout(Duration::from_micros(200 + 40 * i), read).await;
                assert!(r.is_err(), "nobody writes to this socket");
                a.fetch_add(1, SeqCst);
            }));
        }
        for h in handles {
            h.await.expect("task");
        }
        drop(silent);
        (done.load(SeqCst), abandoned.load(SeqCst))
    });
    assert_eq!(nops_done, NOPS);
    assert_eq!(abandoned, 50);
    assert_eq!(echoed.load(SeqCst), PAIRS * ROUNDS);
    let m = rt.metrics();
    let stolen: u64 = m.iter().map(|w| w.stolen_tasks).sum();
    eprintln!("stress metrics: {m:?}");
    // Which tasks move is up to timing (on epoll a nop is only a yield, and
    // the nop tasks may all finish before worker 1 looks); that some do is
    // not.
    let ran = *ran_on.lock().unwrap();
    assert!(
        stolen > 0,
        "nothing was stolen: {m:?}; nop tasks per worker {ran:?}"
    );
    if on_uring() {
        let forwarded: u64 = m.iter().map(|w| w.ops_forwarded).sum();
        assert!(forwarded > 0, "no op crossed workers: {m:?}");
    }
    drop(rt);
    assert_eq!(
        counts.live(),
        0,
        "buffers not dropped (or dropped twice): {counts:?}"
    );
    assert_eq!(fd_count(), baseline, "fds leaked");
}

/// Runs 200 tasks spawned on worker 0 (each records where its polls ran)
/// and returns (polls on worker 0, polls on worker 1).
fn where_tasks_ran(steal: bool, local: bool) -> (usize, usize) {
    let rt = Runtime::builder()
        .driver(driver())
        .workers(2)
        .steal(steal)
        .steal_threshold(1)
        .build()
        .expect("runtime");
    let seen = Arc::new(Mutex::new((0usize, 0usize)));
    let s = seen.clone();
    let h = rt.spawn_local_on(0, move || async move {
        let mut hs = Vec::new();
        for _ in 0..200 {
            let s = s.clone();
            let body = async move {
                for _ in 0..5 {
                    spin(Duration::from_micros(20));
                    {
                        let mut g = s.lock().unwrap();
                        if worker_name().ends_with("-1") {
                            g.1 += 1;
                        } else {
                            g.0 += 1;
                        }
                    }
                    percore::yield_now().await;
                }
            };
            hs.push(if local {
                percore::spawn_local(body)
            } else {
                percore::spawn(body)
            });
        }
        for h in hs {
            h.await.unwrap();
        }
    });
    rt.block_on(h).unwrap();
    let r = *seen.lock().unwrap();
    r
}

#[test]
fn steal_moves_spawned_tasks_but_never_local_ones_or_when_off() {
    let _s = serial();
    let _w = watchdog("steal placement", 60);
    let (_, on_1) = where_tasks_ran(true, false);
    assert!(on_1 > 0, "stealing on: worker 1 ran nothing");
    assert_eq!(where_tasks_ran(false, false), (1000, 0), "stealing off");
    assert_eq!(where_tasks_ran(true, true), (1000, 0), "spawn_local moved");
}

/// Ping-pong between local tasks on two workers: every wake crosses
/// workers, most of them to a parked one.
fn ping_pong(mode: WakeMode, rounds: u32) -> Vec<percore::metrics::MetricsSnapshot> {
    let rt = Runtime::builder()
        .driver(driver())
        .workers(2)
        .wake_mode(mode)
        .build()
        .expect("runtime");
    let (to1_tx, to1_rx) = std::sync::mpsc::channel::<percore::sync::oneshot::Sender<u32>>();
    let (to0_tx, to0_rx) = std::sync::mpsc::channel::<percore::sync::oneshot::Sender<u32>>();
    let a = rt.spawn_local_on(0, move || async move {
        for i in 0..rounds {
            let (tx, rx) = percore::sync::oneshot::channel();
            to1_tx.send(tx).unwrap();
            // Worker 1 answers through a oneshot sent back to us.
            let back = rx.await.unwrap();
            assert_eq!(back, i);
        }
        drop(to0_rx);
    });
    let b = rt.spawn_local_on(1, move || async move {
        let _keep = to0_tx;
        for i in 0..rounds {
            let tx = loop {
                match to1_rx.try_recv() {
                    Ok(tx) => break tx,
                    Err(_) => percore::time::sleep(Duration::from_micros(50)).await,
                }
            };
            tx.send(i).unwrap();
        }
    });
    rt.block_on(a).unwrap();
    rt.block_on(b).unwrap();
    rt.metrics()
}

#[test]
fn both_wake_modes_deliver_cross_worker_wakes() {
    let _s = serial();
    let _w = watchdog("wake modes", 60);
    if !on_uring() {
        // No rings: every mode is the eventfd.
        ping_pong(WakeMode::Auto, 200);
        return;
    }
    let m = ping_pong(WakeMode::Eventfd, 200);
    assert_eq!(m.iter().map(|w| w.msg_ring_wakes).sum::<u64>(), 0, "{m:?}");
    let m = ping_pong(WakeMode::MsgRing, 200);
    let sent: u64 = m.iter().map(|w| w.msg_ring_wakes).sum();
    assert!(sent > 0, "MsgRing mode sent no MSG_RING wake: {m:?}");
    let received: u64 = m.iter().map(|w| w.remote_wakes).sum();
    assert!(received > 0, "{m:?}");
}
