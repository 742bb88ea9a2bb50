//! One generator thread: its share of connections and of the rate.
//!
//! Open loop: this thread's message `j` is due at the time its schedule
//! (`schedule.rs`: evenly spaced at `j / rate`, phase-offset per thread, or
//! Poisson) says, and goes to connection `j mod conns`, whatever the server is doing;
//! latency counts from that intended time, so a stalled server shows up in
//! the tail instead of slowing the generator down (no coordinated omission).
//! Closed loop: each connection keeps `depth` messages outstanding.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::conn::{Conn, ReadOutcome};
use super::cpu::thread_cpu;
use super::epoll::{tighten_timer_slack, Epoll};
use super::schedule::Schedule;
use super::{LoadConfig, Mode};
use crate::hist::{new_histogram, record};

/// What one thread measured.
pub struct ThreadResult {
    pub latency: Histogram<u64>,
    /// From the actual send instead of the intended one (what a
    /// closed-loop tool would report; wrk2's "uncorrected" histogram).
    pub latency_uncorrected: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    pub sent: u64,
    pub completed: u64,
    pub in_window: u64,
    pub unanswered: u64,
    pub cpu: Duration,
    pub wall: Duration,
    /// Wall time spent waiting in epoll (sleeping or polling) inside the
    /// measured window: the rest of the window is the generator's work.
    pub waiting: Duration,
    /// The window's CPU and wall time were sampled (a run whose window was
    /// not measured cannot be checked for saturation: it is invalid).
    pub window_measured: bool,
}

/// Thread `thread.0` of `thread.1`: its connections, its share of the rate.
pub fn run_thread(
    cfg: &LoadConfig,
    mut conns: Vec<Conn>,
    start: Instant,
    rate: f64,
    thread: (usize, usize),
) -> io::Result<ThreadResult> {
    tighten_timer_slack();
    let mut ep = Epoll::new(conns.len() * 2)?;
    for (i, c) in conns.iter().enumerate() {
        ep.add(c.sock.as_raw_fd(), i as u64)?;
    }
    let size = cfg.size;
    let warm_ns = cfg.warmup.as_nanos() as u64;
    let end_ns = warm_ns + cfg.duration.as_nanos() as u64;
    let drain_until = end_ns + cfg.drain.as_nanos() as u64;
    let mut r = ThreadResult {
        latency: new_histogram(),
        latency_uncorrected: new_histogram(),
        send_lag: new_histogram(),
        sent: 0,
        completed: 0,
        in_window: 0,
        unanswered: 0,
        cpu: Duration::ZERO,
        wall: Duration::ZERO,
        waiting: Duration::ZERO,
        window_measured: false,
    };
    let spin = Duration::from_micros(cfg.spin_us);
    let mut buf = vec![0u8; 256 * 1024];
    let interval_ns = if rate > 0.0 { 1e9 / rate } else { 0.0 };
    let mut schedule = Schedule::new(cfg.arrivals, interval_ns, thread, cfg.arrival_seed);
    let mut next_msg: u64 = 0;
    let mut dirty: Vec<usize> = Vec::with_capacity(conns.len());
    let mut ready: Vec<(usize, u32)> = Vec::with_capacity(conns.len().max(16));
    // CPU and wall time at the start of the measured window; taken once.
    let mut window_start: Option<(Duration, Instant)> = None;
    let mut window_measured = false;
    let ns = |t: Instant| t.saturating_duration_since(start).as_nanos() as u64;
    // The first thread tells the caller where the window starts and ends.
    let hook = cfg.window_hook.as_ref().filter(|_| thread.0 == 0);
    let mut hook_ended = false;

    if let Mode::Closed { depth } = cfg.mode {
        let now = ns(Instant::now());
        for c in conns.iter_mut() {
            for _ in 0..depth {
                c.enqueue(size, now, now);
                r.sent += 1;
            }
            c.flush()?;
        }
    }

    loop {
        let now = ns(Instant::now());
        if window_start.is_none() && now >= warm_ns {
            if let Some(h) = hook {
                (h.0)(true);
            }
            window_start = Some((thread_cpu(), Instant::now()));
        }
        if !hook_ended && now >= end_ns && window_start.is_some() {
            hook_ended = true;
            if let Some(h) = hook {
                (h.0)(false);
            }
        }
        let outstanding: usize = if now >= end_ns {
            conns.iter().map(Conn::outstanding).sum()
        } else {
            1
        };
        if now >= drain_until || (now >= end_ns && outstanding == 0) {
            // The window may end here, before the sampling at the bottom of
            // the loop ever ran (nothing outstanding at the end time).
            if !window_measured {
                if let Some((cpu0, wall0)) = window_start {
                    r.cpu = thread_cpu().saturating_sub(cpu0);
                    r.wall = Instant::now().duration_since(wall0);
                    window_measured = true;
                }
            }
            // Unanswered messages are timeouts, not silence: each one sent
            // in the window is recorded as answered at the drain deadline,
            // so a server that drops messages cannot show a good tail.
            let deadline = now.max(end_ns);
            for c in &conns {
                for (intended, sent) in c.pending_intended() {
                    r.unanswered += 1;
                    // In the histogram, not in `in_window`: throughput
                    // counts answered messages only.
                    if intended >= warm_ns && intended < end_ns {
                        record(&mut r.latency, deadline.saturating_sub(intended));
                        record(&mut r.latency_uncorrected, deadline.saturating_sub(sent));
                    }
                }
            }
            break;
        }
        // Open loop: issue every message that is due, batching per connection.
        if let Mode::Open { .. } = cfg.mode {
            loop {
                let due = schedule.due();
                if due > now || due >= end_ns {
                    break;
                }
                let ci = (next_msg % conns.len() as u64) as usize;
                conns[ci].enqueue(size, due, now);
                // Lag during warm-up is the generator settling in, not a
                // measurement: it neither counts nor invalidates the run.
                if due >= warm_ns {
                    record(&mut r.send_lag, now - due);
                }
                r.sent += 1;
                next_msg += 1;
                schedule.advance();
                if !dirty.contains(&ci) {
                    dirty.push(ci);
                }
            }
            for ci in dirty.drain(..) {
                conns[ci].flush()?;
            }
        }
        let timeout = match cfg.mode {
            Mode::Open { .. } if now < end_ns => {
                let due = schedule.due().min(end_ns);
                Duration::from_nanos(due.saturating_sub(ns(Instant::now())))
            }
            _ => Duration::from_millis(5),
        };
        let spinning = timeout < spin;
        let wait_start = Instant::now();
        let events = ep.wait(Some(if spinning { Duration::ZERO } else { timeout }))?;
        let now_t = Instant::now();
        let now = ns(now_t);
        if window_start.is_some() && !window_measured {
            r.waiting += now_t.duration_since(wait_start);
        }
        // Copy out the ready list: handling needs `conns` mutably.
        ready.clear();
        ready.extend(events.iter().map(|e| (e.u64 as usize, e.events)));
        for &(ci, ev) in &ready {
            let c = &mut conns[ci];
            if ev & libc::EPOLLOUT as u32 != 0 {
                c.writable = true;
                c.flush()?;
            }
            if ev & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 == 0
            {
                continue;
            }
            let mut finished = 0u64;
            let outcome = c.read(&mut buf, size, |intended, sent| {
                finished += 1;
                if intended >= warm_ns && intended < end_ns {
                    record(&mut r.latency, now.saturating_sub(intended));
                    record(&mut r.latency_uncorrected, now.saturating_sub(sent));
                    r.in_window += 1;
                }
            })?;
            r.completed += finished;
            if let Mode::Closed { .. } = cfg.mode {
                if now < end_ns {
                    for _ in 0..finished {
                        c.enqueue(size, now, now);
                        r.sent += 1;
                    }
                    c.flush()?;
                }
            }
            if let ReadOutcome::Closed = outcome {
                if c.outstanding() > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "server closed connection {} with {} messages unanswered",
                            c.id,
                            c.outstanding()
                        ),
                    ));
                }
            }
        }
        if now >= end_ns && !window_measured {
            if let Some((cpu0, wall0)) = window_start {
                r.cpu = thread_cpu().saturating_sub(cpu0);
                r.wall = now_t.duration_since(wall0);
            }
            window_measured = true;
        }
    }
    r.window_measured = window_measured;
    Ok(r)
}
