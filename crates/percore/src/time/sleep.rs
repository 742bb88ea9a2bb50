//! `sleep` and `sleep_until`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::runtime::context;

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
/// It registers with the timers of the worker that first polls it. If it is
/// dropped on another thread, its entry stays until the deadline and then
/// fires harmlessly (a spurious wake).
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
            context::with_worker(|w| {
                if w.id == worker {
                    w.timers.borrow_mut().remove(deadline, id);
                }
            });
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
            match entry {
                Some((worker, id)) if worker == w.id && timers.update(deadline, id, cx.waker()) => {
                    (worker, id)
                }
                _ => (w.id, timers.insert(deadline, cx.waker().clone())),
            }
        });
        match registered {
            Some(e) => {
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
