//! Timers: ordering, `timeout` cancelling the inner op, 100k timers without
//! a syscall per timer, `interval`.

mod common;

use std::future::Future;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Wake, Waker};
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
    const TIMERS: u64 = 100_000;
    let _w = watchdog("100k", 120);
    let rt = runtime(1, 64);
    let before = rt.metrics()[0];
    rt.block_on(async {
        let start = Instant::now();
        let mut rng = Rng::new(11);
        let mut hs = Vec::with_capacity(TIMERS as usize);
        for _ in 0..TIMERS {
            let at = start + Duration::from_millis(20 + rng.below(200));
            hs.push(percore::spawn(sleep_until(at)));
        }
        for h in hs {
            h.await.unwrap();
        }
    });
    let after = rt.metrics()[0];
    // The claim is about SQEs: registering, firing and dropping a timer is a
    // map operation, never an SQE (an IORING_OP_TIMEOUT per timer, or a
    // wake-up SQE per due timer, would count 100k here). What is left are the
    // driver's own SQEs: the unpark read it re-arms now and then. (The epoll
    // driver queues no SQEs: 0; its syscalls are counted in `enters`.)
    let sqes = after.submitted - before.submitted;
    assert!(
        sqes < TIMERS / 1000,
        "{sqes} SQEs submitted for {TIMERS} timers: timers must not cost an SQE each"
    );
    // Nor a syscall each: io_uring_enter / epoll_wait calls follow the loop
    // turns (due batches over ~200 ms), not the timers.
    let enters = after.enters - before.enters;
    assert!(
        enters < TIMERS / 10,
        "{enters} io_uring_enter/epoll_wait calls for {TIMERS} timers"
    );
}

/// A waker that counts its wakes; `Arc::strong_count` of it counts its live
/// clones (so the timer entry's clone is visible).
#[derive(Default)]
struct CountingWake {
    wakes: AtomicUsize,
}

impl Wake for CountingWake {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
}

#[test]
fn dropped_and_reset_sleeps_do_not_fire() {
    let _w = watchdog("reset", 60);
    let rt = runtime(1, 64);
    // Around its 100 ms sleep the task stops at two checkpoints, where this
    // thread reads the worker's park count (the worker is held meanwhile,
    // so the reads do not race with its parks).
    let (checkpoint, checkpoints) = mpsc::channel();
    let (resume, resumed) = mpsc::channel();
    let wait_here = move || {
        checkpoint.send(()).unwrap();
        resumed
            .recv_timeout(Duration::from_secs(10))
            .expect("resumed");
    };
    let task = rt.spawn(async move {
        // Five sleeps due in 10..50 ms, each polled once with a counting
        // waker (so each registers with this worker's timers, its entry
        // holding a clone of that waker), then dropped.
        let probe = Arc::new(CountingWake::default());
        {
            let waker = Waker::from(probe.clone());
            let mut cx = Context::from_waker(&waker);
            let base = Arc::strong_count(&probe); // `probe` and `waker`
            let mut dropped = Vec::new();
            for i in 1..=5u64 {
                let mut s = Box::pin(sleep(Duration::from_millis(10 * i)));
                assert!(s.as_mut().poll(&mut cx).is_pending());
                dropped.push(s);
            }
            assert_eq!(
                Arc::strong_count(&probe),
                base + 5,
                "each polled sleep's timer entry holds a clone of its waker"
            );
            drop(dropped);
            // The entries are gone at once, not at their deadlines: the
            // waker clones they held were dropped with them.
            assert_eq!(
                Arc::strong_count(&probe),
                base,
                "the timer entries of dropped sleeps still hold their wakers"
            );
        }

        // Across all five deadlines, only one 100 ms sleep is live.
        wait_here();
        let t = Instant::now();
        sleep(Duration::from_millis(100)).await;
        assert!(t.elapsed() >= Duration::from_millis(100));
        wait_here();
        assert_eq!(
            probe.wakes.load(SeqCst),
            0,
            "a dropped sleep's waker was woken"
        );

        // A reset sleep fires at its new deadline, not its old one.
        let t = Instant::now();
        let mut s = Box::pin(sleep(Duration::from_secs(3600)));
        assert!(poll_once(&mut s).await.is_pending());
        s.as_mut().reset(Instant::now() + Duration::from_millis(10));
        s.await;
        assert!(t.elapsed() >= Duration::from_millis(10));
        assert!(t.elapsed() < Duration::from_secs(5));
    });
    let parks = || {
        checkpoints.recv_timeout(Duration::from_secs(10)).ok()?;
        let parks = rt.metrics()[0].parks;
        resume.send(()).ok()?;
        Some(parks)
    };
    let (first, second) = (parks(), parks());
    match rt.block_on(task) {
        Err(e) if e.is_panic() => resume_unwind(e.into_panic()),
        r => r.expect("the task ran to completion"),
    }
    let parks = second.unwrap() - first.unwrap();
    // The worker parks once, for the whole 100 ms (one more is allowed for a
    // spurious wake-up). A dropped sleep's entry left behind would end a park
    // at each of its deadlines: 5 more.
    assert!(
        parks <= 2,
        "the worker parked {parks} times during one 100 ms sleep: dropped sleeps woke it"
    );
}

#[test]
fn interval_ticks_at_its_period() {
    // Long enough that a tick late by a whole period is told apart from a
    // slow wake-up on a loaded machine.
    const PERIOD: Duration = Duration::from_millis(200);
    // How late a tick may be observed: a generous bound on wake-up latency.
    const LATE: Duration = Duration::from_millis(150);
    let _w = watchdog("interval", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let before = Instant::now();
        let mut iv = interval(PERIOD);
        let created = Instant::now();
        // (scheduled instant returned, real time the tick was observed)
        let mut ticks = Vec::new();
        for _ in 0..5 {
            let scheduled = iv.tick().await;
            ticks.push((scheduled, Instant::now()));
        }
        let first = ticks[0].0;
        assert!(
            before <= first && first <= created,
            "the first tick is scheduled at creation"
        );
        for (k, &(scheduled, seen)) in ticks.iter().enumerate() {
            let due = first + PERIOD * k as u32;
            assert_eq!(
                scheduled, due,
                "tick {k}: scheduled a period after the last"
            );
            // Never early, by the real clock.
            assert!(
                seen >= due,
                "tick {k} observed {:?} before it was due",
                due - seen
            );
            assert!(
                seen - due < LATE,
                "tick {k} observed {:?} after it was due",
                seen - due
            );
        }
    });
}
