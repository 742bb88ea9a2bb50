//! loom models of the scheduler's cross-thread protocols, run on the real
//! state machines (`TaskState`, `Latch`, `StealPolicy`), with loom's queue
//! stand-in (a `Mutex<VecDeque>`) and the kernel signal (eventfd / MSG_RING)
//! modelled as a counter. Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p percore --lib --release loom
//! ```

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::primitives::Ordering::*;
use super::{Latch, StealPolicy};
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
    queue: Mutex<VecDeque<()>>,
    running: AtomicBool,
    wakes: AtomicUsize,
}

impl Model {
    fn new() -> Arc<Model> {
        // A new task is SCHEDULED and queued once.
        Arc::new(Model {
            state: TaskState::new_scheduled(),
            queue: Mutex::new(VecDeque::from([()])),
            running: AtomicBool::new(false),
            wakes: AtomicUsize::new(0),
        })
    }

    fn enqueue(&self) {
        let mut q = self.queue.lock().unwrap();
        q.push_back(());
        assert!(q.len() <= 1, "a task was queued twice");
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
        self.queue.lock().unwrap().pop_front()?;
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

/// Park vs wake: the worker either sees the pushed work in its re-check,
/// or the waker signals it exactly once.
#[test]
fn loom_park_never_loses_a_wakeup() {
    model(|| {
        let latch = Arc::new(Latch::new());
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let signals = Arc::new(AtomicUsize::new(0));
        let waker = {
            let (latch, queue, signals) = (latch.clone(), queue.clone(), signals.clone());
            thread::spawn(move || {
                queue.lock().unwrap().push_back(1);
                if latch.notify() {
                    signals.fetch_add(1, SeqCst);
                }
            })
        };
        latch.prepare_park();
        let saw_work = !queue.lock().unwrap().is_empty();
        // Parking here would sleep until a signal: it must come.
        waker.join().unwrap();
        let signalled = signals.load(SeqCst);
        latch.finish_park();
        assert!(signalled <= 1, "signalled twice for one park");
        assert!(saw_work || signalled == 1, "lost wakeup");
    });
}

/// The idle-sibling protocol: a worker about to park re-checks its
/// siblings' queues after counting itself idle; a worker that pushes past
/// the threshold checks the idle count after pushing. Either the parker sees
/// the surplus, or the pusher sees it idle and signals it.
#[test]
fn loom_idle_sibling_is_woken_for_a_surplus() {
    model(|| {
        let policy = Arc::new(StealPolicy::new(true, 1));
        let latch = Arc::new(Latch::new());
        let len = Arc::new(AtomicUsize::new(0));
        let signals = Arc::new(AtomicUsize::new(0));
        let pusher = {
            let (policy, latch, len, signals) =
                (policy.clone(), latch.clone(), len.clone(), signals.clone());
            thread::spawn(move || {
                len.fetch_add(1, Release);
                if policy.should_wake_idle(|| len.load(Acquire)) && latch.notify() {
                    signals.fetch_add(1, SeqCst);
                }
            })
        };
        latch.prepare_park();
        policy.enter_idle();
        let surplus = len.load(Acquire) >= 1;
        pusher.join().unwrap();
        let signalled = signals.load(SeqCst);
        policy.leave_idle();
        latch.finish_park();
        assert!(
            surplus || signalled == 1,
            "an idle worker slept through a surplus"
        );
    });
}

/// Steal vs shutdown: the thief moves a task's ownership entry under the
/// victim's lock; the victim at shutdown drains its map under the same lock.
/// Exactly one of them ends up with the task.
#[test]
fn loom_stolen_task_is_run_or_dropped_exactly_once() {
    model(|| {
        let queue = Arc::new(Mutex::new(VecDeque::from([7u64])));
        let owned = Arc::new(Mutex::new(std::collections::HashSet::from([7u64])));
        let thief_took = Arc::new(AtomicBool::new(false));
        let thief = {
            let (queue, owned, took) = (queue.clone(), owned.clone(), thief_took.clone());
            thread::spawn(move || {
                let popped = queue.lock().unwrap().pop_front();
                if let Some(id) = popped {
                    if owned.lock().unwrap().remove(&id) {
                        took.store(true, SeqCst);
                    }
                }
            })
        };
        // Victim shutting down: drop everything it still owns.
        let dropped: Vec<u64> = owned.lock().unwrap().drain().collect();
        thief.join().unwrap();
        let took = thief_took.load(SeqCst);
        assert!(
            took != dropped.contains(&7),
            "took={took} dropped={dropped:?}"
        );
    });
}
