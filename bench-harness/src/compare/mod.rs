//! `bench-harness compare`: the main job. Starts each server as a child
//! process with a stated CPU layout, drives it with the load generator, and
//! reports throughput, latency percentiles, server CPU per message, memory
//! and context switches, as tables, `results.json`, `.hgrm` files and SVG
//! plots.
//!
//! - `process` — server children and `/proc` sampling.
//! - `results` — the JSON schema and the medians.
//! - `report` — the printed tables and the progress line.
//! - `plot` — SVG plots.

pub mod plot;
pub mod process;
pub mod report;
pub mod results;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use hdrhistogram::Histogram;

use crate::hist::{new_histogram, percentile_distribution};
use crate::load::{self, LoadConfig, Mode, WindowHook};
use process::{Ready, Server, ServerSpec, WindowSample};
use report::Progress;
use results::{Results, RunRecord, ServerExit, ServerStartup, ServerUsage, SCHEMA_VERSION};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Closed-loop maximum throughput.
    Throughput,
    /// Closed-loop probe, then open-loop runs at fractions of the slowest
    /// server's maximum.
    Latency,
    /// Latency vs load: closed-loop probe, then open-loop runs at the same
    /// absolute rates for every server (`--sweep` fractions of the fastest
    /// server's maximum, light load to past saturation); reports each
    /// server's capacity at `--slo-p99`.
    Sweep,
    /// Closed loop at 100, 1,000 and 10,000 connections.
    Conns,
    /// Closed loop at 64 B, 1 KiB, 16 KiB and 64 KiB messages.
    Sizes,
    /// Work stealing: percore-echo with 2 workers, stealing on vs off, under
    /// skew (only worker 0 accepts, `--work-us` per message) and under
    /// uniform load (all accept, no extra work). Ignores `--servers` and
    /// `--layout` (the server needs both cores).
    Skew,
    /// Blocking calls in the handler: percore-echo with no blocking, with
    /// `--blocking-us` of blocking every `--blocking-every` messages inline
    /// on the worker, and the same offloaded to the blocking pool; open
    /// loop at `--blocking-rate` messages/s; p99/p99.9 and the stall
    /// detector's count (threshold `--blocking-us` / 2) for each. Ignores
    /// `--servers`.
    Blocking,
    /// The three server models side by side: a thread per connection
    /// (`threads`), a hand-written event loop (`epoll-loop`) and percore
    /// (`percore`, and `percore-epoll`, so that the model and the driver can
    /// be told apart), at 100, 1,000 and 10,000 connections, open loop at
    /// one fixed rate (`--models-rate`): p95/p99/p99.9 against server CPU
    /// per message and peak RSS, one table and `models-p99.svg`. Ignores
    /// `--servers`.
    Models,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// Server pinned to core 0 with 1 worker; load generator pinned to core 1.
    Pinned,
    /// Server with 2 workers on all cores; load generator unpinned.
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerName {
    /// percore-echo on io_uring (thread per core, SO_REUSEPORT).
    Percore,
    /// percore-echo on its epoll driver: same runtime, same echo code.
    PercoreEpoll,
    /// tokio current-thread runtime per core, SO_REUSEPORT (epoll).
    TokioTpc,
    /// tokio multi-thread runtime, a task per connection (epoll).
    TokioMt,
    /// Blocking thread per connection.
    Threads,
    /// Hand-written edge-triggered epoll loop per core: epoll at its best.
    EpollLoop,
    /// Hand-written io_uring loop per core (SINGLE_ISSUER|DEFER_TASKRUN):
    /// the floor for percore's own design.
    UringLoop,
    /// monoio 0.2, a runtime per core, ring flags as `uring-loop`'s: the
    /// io_uring runtime users would otherwise pick.
    Monoio,
}

impl ServerName {
    pub fn label(self) -> &'static str {
        match self {
            ServerName::Percore => "percore",
            ServerName::PercoreEpoll => "percore-epoll",
            ServerName::TokioTpc => "tokio-tpc",
            ServerName::TokioMt => "tokio-mt",
            ServerName::Threads => "threads",
            ServerName::EpollLoop => "epoll-loop",
            ServerName::UringLoop => "uring-loop",
            ServerName::Monoio => "monoio",
        }
    }
}

/// A server outside the harness (`compare --server NAME=CMD`), started and
/// measured exactly like the built-in ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalServer {
    pub name: String,
    /// Program and arguments, split on whitespace; `{workers}` becomes the
    /// layout's worker count and `{port}` a free loopback port the harness
    /// picked (then readiness is a successful connect; without `{port}` the
    /// server must print `listening on ADDR` as its first stdout line).
    pub command: String,
}

impl std::str::FromStr for ExternalServer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, command) = s
            .split_once('=')
            .ok_or_else(|| format!("--server {s:?}: expected NAME=CMD"))?;
        let (name, command) = (name.trim(), command.trim());
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("--server {s:?}: NAME must be one word"));
        }
        if command.is_empty() {
            return Err(format!("--server {s:?}: CMD is empty"));
        }
        Ok(ExternalServer {
            name: name.into(),
            command: command.into(),
        })
    }
}

/// What `compare` runs.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub scenarios: Vec<Scenario>,
    pub servers: Vec<ServerName>,
    /// `--server NAME=CMD`, after the built-in servers.
    pub external: Vec<ExternalServer>,
    pub layout: Layout,
    pub reps: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub conns: usize,
    pub size: usize,
    /// Open-loop rates as fractions of the slowest server's maximum.
    pub rate_fractions: Vec<f64>,
    /// Whole comparisons to run (fresh server processes each; the latency
    /// scenario's rates fixed by the first).
    pub invocations: usize,
    /// Sweep: open-loop rates as fractions of the fastest server's maximum.
    pub sweep_fractions: Vec<f64>,
    /// Sweep: the p99 (µs) a server must stay under (p99.9 under 10×).
    pub slo_p99_us: f64,
    /// Open-loop arrival process.
    pub arrivals: crate::load::schedule::Arrivals,
    pub out: PathBuf,
    pub percore_echo: PathBuf,
    pub skew_work_us: u32,
    /// `blocking` scenario: microseconds of each blocking call, messages
    /// between calls, and the open-loop rate.
    pub blocking_us: u32,
    pub blocking_every: u64,
    pub blocking_rate: f64,
    /// `models` scenario: the open-loop rate.
    pub models_rate: f64,
    pub command: String,
}

impl Layout {
    fn server_cores(self) -> Vec<usize> {
        match self {
            Layout::Pinned => vec![0],
            Layout::Shared => vec![],
        }
    }
    fn load_cores(self) -> Vec<usize> {
        match self {
            Layout::Pinned => vec![1],
            Layout::Shared => vec![],
        }
    }
    fn workers(self) -> usize {
        match self {
            Layout::Pinned => 1,
            Layout::Shared => 2,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Layout::Pinned => "pinned: server 1 worker on core 0, load on core 1",
            Layout::Shared => "shared: server 2 workers on both cores, load unpinned",
        }
    }
}

fn spec(name: ServerName, cfg: &CompareConfig) -> io::Result<ServerSpec> {
    let workers = cfg.layout.workers().to_string();
    let listen = "127.0.0.1:0".to_string();
    Ok(match name {
        ServerName::Percore | ServerName::PercoreEpoll => ServerSpec {
            ready: Ready::Announces,
            name: name.label().into(),
            program: cfg.percore_echo.clone(),
            args: vec![
                "--listen".into(),
                listen,
                "--workers".into(),
                workers,
                "--driver".into(),
                if name == ServerName::Percore {
                    "uring"
                } else {
                    "epoll"
                }
                .into(),
            ],
        },
        _ => ServerSpec {
            ready: Ready::Announces,
            name: name.label().into(),
            program: std::env::current_exe()?,
            args: vec![
                "serve".into(),
                name.label().into(),
                "--listen".into(),
                listen,
                "--workers".into(),
                workers,
            ],
        },
    })
}

/// The spec of an external server: placeholders filled, a port picked if
/// its command asks for one.
fn external_spec(e: &ExternalServer, cfg: &CompareConfig) -> io::Result<ServerSpec> {
    let workers = cfg.layout.workers().to_string();
    let port = if e.command.contains("{port}") {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        Some(l.local_addr()?.port())
    } else {
        None
    };
    let port_text = port.map(|p| p.to_string()).unwrap_or_default();
    let words: Vec<String> = e
        .command
        .split_whitespace()
        .map(|w| {
            w.replace("{workers}", &workers)
                .replace("{port}", &port_text)
        })
        .collect();
    let (program, args) = words
        .split_first()
        .ok_or_else(|| io::Error::other(format!("--server {}: empty command", e.name)))?;
    Ok(ServerSpec {
        name: e.name.clone(),
        program: program.into(),
        args: args.to_vec(),
        ready: port.map_or(Ready::Announces, Ready::Port),
    })
}

/// State of a comparison in progress.
struct Runner<'a> {
    cfg: &'a CompareConfig,
    results: Results,
    hists: HashMap<(String, String, String), Histogram<u64>>,
    progress: Progress,
    /// The invocation under way (0-based).
    invocation: usize,
    /// The latency scenario's slowest probed maximum, from the first
    /// invocation: later invocations use the same absolute rates.
    slowest: Option<f64>,
    /// The sweep's fastest probed maximum, likewise.
    fastest: Option<f64>,
}

/// Runs the comparison; returns the results folder.
pub fn run(cfg: &CompareConfig) -> io::Result<PathBuf> {
    raise_fd_limit();
    std::fs::create_dir_all(&cfg.out)
        .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", cfg.out.display())))?;
    let needs_echo = cfg.scenarios.contains(&Scenario::Skew)
        || cfg.scenarios.contains(&Scenario::Blocking)
        || cfg.scenarios.contains(&Scenario::Models)
        || cfg
            .servers
            .iter()
            .any(|s| matches!(s, ServerName::Percore | ServerName::PercoreEpoll));
    if !cfg.percore_echo.exists() && needs_echo {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found: build it first (cargo build --release -p percore-echo) or pass --percore-echo",
                cfg.percore_echo.display()
            ),
        ));
    }
    let total = planned_runs(cfg);
    let mut r = Runner {
        cfg,
        results: Results {
            schema_version: SCHEMA_VERSION,
            started_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            kernel: kernel_release(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(),
            git_revision: git_revision(),
            command: cfg.command.clone(),
            slo_p99_us: cfg
                .scenarios
                .contains(&Scenario::Sweep)
                .then_some(cfg.slo_p99_us),
            server_startup: Vec::new(),
            server_exit: Vec::new(),
            runs: Vec::new(),
            summaries: Vec::new(),
        },
        hists: HashMap::new(),
        invocation: 0,
        slowest: None,
        fastest: None,
        progress: Progress::new(total),
    };
    eprintln!(
        "bench-harness compare: layout {}; results in {}",
        cfg.layout.label(),
        cfg.out.display()
    );
    for invocation in 0..cfg.invocations.max(1) {
        r.invocation = invocation;
        for &s in &cfg.scenarios {
            match s {
                Scenario::Throughput => {
                    r.closed_points("throughput", &[("max".into(), cfg.conns, cfg.size)])?
                }
                Scenario::Latency => r.latency()?,
                Scenario::Sweep => r.sweep()?,
                Scenario::Conns => {
                    let pts: Vec<_> = [100, 1_000, 10_000]
                        .iter()
                        .map(|&c| (format!("conns={c}"), c, cfg.size))
                        .collect();
                    r.closed_points("conns", &pts)?
                }
                Scenario::Sizes => {
                    let pts: Vec<_> = [64, 1024, 16 * 1024, 64 * 1024]
                        .iter()
                        .map(|&b| (format!("size={b}"), cfg.conns, b))
                        .collect();
                    r.closed_points("sizes", &pts)?
                }
                Scenario::Skew => r.skew()?,
                Scenario::Blocking => r.blocking()?,
                Scenario::Models => r.models()?,
            }
        }
    }
    r.progress.finish();
    r.results.summarize();
    r.results.save(&cfg.out.join("results.json"))?;
    report::print_tables(&r.results, cfg.layout.label());
    if cfg.scenarios.contains(&Scenario::Models) {
        report::print_models(&r.results);
    }
    if cfg.scenarios.contains(&Scenario::Sweep) {
        report::print_capacity(&r.results, cfg.slo_p99_us);
    }
    report::print_server_exit(&r.results);
    plot::write_all(&r.results, &r.hists, &cfg.out)?;
    Ok(cfg.out.clone())
}

fn planned_runs(cfg: &CompareConfig) -> usize {
    let n = cfg.servers.len() + cfg.external.len();
    let inv = cfg.invocations.max(1);
    cfg.scenarios
        .iter()
        .map(|s| match s {
            Scenario::Throughput => inv * n * cfg.reps,
            // The probe runs in the first invocation only.
            Scenario::Latency => n + inv * n * cfg.reps * cfg.rate_fractions.len(),
            Scenario::Sweep => n + inv * n * cfg.reps * cfg.sweep_fractions.len(),
            Scenario::Conns => inv * 3 * n * cfg.reps,
            Scenario::Sizes => inv * 4 * n * cfg.reps,
            Scenario::Skew => inv * 2 * 2 * cfg.reps,
            Scenario::Blocking => inv * 3 * cfg.reps,
            Scenario::Models => inv * 4 * 3 * cfg.reps,
        })
        .sum()
}

impl Runner<'_> {
    fn start_servers(&self) -> io::Result<Vec<Server>> {
        let cores = self.cfg.layout.server_cores();
        let builtin = self.cfg.servers.iter().map(|&n| spec(n, self.cfg));
        let external = self.cfg.external.iter().map(|e| external_spec(e, self.cfg));
        builtin
            .chain(external)
            .map(|s| Server::start(&s?, &cores))
            .collect()
    }

    /// Records each server's start-up lines (once per name), then stops it
    /// and records its whole-life usage under `scenario`.
    fn stop_servers(&mut self, scenario: &str, servers: Vec<Server>) {
        for s in servers {
            if !self
                .results
                .server_startup
                .iter()
                .any(|x| x.server == s.name)
            {
                self.results.server_startup.push(ServerStartup {
                    server: s.name.clone(),
                    lines: s.startup_lines(),
                });
            }
            let server = s.name.clone();
            let usage = s.stop();
            self.results.server_exit.push(ServerExit {
                scenario: scenario.into(),
                server,
                stalls: None,
                usage,
            });
        }
    }

    /// Servers in the order for repetition `rep` of this invocation: run
    /// `k = invocation × reps + rep` takes row `k` of a Williams design
    /// (`williams`), so over every full cycle of rows each server runs in
    /// each position, and directly after each other server, equally often
    /// (alternation shares machine drift; nobody always follows the same
    /// server).
    fn order(&self, n: usize, rep: usize) -> Vec<usize> {
        let rows = williams(n);
        rows[(self.invocation * self.cfg.reps + rep) % rows.len()].clone()
    }

    fn load_config(&self, server: &Server, mode: Mode, conns: usize, size: usize) -> LoadConfig {
        let mut lc = LoadConfig::new(server.addr, mode);
        lc.conns = conns;
        lc.size = size;
        lc.duration = self.cfg.duration;
        lc.warmup = self.cfg.warmup;
        lc.threads = 1;
        lc.arrivals = self.cfg.arrivals;
        lc.arrival_seed = self.invocation as u64;
        lc.cores = self.cfg.layout.load_cores();
        // Pinned: the generator owns core 1, so it may poll between messages.
        if self.cfg.layout == Layout::Pinned {
            lc.spin_us = 50;
        }
        lc
    }

    /// One measured run: samples the server around the load, keeps the record
    /// and the histogram.
    fn measure(
        &mut self,
        scenario: &str,
        point: &str,
        server: &Server,
        rep: usize,
        lc: &LoadConfig,
    ) -> io::Result<RunRecord> {
        let inv = if self.cfg.invocations > 1 {
            format!(" invocation {}", self.invocation + 1)
        } else {
            String::new()
        };
        self.progress.step(&format!(
            "{scenario} {point} {} rep {}{inv}",
            server.name,
            rep + 1
        ));
        // This run's peak RSS is its own, not the process's lifetime peak.
        process::reset_peak_rss(server.pid());
        let before = server.sample()?;
        // The window's edges, sampled from the generator's first thread.
        let mut cores = self.cfg.layout.server_cores();
        if cores.is_empty() || scenario == "skew" {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            cores = (0..n).collect();
        }
        let edges: Arc<Mutex<Vec<WindowSample>>> = Arc::default();
        let mut lc = lc.clone();
        let (pid, sink) = (server.pid(), edges.clone());
        lc.window_hook = Some(WindowHook(Arc::new(move |_start| {
            let s = WindowSample::read(pid, &cores);
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        })));
        let lc = &lc;
        let res = load::run(lc).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{scenario} {point} against {}: {e}", server.name),
            )
        })?;
        let after = server.sample()?;
        // Let the server finish tearing down this run's connections (a
        // thread-per-connection server has one thread each to end) before
        // the next run on the same cores starts its warm-up.
        server.settle(Duration::from_secs(10));
        let measured = (res.report.throughput * res.report.duration_s) as u64;
        // CPU is sampled over warm-up + window + drain; charge it to every
        // message of the run, not just the window's.
        let mut usage = ServerUsage::between(&before, &after, res.report.completed.max(measured));
        let edges = edges.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let [a, b] = &edges[..] {
            let m = measured.max(1) as f64;
            let wall_ns = match (a.at, b.at) {
                (Some(x), Some(y)) => y.duration_since(x).as_nanos() as f64,
                _ => 0.0,
            };
            let ncores = if self.cfg.layout == Layout::Pinned && scenario != "skew" {
                self.cfg.layout.server_cores().len().max(1)
            } else {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } as f64;
            // The process CPU clock: exited threads included.
            usage.window_cpu_ns_per_msg = (b.proc_cpu_ns >= a.proc_cpu_ns && a.proc_cpu_ns > 0)
                .then(|| (b.proc_cpu_ns - a.proc_cpu_ns) as f64 / m);
            usage.window_core_busy_ns_per_msg =
                Some(b.core_busy_ns.saturating_sub(a.core_busy_ns) as f64 / m);
            if wall_ns > 0.0 {
                usage.window_steal_pct = Some(
                    b.core_steal_ns.saturating_sub(a.core_steal_ns) as f64 * 100.0
                        / (wall_ns * ncores),
                );
            }
        }
        // One file per run: the invocation is in the name when there are
        // several, so a later invocation never overwrites an earlier one.
        let inv = if self.cfg.invocations > 1 {
            format!("-i{}", self.invocation + 1)
        } else {
            String::new()
        };
        let file = format!(
            "{scenario}-{}-{}{inv}-r{}.hgrm",
            sanitize(point),
            server.name,
            rep + 1
        );
        std::fs::write(
            self.cfg.out.join(&file),
            percentile_distribution(&res.latency),
        )?;
        // Merged histograms (and the plots drawn from them) take valid
        // runs only, like the medians.
        if res.report.valid {
            self.hists
                .entry((scenario.to_string(), point.to_string(), server.name.clone()))
                .or_insert_with(new_histogram)
                .add(&res.latency)
                .expect("same bounds");
        }
        let rec = RunRecord {
            scenario: scenario.into(),
            point: point.into(),
            server: server.name.clone(),
            layout: if scenario == "skew" {
                "shared".into()
            } else {
                format!("{:?}", self.cfg.layout).to_lowercase()
            },
            invocation: self.invocation + 1,
            repetition: rep + 1,
            load: res.report,
            server_usage: usage,
            hgrm: Some(file),
        };
        if let Some(why) = &rec.load.invalid_reason {
            self.progress
                .note(&format!("invalid run ({} {point}): {why}", server.name));
        }
        self.results.runs.push(rec.clone());
        // On disk as each run ends: an interrupted comparison keeps what it
        // measured (summaries are added at the end).
        self.results.save(&self.cfg.out.join("results.json"))?;
        Ok(rec)
    }

    /// The `skew` scenario: two points (skewed, uniform), each with the
    /// server stealing and not, alternating, closed loop.
    fn skew(&mut self) -> io::Result<()> {
        let work = self.cfg.skew_work_us.to_string();
        let points = [
            (
                format!("skew accept-on=1 work-us={work}"),
                vec!["--accept-on", "1", "--work-us", &work],
            ),
            ("uniform work-us=0".to_string(), vec![]),
        ];
        for (point, extra) in points {
            let servers = [("percore-steal", false), ("percore-nosteal", true)]
                .iter()
                .map(|&(name, off)| {
                    let mut args: Vec<String> = [
                        "--listen",
                        "127.0.0.1:0",
                        "--workers",
                        "2",
                        "--driver",
                        "uring",
                    ]
                    .iter()
                    .chain(&extra)
                    .map(|s| s.to_string())
                    .collect();
                    if off {
                        args.push("--no-steal".into());
                    }
                    let spec = ServerSpec {
                        name: name.into(),
                        program: self.cfg.percore_echo.clone(),
                        args,
                        ready: Ready::Announces,
                    };
                    Server::start(&spec, &[])
                })
                .collect::<io::Result<Vec<_>>>()?;
            for rep in 0..self.cfg.reps {
                for i in self.order(servers.len(), rep) {
                    let mut lc = self.load_config(
                        &servers[i],
                        Mode::Closed { depth: 1 },
                        self.cfg.conns,
                        self.cfg.size,
                    );
                    // The server uses both cores; the generator floats.
                    lc.cores = vec![];
                    lc.spin_us = 0;
                    self.measure("skew", &point, &servers[i], rep, &lc)?;
                }
            }
            self.stop_servers("skew", servers);
        }
        Ok(())
    }

    /// percore-echo without blocking calls, with them inline and with them
    /// offloaded, open loop at one fixed rate; each server process is
    /// stopped with SIGTERM for its stall count.
    fn blocking(&mut self) -> io::Result<()> {
        let us = self.cfg.blocking_us.to_string();
        let every = self.cfg.blocking_every.to_string();
        // Half the blocking call: each inline call is a stall, nothing else
        // in an echo server comes near it.
        let stall_ms = format!("{}", f64::from(self.cfg.blocking_us) / 2e3);
        let block = ["--block-us", &us, "--block-every", &every];
        let variants: [(&str, Vec<&str>); 3] = [
            ("no-blocking", vec![]),
            ("inline", block.to_vec()),
            ("offloaded", [&block[..], &["--offload"]].concat()),
        ];
        let cores = self.cfg.layout.server_cores();
        let workers = self.cfg.layout.workers().to_string();
        let servers = variants
            .iter()
            .map(|(name, extra)| {
                let args: Vec<String> = [
                    "--listen",
                    "127.0.0.1:0",
                    "--workers",
                    &workers,
                    "--driver",
                    "uring",
                    "--stall-ms",
                    &stall_ms,
                ]
                .iter()
                .chain(extra)
                .map(|s| s.to_string())
                .collect();
                let spec = ServerSpec {
                    name: (*name).into(),
                    program: self.cfg.percore_echo.clone(),
                    args,
                    ready: Ready::Announces,
                };
                Server::start(&spec, &cores)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let rate = self.cfg.blocking_rate;
        let points = [(format!("{rate:.0}/s every={every} us={us}"), rate)];
        self.open_points("blocking", &servers, &points)?;
        for s in servers {
            let name = s.name.clone();
            let (stalls, usage) = s.stop_for_counters();
            self.results.server_exit.push(ServerExit {
                scenario: "blocking".into(),
                server: name,
                stalls,
                usage,
            });
        }
        Ok(())
    }

    /// Thread per connection vs event loop vs percore: the same open-loop
    /// rate at 100, 1,000 and 10,000 connections.
    fn models(&mut self) -> io::Result<()> {
        let cores = self.cfg.layout.server_cores();
        let servers = [
            ServerName::Threads,
            ServerName::EpollLoop,
            ServerName::Percore,
            ServerName::PercoreEpoll,
        ]
        .iter()
        .map(|&n| Server::start(&spec(n, self.cfg)?, &cores))
        .collect::<io::Result<Vec<_>>>()?;
        let rate = self.cfg.models_rate;
        for (pi, conns) in [100usize, 1_000, 10_000].into_iter().enumerate() {
            let point = format!("conns={conns} {rate:.0}/s");
            for rep in 0..self.cfg.reps {
                // Rows of the balanced design continue across points, so
                // every server follows every other one over the scenario.
                for i in self.order(servers.len(), pi * self.cfg.reps + rep) {
                    let lc =
                        self.load_config(&servers[i], Mode::Open { rate }, conns, self.cfg.size);
                    self.measure("models", &point, &servers[i], rep, &lc)?;
                }
            }
        }
        self.stop_servers("models", servers);
        Ok(())
    }

    /// Closed-loop runs at each (point, conns, size), alternating servers.
    fn closed_points(
        &mut self,
        scenario: &str,
        points: &[(String, usize, usize)],
    ) -> io::Result<()> {
        let servers = self.start_servers()?;
        for (point, conns, size) in points {
            for rep in 0..self.cfg.reps {
                for i in self.order(servers.len(), rep) {
                    let lc =
                        self.load_config(&servers[i], Mode::Closed { depth: 1 }, *conns, *size);
                    self.measure(scenario, point, &servers[i], rep, &lc)?;
                }
            }
        }
        self.stop_servers(scenario, servers);
        Ok(())
    }

    /// Probes every server's closed-loop maximum (scenario `scenario`,
    /// point "max"); returns the probed throughputs.
    fn probe(&mut self, scenario: &str, servers: &[Server]) -> io::Result<Vec<f64>> {
        let mut out = Vec::with_capacity(servers.len());
        for s in servers {
            let lc = self.load_config(s, Mode::Closed { depth: 1 }, self.cfg.conns, self.cfg.size);
            out.push(self.measure(scenario, "max", s, 0, &lc)?.load.throughput);
        }
        if !out.iter().any(|t| t.is_finite() && *t > 0.0) {
            return Err(io::Error::other(
                "no server reached any throughput in the probe",
            ));
        }
        Ok(out)
    }

    /// The latency-vs-load sweep: the same absolute open-loop rates for
    /// every server, fractions of the fastest one's probed maximum (fixed
    /// by the first invocation), in increasing order within a repetition.
    fn sweep(&mut self) -> io::Result<()> {
        let servers = self.start_servers()?;
        let fastest = match self.fastest {
            Some(f) => f,
            None => {
                let f = self
                    .probe("sweep", &servers)?
                    .into_iter()
                    .fold(0.0f64, f64::max);
                self.fastest = Some(f);
                f
            }
        };
        let points: Vec<(String, f64)> = self
            .cfg
            .sweep_fractions
            .iter()
            .map(|f| {
                let rate = (fastest * f).round().max(1.0);
                (format!("{rate:.0}/s"), rate)
            })
            .collect();
        self.open_points("sweep", &servers, &points)?;
        self.stop_servers("sweep", servers);
        Ok(())
    }

    /// Open-loop runs at each (point, absolute rate), every server at every
    /// rate, in the Williams order, repeated `reps` times.
    fn open_points(
        &mut self,
        scenario: &str,
        servers: &[Server],
        points: &[(String, f64)],
    ) -> io::Result<()> {
        for rep in 0..self.cfg.reps {
            for (point, rate) in points {
                for i in self.order(servers.len(), rep) {
                    let lc = self.load_config(
                        &servers[i],
                        Mode::Open { rate: *rate },
                        self.cfg.conns,
                        self.cfg.size,
                    );
                    self.measure(scenario, point, &servers[i], rep, &lc)?;
                }
            }
        }
        Ok(())
    }

    /// Probe every server's maximum, then open-loop runs at the same
    /// absolute rates for all: fractions of the slowest server's maximum.
    fn latency(&mut self) -> io::Result<()> {
        let servers = self.start_servers()?;
        let slowest = match self.slowest {
            Some(s) => s,
            None => {
                let slowest = self
                    .probe("latency", &servers)?
                    .into_iter()
                    .fold(f64::MAX, f64::min);
                if !(slowest.is_finite() && slowest > 0.0) {
                    return Err(io::Error::other(
                        "no server reached any throughput in the probe",
                    ));
                }
                self.slowest = Some(slowest);
                slowest
            }
        };
        let points: Vec<(String, f64)> = self
            .cfg
            .rate_fractions
            .iter()
            .map(|f| {
                let rate = (slowest * f).round().max(1.0);
                (format!("{:.0}% ({rate:.0}/s)", f * 100.0), rate)
            })
            .collect();
        self.open_points("latency", &servers, &points)?;
        self.stop_servers("latency", servers);
        Ok(())
    }
}

/// A Williams design for `n` treatments: `n` orders (2`n` for odd `n`)
/// in which each treatment appears once in each position and directly
/// follows every other treatment equally often (once for even `n`, twice
/// for odd `n` over the doubled design).
pub fn williams(n: usize) -> Vec<Vec<usize>> {
    if n <= 1 {
        return vec![(0..n).collect()];
    }
    // First row: 0, 1, n-1, 2, n-2, 3, ...
    let mut first = Vec::with_capacity(n);
    let (mut lo, mut hi) = (1, n - 1);
    first.push(0);
    for j in 1..n {
        if j % 2 == 1 {
            first.push(lo);
            lo += 1;
        } else {
            first.push(hi);
            hi -= 1;
        }
    }
    let mut rows: Vec<Vec<usize>> = (0..n)
        .map(|r| first.iter().map(|&x| (x + r) % n).collect())
        .collect();
    if n % 2 == 1 {
        let reversed: Vec<Vec<usize>> = rows
            .iter()
            .map(|r| r.iter().rev().copied().collect())
            .collect();
        rows.extend(reversed);
    }
    rows
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '=' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_matches('_')
        .to_string()
}

/// The first CPU's model name, or "" where `/proc/cpuinfo` has none.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// The git revision of the working directory, `-dirty` if it has
/// uncommitted changes; `None` outside a git checkout or without git.
fn git_revision() -> Option<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = run(&["rev-parse", "HEAD"])?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The conns scenario needs ~2 fds per connection: raise the soft limit to
/// the hard one (children inherit it).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer / in-pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The default results folder: `results/<unix time>` under the workspace.
pub fn default_out(base: &Path) -> PathBuf {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    base.join(format!("results/{t}"))
}

#[cfg(test)]
mod tests {
    use super::williams;

    #[test]
    fn williams_designs_balance_positions_and_successions() {
        for n in 1..=9 {
            let rows = williams(n);
            assert_eq!(rows.len(), if n % 2 == 1 && n > 1 { 2 * n } else { n });
            let mut at = vec![vec![0usize; n]; n];
            let mut after = vec![vec![0usize; n]; n];
            for r in &rows {
                let mut sorted = r.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "a permutation: {r:?}");
                for (pos, &s) in r.iter().enumerate() {
                    at[s][pos] += 1;
                }
                for w in r.windows(2) {
                    after[w[0]][w[1]] += 1;
                }
            }
            let per_pos = rows.len() / n;
            assert!(at.iter().flatten().all(|&c| c == per_pos), "n={n}: {at:?}");
            if n > 1 {
                let per_pair = (rows.len() * (n - 1)) / (n * (n - 1));
                for (a, row) in after.iter().enumerate() {
                    for (b, &count) in row.iter().enumerate() {
                        if a != b {
                            assert_eq!(count, per_pair, "n={n}: {a} then {b}");
                        }
                    }
                }
            }
        }
    }
}
