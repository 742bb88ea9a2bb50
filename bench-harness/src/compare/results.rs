//! The `results.json` schema: every run with every field, plus the medians
//! the tables show. Versioned; `Results::load` checks the version.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::process::ProcSample;
use crate::load::LoadReport;

/// Version 2: summaries' statistics cover valid runs only.
pub const SCHEMA_VERSION: u32 = 3;

/// A server's resource use over one measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    pub user_us_per_msg: f64,
    pub sys_us_per_msg: f64,
    /// Over the measurement window only (its edges sampled by the
    /// generator): the server's CPU per windowed message in ns (schedstat),
    /// its cores' whole busy time per message in ns (`/proc/stat`: includes
    /// softirq work done there for other processes), and the share of the
    /// window the hypervisor stole from those cores.
    #[serde(default)]
    pub window_cpu_ns_per_msg: Option<f64>,
    #[serde(default)]
    pub window_core_busy_ns_per_msg: Option<f64>,
    #[serde(default)]
    pub window_steal_pct: Option<f64>,
    pub rss_kb: u64,
    pub peak_rss_kb: u64,
    pub voluntary_cs: u64,
    pub involuntary_cs: u64,
}

impl ServerUsage {
    /// The difference between two samples, per verified message.
    pub fn between(before: &ProcSample, after: &ProcSample, messages: u64) -> ServerUsage {
        let m = messages.max(1) as f64;
        ServerUsage {
            user_us_per_msg: (after.user_s - before.user_s).max(0.0) * 1e6 / m,
            sys_us_per_msg: (after.sys_s - before.sys_s).max(0.0) * 1e6 / m,
            window_cpu_ns_per_msg: None,
            window_core_busy_ns_per_msg: None,
            window_steal_pct: None,
            rss_kb: after.rss_kb,
            peak_rss_kb: after.peak_rss_kb,
            voluntary_cs: after.voluntary_cs.saturating_sub(before.voluntary_cs),
            involuntary_cs: after.involuntary_cs.saturating_sub(before.involuntary_cs),
        }
    }
}

/// One load run against one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub scenario: String,
    /// Which point of the scenario (e.g. "max", "50%", "conns=1000").
    pub point: String,
    pub server: String,
    pub layout: String,
    /// Which invocation of the whole comparison (`--invocations`), from 1.
    #[serde(default = "first")]
    pub invocation: usize,
    pub repetition: usize,
    pub load: LoadReport,
    pub server_usage: ServerUsage,
    /// The latency histogram file, relative to the results folder.
    pub hgrm: Option<String>,
}

fn first() -> usize {
    1
}

/// Invocations needed before a bootstrap interval means more than the
/// range (see [`Stat`]).
pub const MIN_INVOCATIONS_FOR_CI: usize = 6;

/// Median and range of one metric over repetitions; with several
/// invocations, the median and range of the per-invocation medians, and
/// from 6 invocations on a bootstrap 95 % interval of that median (with
/// fewer, every resampled median is the smallest or the largest one at
/// least 2.5 % of the time, so the "interval" would be the range).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Bootstrap 95 % confidence interval of the median over invocations
    /// (only with more than one invocation).
    #[serde(default)]
    pub ci95: Option<(f64, f64)>,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        if values.is_empty() {
            return Stat::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[v.len() - 1],
            ci95: None,
        }
    }

    /// Over invocations: each group is one invocation's values; the
    /// statistic is over the groups' medians (so a noisy invocation counts
    /// once, however many repetitions it had), with a bootstrap interval.
    pub fn over_invocations(groups: &[Vec<f64>]) -> Stat {
        let medians: Vec<f64> = groups
            .iter()
            .filter(|g| !g.is_empty())
            .map(|g| Stat::of(g).median)
            .collect();
        let mut s = Stat::of(&medians);
        if medians.len() >= MIN_INVOCATIONS_FOR_CI {
            s.ci95 = Some(bootstrap_ci95(&medians));
        }
        s
    }
}

/// The 2.5th and 97.5th percentiles of the median of 2,000 resamples (with
/// replacement) of `values`; a fixed seed, so the same data gives the same
/// interval.
pub fn bootstrap_ci95(values: &[f64]) -> (f64, f64) {
    const RESAMPLES: usize = 2000;
    let n = values.len();
    let mut rng: u64 = 0x853C_49E6_748F_EA9B;
    let mut next = || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut sample = vec![0.0; n];
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for x in sample.iter_mut() {
                *x = values[(next() % n as u64) as usize];
            }
            Stat::of(&sample).median
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((RESAMPLES - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// Medians of one (scenario, point, server) over its *valid* repetitions:
/// an invalid run (the generator fell behind, messages went unanswered)
/// is counted in `invalid_runs` and left out of every statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub point: String,
    pub server: String,
    /// Invocations with valid runs; above 1, each `Stat` is over
    /// per-invocation medians and carries a bootstrap interval.
    #[serde(default = "first")]
    pub invocations: usize,
    pub runs: usize,
    pub invalid_runs: usize,
    /// Closed-loop runs whose generator was saturated (throughput is a lower bound).
    pub generator_bound_runs: usize,
    pub throughput: Stat,
    pub p50_us: Stat,
    #[serde(default)]
    pub p95_us: Stat,
    pub p99_us: Stat,
    pub p999_us: Stat,
    /// p99 from the actual send time (uncorrected), beside `p99_us`.
    #[serde(default)]
    pub p99_uncorrected_us: Stat,
    /// Valid runs whose p99 / p99.9 the generator's lag could distort
    /// (`LoadReport::unreliable`).
    #[serde(default)]
    pub unreliable_p99_runs: usize,
    #[serde(default)]
    pub unreliable_p999_runs: usize,
    pub max_us: Stat,
    pub user_us_per_msg: Stat,
    pub sys_us_per_msg: Stat,
    pub peak_rss_kb: Stat,
    pub voluntary_cs_per_kmsg: Stat,
    pub involuntary_cs_per_kmsg: Stat,
    /// Window-only figures (`ServerUsage::window_*`), over the valid runs
    /// that have them.
    #[serde(default)]
    pub window_cpu_ns_per_msg: Stat,
    #[serde(default)]
    pub window_core_busy_ns_per_msg: Stat,
    #[serde(default)]
    pub window_steal_pct: Stat,
}

impl Summary {
    /// Runs whose figures the statistics are made of.
    pub fn valid_runs(&self) -> usize {
        self.runs - self.invalid_runs
    }

    /// Whether the statistics can be shown: at least one valid run, and at
    /// least two where the point was repeated.
    pub fn enough_valid(&self) -> bool {
        let v = self.valid_runs();
        v >= 1 && (self.runs < 2 || v >= 2)
    }

    pub fn of(runs: &[&RunRecord]) -> Summary {
        let valid: Vec<&RunRecord> = runs.iter().copied().filter(|r| r.load.valid).collect();
        let mut invocations: Vec<usize> = valid.iter().map(|r| r.invocation).collect();
        invocations.sort_unstable();
        invocations.dedup();
        let f = |g: &dyn Fn(&RunRecord) -> f64| {
            if invocations.len() > 1 {
                let groups: Vec<Vec<f64>> = invocations
                    .iter()
                    .map(|&i| {
                        valid
                            .iter()
                            .filter(|r| r.invocation == i)
                            .map(|r| g(r))
                            .collect()
                    })
                    .collect();
                Stat::over_invocations(&groups)
            } else {
                Stat::of(&valid.iter().map(|r| g(r)).collect::<Vec<_>>())
            }
        };
        let per_k = |cs: u64, r: &RunRecord| {
            cs as f64 * 1000.0 / (r.load.throughput * r.load.duration_s).max(1.0)
        };
        Summary {
            scenario: runs[0].scenario.clone(),
            point: runs[0].point.clone(),
            server: runs[0].server.clone(),
            invocations: invocations.len(),
            runs: runs.len(),
            invalid_runs: runs.iter().filter(|r| !r.load.valid).count(),
            generator_bound_runs: valid.iter().filter(|r| r.load.generator_bound).count(),
            throughput: f(&|r| r.load.throughput),
            p50_us: f(&|r| r.load.latency.p50),
            p95_us: f(&|r| r.load.latency.p95),
            p99_us: f(&|r| r.load.latency.p99),
            p999_us: f(&|r| r.load.latency.p999),
            p99_uncorrected_us: f(&|r| r.load.latency_uncorrected.p99),
            unreliable_p99_runs: valid
                .iter()
                .filter(|r| r.load.unreliable.iter().any(|u| u == "p99"))
                .count(),
            unreliable_p999_runs: valid
                .iter()
                .filter(|r| r.load.unreliable.iter().any(|u| u == "p99.9"))
                .count(),
            max_us: f(&|r| r.load.latency.max),
            user_us_per_msg: f(&|r| r.server_usage.user_us_per_msg),
            sys_us_per_msg: f(&|r| r.server_usage.sys_us_per_msg),
            peak_rss_kb: f(&|r| r.server_usage.peak_rss_kb as f64),
            voluntary_cs_per_kmsg: f(&|r| per_k(r.server_usage.voluntary_cs, r)),
            involuntary_cs_per_kmsg: f(&|r| per_k(r.server_usage.involuntary_cs, r)),
            window_cpu_ns_per_msg: Stat::of(
                &valid
                    .iter()
                    .filter_map(|r| r.server_usage.window_cpu_ns_per_msg)
                    .collect::<Vec<_>>(),
            ),
            window_core_busy_ns_per_msg: Stat::of(
                &valid
                    .iter()
                    .filter_map(|r| r.server_usage.window_core_busy_ns_per_msg)
                    .collect::<Vec<_>>(),
            ),
            window_steal_pct: Stat::of(
                &valid
                    .iter()
                    .filter_map(|r| r.server_usage.window_steal_pct)
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

/// A server's start-up lines (its first stderr lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStartup {
    pub server: String,
    pub lines: Vec<String>,
}

/// What a server said when it was stopped with SIGTERM (percore-echo's
/// exit counters), per scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerExit {
    pub scenario: String,
    pub server: String,
    /// Polls over the stall threshold, summed over workers, over every run
    /// of this server process (`None`: it printed no counters).
    pub stalls: Option<u64>,
    /// The process's whole-life usage from `wait4` (threads that exited
    /// included); absent in results from before it was recorded.
    #[serde(default)]
    pub usage: Option<super::process::ExitUsage>,
}

/// Everything a `compare` run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema_version: u32,
    pub started_unix_s: u64,
    pub kernel: String,
    pub cores: usize,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `git rev-parse HEAD` of the working directory (`-dirty` if it has
    /// uncommitted changes), if it is a git checkout.
    pub git_revision: Option<String>,
    pub command: String,
    /// The sweep's SLO on p99, in µs, if a sweep ran.
    #[serde(default)]
    pub slo_p99_us: Option<f64>,
    /// Each server's first stderr lines (start-up lines: driver, ring
    /// flags, cores), from its first start.
    pub server_startup: Vec<ServerStartup>,
    /// Exit counters of servers stopped with SIGTERM (the `blocking`
    /// scenario's percore-echo processes).
    #[serde(default)]
    pub server_exit: Vec<ServerExit>,
    pub runs: Vec<RunRecord>,
    pub summaries: Vec<Summary>,
}

impl Results {
    /// Writes the file whole or not at all (a temporary file renamed over
    /// it), so an interrupted comparison never leaves a truncated one.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }

    pub fn load(path: &Path) -> io::Result<Results> {
        let text = std::fs::read_to_string(path)?;
        let r: Results = serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if r.schema_version != SCHEMA_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: schema version {} (expected {SCHEMA_VERSION})",
                    path.display(),
                    r.schema_version
                ),
            ));
        }
        Ok(r)
    }

    /// Recomputes the summaries from the runs, grouped in first-seen order.
    pub fn summarize(&mut self) {
        let mut keys: Vec<(String, String, String)> = Vec::new();
        for r in &self.runs {
            let k = (r.scenario.clone(), r.point.clone(), r.server.clone());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        self.summaries = keys
            .iter()
            .map(|(s, p, v)| {
                let runs: Vec<&RunRecord> = self
                    .runs
                    .iter()
                    .filter(|r| &r.scenario == s && &r.point == p && &r.server == v)
                    .collect();
                Summary::of(&runs)
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_count_once_each_with_a_bootstrap_interval() {
        // Three invocations: one with a wild repetition.
        let s = Stat::over_invocations(&[vec![10.0, 12.0], vec![11.0, 500.0], vec![13.0]]);
        assert_eq!(
            s.median, 13.0,
            "median of per-invocation medians 11, 255.5, 13"
        );
        assert_eq!((s.min, s.max), (11.0, 255.5), "the range of those medians");
        assert_eq!(s.ci95, None, "3 invocations: a range, not an interval");
        let six: Vec<Vec<f64>> = [10.0, 11.0, 12.0, 13.0, 14.0, 90.0]
            .iter()
            .map(|&x| vec![x])
            .collect();
        let s = Stat::over_invocations(&six);
        let (lo, hi) = s.ci95.expect("6 invocations");
        assert!(lo <= s.median && s.median <= hi, "{lo} {} {hi}", s.median);
        assert!(
            hi < 90.0,
            "one outlier invocation does not set the bound: {hi}"
        );
        assert_eq!(
            Stat::over_invocations(&[vec![5.0, 6.0]]).ci95,
            None,
            "one invocation"
        );
        assert_eq!(
            bootstrap_ci95(&[1.0, 2.0, 3.0]),
            bootstrap_ci95(&[1.0, 2.0, 3.0])
        );
        let (lo, hi) = bootstrap_ci95(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert!(lo >= 1.0 && hi <= 100.0 && lo < hi);
    }

    #[test]
    fn median_and_range() {
        let s = Stat::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stat::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
    }
}
