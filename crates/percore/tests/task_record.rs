//! The task record: one heap allocation per task, and where a task's output
//! and future are dropped in every order of completion, join and detach.
//!
//! A counting global allocator sees every allocation of the process, so the
//! allocation test runs alone in its own binary (this one) and measures a
//! steady state: spawn-and-join in a loop after a warm-up, so the queues' and
//! the owned map's amortised growth is already paid.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use common::*;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, SeqCst);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, SeqCst);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Serialises the tests of this binary: the allocation count is global.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A spawned task costs one allocation: the record holding its state, its
/// future and its output slot together (not a record, a boxed future and a
/// separate join slot).
#[test]
fn a_spawn_costs_one_allocation() {
    let _g = serial();
    let _w = watchdog("one allocation", 60);
    let rt = runtime(1, 64);
    let per_task = rt.block_on(async {
        const N: usize = 20_000;
        for i in 0..1000u64 {
            assert_eq!(percore::spawn(async move { i }).await.unwrap(), i);
        }
        let before = ALLOCS.load(SeqCst);
        for i in 0..N as u64 {
            assert_eq!(percore::spawn(async move { i * 2 }).await.unwrap(), i * 2);
        }
        (ALLOCS.load(SeqCst) - before) as f64 / N as f64
    });
    eprintln!("{per_task:.3} allocations per spawn-and-join");
    assert!(
        per_task < 1.2,
        "{per_task:.2} allocations per spawn-and-join (want 1)"
    );
}

/// Counts drops of a value, and the thread each one happened on.
#[derive(Clone, Default)]
struct Drops(Arc<Mutex<Vec<String>>>);

impl Drops {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Tracked(Drops);

impl Drop for Tracked {
    fn drop(&mut self) {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        self.0 .0.lock().unwrap().push(name);
    }
}

/// The output of a task whose handle was dropped first is dropped once, on
/// the task's worker (it may be `!Send` for `spawn_local`).
#[test]
fn a_detached_output_is_dropped_once_on_its_worker() {
    let _g = serial();
    let _w = watchdog("detached output", 60);
    let rt = runtime(2, 64);
    let drops = Drops::default();
    let d = drops.clone();
    rt.spawn_local_on(1, move || async move {
        let (tx, rx) = percore::sync::oneshot::channel::<()>();
        let h = percore::spawn_local(async move {
            let _ = rx.await;
            // !Send output: only its worker may drop it.
            (Rc::new(()), Tracked(d))
        });
        drop(h);
        tx.send(()).unwrap();
    });
    wait_until(|| !drops.0.lock().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(20));
    let seen = drops.take();
    assert_eq!(seen.len(), 1, "dropped {} times", seen.len());
    assert!(seen[0].ends_with("-1"), "dropped on {:?}", seen[0]);
}

/// A finished task's output that nobody takes is dropped once, when the
/// handle is dropped; a taken output is not dropped again.
#[test]
fn an_untaken_output_is_dropped_with_its_handle_and_a_taken_one_never_twice() {
    let _g = serial();
    let _w = watchdog("untaken output", 60);
    let rt = runtime(2, 64);
    let drops = Drops::default();
    let d = drops.clone();
    let h = rt.spawn(async move { Tracked(d) });
    wait_until(|| h.is_finished());
    std::thread::sleep(Duration::from_millis(10));
    assert!(drops.take().is_empty(), "dropped before the handle was");
    drop(h);
    assert_eq!(drops.take().len(), 1);

    let d = drops.clone();
    let out = rt.block_on(async move { percore::spawn(async move { Tracked(d) }).await });
    assert!(drops.take().is_empty());
    drop(out);
    assert_eq!(drops.take().len(), 1);
}

/// An aborted or shut-down task's future is dropped once, on its worker,
/// and its handle reports the cancellation.
#[test]
fn a_cancelled_future_is_dropped_once_on_its_worker() {
    let _g = serial();
    let _w = watchdog("cancelled future", 60);
    let rt = runtime(2, 64);
    let drops = Drops::default();
    let d = drops.clone();
    let h = rt.spawn_local_on(0, move || async move {
        let _held = (Rc::new(()), Tracked(d));
        std::future::pending::<()>().await;
    });
    std::thread::sleep(Duration::from_millis(20));
    h.abort();
    let e = block_on_thread(h).unwrap_err();
    assert!(e.is_cancelled());
    let seen = drops.take();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].ends_with("-0"), "dropped on {:?}", seen[0]);

    let d = drops.clone();
    let h = rt.spawn(async move {
        let _held = Tracked(d);
        std::future::pending::<()>().await;
    });
    std::thread::sleep(Duration::from_millis(20));
    rt.shutdown_timeout(Duration::from_secs(5));
    assert!(block_on_thread(h).unwrap_err().is_cancelled());
    assert_eq!(drops.take().len(), 1);
}

/// A waker kept after its task finished, and after its runtime is gone,
/// can still be woken, cloned and dropped: it holds the record alive and
/// does nothing.
#[test]
fn a_waker_outliving_its_task_and_runtime_is_harmless() {
    let _g = serial();
    let _w = watchdog("stale waker", 60);
    let rt = runtime(2, 64);
    let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
    let k = kept.clone();
    let out = rt.block_on(async move {
        percore::spawn(async move {
            std::future::poll_fn(|cx| {
                *k.lock().unwrap() = Some(cx.waker().clone());
                std::task::Poll::Ready(5)
            })
            .await
        })
        .await
        .unwrap()
    });
    assert_eq!(out, 5);
    let w = kept.lock().unwrap().take().unwrap();
    w.wake_by_ref();
    let w2 = w.clone();
    assert!(w.will_wake(&w2));
    w.wake();
    drop(rt);
    w2.wake_by_ref();
    w2.wake();
}

/// A waker woken from many threads at once while its task runs schedules it
/// at most once per poll, and every wake is seen by a later poll.
#[test]
fn concurrent_wakes_are_never_lost() {
    let _g = serial();
    let _w = watchdog("concurrent wakes", 120);
    let rt = runtime(2, 64);
    let target = Arc::new(AtomicUsize::new(0));
    let waker_slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let (t, ws, dn) = (target.clone(), waker_slot.clone(), done.clone());
    let h = rt.spawn(async move {
        std::future::poll_fn(|cx| {
            *ws.lock().unwrap() = Some(cx.waker().clone());
            if t.load(SeqCst) >= 4 * 2000 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        dn.store(true, SeqCst);
    });
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (t, ws) = (target.clone(), waker_slot.clone());
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    t.fetch_add(1, SeqCst);
                    let w = ws.lock().unwrap().clone();
                    if let Some(w) = w {
                        w.wake();
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    // One last wake in case the counter's final value raced the first
    // clone of the waker.
    wait_until(|| waker_slot.lock().unwrap().is_some());
    let w = waker_slot.lock().unwrap().clone().unwrap();
    w.wake();
    block_on_thread(h).unwrap();
    assert!(done.load(SeqCst));
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < end, "condition never held");
        std::thread::sleep(Duration::from_millis(1));
    }
}
/// A task whose drop spawns its own replacement outlives shutdown's round
/// cap and is leaked; leaking it publishes "cancelled" to its handle, whose
/// waker here spawns again. Shutdown must still finish (no lock held across
/// that waker).
#[test]
fn shutdown_past_the_round_cap_with_a_spawning_join_waker_finishes() {
    let _g = serial();
    let _w = watchdog("round cap", 60);

    static WOKEN: AtomicUsize = AtomicUsize::new(0);
    static SPAWNED: AtomicUsize = AtomicUsize::new(0);
    struct SpawnOnWake;
    impl std::task::Wake for SpawnOnWake {
        fn wake(self: Arc<Self>) {
            WOKEN.fetch_add(1, SeqCst);
            let spawned = std::panic::catch_unwind(|| drop(percore::spawn_local(async {})));
            if spawned.is_ok() {
                SPAWNED.fetch_add(1, SeqCst);
            }
        }
    }

    struct Respawn;
    impl Drop for Respawn {
        fn drop(&mut self) {
            // Held from creation, so dropping the unpolled child drops it.
            let r = Respawn;
            let child = percore::spawn_local(async move {
                let _r = r;
                std::future::pending::<()>().await;
            });
            let waker = Waker::from(Arc::new(SpawnOnWake));
            let mut cx = std::task::Context::from_waker(&waker);
            let mut child = child;
            let _ = std::pin::Pin::new(&mut child).poll(&mut cx);
            std::mem::forget(child);
        }
    }

    let rt = runtime(1, 64);
    let _h = rt.spawn_local_on(0, || async {
        let _r = Respawn;
        std::future::pending::<()>().await;
    });
    std::thread::sleep(Duration::from_millis(20));
    rt.shutdown_timeout(Duration::from_secs(2));
    let (woken, spawned) = (WOKEN.load(SeqCst), SPAWNED.load(SeqCst));
    assert!(woken > 0, "no join waker was woken");
    assert_eq!(woken, spawned, "a spawn from a join waker failed");
}

/// `JoinHandle`'s auto traits: `Send` and `Sync` for a `Send` output (even
/// a `!Sync` one), `Unpin` always.
#[test]
fn join_handle_auto_traits() {
    fn send_sync_unpin<T: Send + Sync + Unpin>() {}
    send_sync_unpin::<percore::JoinHandle<std::cell::Cell<u8>>>();
    send_sync_unpin::<percore::JoinHandle<std::marker::PhantomPinned>>();
}
