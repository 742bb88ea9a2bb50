//! Time: per-worker timers (`timers`), `sleep`, `timeout`, `interval`.

mod interval;
mod sleep;
mod timeout;
pub(crate) mod timers;

pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use sleep::{sleep, sleep_until, Sleep};
pub use timeout::{timeout, timeout_at, Elapsed, Timeout};
