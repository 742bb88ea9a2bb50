//! percore-echo: a shard-per-core TCP echo server on percore.
//!
//! Start-up: build the runtime, bind worker 0's listener (learning the real
//! port when ADDR has port 0), then every other worker's listener on that
//! same address with SO_REUSEPORT — no acceptor thread, no hand-off. Prints
//! `listening on ADDR` on stdout once all are bound, and one line per worker
//! on stderr. On SIGINT/SIGTERM (read through the runtime from a signalfd,
//! `percore::signal`): stop accepting, let open connections finish for up
//! to `--drain-timeout`, then shut down and print per-worker totals.

mod cli;
mod metrics_http;
mod server;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use percore::sync::oneshot;
use percore::{JoinHandle, Runtime};

use cli::{Args, RecvArg, SteerArg};
use server::{serve_worker, Block, RecvPath, Serve, Stats};

fn main() -> ExitCode {
    let args = Args::parse();
    // Before any thread starts, so every thread inherits the mask: the
    // signals then wait in the process for the signalfd read below, and
    // never interrupt a worker.
    if let Err(e) = percore::signal::block(&[libc::SIGINT, libc::SIGTERM]) {
        eprintln!("percore-echo: cannot block SIGINT/SIGTERM: {e}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("percore-echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let mut builder = Runtime::builder();
    if let Some(n) = args.workers {
        builder.workers(n.into());
    }
    builder
        .pin(!args.no_pin)
        .ring_entries(args.ring_entries)
        .driver(args.driver.into())
        .steal(!args.no_steal)
        .steal_threshold(args.steal_threshold as usize)
        .recv_buffers(args.pool_buffers, args.pool_buffer_size)
        .stall_threshold(Duration::from_secs_f64(args.stall_ms / 1e3));
    let rt = builder
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let n = rt.workers().len();
    let accepting = match args.accept_on {
        None => n,
        Some(k) if usize::from(k) <= n => usize::from(k),
        Some(k) => {
            return Err(format!(
                "--accept-on {k} is more than the {n} workers: pick 1..={n}"
            ))
        }
    };
    let work = Duration::from_micros(args.work_us.into());
    let path = match args.recv {
        RecvArg::Pooled => RecvPath::Pooled,
        RecvArg::Owned | RecvArg::Auto => RecvPath::Owned,
    };
    let steer = match args.steer {
        SteerArg::Cpu => Some(
            rt.workers()[..accepting]
                .iter()
                .map(|w| w.core)
                .collect::<Arc<[_]>>(),
        ),
        SteerArg::Hash | SteerArg::Auto => None,
    };
    let conf = Serve {
        path,
        buffer: args.buffer as usize,
        work,
        steer,
        zc_min: args.send_zc_min.map(|n| n as usize),
        max_conns: args.max_conns.map(|n| n as usize),
        idle: args.idle_timeout.map(Duration::from_secs_f64),
        block: args.block_us.map(|us| Block {
            sleep: Duration::from_micros(us.into()),
            every: args.block_every,
            offload: args.offload,
            seen: Arc::new(AtomicU64::new(0)),
        }),
    };
    let open = Arc::new(AtomicUsize::new(0));
    let stats: Vec<Arc<Stats>> = (0..accepting).map(|_| Arc::new(Stats::default())).collect();

    let mut addr = args.listen;
    let mut acceptors: Vec<JoinHandle<()>> = Vec::with_capacity(n);
    for (i, st) in stats.iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        let (st, open, conf) = (st.clone(), open.clone(), conf.clone());
        let bind_to = addr;
        acceptors
            .push(rt.spawn_local_on(i, move || serve_worker(bind_to, conf, st, open, i == 0, tx)));
        let bound = rx
            .blocking_recv()
            .map_err(|_| format!("worker {i} stopped before binding"))?;
        // Port 0: every later worker joins the port worker 0 got.
        addr = bound.map_err(|e| format!("worker {i}: {e}"))?;
    }
    for w in rt.workers() {
        if w.index < accepting {
            eprintln!(
                "percore-echo: {w}, listening on {addr}, recv {path:?}, steer {:?}",
                args.steer
            );
        } else {
            eprintln!("percore-echo: {w}, no listener (serves stolen connections)");
        }
    }
    // Before `listening on`: once clients may connect, the fd table can
    // fill up (out of fds, the server must keep serving, not fail here).
    let mut signals = percore::signal::Signals::new(&[libc::SIGINT, libc::SIGTERM])
        .map_err(|e| format!("cannot create the signalfd for SIGINT/SIGTERM: {e}"))?;
    let metrics_task = match args.metrics_addr {
        None => None,
        Some(maddr) => {
            let src = metrics_http::Sources {
                runtime: rt.metrics_handle(),
                stats: stats.clone(),
                open: open.clone(),
            };
            let (tx, rx) = oneshot::channel();
            let task = rt.spawn_local_on(0, move || async move {
                match metrics_http::bind(maddr) {
                    Ok(l) => {
                        let _ = tx.send(l.local_addr());
                        metrics_http::serve(l, src).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
            let bound = rx
                .blocking_recv()
                .map_err(|_| "the metrics listener's task stopped".to_string())?
                .map_err(|e| format!("--metrics-addr {maddr}: {e}"))?;
            eprintln!("percore-echo: metrics on {bound}");
            Some(task)
        }
    };
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();

    // Waited for on worker 0, through the runtime (a signalfd read).
    let sig = rt
        .block_on(async move { signals.recv().await })
        .map_err(|e| format!("waiting for SIGINT/SIGTERM: {e}"))?;
    eprintln!("percore-echo: signal {sig}: stop accepting, draining connections");
    for a in &acceptors {
        a.abort();
    }
    if let Some(t) = &metrics_task {
        t.abort();
    }
    let deadline = Instant::now() + args.drain_timeout();
    while open.load(Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = open.load(Relaxed);
    // The loop's shape, per worker (what a message costs in loop passes,
    // kernel entries and parks: divide by the messages echoed).
    for (i, m) in rt.metrics().iter().enumerate() {
        eprintln!(
            "percore-echo: runtime counters, worker {i}: {} polls, {} enters, {} parks, {} SQEs, {} CQEs, \
             {} remote wakes, {} steals ({} tasks), {} user panics, {} stalls, \
             {} recv arms, {} recv fallbacks",
            m.polls,
            m.enters,
            m.parks,
            m.submitted,
            m.completed,
            m.remote_wakes,
            m.steals,
            m.stolen_tasks,
            m.user_panics,
            m.stalls,
            m.recv_arms,
            m.recv_fallbacks
        );
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    for (i, s) in stats.iter().enumerate() {
        eprintln!(
            "percore-echo: worker {i}: {} connections, {} bytes echoed, {} errors, \
             {} refused, {} idle closed, {} blocking calls, {} offloaded, {} offload refused",
            s.accepted.load(Relaxed),
            s.bytes.load(Relaxed),
            s.errors.load(Relaxed),
            s.refused.load(Relaxed),
            s.idle_closed.load(Relaxed),
            s.blocked.load(Relaxed),
            s.offloaded.load(Relaxed),
            s.offload_refused.load(Relaxed)
        );
    }
    if left > 0 {
        eprintln!("percore-echo: closed {left} connections still open at the drain deadline");
    }
    Ok(())
}
