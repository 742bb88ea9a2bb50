//! Work stealing between workers.
//!
//! - **When.** A worker with nothing runnable, no mail and no completions
//!   tries to steal before it parks (`Worker::run`). A worker that queues a
//!   task on its own stealable queue while a sibling is parked and the queue
//!   has reached the threshold wakes one parked sibling (`wake_idle_sibling`),
//!   which then steals.
//! - **What.** Only `Send` tasks (`spawn`), from a sibling's `tasks` queue;
//!   never `spawn_local` tasks, never a task that is running.
//! - **How much.** Nothing from a queue shorter than the threshold (the
//!   imbalance worth a migration); otherwise half of it, rounded up, at most
//!   `MAX_BATCH`.
//! - **Who.** Victims are scanned from a random start, and at most half the
//!   workers search at once, so idle workers do not all pile onto the same
//!   busy one.
//! - **Ownership.** A stolen task's `owned` entry moves from the victim to the
//!   thief before the thief polls it. If the entry is gone, the victim is
//!   shutting down and has dropped the task: the thief leaves it alone.

use std::cell::Cell;
use std::sync::Arc;

use super::primitives::{fence, lock, AtomicUsize, Ordering::*};
use super::Remote;
use crate::runtime::shared::Shared;
use crate::task::raw::Task;

/// Most tasks moved by one steal.
const MAX_BATCH: usize = 64;

/// The stealing switches (`Builder::steal`, `Builder::steal_threshold`) and
/// the counters the protocol needs.
#[derive(Debug)]
pub(crate) struct StealPolicy {
    pub(crate) enabled: bool,
    pub(crate) threshold: usize,
    /// Workers between `enter_idle` and `leave_idle` (about to park or
    /// parked).
    idle: AtomicUsize,
    /// Workers currently scanning siblings.
    searching: AtomicUsize,
}

impl StealPolicy {
    pub(crate) fn new(enabled: bool, threshold: usize) -> StealPolicy {
        StealPolicy {
            enabled,
            threshold: threshold.max(1),
            idle: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
        }
    }

    /// A worker is about to park. Paired with the fence in
    /// `wake_idle_sibling`: either the pusher sees this worker idle and wakes
    /// it, or this worker's re-check (`sibling_has_surplus`) sees the push.
    pub(crate) fn enter_idle(&self) {
        self.idle.fetch_add(1, SeqCst);
        fence(SeqCst);
    }

    pub(crate) fn leave_idle(&self) {
        self.idle.fetch_sub(1, SeqCst);
    }

    /// Pusher side, after pushing onto a queue now `len` long: whether a
    /// parked sibling should be woken to steal.
    pub(crate) fn should_wake_idle(&self, len: impl FnOnce() -> usize) -> bool {
        if !self.enabled {
            return false;
        }
        fence(SeqCst);
        self.idle.load(SeqCst) > 0 && len() >= self.threshold
    }
}

/// Called after a task was pushed onto `from`'s stealable queue: if a sibling
/// is parked and the queue holds enough to steal, wake one sibling.
pub(crate) fn wake_idle_sibling(shared: &Shared, from: &Remote) {
    if !shared.steal.should_wake_idle(|| from.stealable_len()) {
        return;
    }
    let n = shared.remotes.len();
    for k in 1..n {
        let r = &shared.remotes[(from.index + k) % n];
        if r.unparker.latch.is_parked() && r.unpark() {
            from.metrics.idle_wakes.add_shared(1);
            return;
        }
    }
}

/// Whether some sibling of `me` has a queue worth stealing from (the
/// re-check before parking).
pub(crate) fn sibling_has_surplus(shared: &Shared, me: &Remote) -> bool {
    let policy = &shared.steal;
    policy.enabled
        && shared
            .remotes
            .iter()
            .any(|r| r.index != me.index && r.stealable_len() >= policy.threshold)
}

/// Worker `me` is out of work: moves about half of one sibling's stealable
/// queue onto its own. Returns how many tasks it took, or `None` if it did
/// not look because enough other workers are searching already.
pub(crate) fn steal(shared: &Shared, me: &Remote, rng: &Cell<u64>) -> Option<usize> {
    let policy = &shared.steal;
    let n = shared.remotes.len();
    if !policy.enabled || n < 2 {
        return Some(0);
    }
    // Let at most half the workers (at least one) search at a time.
    if policy.searching.fetch_add(1, SeqCst) >= (n / 2).max(1) {
        policy.searching.fetch_sub(1, SeqCst);
        return None;
    }
    me.metrics.steal_attempts.add_shared(1);
    let start = next_random(rng) as usize % n;
    let mut moved = 0;
    for k in 0..n {
        let victim = &shared.remotes[(start + k) % n];
        if victim.index == me.index {
            continue;
        }
        let len = victim.stealable_len();
        if len < policy.threshold {
            continue;
        }
        moved = steal_from(victim, me, len.div_ceil(2).min(MAX_BATCH));
        if moved > 0 {
            break;
        }
    }
    policy.searching.fetch_sub(1, SeqCst);
    if moved > 0 {
        me.metrics.steals.add_shared(1);
        me.metrics.stolen_tasks.add_shared(moved as u64);
    }
    Some(moved)
}

/// Takes up to `want` tasks from `victim`'s queue and makes them `me`'s.
pub(crate) fn steal_from(victim: &Remote, me: &Remote, want: usize) -> usize {
    let mut batch: Vec<Arc<Task>> = Vec::with_capacity(want);
    while batch.len() < want {
        match victim.pop_task() {
            Some(t) => batch.push(t),
            None => break,
        }
    }
    if batch.is_empty() {
        return 0;
    }
    // Move the ownership entries. The two maps are never locked together,
    // so two workers stealing from each other cannot deadlock; in between,
    // the tasks are in no map, only in our hands.
    {
        let mut theirs = lock(&victim.owned);
        batch.retain(|t| {
            if t.registered.load(Acquire) {
                // Gone: the victim is shutting down and dropped it.
                theirs.remove(&t.id).is_some()
            } else {
                // Spawned from outside and never run: nobody owns it yet.
                t.registered.store(true, Release);
                true
            }
        });
        victim.metrics.live_tasks.set(theirs.len() as u64);
    }
    let moved = batch.len();
    let mut mine = lock(&me.owned);
    for t in &batch {
        t.set_home(me.index);
        mine.insert(t.id, t.clone());
    }
    me.metrics.live_tasks.set(mine.len() as u64);
    drop(mine);
    for t in batch {
        me.push_own(t);
    }
    moved
}

/// xorshift64: a victim order that differs between workers and attempts.
fn next_random(state: &Cell<u64>) -> u64 {
    let mut x = state.get();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.set(x);
    x
}
