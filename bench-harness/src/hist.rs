//! Latency histograms: values recorded in nanoseconds (up to 100 s, 3
//! significant digits, so a 16 µs p50 is kept to ±16 ns rather than floored
//! to whole µs); percentile summaries in µs with fractions, and
//! HdrHistogram's percentile-distribution text form (`.hgrm`, in µs).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest trackable latency: 100 s in ns.
const MAX_NS: u64 = 100_000_000_000;

/// A histogram of nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Records `ns` (clamped into range).
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record(ns.clamp(1, MAX_NS));
}

/// A histogram value (ns) in µs.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// Percentiles in µs (fractional: the histogram keeps ns). Results written
/// before the histograms kept ns hold whole µs here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    /// Absent (0) in results from before it was recorded.
    #[serde(default)]
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1e3,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p95: us(h.value_at_quantile(0.95)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// HdrHistogram's percentile distribution text (values in µs, from the
/// ns histogram), readable by the usual HdrHistogram plotters.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".to_string()
        };
        let _ = writeln!(
            s,
            "{:>12.3} {:>2.12} {:>10} {:>14}",
            us(v.value_iterated_to()),
            q,
            v.count_since_last_iteration(),
            inv
        );
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1e3,
        h.stdev() / 1e3
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        us(h.max()),
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_keep_sub_microsecond_resolution() {
        // A 15.87 µs round trip: a µs histogram floors it to 15 (6 % low).
        let mut h = new_histogram();
        for _ in 0..1000 {
            record(&mut h, 15_870);
        }
        let p = Percentiles::of(&h);
        assert!((p.p50 - 15.87).abs() < 0.02, "p50 {} µs", p.p50);
        assert!((p.mean - 15.87).abs() < 0.02, "mean {} µs", p.mean);
        // Up to 100 s, with 3 significant digits.
        record(&mut h, 90_000_000_000);
        assert!((Percentiles::of(&h).max / 90e6 - 1.0).abs() < 1e-3);
        let text = percentile_distribution(&h);
        assert!(text.contains("15.8"), "the .hgrm is in µs:\n{text}");
    }
}
