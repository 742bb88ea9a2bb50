//! Command-line flags.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The I/O driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverArg {
    /// io_uring, or epoll (with one line naming why) if io_uring is unavailable.
    Auto,
    /// io_uring only: fail with the reason if it cannot be set up.
    Uring,
    /// epoll.
    Epoll,
}

impl From<DriverArg> for percore::Driver {
    fn from(d: DriverArg) -> percore::Driver {
        match d {
            DriverArg::Auto => percore::Driver::Auto,
            DriverArg::Uring => percore::Driver::IoUring,
            DriverArg::Epoll => percore::Driver::Epoll,
        }
    }
}

/// How connections receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecvArg {
    /// The measured default: owned.
    Auto,
    /// Multishot receive into the worker's provided buffers.
    Pooled,
    /// A read into each connection's own buffer.
    Owned,
}

/// Which listener of the `SO_REUSEPORT` group gets a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SteerArg {
    /// The measured default: hash.
    Auto,
    /// The listener of the worker pinned to the CPU that processed the
    /// connection's packets (`TcpListener::steer_by_cpu`).
    Cpu,
    /// The kernel's hash of the connection's addresses.
    Hash,
}

/// Shard-per-core TCP echo server: every worker binds its own SO_REUSEPORT
/// listener on ADDR and serves the connections the kernel gives it.
#[derive(Debug, Parser)]
#[command(name = "percore-echo", version)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:7000 or [::1]:7000 (port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Worker threads, one listener each (default: the usable cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// I/O driver.
    #[arg(long, value_enum, default_value = "auto")]
    pub driver: DriverArg,

    /// Do not pin workers to cores.
    #[arg(long)]
    pub no_pin: bool,

    /// How connections receive: `pooled` = one multishot receive per
    /// connection into the worker's provided buffers (io_uring; no buffer
    /// held by an idle connection), `owned` = a read into each
    /// connection's own buffer. `auto` is `owned`: pooled did not measure
    /// faster overall (docs/benchmarks.md, "Multishot recv").
    #[arg(long, value_enum, default_value = "auto")]
    pub recv: RecvArg,

    /// How the kernel picks the worker for a new connection: `cpu` = the
    /// worker on the CPU that processed its packets (its softirq work and
    /// its task then share a core), `hash` = the kernel's hash.
    #[arg(long, value_enum, default_value = "auto")]
    pub steer: SteerArg,

    /// Echo messages of at least this many bytes with zero-copy sends
    /// (`IORING_OP_SEND_ZC`; plain sends on epoll). Default: never (on
    /// loopback zero-copy did not pay at any size measured; see
    /// docs/benchmarks.md).
    #[arg(long, value_name = "BYTES")]
    pub send_zc_min: Option<u32>,

    /// Provided buffers per worker for `--recv pooled` (each
    /// `--pool-buffer-size` bytes; rounded up to a power of two).
    #[arg(long, value_name = "N", default_value_t = 2048,
          value_parser = clap::value_parser!(u16).range(1..=32768))]
    pub pool_buffers: u16,

    /// Size of each provided buffer for `--recv pooled`, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(64..=(1 << 20)))]
    pub pool_buffer_size: u32,

    /// Read buffer per connection (`--recv owned`), in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u32).range(1..=(16 << 20)))]
    pub buffer: u32,

    /// Submission queue entries per worker ring.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub ring_entries: u32,

    /// On SIGTERM/SIGINT, how long open connections may keep going before
    /// they are closed, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub drain_timeout: f64,

    /// Bind listeners on only the first K workers; the others serve only
    /// connections they steal (uneven load on purpose). Default: all.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub accept_on: Option<u16>,

    /// Burn this many microseconds of CPU per message received, to make
    /// the server CPU-bound on purpose.
    #[arg(long, value_name = "US", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub work_us: u32,

    /// Turn work stealing off (connections stay on the worker that
    /// accepted them).
    #[arg(long)]
    pub no_steal: bool,

    /// Most connections open at once, for the whole process. Past it, a
    /// new connection is accepted and closed at once (counted as
    /// `refused`), so the kernel's backlog never fills silently; open
    /// connections are unaffected. Default: no limit.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_conns: Option<u64>,

    /// Close a connection that moves no bytes (nothing received, or a
    /// write that cannot proceed) for this many seconds (fractions
    /// allowed), counted as `idle closed`. Default: never.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true,
          value_parser = positive)]
    pub idle_timeout: Option<f64>,

    /// Every `--block-every`-th message (counted over the whole process)
    /// makes a blocking call that sleeps this many microseconds: inline on
    /// the worker, stalling every connection on its core, or with
    /// `--offload` on the runtime's blocking pool.
    #[arg(long, value_name = "US",
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub block_us: Option<u32>,

    /// See `--block-us`.
    #[arg(long, value_name = "M", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub block_every: u64,

    /// Run `--block-us`'s blocking call on the blocking pool
    /// (`spawn_blocking`); the connection waits for it, its worker does
    /// not. A call the full pool refuses is skipped and counted.
    #[arg(long, requires = "block_us")]
    pub offload: bool,

    /// A task poll longer than this many milliseconds is a stall: counted
    /// (`stalls` in the exit counters) and reported on stderr, at most one
    /// line per worker per second.
    #[arg(long, value_name = "MS", default_value_t = 10.0, value_parser = positive)]
    pub stall_ms: f64,

    /// Serve the runtime's per-worker metrics and the server's counters as
    /// Prometheus text at `GET /metrics` on this address (port 0 picks
    /// one; the address is printed on stderr as `metrics on ADDR`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Shortest sibling queue an idle worker steals from.
    #[arg(long, value_name = "TASKS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub steal_threshold: u32,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1e6 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number (at most 1000000)")),
    }
}

impl Args {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout.clamp(0.0, 3600.0))
    }
}
