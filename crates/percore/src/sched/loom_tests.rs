//! loom models of the scheduler's cross-thread protocols, run on the real
//! code: `TaskState`, and real `Remote`s, `Task`s and `Shared` driving the
//! real `Remote::push`/`unpark`, `Latch`, `steal_from`, `wake_idle_sibling`
//! and `sibling_has_surplus`. Two things are stand-ins: the queue under
//! loom is `primitives::SegQueue`'s linearizable mutex version (why that is
//! faithful: `sched/primitives.rs`), and the kernel signal (eventfd or
//! `MSG_RING`) is observed as the `remote_unparks` counter that `unpark`
//! bumps exactly when it signals. Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p percore --lib --release loom
//! ```

use std::time::Duration;

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::Arc;
use loom::thread;

use super::primitives::{lock, Ordering::*, SegQueue};
use super::steal::{sibling_has_surplus, steal_from, wake_idle_sibling};
use super::{Remote, StealPolicy};
use crate::metrics::WorkerMetrics;
use crate::runtime::shared::Shared;
use crate::task::raw::Task;
use crate::task::state::{AfterPoll, TaskState};

/// Explores interleavings with at most 3 preemptions per execution (the
/// usual bound: bugs in protocols this small show up within 2), so the
/// models finish in seconds.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// One task: its state, the queue it sits in (at most once), and a flag
/// that catches two concurrent polls.
struct Model {
    state: TaskState,
    queue: SegQueue<()>,
    running: AtomicBool,
    wakes: AtomicUsize,
}

impl Model {
    fn new() -> Arc<Model> {
        // A new task is SCHEDULED and queued once.
        let queue = SegQueue::new();
        queue.push(());
        Arc::new(Model {
            state: TaskState::new_scheduled(),
            queue,
            running: AtomicBool::new(false),
            wakes: AtomicUsize::new(0),
        })
    }

    fn enqueue(&self) {
        self.queue.push(());
        assert!(self.queue.len() <= 1, "a task was queued twice");
    }

    fn wake(&self) {
        self.wakes.fetch_add(1, SeqCst);
        if self.state.schedule() {
            self.enqueue();
        }
    }

    /// Pops and polls the task if it is queued; returns the wakes the poll
    /// observed, if it ran.
    fn run_once(&self) -> Option<usize> {
        self.queue.pop()?;
        self.state.start_run();
        assert!(
            !self.running.swap(true, SeqCst),
            "a task ran on two threads"
        );
        let seen = self.wakes.load(SeqCst);
        self.running.store(false, SeqCst);
        if self.state.finish_pending() == AfterPoll::Requeue {
            self.enqueue();
        }
        Some(seen)
    }
}

/// Wakes racing a poll: the task is never queued twice, never polled twice
/// at once, and some poll after the last wake sees it (no lost wakeup).
#[test]
fn loom_wake_during_poll_is_never_lost_or_doubled() {
    model(|| {
        let m = Model::new();
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || m.wake())
            })
            .collect();
        let mut last = None;
        while let Some(seen) = m.run_once() {
            last = Some(seen);
        }
        for w in wakers {
            w.join().unwrap();
        }
        while let Some(seen) = m.run_once() {
            last = Some(seen);
        }
        assert_eq!(last, Some(2), "the last poll missed a wake");
    });
}

/// The owner and a thief pop from the same queue while a waker wakes the
/// task: it still runs on one thread at a time and is never queued twice.
#[test]
fn loom_owner_and_thief_never_run_a_task_twice() {
    model(|| {
        let m = Model::new();
        let thief = {
            let m = m.clone();
            thread::spawn(move || {
                m.run_once();
            })
        };
        let waker = {
            let m = m.clone();
            thread::spawn(move || m.wake())
        };
        m.run_once();
        thief.join().unwrap();
        waker.join().unwrap();
        // Whatever is left runs once more, and the wake was seen by then.
        let mut last = None;
        while let Some(seen) = m.run_once() {
            last = Some(seen);
        }
        if let Some(seen) = last {
            assert_eq!(seen, 1);
        }
    });
}

/// A runtime's shared parts with two workers (no threads, no rings):
/// real `Remote`s with their latches and queues, stealing on at threshold 1.
fn two_workers() -> std::sync::Arc<Shared> {
    let remotes = (0..2)
        .map(|i| {
            std::sync::Arc::new(
                Remote::new(i, std::sync::Arc::new(WorkerMetrics::default())).unwrap(),
            )
        })
        .collect();
    std::sync::Arc::new(Shared::new(
        remotes,
        StealPolicy::new(true, 1),
        Duration::from_secs(1),
    ))
}

/// A `spawn` task homed on worker `home` (never polled in the models).
fn task(shared: &std::sync::Arc<Shared>, home: usize) -> std::sync::Arc<Task> {
    Task::new(shared.clone(), home, true, None, async {}).0
}

/// Park vs wake, on the real path: another thread hands worker 1 a task
/// (`Remote::push`, which calls `unpark`); worker 1 parks as `Worker::park`
/// does (`prepare_park`, then re-checks `has_work`). Either the re-check
/// sees the task, or `unpark` signals exactly once.
#[test]
fn loom_park_never_loses_a_wakeup() {
    model(|| {
        let shared = two_workers();
        let worker = shared.remotes[1].clone();
        let t = task(&shared, 1);
        let waker = {
            let worker = worker.clone();
            thread::spawn(move || worker.push(t))
        };
        worker.unparker.latch.prepare_park();
        let saw_work = worker.has_work();
        // Parking here would sleep until a signal: it must come.
        waker.join().unwrap();
        let signalled = worker.metrics.remote_unparks.get();
        worker.unparker.latch.finish_park();
        assert!(signalled <= 1, "signalled twice for one park");
        assert!(saw_work || signalled == 1, "lost wakeup");
    });
}

/// The idle-sibling protocol, on the real path: worker 0 pushes onto its
/// stealable queue and calls `wake_idle_sibling`; worker 1 parks as
/// `Worker::park` does (`prepare_park`, `enter_idle`, then
/// `sibling_has_surplus`). Either the parker sees the surplus, or the
/// pusher sees it idle and signals it.
#[test]
fn loom_idle_sibling_is_woken_for_a_surplus() {
    model(|| {
        let shared = two_workers();
        let (busy, idle) = (shared.remotes[0].clone(), shared.remotes[1].clone());
        let t = task(&shared, 0);
        let pusher = {
            let (shared, busy) = (shared.clone(), busy.clone());
            thread::spawn(move || {
                busy.push_own(t);
                wake_idle_sibling(&shared, &busy);
            })
        };
        idle.unparker.latch.prepare_park();
        shared.steal.enter_idle();
        let surplus = sibling_has_surplus(&shared, &idle);
        pusher.join().unwrap();
        let signalled = idle.metrics.remote_unparks.get();
        shared.steal.leave_idle();
        idle.unparker.latch.finish_park();
        assert!(
            surplus || signalled == 1,
            "an idle worker slept through a surplus"
        );
    });
}

/// Steal vs shutdown, on the real path: a thief runs `steal_from` while the
/// victim shuts down as `Worker::shutdown` does (pops its own queue, then
/// drains its `owned` map). Exactly one of them ends up with the task: the
/// thief owns it (in its map, for it to poll) or the victim dropped it.
#[test]
fn loom_stolen_task_is_run_or_dropped_exactly_once() {
    model(|| {
        let shared = two_workers();
        let (victim, thief) = (shared.remotes[0].clone(), shared.remotes[1].clone());
        let t = task(&shared, 0);
        t.registered.store(true, Release);
        victim.own(&t);
        victim.push_own(t);
        let stealer = {
            let (victim, thief) = (victim.clone(), thief.clone());
            thread::spawn(move || steal_from(&victim, &thief, 1))
        };
        while victim.pop_task().is_some() {}
        let dropped = lock(&victim.owned).drain().count();
        let moved = stealer.join().unwrap();
        let owned_by_thief = lock(&thief.owned).len();
        assert_eq!(moved, owned_by_thief);
        assert!(
            (owned_by_thief == 1) != (dropped == 1),
            "thief owns {owned_by_thief}, victim dropped {dropped}"
        );
    });
}
