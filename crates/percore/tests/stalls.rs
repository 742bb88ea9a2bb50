//! Stall detection: a poll longer than `Builder::stall_threshold` is
//! counted and reported once (to the `on_stall` hook, with the worker, the
//! task's id and name and the duration); every poll's duration and loop
//! lag land in the worker's histograms; a panicking hook is contained.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use percore::Runtime;

type Seen = Arc<Mutex<Vec<(usize, u64, Option<String>, Duration)>>>;

fn runtime_with_hook(threshold: Duration) -> (Runtime, Seen) {
    runtime_with_slow_hook(threshold, 2, Duration::ZERO)
}

/// `workers` workers; the hook records each stall after sleeping `delay`.
fn runtime_with_slow_hook(threshold: Duration, workers: usize, delay: Duration) -> (Runtime, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let rt = Runtime::builder()
        .driver(driver())
        .workers(workers)
        .stall_threshold(threshold)
        .on_stall(move |st| {
            std::thread::sleep(delay);
            s.lock().unwrap().push((
                st.worker,
                st.task_id,
                st.task_name.map(str::to_string),
                st.duration,
            ))
        })
        .build()
        .unwrap();
    (rt, seen)
}

#[test]
fn a_blocking_poll_is_reported_once_with_its_name_and_duration() {
    let _w = watchdog("stall", 60);
    let (rt, seen) = runtime_with_hook(Duration::from_millis(20));
    rt.block_on(async {
        percore::task::Builder::new()
            .name("sleepy")
            .spawn(async {
                std::thread::sleep(Duration::from_millis(60));
                percore::yield_now().await;
            })
            .await
            .unwrap();
    });
    let seen = seen.lock().unwrap().clone();
    let named: Vec<_> = seen
        .iter()
        .filter(|s| s.2.as_deref() == Some("sleepy"))
        .collect();
    assert_eq!(named.len(), 1, "one report for one stall: {seen:?}");
    let (worker, id, _, took) = named[0];
    assert!(*worker < 2 && *id > 0);
    assert!(*took >= Duration::from_millis(60), "{took:?}");
    let stalls: u64 = rt.metrics().iter().map(|m| m.stalls).sum();
    assert_eq!(stalls as usize, seen.len());
}

#[test]
fn short_polls_are_not_stalls_but_are_timed() {
    let _w = watchdog("no stall", 60);
    // Far above any scheduling hiccup of a shared machine.
    let (rt, seen) = runtime_with_hook(Duration::from_millis(500));
    rt.block_on(async {
        for i in 0..200u32 {
            percore::spawn(async move { i }).await.unwrap();
        }
        // A poll of 30 ms is under this threshold.
        percore::spawn(async { std::thread::sleep(Duration::from_millis(30)) })
            .await
            .unwrap();
    });
    assert!(seen.lock().unwrap().is_empty());
    // The worker records a poll's time just after the poll, which may be
    // after block_on has returned here: let it settle.
    let counts = || {
        let m = rt.metrics();
        let polls: u64 = m.iter().map(|m| m.polls).sum();
        let timed: u64 = m.iter().map(|m| m.poll_time.count()).sum();
        (polls, timed)
    };
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while counts().0 != counts().1 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let m = rt.metrics();
    let polls: u64 = m.iter().map(|m| m.polls).sum();
    let timed: u64 = m.iter().map(|m| m.poll_time.count()).sum();
    let lagged: u64 = m.iter().map(|m| m.loop_lag.count()).sum();
    assert_eq!(timed, polls, "every poll is timed");
    assert_eq!(lagged, polls, "every poll has a loop lag");
    assert!(polls >= 201);
    let mut all = percore::metrics::HistogramSnapshot::default();
    for w in &m {
        all.merge(&w.poll_time);
    }
    assert!(all.quantile(1.0).unwrap() >= Duration::from_millis(30));
}

#[test]
fn a_panicking_stall_hook_is_contained() {
    let _w = watchdog("hook panic", 60);
    let rt = Runtime::builder()
        .driver(driver())
        .workers(1)
        .stall_threshold(Duration::from_millis(5))
        .on_stall(|_| panic!("hook boom"))
        .build()
        .unwrap();
    let v = rt.block_on(async {
        percore::spawn(async {
            std::thread::sleep(Duration::from_millis(20));
            3
        })
        .await
        .unwrap()
    });
    assert_eq!(v, 3);
    assert_eq!(rt.block_on(async { 4 }), 4, "the worker carries on");
    assert!(rt.metrics()[0].user_panics >= 1);
}

/// The loop lag of a task woken while its worker is stalled by another
/// task covers the stall.
#[test]
fn loop_lag_shows_a_task_kept_waiting_by_a_stall() {
    let _w = watchdog("lag", 60);
    let (rt, _seen) = runtime_with_hook(Duration::from_secs(10));
    rt.block_on(async {
        let (tx, rx) = percore::sync::oneshot::channel::<()>();
        let waiter = percore::spawn_local(async move {
            rx.await.unwrap();
        });
        percore::yield_now().await;
        let hog = percore::spawn_local(async move {
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(40));
        });
        hog.await.unwrap();
        waiter.await.unwrap();
    });
    let mut lag = percore::metrics::HistogramSnapshot::default();
    for w in rt.metrics() {
        lag.merge(&w.loop_lag);
    }
    assert!(
        lag.quantile(1.0).unwrap() >= Duration::from_millis(32),
        "{:?}",
        lag.quantile(1.0)
    );
}

/// The time the stall report itself takes (a slow hook) is not charged to
/// the next task: only the blocking task is reported.
#[test]
fn a_slow_stall_hook_does_not_make_the_next_task_a_stall() {
    let _w = watchdog("slow hook", 60);
    let (rt, seen) =
        runtime_with_slow_hook(Duration::from_millis(25), 1, Duration::from_millis(60));
    rt.block_on(async {
        let a = percore::task::Builder::new()
            .name("blocker")
            .spawn_local(async {
                std::thread::sleep(Duration::from_millis(30));
            });
        let b = percore::task::Builder::new()
            .name("quick")
            .spawn_local(async {});
        a.await.unwrap();
        b.await.unwrap();
    });
    let names: Vec<Option<String>> = seen.lock().unwrap().iter().map(|s| s.2.clone()).collect();
    assert!(names.contains(&Some("blocker".into())), "{names:?}");
    assert!(
        !names.contains(&Some("quick".into())),
        "the hook's time was charged to the next task: {names:?}"
    );
}
