//! When each open-loop message of one generator thread is due.
//!
//! - `Uniform`: evenly spaced at the thread's interval. With several
//!   threads, thread `t` of `n` is offset by `t/n` of an interval, so the
//!   threads' messages interleave instead of leaving in bursts of `n`.
//! - `Poisson`: exponentially distributed gaps with the same mean (each
//!   thread an independent Poisson process; their sum is one at the total
//!   rate), from a seeded generator, so a run can be repeated exactly.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The arrival process of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Evenly spaced messages.
    #[default]
    Uniform,
    /// Poisson arrivals (exponential gaps) at the same mean rate.
    Poisson,
}

/// One thread's schedule: the due time of its next message, in ns from the
/// run's start.
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    interval_ns: f64,
    next_ns: f64,
    rng: u64,
}

impl Schedule {
    /// Thread `thread` of `threads`, `interval_ns` between its messages on
    /// average (0: no open-loop messages); `seed` picks the Poisson
    /// sequence (the same seed replays it exactly).
    pub fn new(
        arrivals: Arrivals,
        interval_ns: f64,
        (thread, threads): (usize, usize),
        seed: u64,
    ) -> Schedule {
        let mut s = Schedule {
            arrivals,
            interval_ns,
            next_ns: 0.0,
            // Any non-zero seed; distinct per thread, fixed per run.
            rng: (0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x94D0_49BB_1331_11EB))
                ^ (thread as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9)
                | 1,
        };
        s.next_ns = match arrivals {
            Arrivals::Uniform => interval_ns * thread as f64 / threads.max(1) as f64,
            Arrivals::Poisson => s.gap(),
        };
        s
    }

    /// When the next message is due.
    pub fn due(&self) -> u64 {
        self.next_ns as u64
    }

    /// The next message was sent: move to the one after.
    pub fn advance(&mut self) {
        self.next_ns += match self.arrivals {
            Arrivals::Uniform => self.interval_ns,
            Arrivals::Poisson => self.gap(),
        };
    }

    /// An exponential gap with mean `interval_ns` (xorshift64* uniform in
    /// (0, 1], inverse transform).
    fn gap(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        -u.ln() * self.interval_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(s: &mut Schedule, n: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(n);
        let mut last = s.due() as f64;
        for _ in 0..n {
            s.advance();
            let d = s.due() as f64;
            out.push(d - last);
            last = d;
        }
        out
    }

    fn mean_cv(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn poisson_gaps_have_the_mean_interval_and_an_exponential_spread() {
        let mut s = Schedule::new(Arrivals::Poisson, 10_000.0, (0, 1), 0);
        let (mean, cv) = mean_cv(&gaps(&mut s, 200_000));
        assert!((mean / 10_000.0 - 1.0).abs() < 0.01, "mean gap {mean}");
        // An exponential distribution's standard deviation equals its mean.
        assert!((cv - 1.0).abs() < 0.02, "coefficient of variation {cv}");
        // Seeded: the same thread gets the same schedule.
        let a = gaps(
            &mut Schedule::new(Arrivals::Poisson, 10_000.0, (3, 4), 7),
            10,
        );
        let b = gaps(
            &mut Schedule::new(Arrivals::Poisson, 10_000.0, (3, 4), 7),
            10,
        );
        assert_eq!(a, b);
        let c = gaps(
            &mut Schedule::new(Arrivals::Poisson, 10_000.0, (3, 4), 8),
            10,
        );
        assert_ne!(a, c, "another seed, another sequence");
    }

    #[test]
    fn uniform_threads_interleave_instead_of_bursting() {
        let t0 = Schedule::new(Arrivals::Uniform, 1_000.0, (0, 4), 0);
        let t1 = Schedule::new(Arrivals::Uniform, 1_000.0, (1, 4), 0);
        let t3 = Schedule::new(Arrivals::Uniform, 1_000.0, (3, 4), 0);
        assert_eq!((t0.due(), t1.due(), t3.due()), (0, 250, 750));
        let mut s = t1.clone();
        let (mean, cv) = mean_cv(&gaps(&mut s, 1_000));
        assert!((mean - 1_000.0).abs() < 1.0 && cv < 0.01, "{mean} {cv}");
    }
}
