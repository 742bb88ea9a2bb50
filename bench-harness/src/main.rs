//! `bench-harness load | serve | compare`; see `--help` of each.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bench_harness::compare::process::WindowSample;
use bench_harness::compare::{self, CompareConfig, Layout, Scenario, ServerName};
use bench_harness::hist::percentile_distribution;
use bench_harness::load::schedule::Arrivals;
use bench_harness::load::{self, LoadConfig, Mode, WindowHook};
use bench_harness::serve::{self, ServerKind};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bench-harness",
    version,
    about = "Echo load generator, baseline servers and comparisons"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Drive an echo server with load and report latency and throughput.
    Load(LoadArgs),
    /// Run a baseline echo server until killed.
    Serve(ServeArgs),
    /// Compare servers: the main job (about 5 minutes with the defaults).
    Compare(CompareArgs),
    /// Serve CPU samples of a server on this host to a `load` on another
    /// (`load --agent`); runs until killed.
    Agent(AgentArgs),
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// Address to listen on (port 0 picks one; printed as `agent listening
    /// on ADDR`). Use an address only the generator's host can reach.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Echo server address: on this host, or on another one (then sample
    /// its CPU with `--agent`; see docs/benchmarks.md, "Two hosts").
    #[arg(long)]
    addr: SocketAddr,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Generator threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Closed loop: messages outstanding per connection.
    #[arg(long, conflicts_with = "rate")]
    depth: Option<usize>,
    /// Open loop: messages per second in total.
    #[arg(long)]
    rate: Option<f64>,
    /// Pin generator threads to these cores (comma-separated).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Open loop: poll instead of sleeping when the next message is due
    /// within this many µs (only with a core of the generator's own).
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Open loop: evenly spaced messages (phase-offset per thread) or
    /// Poisson arrivals at the same mean rate.
    #[arg(long, value_enum, default_value = "uniform")]
    arrivals: Arrivals,
    /// Write the latency histogram (percentile distribution) here.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The server's process id: report its CPU per message over the
    /// measured window (read here, or on the server's host with `--agent`).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server host's cores whose busy time is charged to the server
    /// (comma-separated; default: all of them).
    #[arg(long, value_delimiter = ',', requires = "server_pid")]
    server_cores: Vec<usize>,
    /// `bench-harness agent` on the server's host (HOST:PORT): sample
    /// `--server-pid` there instead of here.
    #[arg(long, requires = "server_pid")]
    agent: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Which server.
    #[arg(value_enum)]
    kind: ServerKind,
    /// Address to listen on (port 0 picks one; printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Worker threads (ignored by `threads`).
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Scenarios to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sweep")]
    scenarios: Vec<Scenario>,
    /// Built-in servers to compare [default: percore, percore-epoll,
    /// uring-loop, monoio, epoll-loop, tokio-tpc; none when --server is
    /// given]. `tokio-mt` and `threads` run when named.
    #[arg(long, value_enum, value_delimiter = ',')]
    servers: Option<Vec<ServerName>>,
    /// Another server to compare, started and measured like the built-in
    /// ones (repeatable): NAME=CMD, CMD split on spaces, `{workers}` replaced
    /// by the layout's worker count and `{port}` by a free loopback port
    /// (ready once it accepts there); without `{port}` the server must print
    /// `listening on ADDR` as its first stdout line.
    #[arg(long = "server", value_name = "NAME=CMD")]
    external: Vec<compare::ExternalServer>,
    /// CPU layout of server and load generator.
    #[arg(long, value_enum, default_value = "pinned")]
    layout: Layout,
    /// Repetitions of every measured point (alternating servers) [default:
    /// 3; 1 when only the sweep runs: its rates already measure every
    /// server many times, and the whole sweep fits in about 4 minutes].
    #[arg(long)]
    reps: Option<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Warm-up seconds per run.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Open loop: evenly spaced messages or Poisson arrivals.
    #[arg(long, value_enum, default_value = "uniform")]
    arrivals: Arrivals,
    /// `sweep` scenario: open-loop rates as fractions of the fastest
    /// server's closed-loop maximum, light load to past saturation.
    #[arg(long, value_delimiter = ',', default_value = "0.2,0.4,0.6,0.8,1.0,1.2")]
    sweep: Vec<f64>,
    /// `sweep` scenario: the p99 a server must stay under, in µs (p99.9
    /// under 10x that); each server's capacity is the highest rate it
    /// meets this at (and at every lower rate).
    #[arg(long, default_value_t = 1000.0)]
    slo_p99: f64,
    /// Repeat the whole comparison this many times (fresh server processes
    /// each time; latency rates fixed by the first). Tables then show the
    /// median of per-invocation medians with a bootstrap 95 % interval.
    #[arg(long, default_value_t = 1)]
    invocations: usize,
    /// Open-loop rates as fractions of the slowest server's maximum.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.8")]
    rates: Vec<f64>,
    /// Results folder (default: results/<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The percore-echo binary (default: next to this one).
    #[arg(long)]
    percore_echo: Option<PathBuf>,
    /// `skew` scenario: CPU burnt per message (percore-echo --work-us), in
    /// µs; large enough that one core saturates.
    #[arg(long, default_value_t = 100)]
    skew_work_us: u32,
    /// `blocking` scenario: microseconds each blocking call sleeps.
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    blocking_us: u32,
    /// `blocking` scenario: messages per blocking call.
    #[arg(long, default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..))]
    blocking_every: u64,
    /// `blocking` scenario: open-loop rate, messages per second.
    #[arg(long, default_value_t = 20000.0)]
    blocking_rate: f64,
    /// `models` scenario: the fixed open-loop rate, messages per second,
    /// at 100, 1,000 and 10,000 connections.
    #[arg(long, default_value_t = 20000.0)]
    models_rate: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Load(a) => run_load(a),
        Cmd::Serve(a) => serve::run(a.kind, a.listen, a.workers),
        Cmd::Compare(a) => run_compare(a),
        Cmd::Agent(a) => run_agent(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-harness: {e}");
            ExitCode::FAILURE
        }
    }
}

fn secs(v: f64, what: &str) -> io::Result<Duration> {
    if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--{what} must be between 0 and 3600 seconds, got {v}"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn run_agent(a: AgentArgs) -> io::Result<()> {
    let l = std::net::TcpListener::bind(a.listen).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("agent: cannot listen on {}: {e}", a.listen),
        )
    })?;
    println!("agent listening on {}", l.local_addr()?);
    bench_harness::agent::serve(l)
}

/// Where `load --server-pid` samples the server: here or through an agent.
enum ServerSampler {
    Local(u32, Vec<usize>),
    Agent(bench_harness::agent::AgentClient, u32, Vec<usize>),
}

impl ServerSampler {
    fn sample(&mut self) -> io::Result<WindowSample> {
        match self {
            ServerSampler::Local(pid, cores) => bench_harness::agent::sample_here(*pid, cores)
                .map_err(|e| {
                    io::Error::other(format!("{e} (for a server on another host use --agent)"))
                }),
            ServerSampler::Agent(c, pid, cores) => c.sample(*pid, cores),
        }
    }
}

/// The server's share over the window, from the samples at its edges.
#[derive(Debug, serde::Serialize)]
struct ServerWindow {
    /// Where it was sampled: "local" or "agent HOST:PORT".
    source: String,
    pid: u32,
    /// Server process CPU per verified message in the window, ns.
    cpu_ns_per_msg: f64,
    /// The sampled cores' busy time (softirq included) per message, ns.
    core_busy_ns_per_msg: f64,
    /// Steal over the window on the sampled cores, % of their time.
    steal_pct: f64,
}

fn run_load(a: LoadArgs) -> io::Result<()> {
    check_shape(a.conns, a.size, a.duration)?;
    if a.threads == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--threads must be at least 1",
        ));
    }
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--rate must be a positive number of messages per second, got {r}"),
            ));
        }
    }
    // Connected and checked before any load is sent.
    let sampler = match (a.server_pid, &a.agent) {
        (None, _) => None,
        (Some(pid), None) => {
            let mut s = ServerSampler::Local(pid, a.server_cores.clone());
            s.sample()?;
            Some(s)
        }
        (Some(pid), Some(addr)) => Some(ServerSampler::Agent(
            bench_harness::agent::AgentClient::connect(addr, pid, &a.server_cores)?,
            pid,
            a.server_cores.clone(),
        )),
    };
    let mode = match (a.rate, a.depth) {
        (Some(rate), _) => Mode::Open { rate },
        (None, d) => Mode::Closed {
            depth: d.unwrap_or(1),
        },
    };
    let mut cfg = LoadConfig::new(a.addr, mode);
    cfg.conns = a.conns;
    cfg.size = a.size;
    cfg.duration = secs(a.duration, "duration")?;
    cfg.warmup = secs(a.warmup, "warmup")?;
    cfg.threads = a.threads;
    cfg.cores = a.cores;
    cfg.spin_us = a.spin_us;
    cfg.arrivals = a.arrivals;
    type Edges = Arc<Mutex<Vec<io::Result<WindowSample>>>>;
    let edges: Edges = Arc::default();
    let ncores = match (&a.agent, a.server_cores.len()) {
        (_, n) if n > 0 => Some(n),
        (None, _) => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
        // All of the agent host's cores, a count this host does not know.
        (Some(_), _) => None,
    };
    let source = match &a.agent {
        Some(addr) => format!("agent {addr}"),
        None => "local".to_string(),
    };
    if let Some(s) = sampler {
        let s = Mutex::new(s);
        let sink = edges.clone();
        cfg.window_hook = Some(WindowHook(Arc::new(move |_start| {
            let got = s.lock().unwrap_or_else(|e| e.into_inner()).sample();
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(got);
        })));
    }
    let res = load::run(&cfg)?;
    let server = match (
        a.server_pid,
        &mut edges.lock().unwrap_or_else(|e| e.into_inner())[..],
    ) {
        (None, _) => None,
        (Some(pid), [Ok(x), Ok(y)]) => {
            let m = (res.report.throughput * res.report.duration_s).max(1.0);
            let wall_ns = match (x.at, y.at) {
                (Some(p), Some(q)) => q.duration_since(p).as_nanos() as f64,
                _ => 0.0,
            };
            let steal = y.core_steal_ns.saturating_sub(x.core_steal_ns) as f64;
            Some(ServerWindow {
                source,
                pid,
                cpu_ns_per_msg: y.proc_cpu_ns.saturating_sub(x.proc_cpu_ns) as f64 / m,
                core_busy_ns_per_msg: y.core_busy_ns.saturating_sub(x.core_busy_ns) as f64 / m,
                steal_pct: match ncores {
                    Some(n) if wall_ns > 0.0 => steal * 100.0 / (wall_ns * n as f64),
                    _ => f64::NAN,
                },
            })
        }
        (Some(_), got) => {
            let why = got
                .iter_mut()
                .find_map(|r| r.as_ref().err().map(|e| e.to_string()))
                .unwrap_or_else(|| format!("{} window edges sampled, not 2", got.len()));
            return Err(io::Error::other(format!(
                "the server's CPU could not be sampled over the window: {why}"
            )));
        }
    };
    if let Some(p) = &a.hgrm {
        std::fs::write(p, percentile_distribution(&res.latency))?;
    }
    let r = &res.report;
    if a.json {
        let mut v = serde_json::to_value(r).map_err(io::Error::other)?;
        if let (Some(s), Some(obj)) = (&server, v.as_object_mut()) {
            obj.insert(
                "server".into(),
                serde_json::to_value(s).map_err(io::Error::other)?,
            );
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(io::Error::other)?
        );
    } else {
        let l = &r.latency;
        println!(
            "{:.0} msg/s verified; latency µs p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} p99.99 {:.1} \
             max {:.1}; sent {} completed {} unanswered {}; generator busy {:.0}%, send lag p99 \
             {:.1} µs",
            r.throughput,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.p9999,
            l.max,
            r.sent,
            r.completed,
            r.unanswered,
            r.gen_busy_max * 100.0,
            r.send_lag.p99
        );
        if let Some(s) = &server {
            println!(
                "server (pid {}, {}): {:.2} µs CPU per message, {:.2} µs core busy per message, steal {:.1}%",
                s.pid,
                s.source,
                s.cpu_ns_per_msg / 1e3,
                s.core_busy_ns_per_msg / 1e3,
                s.steal_pct
            );
        }
    }
    match &r.invalid_reason {
        Some(why) => Err(io::Error::other(format!("run invalid: {why}"))),
        None => Ok(()),
    }
}

/// What `compare` runs when no server is named.
const DEFAULT_SERVERS: &[ServerName] = &[
    ServerName::Percore,
    ServerName::PercoreEpoll,
    ServerName::UringLoop,
    ServerName::Monoio,
    ServerName::EpollLoop,
    ServerName::TokioTpc,
];

/// Refuses sizes that make no run: checked before anything starts.
fn check_shape(conns: usize, size: usize, duration: f64) -> io::Result<()> {
    let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
    if conns == 0 {
        return bad("--conns must be at least 1".into());
    }
    if size == 0 || size > 64 << 20 {
        return bad(format!("--size must be 1 byte to 64 MiB, got {size}"));
    }
    if duration.is_nan() || duration <= 0.0 {
        return bad(format!(
            "--duration must be more than 0 seconds, got {duration}"
        ));
    }
    Ok(())
}

fn run_compare(a: CompareArgs) -> io::Result<()> {
    check_shape(a.conns, a.size, a.duration)?;
    let mut names: Vec<&str> = a.external.iter().map(|e| e.name.as_str()).collect();
    names.extend(a.servers.iter().flatten().map(|s| s.label()));
    let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
    if unique.len() != names.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("server names must be unique: {}", names.join(", ")),
        ));
    }
    if a.sweep.is_empty()
        || a.sweep.iter().any(|f| !(*f > 0.0 && *f <= 3.0))
        || a.slo_p99.is_nan()
        || a.slo_p99 <= 0.0
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--sweep fractions must be in (0, 3] and --slo-p99 positive (µs)",
        ));
    }
    if a.invocations == 0 || a.invocations > 100 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--invocations {}: pick 1..=100", a.invocations),
        ));
    }
    let only_sweep = a.scenarios.iter().all(|s| *s == Scenario::Sweep);
    let reps = a.reps.unwrap_or(if only_sweep { 1 } else { 3 });
    if reps == 0 || a.rates.iter().any(|f| !(*f > 0.0 && *f <= 2.0)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--reps must be at least 1 and --rates fractions in (0, 2]",
        ));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let workspace = std::env::current_dir()?;
    let cfg = CompareConfig {
        scenarios: a.scenarios,
        servers: a.servers.unwrap_or_else(|| {
            if a.external.is_empty() {
                DEFAULT_SERVERS.to_vec()
            } else {
                Vec::new()
            }
        }),
        external: a.external,
        layout: a.layout,
        reps,
        duration: secs(a.duration, "duration")?,
        warmup: secs(a.warmup, "warmup")?,
        conns: a.conns,
        size: a.size,
        rate_fractions: a.rates,
        invocations: a.invocations,
        sweep_fractions: a.sweep,
        slo_p99_us: a.slo_p99,
        arrivals: a.arrivals,
        out: a.out.unwrap_or_else(|| compare::default_out(&workspace)),
        percore_echo: a.percore_echo.unwrap_or_else(|| dir.join("percore-echo")),
        skew_work_us: a.skew_work_us,
        blocking_us: a.blocking_us,
        blocking_every: a.blocking_every,
        blocking_rate: a.blocking_rate,
        models_rate: a.models_rate,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let out = compare::run(&cfg)?;
    println!("\nresults: {}", out.display());
    Ok(())
}
