//! `JoinSet`: many spawned tasks, joined as they finish (when several have
//! finished by the time of a call, in no particular order); the ones left
//! are aborted when the set is dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{JoinError, JoinHandle};

/// A set of spawned tasks.
///
/// `join_next` polls every unfinished handle, so each wake costs time
/// linear in the set's size (draining n tasks is O(n²)): fine for tens to
/// a few thousand tasks.
pub struct JoinSet<T> {
    tasks: Vec<JoinHandle<T>>,
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet")
            .field("len", &self.tasks.len())
            .finish()
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> JoinSet<T> {
    /// An empty set.
    pub fn new() -> JoinSet<T> {
        JoinSet { tasks: Vec::new() }
    }

    /// Tasks not yet joined.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether every task has been joined.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Spawns `future` (as [`spawn`](super::spawn)) into the set.
    ///
    /// # Panics
    ///
    /// Outside a percore worker thread.
    pub fn spawn<F>(&mut self, future: F)
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.tasks.push(super::spawn(future));
    }

    /// Spawns `future` (as [`spawn_local`](super::spawn_local)) into the set.
    ///
    /// # Panics
    ///
    /// Outside a percore worker thread.
    pub fn spawn_local<F>(&mut self, future: F)
    where
        F: Future<Output = T> + 'static,
        T: 'static,
    {
        self.tasks.push(super::spawn_local(future));
    }

    /// Adds an already spawned task.
    pub fn insert(&mut self, handle: JoinHandle<T>) {
        self.tasks.push(handle);
    }

    /// The outcome of the next task to finish; `None` when the set is
    /// empty. Cancel-safe: a dropped call loses no outcome.
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        std::future::poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// [`join_next`](Self::join_next) as a poll function.
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        if self.tasks.is_empty() {
            return Poll::Ready(None);
        }
        for i in 0..self.tasks.len() {
            if let Poll::Ready(r) = Pin::new(&mut self.tasks[i]).poll(cx) {
                drop(self.tasks.swap_remove(i));
                return Poll::Ready(Some(r));
            }
        }
        Poll::Pending
    }

    /// Aborts every task in the set (they stay in it until joined).
    pub fn abort_all(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Aborts every task and waits until all have ended.
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }
}

impl<T> Drop for JoinSet<T> {
    /// The tasks left are aborted (their futures dropped on their workers).
    fn drop(&mut self) {
        self.abort_all();
    }
}
