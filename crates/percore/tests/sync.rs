//! Bounded mpsc, Semaphore, Notify, JoinSet and scope, across workers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use percore::sync::{mpsc, Notify, Semaphore, TryAcquireError};
use percore::task::{scope, JoinSet, ScopeError};
use percore::time::{sleep, timeout};

const SHORT: Duration = Duration::from_millis(50);

#[test]
fn mpsc_applies_backpressure_and_delivers_everything_in_order_per_sender() {
    let _w = watchdog("mpsc", 60);
    let rt = runtime(2, 64);
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel::<(u32, u32)>(4);
        let mut senders = JoinSet::new();
        for s in 0..3u32 {
            let tx = tx.clone();
            senders.spawn(async move {
                for i in 0..500u32 {
                    tx.send((s, i)).await.unwrap();
                }
            });
        }
        drop(tx);
        let mut next = [0u32; 3];
        let mut n = 0;
        while let Some((s, i)) = rx.recv().await {
            assert_eq!(i, next[s as usize], "sender {s} out of order");
            next[s as usize] += 1;
            n += 1;
            assert!(rx.len() <= 4);
        }
        assert_eq!(n, 1500, "recv ends only after every sender is gone");
        while senders.join_next().await.is_some() {}
    });
}

#[test]
fn mpsc_try_send_full_and_closed() {
    let _w = watchdog("mpsc try", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel::<u8>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(mpsc::TrySendError::Full(3)));
        // A send waits for room, and gets it when the receiver takes one.
        let tx2 = tx.clone();
        let waiting = percore::spawn(async move { tx2.send(4).await });
        sleep(SHORT).await;
        assert!(!waiting.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        waiting.await.unwrap().unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(4));
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty));
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(5).await, Err(mpsc::SendError(5)));
        assert_eq!(tx.try_send(6), Err(mpsc::TrySendError::Closed(6)));
    });
}

/// A sender waiting for room is cancelled (timeout): nothing is sent, and
/// the senders behind it are not stuck.
#[test]
fn mpsc_a_cancelled_send_sends_nothing_and_blocks_nobody() {
    let _w = watchdog("mpsc cancel", 60);
    let rt = runtime(2, 64);
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel::<u32>(1);
        tx.send(0).await.unwrap();
        assert!(timeout(SHORT, tx.send(1)).await.is_err());
        let tx2 = tx.clone();
        let later = percore::spawn(async move { tx2.send(2).await });
        sleep(SHORT).await;
        assert_eq!(rx.recv().await, Some(0));
        later.await.unwrap().unwrap();
        assert_eq!(rx.recv().await, Some(2));
        drop(tx);
        assert_eq!(rx.recv().await, None);
    });
}

#[test]
fn semaphore_bounds_concurrency_across_workers() {
    let _w = watchdog("semaphore", 60);
    let rt = runtime(2, 64);
    let most = rt.block_on(async {
        let sem = Arc::new(Semaphore::new(3));
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..40 {
            let (sem, now, most) = (sem.clone(), now.clone(), most.clone());
            set.spawn(async move {
                let _p = sem.acquire_owned().await.unwrap();
                let n = now.fetch_add(1, SeqCst) + 1;
                most.fetch_max(n, SeqCst);
                sleep(Duration::from_millis(2)).await;
                now.fetch_sub(1, SeqCst);
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        assert_eq!(sem.available_permits(), 3);
        most.load(SeqCst)
    });
    assert!((1..=3).contains(&most), "{most} held permits at once");
}

#[test]
fn semaphore_is_fair_try_acquire_close_and_cancelled_waiters() {
    let _w = watchdog("semaphore fair", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let sem = Arc::new(Semaphore::new(2));
        let held = sem.acquire_many(2).await.unwrap();
        // A big request queued first is not overtaken by a small one.
        let s = sem.clone();
        let big = percore::spawn(async move { s.acquire_many(2).await.map(|p| p.forget()) });
        sleep(SHORT).await;
        assert_eq!(
            sem.clone().try_acquire_owned().unwrap_err(),
            TryAcquireError::NoPermits
        );
        drop(held);
        big.await.unwrap().unwrap();
        assert_eq!(sem.available_permits(), 0);
        // A waiter cancelled (timeout) leaves the queue.
        assert!(timeout(SHORT, sem.acquire()).await.is_err());
        sem.add_permits(1);
        assert_eq!(sem.available_permits(), 1);
        let p = sem.try_acquire().unwrap();
        drop(p);
        // Close: waiters and later calls fail.
        let _p = sem.acquire().await.unwrap();
        let s = sem.clone();
        let waiting = percore::spawn(async move { s.acquire().await.is_err() });
        sleep(SHORT).await;
        sem.close();
        assert!(waiting.await.unwrap());
        assert!(sem.acquire().await.is_err());
        assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::Closed);
    });
}

#[test]
fn notify_one_stores_a_permit_and_notify_waiters_wakes_all() {
    let _w = watchdog("notify", 60);
    let rt = runtime(2, 64);
    rt.block_on(async {
        let n = Arc::new(Notify::new());
        n.notify_one();
        // The stored permit: returns at once.
        timeout(SHORT, n.notified()).await.unwrap();
        // Only one is stored.
        n.notify_one();
        n.notify_one();
        n.notified().await;
        assert!(timeout(SHORT, n.notified()).await.is_err());
        // notify_waiters wakes every waiter, stores nothing.
        let woke = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..5 {
            let (n, woke) = (n.clone(), woke.clone());
            set.spawn(async move {
                n.notified().await;
                woke.fetch_add(1, SeqCst);
            });
        }
        sleep(SHORT).await;
        n.notify_waiters();
        while set.join_next().await.is_some() {}
        assert_eq!(woke.load(SeqCst), 5);
        assert!(timeout(SHORT, n.notified()).await.is_err());
    });
}

/// A `notify_one` that reached a waiter which was then dropped (timed out
/// at the same moment) goes to the next waiter, not nowhere.
#[test]
fn notify_one_to_a_dropped_waiter_passes_on() {
    let _w = watchdog("notify pass", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let n = Notify::new();
        let mut first = Box::pin(n.notified());
        // Register the first waiter.
        assert!(futures_poll_once(first.as_mut()).is_pending());
        n.notify_one();
        drop(first);
        timeout(SHORT, n.notified())
            .await
            .expect("the notification was lost");
    });
}

fn futures_poll_once<F: std::future::Future>(
    f: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    let waker = std::task::Waker::noop();
    f.poll(&mut std::task::Context::from_waker(waker))
}

#[test]
fn join_set_joins_in_finish_order_and_aborts_the_rest_on_drop() {
    let _w = watchdog("joinset", 60);
    let rt = runtime(2, 64);
    rt.block_on(async {
        let mut set = JoinSet::new();
        for ms in [30u64, 10, 20] {
            set.spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                ms
            });
        }
        let mut order = Vec::new();
        while let Some(r) = set.join_next().await {
            order.push(r.unwrap());
        }
        assert_eq!(order, [10, 20, 30]);
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..3 {
            let d = dropped.clone();
            set.spawn(async move {
                struct OnDrop(Arc<AtomicUsize>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        self.0.fetch_add(1, SeqCst);
                    }
                }
                let _g = OnDrop(d);
                std::future::pending::<()>().await;
            });
        }
        sleep(SHORT).await;
        drop(set);
        sleep(SHORT).await;
        assert_eq!(dropped.load(SeqCst), 3, "aborted on drop");
    });
}

#[test]
fn scope_waits_for_children_and_the_first_error_cancels_the_rest() {
    let _w = watchdog("scope", 60);
    let rt = runtime(2, 64);
    rt.block_on(async {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let r: Result<&str, ScopeError<String>> = scope(|s| async move {
            for _ in 0..4 {
                let d = d.clone();
                s.spawn(async move {
                    sleep(Duration::from_millis(20)).await;
                    d.fetch_add(1, SeqCst);
                    Ok(())
                });
            }
            Ok("body")
        })
        .await;
        assert_eq!(r, Ok("body"));
        assert_eq!(done.load(SeqCst), 4, "the scope waited for every child");

        let finished = Arc::new(AtomicUsize::new(0));
        let f = finished.clone();
        let r: Result<(), ScopeError<String>> = scope(|s| async move {
            let f2 = f.clone();
            s.spawn(async move {
                sleep(Duration::from_secs(30)).await;
                f2.fetch_add(1, SeqCst);
                Ok(())
            });
            s.spawn(async { Err("child failed".to_string()) });
            Ok(())
        })
        .await;
        assert_eq!(r, Err(ScopeError::Failed("child failed".into())));
        sleep(SHORT).await;
        assert_eq!(finished.load(SeqCst), 0, "the slow child was cancelled");
    });
}

#[test]
fn a_childs_panic_propagates_out_of_the_scope() {
    let _w = watchdog("scope panic", 60);
    let rt = runtime(2, 64);
    let r = rt.block_on(async {
        percore::spawn(async {
            let _: Result<(), ScopeError<()>> = scope(|s| async move {
                s.spawn(async { panic!("child boom") });
                Ok(())
            })
            .await;
        })
        .await
    });
    let e = r.unwrap_err();
    assert!(e.is_panic());
    assert_eq!(e.to_string(), "task panicked: child boom");
}

/// Two senders wait; the receiver frees two slots. The first sender holds
/// its grant but is never polled again (it lost a select): the second
/// still gets the other free slot.
#[test]
fn mpsc_a_granted_sender_that_is_never_polled_does_not_block_others() {
    let _w = watchdog("mpsc grant", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel::<u32>(2);
        tx.try_send(0).unwrap();
        tx.try_send(1).unwrap();
        let mut a = Box::pin(tx.send(10));
        assert!(futures_poll_once(a.as_mut()).is_pending());
        let tx2 = tx.clone();
        let b = percore::spawn(async move { tx2.send(20).await });
        sleep(SHORT).await;
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1));
        timeout(SHORT * 4, b)
            .await
            .expect("a sender stuck while there was room")
            .unwrap()
            .unwrap();
        drop(a);
    });
}

/// A sender granted a slot keeps it: try_send behind it finds the channel
/// full, however often that is tried.
#[test]
fn mpsc_a_granted_sender_is_not_overtaken() {
    let _w = watchdog("mpsc overtake", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel::<u32>(1);
        tx.try_send(0).unwrap();
        let mut a = Box::pin(tx.send(1));
        assert!(futures_poll_once(a.as_mut()).is_pending());
        rx.try_recv().unwrap();
        assert!(matches!(tx.try_send(2), Err(mpsc::TrySendError::Full(_))));
        assert!(futures_poll_once(a.as_mut()).is_ready());
        assert_eq!(rx.try_recv(), Ok(1));
    });
}

/// A `notified()` future made before `notify_waiters` and polled after it
/// completes (the check-then-wait pattern).
#[test]
fn notify_waiters_reaches_futures_created_before_it() {
    let _w = watchdog("notify created", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let n = Notify::new();
        let f = n.notified();
        n.notify_waiters();
        assert!(futures_poll_once(std::pin::pin!(f)).is_ready());
        // One made after it is not.
        let g = n.notified();
        assert!(futures_poll_once(std::pin::pin!(g)).is_pending());
    });
}

/// A scope that fails returns only once its children have ended: children
/// stolen by the other worker and in the middle of a (blocking) poll there
/// have finished it by then.
#[test]
fn a_failed_scope_returns_after_its_children_have_ended() {
    let _w = watchdog("scope joins", 60);
    let rt = percore::Runtime::builder()
        .driver(driver())
        .workers(2)
        .steal_threshold(1)
        .build()
        .unwrap();
    rt.block_on(async {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let r: Result<(), ScopeError<&str>> = scope(|s| async move {
            for _ in 0..6 {
                let h = h.clone();
                s.spawn(async move {
                    percore::yield_now().await;
                    std::thread::sleep(Duration::from_millis(100));
                    h.fetch_add(1, SeqCst);
                    Ok(())
                });
            }
            percore::yield_now().await;
            Err("x")
        })
        .await;
        assert_eq!(r, Err(ScopeError::Failed("x")));
        let at_return = hits.load(SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            hits.load(SeqCst),
            at_return,
            "a child ran on after the scope returned"
        );
    });
}

#[test]
fn a_closed_semaphore_grants_nothing_more() {
    let _w = watchdog("semaphore close", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let s = Semaphore::new(0);
        let mut a = Box::pin(s.acquire());
        assert!(futures_poll_once(a.as_mut()).is_pending());
        s.close();
        s.add_permits(1);
        assert!(matches!(
            futures_poll_once(a.as_mut()),
            std::task::Poll::Ready(Err(_))
        ));
    });
}
