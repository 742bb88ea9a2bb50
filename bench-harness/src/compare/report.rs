//! What a person reads: one table per scenario point, and a progress line.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use super::results::{Results, Stat};

/// A one-line progress bar on stderr.
#[derive(Debug)]
pub struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    tty: bool,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            total: total.max(1),
            done: 0,
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn step(&mut self, what: &str) {
        self.done += 1;
        let width = 24;
        let filled = width * (self.done - 1) / self.total;
        let bar: String = (0..width)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let line = format!(
            "[{bar}] {:>3}/{} {:>5.0}s  {what}",
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    }

    pub fn note(&self, msg: &str) {
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r\x1b[K");
        }
        let _ = writeln!(e, "  note: {msg}");
    }

    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
        eprintln!("done in {:.0} s", self.start.elapsed().as_secs_f64());
    }
}

/// `median [low–high]`: the bootstrap interval over invocations when there
/// is one, else the range over repetitions.
fn med_range(s: &Stat, scale: f64, prec: usize) -> String {
    if let Some((lo, hi)) = s.ci95 {
        return format!(
            "{:.*} [{:.*}–{:.*}]",
            prec,
            s.median * scale,
            prec,
            lo * scale,
            prec,
            hi * scale
        );
    }
    if s.min == s.max {
        format!("{:.*}", prec, s.median * scale)
    } else {
        format!(
            "{:.*} [{:.*}–{:.*}]",
            prec,
            s.median * scale,
            prec,
            s.min * scale,
            prec,
            s.max * scale
        )
    }
}

/// A cell the generator's lag may distort in `runs` runs, marked `!`.
fn mark(cell: String, runs: usize) -> String {
    if runs > 0 {
        format!("{cell}!")
    } else {
        cell
    }
}

/// The most invocations any server of `s`'s table has valid runs in.
fn invocations_in(results: &Results, s: &super::results::Summary) -> usize {
    results
        .summaries
        .iter()
        .filter(|x| x.scenario == s.scenario && x.point == s.point)
        .map(|x| x.invocations)
        .max()
        .unwrap_or(1)
}

/// The tables, one per (scenario, point): median [min–max] over repetitions.
pub fn print_tables(results: &Results, layout: &str) {
    println!(
        "\nlayout: {layout}; kernel {}, {} cores",
        results.kernel, results.cores
    );
    let mut last = String::new();
    for s in &results.summaries {
        let key = format!("{} {}", s.scenario, s.point);
        if key != last {
            let invocations = invocations_in(results, s);
            if invocations > 1 {
                println!(
                    "\n== {} @ {} ({invocations} invocations; median of per-invocation medians \
                     [their range; a bootstrap 95 % interval, marked CI, with {}+])",
                    s.scenario,
                    s.point,
                    super::results::MIN_INVOCATIONS_FOR_CI
                );
            } else {
                println!(
                    "\n== {} @ {} ({} run{} each; median [min–max])",
                    s.scenario,
                    s.point,
                    s.runs,
                    if s.runs == 1 { "" } else { "s" }
                );
            }
            println!(
                "{:<14} {:>26} {:>16} {:>20} {:>22} {:>10} {:>10} {:>9} {:>11} {:>11} {:>7} {:>12}",
                "server",
                "msg/s",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "max µs",
                "usr µs/msg",
                "sys µs/msg",
                "win µs/msg",
                "core µs/msg",
                "steal%",
                "peak RSS MiB"
            );
            last = key;
        }
        let mut flag = String::new();
        if s.invalid_runs > 0 {
            flag += &format!(
                "  ({}/{} valid; invalid runs left out)",
                s.valid_runs(),
                s.runs
            );
        }
        if !s.enough_valid() {
            println!(
                "{:<14} {:>26} {:>16} {:>20} {:>22} {:>10} {:>10} {:>9} {:>11} {:>11} {:>7} {:>12}  \
                 ({}/{} valid: too few valid runs for a figure)",
                s.server,
                "–",
                "–",
                "–",
                "–",
                "–",
                "–",
                "–",
                "–",
                "–",
                "–",
                "–",
                s.valid_runs(),
                s.runs
            );
            continue;
        }
        if s.generator_bound_runs > 0 {
            flag += "  (generator-bound: a lower bound)";
        }
        if s.unreliable_p99_runs + s.unreliable_p999_runs > 0 {
            flag += &format!(
                "  (! generator lag > 10 % of the latency at p99 in {} run(s), at p99.9 in {})",
                s.unreliable_p99_runs, s.unreliable_p999_runs
            );
        }
        if s.p99_us.ci95.is_some() {
            flag += "  (CI)";
        } else if s.invocations == 1 && invocations_in(results, s) > 1 {
            flag += "  (valid runs in 1 invocation only: range over its repetitions)";
        }
        println!(
            "{:<14} {:>26} {:>16} {:>20} {:>22} {:>10.0} {:>10.2} {:>9.2} {:>11} {:>11} {:>7} {:>12.1}{flag}",
            s.server,
            med_range(&s.throughput, 1.0, 0),
            med_range(&s.p50_us, 1.0, 0),
            mark(med_range(&s.p99_us, 1.0, 0), s.unreliable_p99_runs),
            mark(med_range(&s.p999_us, 1.0, 0), s.unreliable_p999_runs),
            s.max_us.median,
            s.user_us_per_msg.median,
            s.sys_us_per_msg.median,
            or_dash(s.window_cpu_ns_per_msg.median / 1e3, 2),
            or_dash(s.window_core_busy_ns_per_msg.median / 1e3, 2),
            if s.window_core_busy_ns_per_msg.median > 0.0 {
                format!("{:.1}", s.window_steal_pct.median)
            } else {
                "–".to_string()
            },
            s.peak_rss_kb.median / 1024.0,
        );
    }
}

/// `v` with `digits` decimals, or `–` when it was not measured (a window
/// figure of a run with messages is never 0; `Stat` of no values is 0).
fn or_dash(v: f64, digits: usize) -> String {
    if v.is_finite() && v > 0.0 {
        format!("{v:.digits$}")
    } else {
        "–".to_string()
    }
}

/// One server's result in the sweep: the highest offered rate at which it
/// met the SLO at that rate and at every lower one, and its p99 there.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub server: String,
    /// `None`: it missed the SLO already at the lightest rate.
    pub rate: Option<f64>,
    pub p99_us: Option<f64>,
    /// The rate at which it first missed, if it did.
    pub missed_at: Option<f64>,
}

/// Each server's capacity at `slo_p99_us` (p99 median at or under it,
/// p99.9 median at or under 10x it, enough valid runs), walking the sweep's
/// rates upwards and stopping at the first miss.
pub fn capacities(results: &Results, slo_p99_us: f64) -> Vec<Capacity> {
    let rate_of = |point: &str| point.trim_end_matches("/s").parse::<f64>().ok();
    let mut servers: Vec<&str> = Vec::new();
    for s in results.summaries.iter().filter(|s| s.scenario == "sweep") {
        if !servers.contains(&s.server.as_str()) {
            servers.push(&s.server);
        }
    }
    servers
        .into_iter()
        .map(|server| {
            let mut points: Vec<(f64, &super::results::Summary)> = results
                .summaries
                .iter()
                .filter(|s| s.scenario == "sweep" && s.server == server)
                .filter_map(|s| Some((rate_of(&s.point)?, s)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut cap = Capacity {
                server: server.to_string(),
                rate: None,
                p99_us: None,
                missed_at: None,
            };
            for (rate, s) in points {
                let meets = s.enough_valid()
                    && s.valid_runs() > 0
                    && s.p99_us.median <= slo_p99_us
                    && s.p999_us.median <= 10.0 * slo_p99_us;
                if !meets {
                    cap.missed_at = Some(rate);
                    break;
                }
                cap.rate = Some(rate);
                cap.p99_us = Some(s.p99_us.median);
            }
            cap
        })
        .collect()
}

/// The sweep's headline: each server's capacity at the SLO.
/// The stall counts of servers stopped for their exit counters.
pub fn print_server_exit(results: &Results) {
    if results.server_exit.is_empty() {
        return;
    }
    println!(
        "\n== server processes over their whole life (wait4 rusage when stopped: every run of \
         the scenario plus start-up, probes, connection set-up and teardown and idle time; \
         threads that exited included; stalls from percore-echo's exit counters where printed)"
    );
    println!(
        "{:<10} {:<20} {:>9} {:>9} {:>12} {:>12} {:>11} {:>8}",
        "scenario", "server", "user s", "sys s", "vol. cs", "invol. cs", "max RSS MiB", "stalls"
    );
    for e in &results.server_exit {
        let stalls = e.stalls.map_or_else(|| "–".to_string(), |n| n.to_string());
        match e.usage {
            Some(u) => println!(
                "{:<10} {:<20} {:>9.2} {:>9.2} {:>12} {:>12} {:>11.1} {:>8}",
                e.scenario,
                e.server,
                u.user_s,
                u.sys_s,
                u.voluntary_cs,
                u.involuntary_cs,
                u.max_rss_kb as f64 / 1024.0,
                stalls
            ),
            None => println!(
                "{:<10} {:<20} {:>9} {:>9} {:>12} {:>12} {:>11} {:>8}",
                e.scenario, e.server, "–", "–", "–", "–", "–", stalls
            ),
        }
    }
}

/// The `models` scenario as one table: per server and connection count,
/// the tail against what it cost (window CPU per message, peak RSS).
pub fn print_models(results: &Results) {
    print!("{}", models_table(results));
}

/// The `models` table as text (empty without models runs).
pub fn models_table(results: &Results) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let rows: Vec<_> = results
        .summaries
        .iter()
        .filter(|s| s.scenario == "models")
        .collect();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\n== models: thread per connection vs event loop vs percore, open loop at one rate \
         (median over valid runs; CPU from the measurement window; `*`: peak RSS over all runs \
         of a point with too few valid ones)"
    );
    let _ = writeln!(
        out,
        "{:<14} {:<22} {:>9} {:>9} {:>10} {:>11} {:>11} {:>12} {:>10}",
        "server",
        "point",
        "p95 µs",
        "p99 µs",
        "p99.9 µs",
        "win µs/msg",
        "core µs/msg",
        "peak RSS MiB",
        "valid"
    );
    for s in rows {
        if !s.enough_valid() {
            // The tail is not reported without valid runs, but memory does
            // not depend on the generator's lag: the peak RSS over all of
            // this point's runs, marked `*`.
            let rss = results
                .runs
                .iter()
                .filter(|r| r.scenario == s.scenario && r.point == s.point && r.server == s.server)
                .map(|r| r.server_usage.peak_rss_kb)
                .max()
                .filter(|&kb| kb > 0)
                .map_or_else(
                    || "–".to_string(),
                    |kb| format!("{:.1}*", kb as f64 / 1024.0),
                );
            let _ = writeln!(
                out,
                "{:<14} {:<22} {:>9} {:>9} {:>10} {:>11} {:>11} {:>12} {:>4}/{:<5}",
                s.server,
                s.point,
                "–",
                "–",
                "–",
                "–",
                "–",
                rss,
                s.valid_runs(),
                s.runs
            );
            continue;
        }
        let _ = writeln!(
            out,
            "{:<14} {:<22} {:>9.0} {:>9.0} {:>10.0} {:>11} {:>11} {:>12.1} {:>4}/{:<5}",
            s.server,
            s.point,
            s.p95_us.median,
            s.p99_us.median,
            s.p999_us.median,
            or_dash(s.window_cpu_ns_per_msg.median / 1e3, 2),
            or_dash(s.window_core_busy_ns_per_msg.median / 1e3, 2),
            s.peak_rss_kb.median / 1024.0,
            s.valid_runs(),
            s.runs
        );
    }
    out
}

pub fn print_capacity(results: &Results, slo_p99_us: f64) {
    println!(
        "\n== sweep: capacity at p99 <= {slo_p99_us:.0} µs and p99.9 <= {:.0} µs (the highest \
         offered rate meeting both, and every lower rate)",
        slo_p99_us * 10.0
    );
    println!(
        "{:<16} {:>16} {:>12} {:>18}",
        "server", "capacity msg/s", "p99 µs there", "first missed at"
    );
    for c in capacities(results, slo_p99_us) {
        let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
        println!(
            "{:<16} {:>16} {:>12} {:>18}",
            c.server,
            f(c.rate),
            f(c.p99_us),
            c.missed_at
                .map_or("never".to_string(), |r| format!("{r:.0}/s"))
        );
    }
}
