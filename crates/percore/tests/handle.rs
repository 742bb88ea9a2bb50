//! `Handle::current`, `Runtime::handle` and `worker_index`: spawning onto a
//! runtime from its own tasks, from a plain thread and from another
//! runtime; per-core sharded state keyed by the worker index.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use common::*;
use percore::{worker_index, Handle};

#[test]
fn handle_current_spawns_onto_the_same_runtime_and_worker_index_shards() {
    let _w = watchdog("handle", 60);
    let rt = runtime(2, 64);
    assert_eq!(worker_index(), None, "off a worker");
    assert!(Handle::try_current().is_none());
    // One counter per worker, no sharing between cores.
    let shards: Arc<Vec<AtomicUsize>> = Arc::new((0..2).map(|_| AtomicUsize::new(0)).collect());
    for i in 0..2 {
        let shards = shards.clone();
        rt.block_on(rt.spawn_local_on(i, move || async move {
            let h = Handle::current();
            assert_eq!(h.workers(), 2);
            let me = worker_index().unwrap();
            assert_eq!(me, i);
            shards[me].fetch_add(1, SeqCst);
            // Spawned through the handle from a worker: lands on it.
            h.spawn(async { worker_index() }).await.unwrap()
        }))
        .map(|w| assert_eq!(w, Some(i)))
        .unwrap();
    }
    assert_eq!(shards[0].load(SeqCst), 1);
    assert_eq!(shards[1].load(SeqCst), 1);
}

#[test]
fn a_handle_spawns_from_a_plain_thread_and_from_another_runtime() {
    let _w = watchdog("handle foreign", 60);
    let rt = runtime(2, 64);
    let other = runtime(1, 64);
    let h = rt.handle();
    let from_thread = {
        let h = h.clone();
        std::thread::spawn(move || {
            let j = h.spawn(async { worker_index().is_some() });
            block_on_thread(j)
        })
        .join()
        .unwrap()
    };
    assert!(from_thread.unwrap());
    // From a task of another runtime: runs on `rt`'s workers.
    let h2 = h.clone();
    let ran_on = other.block_on(async move { h2.spawn(async { worker_index() }).await.unwrap() });
    assert!(ran_on.is_some());
    assert_eq!(rt.block_on(h.spawn_blocking(|| 3)).unwrap(), 3);
    assert_eq!(
        rt.block_on(h.spawn_local_on(1, || async { worker_index() }))
            .unwrap(),
        Some(1)
    );
}
