//! No completion is lost (DESIGN invariant 3, PITFALLS 4–5): with a ring of
//! 8 SQ entries (32 CQ entries), 10,000 ops pass through and every one
//! completes exactly once. The SQ fills constantly (flush and retry), and 500
//! reads are made to complete in one burst while the worker is busy, so the
//! CQ overflows into the kernel's no-drop backlog, which must be flushed.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::*;
use percore::net::TcpListener;
use percore::RingSetup;

const READS: usize = 500;
const NOPS: usize = 9_500;

#[test]
fn ten_thousand_ops_on_an_eight_entry_ring_complete_exactly_once() {
    run(RingSetup::Auto);
}
// (On the epoll driver there is no ring: the same ops run, counted the same.)

/// Without DEFER_TASKRUN the kernel posts the burst of completions while the
/// worker spins, overflowing the 32-entry CQ: the no-drop backlog path.
#[test]
fn cq_overflow_backlog_is_flushed_and_nothing_is_lost() {
    if driver() != percore::Driver::IoUring {
        return; // no completion queue to overflow
    }
    let m = run(RingSetup::Plain);
    assert!(
        m.overflow_flushes > 0,
        "the CQ never overflowed: the test did not reach that path ({m:?})"
    );
}

fn run(setup: RingSetup) -> percore::metrics::MetricsSnapshot {
    let _w = watchdog("exactly_once", 120);
    let rt = percore::Runtime::builder()
        .driver(driver())
        .workers(1)
        .ring_entries(8)
        .ring_setup(setup)
        .build()
        .unwrap();
    if let Some(ring) = rt.workers()[0].ring {
        assert_eq!(ring.sq_entries, 8);
        assert_eq!(ring.cq_entries, 32);
    }
    let completions = Arc::new(AtomicUsize::new(0));
    let c = completions.clone();
    let got = rt.block_on(async move {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        // Foreign-thread clients: connect all, then write when told.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let clients = std::thread::spawn(move || {
            let mut socks: Vec<_> = (0..READS)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            go_rx.recv().unwrap();
            for (i, s) in socks.iter_mut().enumerate() {
                s.write_all(&(i as u64).to_le_bytes()).unwrap();
            }
            socks
        });
        let mut readers = Vec::new();
        for _ in 0..READS {
            let (s, _) = l.accept().await.unwrap();
            let c = c.clone();
            readers.push(percore::spawn(async move {
                let (n, buf) = s.read(Vec::with_capacity(16)).await;
                c.fetch_add(1, SeqCst);
                assert_eq!(n.unwrap(), 8);
                u64::from_le_bytes(buf[..8].try_into().unwrap())
            }));
        }
        let mut nops = Vec::new();
        for _ in 0..NOPS {
            let c = c.clone();
            nops.push(percore::spawn(async move {
                percore::nop().await.unwrap();
                c.fetch_add(1, SeqCst);
            }));
        }
        // Let every reader submit its read, then keep the worker out of the
        // kernel while all 500 reads become complete.
        percore::time::sleep(Duration::from_millis(20)).await;
        go_tx.send(()).unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(100) {
            std::hint::spin_loop();
        }
        for h in nops {
            h.await.unwrap();
        }
        let mut got = Vec::new();
        for r in readers {
            got.push(r.await.unwrap());
        }
        drop(clients.join().unwrap());
        got
    });
    assert_eq!(
        completions.load(SeqCst),
        READS + NOPS,
        "every op completes exactly once"
    );
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..READS as u64).collect::<Vec<_>>(),
        "each read got its own bytes"
    );
    let m = rt.metrics()[0];
    if driver() == percore::Driver::IoUring {
        // Every op's CQE was reaped (epoll counts readiness events instead).
        assert!(m.completed >= (READS + NOPS) as u64, "{m:?}");
    }
    m
}

/// The worker parks with SQEs still queued (its idle pass submits in the
/// park's own enter). On a 2-entry ring, arming the unpark read then finds
/// the SQ full and flushes it, reaping completions on the way: the park
/// must not go on to wait for a further completion while those wakers are
/// pending. (Before the fix this hung every time: both no-ops completed in
/// the flush and their task was never woken.)
#[test]
fn parking_with_a_full_submission_queue_loses_no_wakeup() {
    let _w = watchdog("park with full SQ", 30);
    let rt = runtime(1, 2);
    rt.block_on(async {
        for _ in 0..100 {
            let mut a = Box::pin(percore::nop());
            let mut b = Box::pin(percore::nop());
            let _ = poll_once(&mut a).await;
            let _ = poll_once(&mut b).await;
            // Both SQEs are queued; awaiting makes the worker idle.
            a.await.unwrap();
            b.await.unwrap();
        }
    });
}
