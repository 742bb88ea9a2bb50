//! A lock-free log2 histogram of nanosecond durations, written by one
//! thread (its worker) and read by any: bucket `i` counts values in
//! `[2^i, 2^(i+1))` ns (bucket 0 also holds 0 and 1). 48 buckets reach
//! about 78 hours. Coarse (a factor of 2 per bucket) but one relaxed store
//! per record, so it can sit on the hot path of every poll.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Number of buckets.
pub const BUCKETS: usize = 48;

/// The histogram.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    /// Sum of the values, in ns (for averages and Prometheus' `_sum`).
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Counts one value, from the histogram's only writer thread.
    pub(crate) fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = (63 - (ns | 1).leading_zeros() as usize).min(BUCKETS - 1);
        let b = &self.buckets[i];
        b.store(b.load(Relaxed).wrapping_add(1), Relaxed);
        self.sum_ns
            .store(self.sum_ns.load(Relaxed).wrapping_add(ns), Relaxed);
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_ns: self.sum_ns.load(Relaxed),
        }
    }
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Count per bucket: bucket `i` holds values in `[2^i, 2^(i+1))` ns.
    pub buckets: [u64; BUCKETS],
    /// Sum of the values, in ns.
    pub sum_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Values counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound of bucket `i` (values in it are below this).
    pub fn bucket_limit(i: usize) -> Duration {
        Duration::from_nanos(1u64 << (i + 1).min(63))
    }

    /// An upper bound of the `q` quantile (0..=1): the limit of the bucket
    /// holding it; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::bucket_limit(i));
            }
        }
        Some(Self::bucket_limit(BUCKETS - 1))
    }

    /// Counts from `other` added in (to merge workers).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let h = Histogram::default();
        for ns in [0u64, 1, 2, 3, 1000, 1023, 1024, 10_000_000] {
            h.record(Duration::from_nanos(ns));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 8);
        assert_eq!(s.buckets[0], 2); // 0, 1
        assert_eq!(s.buckets[1], 2); // 2, 3
        assert_eq!(s.buckets[9], 2); // 1000, 1023
        assert_eq!(s.buckets[10], 1); // 1024
        assert_eq!(s.buckets[23], 1); // 10 ms
        assert_eq!(s.sum_ns, 1 + 2 + 3 + 1000 + 1023 + 1024 + 10_000_000);
        assert_eq!(s.quantile(0.5), Some(Duration::from_nanos(4)));
        assert_eq!(s.quantile(1.0), Some(Duration::from_nanos(1 << 24)));
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
    }
}
