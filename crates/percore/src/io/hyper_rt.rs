//! hyper's runtime hooks on percore: [`HyperExecutor`] spawns hyper's
//! background tasks (HTTP/2 connection drivers) with `percore::spawn`, and
//! [`HyperTimer`] gives hyper percore's timers (header-read timeouts,
//! keep-alive).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// `hyper::rt::Executor` on percore: each future becomes a `spawn`ed task
/// (stealable, so it must be `Send`). Use it from a percore worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperExecutor;

impl<F> hyper::rt::Executor<F> for HyperExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        // Detached: hyper watches its tasks through its own channels.
        drop(crate::spawn(fut));
    }
}

/// `hyper::rt::Timer` on percore's timers. Use it from a percore worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperTimer;

/// A percore [`Sleep`](crate::time::Sleep) as hyper's sleep.
struct HyperSleep(crate::time::Sleep);

impl Future for HyperSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(crate::time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(crate::time::sleep_until(deadline)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(mut s) => s.0.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}
