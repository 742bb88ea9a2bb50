//! A FIFO of waiting futures, each known by an id, for the primitives in
//! this folder (all behind one mutex each: no lock-free parts).
//!
//! A future registers on its first `Pending`, updates its waker on later
//! polls, and removes itself when dropped; whoever grants it something
//! marks it `granted` and wakes it, so a grant is never lost, even when the
//! future is polled late.

use std::collections::VecDeque;
use std::task::Waker;

pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) waker: Option<Waker>,
    /// What the waiter needs (permits), or 1.
    pub(crate) need: usize,
    pub(crate) granted: bool,
}

#[derive(Default)]
pub(crate) struct WaitList {
    next_id: u64,
    pub(crate) queue: VecDeque<Entry>,
}

impl WaitList {
    /// Adds a waiter at the back; returns its id.
    pub(crate) fn push(&mut self, need: usize, waker: &Waker) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.queue.push_back(Entry {
            id,
            waker: Some(waker.clone()),
            need,
            granted: false,
        });
        id
    }

    pub(crate) fn find(&mut self, id: u64) -> Option<&mut Entry> {
        self.queue.iter_mut().find(|e| e.id == id)
    }

    /// Removes waiter `id`; returns it if it was there.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Entry> {
        let i = self.queue.iter().position(|e| e.id == id)?;
        self.queue.remove(i)
    }

    /// The first waiter not yet granted.
    pub(crate) fn first_waiting(&mut self) -> Option<&mut Entry> {
        self.queue.iter_mut().find(|e| !e.granted)
    }

    /// Whether any waiter is not yet granted.
    pub(crate) fn any_waiting(&self) -> bool {
        self.queue.iter().any(|e| !e.granted)
    }
}

/// Wakes the wakers collected under a lock, after it is released.
pub(crate) fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}
