//! Buffer and fd ownership across cancellation (DESIGN invariant 1,
//! PITFALLS 1–3 and 6): for every interleaving of {op completes, future
//! dropped, timeout fires, runtime dropped}, each buffer handed to the
//! runtime is dropped exactly once, and no fd is left open.
//!
//! One test function on purpose: it compares `/proc/self/fd` counts, which
//! concurrent tests in the same binary would disturb.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use percore::net::{TcpListener, TcpStream};
use percore::time::timeout;

const ROUNDS: usize = 300;

#[test]
fn every_buffer_dropped_exactly_once_and_no_fd_leaks() {
    let _w = watchdog("cancellation", 240);
    let baseline = fd_count();
    let counts = Arc::new(Counts::default());

    let rt = runtime(2, 64);
    let c = counts.clone();
    rt.block_on(async move {
        for round in 0..ROUNDS {
            interleavings(&c, round).await;
        }
    });
    drop(rt);
    assert_eq!(
        counts.live(),
        0,
        "buffers not dropped (or dropped twice): {counts:?}"
    );

    // The runtime is dropped while tasks wait in reads and writes.
    for _ in 0..20 {
        let before = counts.created.load(std::sync::atomic::Ordering::SeqCst);
        let rt = runtime(2, 16);
        for i in 0..50u32 {
            let c = counts.clone();
            rt.spawn(async move {
                let (a, b) = tcp_pair().await;
                if i.is_multiple_of(2) {
                    let (_r, _buf) = b.read(CountedBuf::new(&c, 4096)).await;
                } else {
                    // 8 MiB to a peer that never reads: the send stays in flight.
                    let big = CountedBuf::filled(&c, &vec![7u8; 8 << 20]);
                    let _ = a.write_all(big).await;
                }
                unreachable!("nothing ever completes these ops");
            });
        }
        // Let every task hand its buffer to an op (not a fixed sleep: on a
        // loaded machine some would not have started), then drop everything.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counts.created.load(std::sync::atomic::Ordering::SeqCst) < before + 50
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(5));
        drop(rt);
    }
    assert_eq!(
        counts.live(),
        0,
        "runtime drop leaked or double-dropped: {counts:?}"
    );
    let created = counts.created.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("cancellation: {created} buffers created");
    assert!(
        created > 2000,
        "only {created} buffers were handed to the runtime"
    );
    assert_eq!(fd_count(), baseline, "file descriptors leaked");
}

/// Round trips through the ring until completions posted so far are reaped.
async fn settle() {
    for _ in 0..3 {
        percore::nop().await.unwrap();
    }
}

async fn interleavings(c: &Arc<Counts>, round: usize) {
    let (client, server) = tcp_pair().await;

    // 1. The op completes and the caller gets its buffer back.
    client.write_all(b"ping".as_slice()).await.0.unwrap();
    let (n, buf) = server.read(CountedBuf::new(c, 64)).await;
    assert_eq!(n.unwrap(), 4);
    assert_eq!(buf.bytes(), b"ping");
    drop(buf);

    // 2. The future is dropped while the read is in flight.
    let mut fut = Box::pin(server.read(CountedBuf::new(c, 64)));
    assert!(poll_once(&mut fut).await.is_pending());
    let live = c.live();
    drop(fut);
    if driver() == percore::Driver::IoUring {
        // The kernel may still write into it: the driver must hold it until
        // the final CQE, which can only be reaped at the next ring enter.
        assert_eq!(c.live(), live, "buffer freed while its read was in flight");
    }
    settle().await;
    assert_eq!(c.live(), live - 1, "buffer not freed after its final CQE");

    // 3. The read completes, but its future is dropped before it looks.
    let mut fut = Box::pin(server.read(CountedBuf::new(c, 64)));
    assert!(poll_once(&mut fut).await.is_pending());
    client.write_all(b"lost".as_slice()).await.0.unwrap();
    settle().await;
    drop(fut);
    if driver() == percore::Driver::Epoll {
        // A reactor reads only when polled: the dropped read consumed
        // nothing, so the bytes are still there (io_uring may have taken them).
        let (n, buf) = server.read(CountedBuf::new(c, 64)).await;
        assert_eq!(n.unwrap(), 4);
        assert_eq!(buf.bytes(), b"lost");
    }

    // 4. A timeout fires around a read that never gets data.
    let r = timeout(
        Duration::from_micros(200 + round as u64 % 500),
        server.read(CountedBuf::new(c, 64)),
    )
    .await;
    assert!(r.is_err(), "no data was sent, the read must time out");

    // 5. A write in flight (peer not reading) is dropped.
    let mut fut = Box::pin(client.write_all(CountedBuf::filled(c, &vec![1u8; 4 << 20])));
    let _ = poll_once(&mut fut).await;
    drop(fut);

    // 6. Accept: dropped in flight, and dropped after a connection arrived
    //    (the accepted fd must be closed by the driver).
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let mut acc = Box::pin(l.accept());
    assert!(poll_once(&mut acc).await.is_pending());
    if round.is_multiple_of(2) {
        let conn = TcpStream::connect(addr).await.unwrap();
        settle().await;
        drop(acc);
        drop(conn);
    } else {
        drop(acc);
    }

    // 7. Connect dropped in flight (to a listener that exists). Its SQE may
    //    reach the kernel after the drop, and the cancel need not win: let it
    //    settle before closing the listener, or it could connect to whatever
    //    binds the freed port next (the next round's pair).
    let mut con = Box::pin(TcpStream::connect(addr));
    let _ = poll_once(&mut con).await;
    drop(con);
    settle().await;
    drop(l);
}
