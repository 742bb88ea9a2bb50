//! Timers: ordering, `timeout` cancelling the inner op, 100k timers without
//! a syscall per timer, `interval`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use percore::time::{interval, sleep, sleep_until, timeout};

#[test]
fn sleeps_fire_in_deadline_order_and_not_early() {
    let _w = watchdog("order", 60);
    let rt = runtime(1, 64);
    let fired = Arc::new(Mutex::new(Vec::new()));
    let f = fired.clone();
    rt.block_on(async move {
        let start = Instant::now();
        let mut rng = Rng::new(7);
        let mut hs = Vec::new();
        for i in 0..200u64 {
            let at = start + Duration::from_millis(rng.below(60)) + Duration::from_micros(i);
            let f = f.clone();
            hs.push(percore::spawn(async move {
                sleep_until(at).await;
                assert!(Instant::now() >= at, "a sleep returned early");
                f.lock().unwrap().push(at);
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
    });
    let fired = fired.lock().unwrap();
    assert_eq!(fired.len(), 200);
    assert!(
        fired.windows(2).all(|w| w[0] <= w[1]),
        "timers fired out of order"
    );
}

#[test]
fn timeout_cancels_the_inner_read_and_the_stream_stays_usable() {
    let _w = watchdog("timeout", 60);
    let rt = runtime(1, 64);
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    rt.block_on(async move {
        let (client, server) = tcp_pair().await;
        let t = Instant::now();
        let r = timeout(
            Duration::from_millis(30),
            server.read(CountedBuf::new(&c, 64)),
        )
        .await;
        assert!(r.is_err());
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(30),
            "fired early: {waited:?}"
        );
        // Completes in time: Ok.
        client.write_all(b"later".as_slice()).await.0.unwrap();
        let (n, buf) = timeout(Duration::from_secs(5), server.read(Vec::with_capacity(8)))
            .await
            .expect("data was sent");
        assert_eq!(n.unwrap(), 5);
        assert_eq!(buf, b"later");
        for _ in 0..3 {
            percore::nop().await.unwrap();
        }
        assert_eq!(c.live(), 0, "the timed-out read's buffer was released");
    });
}

#[test]
fn a_hundred_thousand_timers_need_no_syscall_each() {
    let _w = watchdog("100k", 120);
    let rt = runtime(1, 64);
    let before = rt.metrics()[0];
    rt.block_on(async {
        let start = Instant::now();
        let mut rng = Rng::new(11);
        let mut hs = Vec::with_capacity(100_000);
        for _ in 0..100_000 {
            let at = start + Duration::from_millis(20 + rng.below(200));
            hs.push(percore::spawn(sleep_until(at)));
        }
        for h in hs {
            h.await.unwrap();
        }
    });
    let after = rt.metrics()[0];
    let enters = after.enters - before.enters;
    // Deadlines spread over ~200 ms: wake-ups are per due batch, not per timer.
    assert!(
        enters < 10_000,
        "{enters} io_uring_enter calls for 100k timers"
    );
}

#[test]
fn dropped_and_reset_sleeps_do_not_fire() {
    let _w = watchdog("reset", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let t = Instant::now();
        let long = Box::pin(sleep(Duration::from_secs(3600)));
        let mut s = Box::pin(sleep(Duration::from_secs(3600)));
        assert!(poll_once(&mut s).await.is_pending());
        drop(long);
        s.as_mut().reset(Instant::now() + Duration::from_millis(10));
        s.await;
        assert!(t.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn interval_ticks_at_its_period() {
    let _w = watchdog("interval", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let start = Instant::now();
        let mut iv = interval(Duration::from_millis(10));
        let mut ticks = Vec::new();
        for _ in 0..6 {
            ticks.push(iv.tick().await);
        }
        assert!(
            ticks[0] - start < Duration::from_millis(5),
            "first tick is immediate"
        );
        for w in ticks.windows(2) {
            assert_eq!(
                w[1] - w[0],
                Duration::from_millis(10),
                "scheduled instants are a period apart"
            );
        }
        assert!(start.elapsed() >= Duration::from_millis(50));
    });
}
