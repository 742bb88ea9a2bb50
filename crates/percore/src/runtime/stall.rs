//! Stall detection: a poll that keeps its worker longer than the threshold
//! (`Builder::stall_threshold`, default 10 ms) stalls every other task on
//! that core. Each one is counted (`WorkerMetrics::stalls`, with every
//! poll's duration in `WorkerMetrics::poll_time`) and reported once: to
//! the hook set with `Builder::on_stall`, or else as one line on stderr,
//! at most one line per worker per second (the lines say how many were
//! left out; the counter is exact).

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One stall, as the hook sees it.
#[derive(Debug, Clone, Copy)]
pub struct Stall<'a> {
    /// The worker's index.
    pub worker: usize,
    /// The task's id (unique within the runtime).
    pub task_id: u64,
    /// The task's name, if it was spawned with one (`task::Builder::name`).
    pub task_name: Option<&'a str>,
    /// How long the poll took.
    pub duration: Duration,
}

/// The hook type of `Builder::on_stall`.
pub(crate) type StallHook = Arc<dyn Fn(&Stall<'_>) + Send + Sync>;

/// The runtime's stall settings.
#[derive(Clone)]
pub(crate) struct StallConfig {
    pub(crate) threshold: Duration,
    pub(crate) hook: Option<StallHook>,
}

impl Default for StallConfig {
    fn default() -> StallConfig {
        StallConfig {
            threshold: Duration::from_millis(10),
            hook: None,
        }
    }
}

impl fmt::Debug for StallConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StallConfig")
            .field("threshold", &self.threshold)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

/// A worker's rate limit for stderr lines.
#[derive(Default)]
pub(crate) struct StallLog {
    last: Cell<Option<Instant>>,
    left_out: Cell<u64>,
}

impl StallLog {
    /// Reports `stall` through the hook, or on stderr unless a line went
    /// out less than a second ago.
    pub(crate) fn report(&self, config: &StallConfig, stall: &Stall<'_>) {
        if let Some(hook) = &config.hook {
            super::guard::run_user_code("the stall hook", || hook(stall));
            return;
        }
        let now = Instant::now();
        if self
            .last
            .get()
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.left_out.set(self.left_out.get() + 1);
            return;
        }
        self.last.set(Some(now));
        let left_out = self.left_out.replace(0);
        let name = stall
            .task_name
            .map(|n| format!(" ({n:?})"))
            .unwrap_or_default();
        let more = if left_out > 0 {
            format!("; {left_out} more stalls since the last line")
        } else {
            String::new()
        };
        super::guard::report(format_args!(
            "percore: worker {}: task {}{name} ran {:.1} ms without yielding (stall threshold \
             {:.1} ms), stalling every task on this core: move blocking work to \
             task::spawn_blocking{more}",
            stall.worker,
            stall.task_id,
            stall.duration.as_secs_f64() * 1e3,
            config.threshold.as_secs_f64() * 1e3,
        ));
    }
}
