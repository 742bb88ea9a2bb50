//! `bench-harness load`: a TCP echo load generator.
//!
//! - `engine` — one generator thread's loop (open and closed loop).
//! - `conn` — a connection's send queue, pending messages, verification.
//! - `payload` — the deterministic byte pattern.
//! - `schedule` — when each open-loop message is due (uniform or Poisson).
//! - `epoll` — epoll with nanosecond timeouts.
//! - `cpu` — per-thread CPU time (is the generator the bottleneck?).

mod conn;
mod cpu;
mod engine;
mod epoll;
pub mod payload;
pub mod schedule;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::hist::{new_histogram, Percentiles};
use conn::Conn;

/// How messages are paced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mode {
    /// `depth` messages outstanding per connection, as fast as answered.
    Closed { depth: usize },
    /// `rate` messages per second in total, evenly spaced.
    Open { rate: f64 },
}

/// Called by the first generator thread when the measurement window
/// starts (`true`) and ends (`false`): compare samples the server there.
#[derive(Clone)]
pub struct WindowHook(pub std::sync::Arc<dyn Fn(bool) + Send + Sync>);

impl std::fmt::Debug for WindowHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WindowHook")
    }
}

/// A load run's parameters.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub conns: usize,
    pub size: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub threads: usize,
    pub mode: Mode,
    /// Cores to pin generator threads to (round-robin), if any.
    pub cores: Vec<usize>,
    /// How long to wait for outstanding echoes after the run.
    pub drain: Duration,
    /// Open loop: a send-lag p99 above this (µs) marks the run invalid.
    pub lag_limit_us: u64,
    /// Open loop: the arrival process.
    pub arrivals: schedule::Arrivals,
    /// Called at the measurement window's edges (see [`WindowHook`]).
    pub window_hook: Option<WindowHook>,
    /// Poisson arrivals: which sequence (compare uses the invocation, so
    /// every server of one invocation meets the same arrivals and each
    /// invocation other ones).
    pub arrival_seed: u64,
    /// Open loop: when the next message is due within this many µs, poll
    /// instead of sleeping (a kernel sleep and wake-up per message costs
    /// more than the message). Only for a generator with a core of its own:
    /// the spin is idle time, excluded from the busy share, but it does
    /// occupy the core. 0 disables it.
    pub spin_us: u64,
}

impl LoadConfig {
    pub fn new(addr: SocketAddr, mode: Mode) -> LoadConfig {
        LoadConfig {
            addr,
            conns: 50,
            size: 64,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            threads: 1,
            mode,
            cores: Vec::new(),
            drain: Duration::from_secs(2),
            lag_limit_us: 1_000,
            arrivals: schedule::Arrivals::Uniform,
            window_hook: None,
            arrival_seed: 0,
            spin_us: 0,
        }
    }
}

/// A load run's outcome (every field goes into results.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub mode: Mode,
    /// Open loop: the arrival process.
    #[serde(default)]
    pub arrivals: schedule::Arrivals,
    pub conns: usize,
    pub size: usize,
    pub threads: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Messages sent (all phases).
    pub sent: u64,
    /// Messages echoed and verified (all phases).
    pub completed: u64,
    /// Messages whose echo never came back before the drain deadline.
    pub unanswered: u64,
    /// Verified messages per second over the measured window.
    pub throughput: f64,
    /// Round-trip latency in µs, from the intended send time.
    pub latency: Percentiles,
    /// Round-trip latency in µs from the actual send (uncorrected for the
    /// generator's own delays, as a closed-loop tool measures): beside the
    /// corrected one, the gap between the two is the generator's share.
    #[serde(default)]
    pub latency_uncorrected: Percentiles,
    /// Open loop: the latency percentiles ("p50", "p99", "p99.9") at which
    /// the send lag at the same percentile exceeds 10 % of the latency, so
    /// that figure is more the generator's than the server's.
    #[serde(default)]
    pub unreliable: Vec<String>,
    /// Open loop: how late the generator issued messages, in µs.
    pub send_lag: Percentiles,
    /// Busiest generator thread's share of the measured window spent
    /// working, i.e. not waiting in epoll (sleeping or idle polling).
    pub gen_busy_max: f64,
    /// Generator work µs per verified message (waiting excluded).
    pub gen_cpu_us_per_msg: f64,
    /// Closed loop: a generator thread was ≥ 95% busy, so the throughput is
    /// a lower bound of the server's maximum, not the maximum itself.
    pub generator_bound: bool,
    pub valid: bool,
    pub invalid_reason: Option<String>,
}

/// The latency percentiles the generator's own lag at the same percentile
/// could distort: lag above 10 % of the latency.
pub fn unreliable_percentiles(latency: &Percentiles, lag: &Percentiles) -> Vec<String> {
    [
        ("p50", latency.p50, lag.p50),
        ("p99", latency.p99, lag.p99),
        ("p99.9", latency.p999, lag.p999),
    ]
    .iter()
    .filter(|(_, lat, lag)| *lag * 10.0 > *lat)
    .map(|(name, _, _)| name.to_string())
    .collect()
}

/// A report and its latency histogram.
#[derive(Debug)]
pub struct LoadResult {
    pub report: LoadReport,
    pub latency: Histogram<u64>,
}

/// Runs the load. Connection failures and any echoed byte that differs from
/// what was sent are errors.
pub fn run(cfg: &LoadConfig) -> io::Result<LoadResult> {
    if cfg.conns == 0 || cfg.size == 0 || cfg.threads == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "conns, size and threads must be at least 1",
        ));
    }
    if let Mode::Open { rate } = cfg.mode {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "open-loop rate must be positive",
            ));
        }
    }
    let threads = cfg.threads.min(cfg.conns);
    let depth = match cfg.mode {
        Mode::Closed { depth } => depth.max(1),
        Mode::Open { .. } => 1,
    };
    let mut shares: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..cfg.conns {
        let s = TcpStream::connect(cfg.addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connect to {} (connection {i}): {e}", cfg.addr),
            )
        })?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        shares[i % threads].push(Conn::new(i as u32, s, cfg.size, depth));
    }
    let start = Instant::now();
    let per_thread_rate = match cfg.mode {
        Mode::Open { rate } => rate / threads as f64,
        Mode::Closed { .. } => 0.0,
    };
    let results: Vec<io::Result<engine::ThreadResult>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(t, conns)| {
                let core = (!cfg.cores.is_empty()).then(|| cfg.cores[t % cfg.cores.len()]);
                s.spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: c });
                    }
                    engine::run_thread(cfg, conns, start, per_thread_rate, (t, threads))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("generator thread panicked")))
            })
            .collect()
    });
    let mut latency = new_histogram();
    let mut uncorrected = new_histogram();
    let mut lag = new_histogram();
    let (mut sent, mut completed, mut in_window, mut unanswered) = (0, 0, 0, 0);
    let (mut cpu, mut busy_max) = (Duration::ZERO, 0.0f64);
    let mut unmeasured = 0;
    for r in results {
        let r = r?;
        if !r.window_measured {
            unmeasured += 1;
        }
        latency.add(&r.latency).expect("same bounds");
        uncorrected
            .add(&r.latency_uncorrected)
            .expect("same bounds");
        lag.add(&r.send_lag).expect("same bounds");
        sent += r.sent;
        completed += r.completed;
        in_window += r.in_window;
        unanswered += r.unanswered;
        // Work = the window less the time spent waiting for events; never
        // more than the CPU the thread actually got.
        let work = r.wall.saturating_sub(r.waiting).min(r.cpu);
        cpu += work;
        if !r.wall.is_zero() {
            busy_max =
                busy_max.max(r.wall.saturating_sub(r.waiting).as_secs_f64() / r.wall.as_secs_f64());
        }
    }
    let send_lag = Percentiles::of(&lag);
    let lat = Percentiles::of(&latency);
    let unreliable = match cfg.mode {
        Mode::Open { .. } => unreliable_percentiles(&lat, &send_lag),
        Mode::Closed { .. } => Vec::new(),
    };
    let mut invalid = Vec::new();
    if unanswered > 0 {
        invalid.push(format!(
            "{unanswered} messages were never echoed (recorded as timeouts at the drain deadline)"
        ));
    }
    if unmeasured > 0 {
        invalid.push(format!(
            "the measurement window of {unmeasured} generator thread(s) was not sampled"
        ));
    }
    if let Mode::Open { .. } = cfg.mode {
        if send_lag.p99 > cfg.lag_limit_us as f64 {
            invalid.push(format!(
                "generator fell behind: send lag p99 {:.0} µs > {} µs",
                send_lag.p99, cfg.lag_limit_us
            ));
        }
        if busy_max >= 0.95 {
            invalid.push(format!(
                "generator saturated: a thread was {:.0}% busy",
                busy_max * 100.0
            ));
        }
    }
    let report = LoadReport {
        mode: cfg.mode,
        arrivals: cfg.arrivals,
        conns: cfg.conns,
        size: cfg.size,
        threads,
        duration_s: cfg.duration.as_secs_f64(),
        warmup_s: cfg.warmup.as_secs_f64(),
        sent,
        completed,
        unanswered,
        throughput: in_window as f64 / cfg.duration.as_secs_f64(),
        latency: lat,
        latency_uncorrected: Percentiles::of(&uncorrected),
        unreliable,
        send_lag,
        gen_busy_max: busy_max,
        gen_cpu_us_per_msg: if in_window > 0 {
            cpu.as_secs_f64() * 1e6 / in_window as f64
        } else {
            0.0
        },
        generator_bound: matches!(cfg.mode, Mode::Closed { .. }) && busy_max >= 0.95,
        valid: invalid.is_empty(),
        invalid_reason: (!invalid.is_empty()).then(|| invalid.join("; ")),
    };
    Ok(LoadResult { report, latency })
}
