//! `--metrics-addr`: the runtime's per-worker metrics and the server's
//! counters as Prometheus text (OpenMetrics), at `GET /metrics`, served on
//! worker 0 by percore itself. Encoding by the `prometheus-client` crate;
//! every scrape builds its registry from a fresh snapshot.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use percore::metrics::{HistogramSnapshot, BUCKETS};
use percore::net::{TcpListener, TcpStream};
use percore::RuntimeMetrics;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::server::Stats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Worker {
    worker: String,
}

/// A percore log2 histogram as a Prometheus histogram (seconds). Buckets
/// below 1 µs fold into the first; above 34 s into `+Inf`.
#[derive(Debug, Default)]
struct Log2Histogram(Mutex<HistogramSnapshot>);

/// Bucket indices exported: upper bounds 2^(i+1) ns for i in this range.
const FIRST: usize = 9;
const LAST: usize = 34;

impl TypedMetric for Log2Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Log2Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut buckets = Vec::with_capacity(LAST - FIRST + 2);
        let below: u64 = h.buckets[..=FIRST].iter().sum();
        buckets.push((bound(FIRST), below));
        for i in FIRST + 1..=LAST {
            buckets.push((bound(i), h.buckets[i]));
        }
        let above: u64 = h.buckets[LAST + 1..BUCKETS].iter().sum();
        buckets.push((f64::INFINITY, above));
        encoder.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn bound(i: usize) -> f64 {
    (1u64 << (i + 1)) as f64 / 1e9
}

/// Everything a scrape reports.
#[derive(Clone)]
pub struct Sources {
    pub runtime: RuntimeMetrics,
    pub stats: Vec<Arc<Stats>>,
    pub open: Arc<AtomicUsize>,
}

/// The text of one scrape.
pub fn render(src: &Sources) -> String {
    let mut reg = Registry::default();
    let workers = src.runtime.workers();
    let counter = |reg: &mut Registry,
                   name: &str,
                   help: &str,
                   f: &dyn Fn(&percore::metrics::MetricsSnapshot) -> u64| {
        let fam = Family::<Worker, Counter>::default();
        for (i, m) in workers.iter().enumerate() {
            fam.get_or_create(&Worker {
                worker: i.to_string(),
            })
            .inc_by(f(m));
        }
        reg.register(name, help, fam);
    };
    counter(&mut reg, "percore_polls", "Task polls", &|m| m.polls);
    counter(
        &mut reg,
        "percore_spawned",
        "Tasks spawned onto the worker",
        &|m| m.spawned,
    );
    counter(
        &mut reg,
        "percore_stalls",
        "Polls longer than the stall threshold",
        &|m| m.stalls,
    );
    counter(
        &mut reg,
        "percore_budget_yields",
        "Task polls ended because the task had taken its budget of ready I/O results",
        &|m| m.budget_yields,
    );
    counter(
        &mut reg,
        "percore_enters",
        "io_uring_enter (or epoll_wait) calls",
        &|m| m.enters,
    );
    counter(
        &mut reg,
        "percore_parks",
        "Times the worker slept in the kernel",
        &|m| m.parks,
    );
    counter(
        &mut reg,
        "percore_sqes",
        "Submission queue entries queued",
        &|m| m.submitted,
    );
    counter(
        &mut reg,
        "percore_cqes",
        "Completion queue entries reaped",
        &|m| m.completed,
    );
    counter(
        &mut reg,
        "percore_remote_schedules",
        "Tasks woken from other threads",
        &|m| m.remote_schedules,
    );
    counter(
        &mut reg,
        "percore_steals",
        "Successful steals by the worker",
        &|m| m.steals,
    );
    counter(
        &mut reg,
        "percore_user_panics",
        "Panics in user code the worker contained",
        &|m| m.user_panics,
    );
    let gauge = |reg: &mut Registry,
                 name: &str,
                 help: &str,
                 f: &dyn Fn(&percore::metrics::MetricsSnapshot) -> u64| {
        let fam = Family::<Worker, Gauge>::default();
        for (i, m) in workers.iter().enumerate() {
            fam.get_or_create(&Worker {
                worker: i.to_string(),
            })
            .set(f(m) as i64);
        }
        reg.register(name, help, fam);
    };
    gauge(
        &mut reg,
        "percore_live_tasks",
        "Unfinished tasks the worker owns",
        &|m| m.live_tasks,
    );
    gauge(
        &mut reg,
        "percore_run_queue",
        "Runnable tasks queued on the worker",
        &|m| m.run_queue,
    );
    gauge(
        &mut reg,
        "percore_in_flight_ops",
        "I/O ops submitted and not completed",
        &|m| m.in_flight_ops,
    );
    gauge(&mut reg, "percore_timers", "Armed timers", &|m| m.timers);
    gauge(
        &mut reg,
        "percore_sq_pending",
        "SQEs queued, not yet submitted",
        &|m| m.sq_pending,
    );
    gauge(
        &mut reg,
        "percore_cq_ready",
        "CQEs posted, not yet reaped",
        &|m| m.cq_ready,
    );
    let hist =
        |reg: &mut Registry,
         name: &str,
         help: &str,
         f: &dyn Fn(&percore::metrics::MetricsSnapshot) -> HistogramSnapshot| {
            let fam = Family::<Worker, Log2Histogram>::default();
            for (i, m) in workers.iter().enumerate() {
                *fam.get_or_create(&Worker {
                    worker: i.to_string(),
                })
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = f(m);
            }
            reg.register(name, help, fam);
        };
    hist(
        &mut reg,
        "percore_poll_time_seconds",
        "Duration of each task poll",
        &|m| m.poll_time,
    );
    hist(
        &mut reg,
        "percore_loop_lag_seconds",
        "From a task becoming runnable to its poll",
        &|m| m.loop_lag,
    );
    let b = src.runtime.blocking();
    let one = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let g = Gauge::<i64>::default();
        g.set(v as i64);
        reg.register(name, help, g);
    };
    one(
        &mut reg,
        "percore_blocking_threads",
        "Blocking pool threads alive",
        b.threads as u64,
    );
    one(
        &mut reg,
        "percore_blocking_queued",
        "Blocking jobs waiting for a thread",
        b.queued as u64,
    );
    let c = Counter::<u64>::default();
    c.inc_by(b.rejected);
    reg.register(
        "percore_blocking_rejected",
        "Blocking jobs refused (pool full)",
        c,
    );
    one(
        &mut reg,
        "percore_echo_open_connections",
        "Connections open now",
        src.open.load(Relaxed) as u64,
    );
    let total = |f: &dyn Fn(&Stats) -> u64| src.stats.iter().map(|s| f(s)).sum::<u64>();
    for (name, help, v) in [
        (
            "percore_echo_connections",
            "Connections accepted",
            total(&|s| s.accepted.load(Relaxed)),
        ),
        (
            "percore_echo_bytes",
            "Bytes echoed",
            total(&|s| s.bytes.load(Relaxed)),
        ),
        (
            "percore_echo_refused",
            "Connections closed at once by --max-conns",
            total(&|s| s.refused.load(Relaxed)),
        ),
        (
            "percore_echo_idle_closed",
            "Connections closed by --idle-timeout",
            total(&|s| s.idle_closed.load(Relaxed)),
        ),
    ] {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

/// Serves `GET /metrics` on `listener` until the task is aborted; one
/// request per connection.
pub async fn serve(listener: TcpListener, src: Sources) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let src = src.clone();
                percore::spawn_local(async move {
                    let _ = answer(stream, &src).await;
                });
            }
            Err(_) => percore::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// Reads one request head (up to 8 KiB, 5 s) and answers it.
async fn answer(stream: TcpStream, src: &Sources) -> io::Result<()> {
    let mut head = Vec::new();
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let (r, buf) = stream.read(Vec::with_capacity(2048)).await;
            if r? == 0 {
                break;
            }
            head.extend_from_slice(&buf);
        }
        Ok::<_, io::Error>(())
    };
    if percore::time::timeout(std::time::Duration::from_secs(5), read_head)
        .await
        .is_err()
    {
        return Ok(());
    }
    let line = String::from_utf8_lossy(&head);
    let first = line.lines().next().unwrap_or("");
    let (status, ctype, body) = if first.starts_with("GET /metrics ") || first == "GET /metrics" {
        (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(src),
        )
    } else {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only GET /metrics is served here\n".to_string(),
        )
    };
    let mut resp = String::new();
    let _ = write!(
        resp,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.into_bytes()).await.0
}

/// Binds the metrics listener (on the calling worker).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}
