//! `interval`: ticks at a fixed period.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::sleep::{sleep_until, Sleep};

/// What an interval does when ticks were missed (the task was late).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks back to back, then keep the original schedule.
    #[default]
    Burst,
    /// Restart the schedule from now: the next tick is one period later.
    Delay,
    /// Skip missed ticks: the next tick is the next multiple of the period.
    Skip,
}

/// Ticks every `period`, the first tick immediately.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Ticks every `period`, the first tick at `start`.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval period must be non-zero");
    Interval {
        period,
        next: start,
        sleep: Box::pin(sleep_until(start)),
        missed: MissedTickBehavior::default(),
    }
}

/// A stream of ticks; see [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    next: Instant,
    sleep: Pin<Box<Sleep>>,
    missed: MissedTickBehavior,
}

impl Interval {
    /// Sets what happens to missed ticks.
    pub fn set_missed_tick_behavior(&mut self, b: MissedTickBehavior) {
        self.missed = b;
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Waits for the next tick; returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let tick = self.next;
        let now = Instant::now();
        self.next = match self.missed {
            MissedTickBehavior::Burst => tick + self.period,
            MissedTickBehavior::Delay if now > tick + self.period => now + self.period,
            MissedTickBehavior::Skip if now > tick + self.period => {
                let behind = now.duration_since(tick).as_nanos() / self.period.as_nanos();
                let skip = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                tick + self.period * skip
            }
            _ => tick + self.period,
        };
        self.sleep.as_mut().reset(self.next);
        Poll::Ready(tick)
    }
}

use std::future::Future as _;
