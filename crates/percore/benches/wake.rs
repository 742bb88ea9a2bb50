//! Cross-worker wake latency: `IORING_OP_MSG_RING` vs eventfd.
//!
//! A task pinned on worker 0 and one on worker 1 play ping-pong through
//! oneshot channels; between messages both workers park, so every round
//! trip is two wakes of a parked worker by its sibling. Runs alternate
//! between the modes (so machine drift hits both alike) and the report is
//! the median over runs of each run's median and p99 round trip.
//!
//! ```text
//! cargo bench -p percore --bench wake            # 5 runs per mode
//! cargo bench -p percore --bench wake -- 9 20000 # runs per mode, rounds
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percore::sync::oneshot;
use percore::{Runtime, WakeMode};

struct Ping {
    reply: oneshot::Sender<()>,
    next: oneshot::Receiver<Ping>,
}

/// One run: `rounds` round trips; returns (median, p99) in µs and how many
/// wakes went through MSG_RING.
fn run(mode: WakeMode, rounds: usize) -> (f64, f64, u64) {
    let rt = Runtime::builder()
        .workers(2)
        .wake_mode(mode)
        .build()
        .expect("runtime");
    let (first_tx, first_rx) = oneshot::channel::<Ping>();
    let ponger = rt.spawn_local_on(1, move || async move {
        let mut rx = first_rx;
        while let Ok(Ping { reply, next }) = rx.await {
            let _ = reply.send(());
            rx = next;
        }
    });
    let samples = Arc::new(Mutex::new(Vec::with_capacity(rounds)));
    let s = samples.clone();
    let pinger = rt.spawn_local_on(0, move || async move {
        let mut tx = first_tx;
        let mut out = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let (reply, reply_rx) = oneshot::channel();
            let (next_tx, next) = oneshot::channel();
            let t = Instant::now();
            if tx.send(Ping { reply, next }).is_err() {
                panic!("ponger gone");
            }
            tx = next_tx;
            reply_rx.await.expect("reply");
            out.push(t.elapsed());
            // Let both workers settle into their park before the next one.
            percore::time::sleep(Duration::from_micros(20)).await;
        }
        *s.lock().unwrap() = out;
    });
    rt.block_on(pinger).expect("pinger");
    rt.block_on(ponger).expect("ponger");
    let sent = rt.metrics().iter().map(|m| m.msg_ring_wakes).sum();
    drop(rt);
    let mut v: Vec<f64> = samples
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.as_secs_f64() * 1e6)
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[v.len() * 99 / 100], sent)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; take the numbers that follow, if any.
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs = nums.first().copied().unwrap_or(5).max(1);
    let rounds = nums.get(1).copied().unwrap_or(10_000).max(100);
    let probe = Runtime::builder().workers(1).build().expect("runtime");
    let has_msg_ring = probe.workers()[0].ring.is_some_and(|r| r.msg_ring);
    drop(probe);
    if !has_msg_ring {
        println!("wake: this kernel has no IORING_OP_MSG_RING; nothing to compare");
        return;
    }
    let mut res: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    for r in 0..runs {
        // Alternate which mode goes first.
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for m in order {
            let mode = [WakeMode::MsgRing, WakeMode::Eventfd][m];
            let (p50, p99, sent) = run(mode, rounds);
            assert_eq!(sent > 0, m == 0, "{mode:?}: MSG_RING wakes sent = {sent}");
            res[m].0.push(p50);
            res[m].1.push(p99);
        }
    }
    println!("cross-worker round trip (2 wakes of a parked worker), {runs} runs x {rounds} rounds per mode, alternating");
    println!(
        "{:<9} {:>22} {:>22}",
        "mode", "median of p50 µs", "median of p99 µs"
    );
    for (m, name) in ["msg_ring", "eventfd"].iter().enumerate() {
        let (p50, p99) = (median(res[m].0.clone()), median(res[m].1.clone()));
        println!("{name:<9} {p50:>22.1} {p99:>22.1}");
    }
}
