//! `Notify`: wake one waiting task, or all of them, with no data; usable
//! across workers and foreign threads.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use super::waitlist::{wake_all, WaitList};

struct State {
    /// A `notify_one` that found nobody waiting: the next `notified()`
    /// completes at once.
    permit: bool,
    /// `notify_waiters` calls so far: a future made before one completes
    /// even if it was first polled after it.
    generation: u64,
    waiters: WaitList,
}

/// Notifies waiting tasks.
///
/// `notify_one` wakes the longest-waiting `notified()` future, or, if none
/// waits, leaves one permit so the next `notified()` returns at once (at
/// most one is stored). `notify_waiters` wakes every future waiting now
/// and stores nothing. A future woken by `notify_one` and dropped before it
/// saw it passes the notification on to the next waiter.
pub struct Notify {
    state: Mutex<State>,
}

impl Default for Notify {
    fn default() -> Notify {
        Notify::new()
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify").finish_non_exhaustive()
    }
}

impl Notify {
    /// A `Notify` with no stored permit.
    pub fn new() -> Notify {
        Notify {
            state: Mutex::new(State {
                permit: false,
                generation: 0,
                waiters: WaitList::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a notification. The future receives `notify_waiters`
    /// calls made from its creation on, even before its first poll;
    /// `notify_one` reaches it once it is waiting (or through the stored
    /// permit).
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            id: None,
            generation: self.lock().generation,
        }
    }

    /// Wakes one waiter, or stores a permit for the next one.
    pub fn notify_one(&self) {
        let mut st = self.lock();
        let waker = notify_first(&mut st);
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Wakes every task waiting now.
    pub fn notify_waiters(&self) {
        let mut st = self.lock();
        st.generation += 1;
        let mut wakers = Vec::new();
        for e in st.waiters.queue.iter_mut().filter(|e| !e.granted) {
            e.granted = true;
            // A broadcast grant: not passed on if its future is dropped.
            e.need = 0;
            wakers.extend(e.waker.take());
        }
        drop(st);
        wake_all(wakers);
    }
}

/// Grants the first waiter not yet granted, or stores the permit.
fn notify_first(st: &mut State) -> Option<std::task::Waker> {
    match st.waiters.first_waiting() {
        Some(e) => {
            e.granted = true;
            e.waker.take()
        }
        None => {
            st.permit = true;
            None
        }
    }
}

/// Future of [`Notify::notified`].
#[must_use = "futures do nothing unless awaited"]
pub struct Notified<'a> {
    notify: &'a Notify,
    id: Option<u64>,
    /// `State::generation` when this future was made.
    generation: u64,
}

impl fmt::Debug for Notified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notified")
            .field("waiting", &self.id.is_some())
            .finish()
    }
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.notify.lock();
        let Some(id) = self.id else {
            if st.generation != self.generation || std::mem::take(&mut st.permit) {
                return Poll::Ready(());
            }
            let id = st.waiters.push(1, cx.waker());
            drop(st);
            self.id = Some(id);
            return Poll::Pending;
        };
        let granted = st.waiters.find(id).is_some_and(|e| e.granted);
        if granted {
            st.waiters.remove(id);
            drop(st);
            self.id = None;
            return Poll::Ready(());
        }
        if let Some(e) = st.waiters.find(id) {
            match &e.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => e.waker = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut st = self.notify.lock();
        let Some(e) = st.waiters.remove(id) else {
            return;
        };
        // A `notify_one` granted and never seen: pass it on.
        let waker = if e.granted && e.need == 1 {
            notify_first(&mut st)
        } else {
            None
        };
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }
}
