//! A worker's timers: an ordered map from (deadline, id) to waker.
//!
//! Registering, re-arming and cancelling a timer is a map operation on the
//! worker's own thread — no syscall per timer. The worker parks with a
//! timeout equal to the earliest deadline and fires everything due when it
//! wakes. The map is bounded by the number of live `Sleep`s.

use std::collections::BTreeMap;
use std::task::Waker;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Timers {
    map: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
}

impl Timers {
    /// Registers a timer; returns its id.
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.map.insert((deadline, id), waker);
        id
    }

    /// Refreshes the waker of a registered timer: `None` if it already
    /// fired, else the replaced waker (if any), which the caller drops after
    /// releasing the timers' borrow (a waker's drop is user code).
    pub(crate) fn update(
        &mut self,
        deadline: Instant,
        id: u64,
        waker: &Waker,
    ) -> Option<Option<Waker>> {
        let w = self.map.get_mut(&(deadline, id))?;
        if w.will_wake(waker) {
            Some(None)
        } else {
            Some(Some(std::mem::replace(w, waker.clone())))
        }
    }

    /// Removes a timer; returns its waker for the caller to drop after
    /// releasing the timers' borrow.
    pub(crate) fn remove(&mut self, deadline: Instant, id: u64) -> Option<Waker> {
        self.map.remove(&(deadline, id))
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.map.first_key_value().map(|((d, _), _)| *d)
    }

    /// Moves the wakers of every timer due at `now` into `out`.
    pub(crate) fn fire(&mut self, now: Instant, out: &mut Vec<Waker>) {
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Drops every waker (shutdown).
    pub(crate) fn clear(&mut self) -> BTreeMap<(Instant, u64), Waker> {
        std::mem::take(&mut self.map)
    }
}
