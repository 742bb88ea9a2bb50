//! `sleep` and `sleep_until`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::runtime::context;
use crate::sched::mail::Mail;
use crate::sched::registry;

/// Waits until `duration` has passed.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        entry: None,
    }
}

/// Future returned by [`sleep`] and [`sleep_until`].
///
/// It registers with the timers of the worker that polls it. If its task
/// moves to another worker, it registers there and mails its old worker to
/// drop the old entry. If it is dropped on another thread, its entry stays
/// until the deadline and then fires harmlessly (a spurious wake).
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// (worker id, timer id) once registered.
    entry: Option<(u64, u64)>,
}

impl Sleep {
    /// The instant this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline (the next poll re-registers).
    pub fn reset(&mut self, deadline: Instant) {
        self.deregister();
        self.deadline = deadline;
    }

    fn deregister(&mut self) {
        if let Some((worker, id)) = self.entry.take() {
            let deadline = self.deadline;
            // Dropped after the borrow ends: a waker's drop is user code.
            let _waker = context::with_worker(|w| {
                if w.id != worker {
                    return None;
                }
                // Borrowed only if this drop runs inside a timers call (a
                // waker's drop); the entry then fires later, harmlessly.
                let mut timers = w.timers.try_borrow_mut().ok()?;
                timers.remove(deadline, id)
            })
            .flatten();
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            this.deregister();
            return Poll::Ready(());
        }
        let deadline = this.deadline;
        let entry = this.entry;
        let registered = context::with_worker(|w| {
            let mut timers = w.timers.borrow_mut();
            let refreshed = match entry {
                Some((worker, id)) if worker == w.id => timers.update(deadline, id, cx.waker()),
                // Registered on a worker this task has left: that worker
                // drops the entry (and the waker it holds) by mail.
                Some((worker, id)) => {
                    if let Some(old) = registry::find(worker) {
                        old.post(Mail::CancelTimer { deadline, id });
                    }
                    None
                }
                None => None,
            };
            match refreshed {
                // The replaced waker is dropped after the borrow ends.
                Some(old) => ((w.id, entry.map_or(0, |e| e.1)), old),
                None => ((w.id, timers.insert(deadline, cx.waker().clone())), None),
            }
        });
        match registered {
            Some((e, _old_waker)) => {
                this.entry = Some(e);
                Poll::Pending
            }
            None => panic!(
                "percore timers need a percore worker: use Runtime::block_on or spawn a task"
            ),
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.deregister();
    }
}
