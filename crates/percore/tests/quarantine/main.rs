//! The net under the cancellation rules (DESIGN invariants 1 and 8): run
//! many dropped ops in random interleavings with completions, timeouts,
//! aborts, steals and runtime drops, under an allocator that poisons and
//! quarantines every freed block (`alloc.rs`). A kernel write into a buffer
//! that percore freed too early changes a quarantined block's poison, and
//! the test fails with the block's size and offset.
//!
//! `PERCORE_QUARANTINE_OPS` sets how many dropped in-flight ops to reach
//! (default 100,000); the suite runs this binary on both drivers.
//! The last step proves the net works: a raw io_uring recv into a buffer
//! freed on purpose must be caught.

mod alloc;
#[path = "../common/mod.rs"]
mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::*;
use percore::time::timeout;
use percore::Runtime;

#[global_allocator]
static GLOBAL: alloc::Quarantine = alloc::Quarantine;

/// Ops dropped (or cancelled by timeout or abort) while pending.
static DROPPED: AtomicUsize = AtomicUsize::new(0);

fn dropped() {
    DROPPED.fetch_add(1, Relaxed);
}

#[test]
fn no_kernel_write_reaches_freed_memory() {
    let _w = watchdog("quarantine", 600);
    let target: usize = std::env::var("PERCORE_QUARANTINE_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let start = Instant::now();
    let mut seed = 1u64;
    let mut runtimes = 0;
    while DROPPED.load(Relaxed) < target {
        let rt = Runtime::builder()
            .driver(driver())
            .workers(2)
            .ring_entries(16)
            .steal_threshold(1)
            .shutdown_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let sessions: Vec<_> = (0..16).map(|i| rt.spawn(session(seed + i, 400))).collect();
        seed += 16;
        // Half of the sessions finish; the runtime is dropped while the
        // other half still have ops in flight.
        let mut sessions = sessions.into_iter();
        let finish: Vec<_> = sessions.by_ref().take(8).collect();
        rt.block_on(async move {
            for h in finish {
                h.await.unwrap();
            }
        });
        drop(sessions);
        drop(rt);
        runtimes += 1;
    }
    alloc::flush();
    let (bad, checked, first) = alloc::report();
    eprintln!(
        "quarantine: {} dropped ops, {runtimes} runtimes, {checked} freed blocks checked, {:.1} s",
        DROPPED.load(Relaxed),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(
        bad, 0,
        "{bad} freed blocks were written after their free; {first}"
    );
    assert!(
        checked > target,
        "the quarantine checked only {checked} blocks"
    );

    the_net_catches_a_kernel_write_after_free();
}

/// One connection's worth of random dangerous interleavings.
async fn session(seed: u64, rounds: usize) {
    let mut rng = Rng::new(seed);
    let (mut a, mut b) = tcp_pair().await;
    let (ua, ub) = udp_pair().await;
    let (da, db) = percore::net::UnixDatagram::pair().unwrap();
    let dir = temp_dir("quarantine");
    let file = percore::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .open(dir.join("f"))
        .await
        .unwrap();
    file.write_all_at(vec![0x11; 64 * 1024], 0).await.0.unwrap();
    for _ in 0..rounds {
        let size = 1 + rng.below(64 * 1024) as usize;
        match rng.below(11) {
            // A read dropped while in the kernel, no data.
            0 => {
                let mut r = Box::pin(a.read(Vec::with_capacity(size)));
                if poll_once(&mut r).await.is_pending() {
                    if rng.below(2) == 0 {
                        percore::nop().await.unwrap();
                    }
                    drop(r);
                    dropped();
                }
            }
            // The dangerous one: the read is in the kernel, data arrives,
            // the future is dropped (before or after the CQE is reaped).
            1 | 2 => {
                let mut r = Box::pin(a.read(Vec::with_capacity(size)));
                if poll_once(&mut r).await.is_pending() {
                    percore::nop().await.unwrap();
                    let n = 1 + rng.below(4096) as usize;
                    let w = timeout(Duration::from_millis(1), b.write_all(vec![0xA5; n])).await;
                    if w.is_err() {
                        dropped();
                    }
                    for _ in 0..rng.below(3) {
                        percore::nop().await.unwrap();
                    }
                    drop(r);
                    dropped();
                }
            }
            // A read that may time out with or without data on the way.
            3 => {
                if rng.below(2) == 0 {
                    let _ = timeout(Duration::from_millis(1), b.write_all(vec![0x5A; 512])).await;
                }
                let wait = Duration::from_micros(rng.below(300));
                if timeout(wait, a.read(Vec::with_capacity(size)))
                    .await
                    .is_err()
                {
                    dropped();
                }
            }
            // A large write dropped in flight (its peer is not reading);
            // the pair is replaced, since its stream is now clogged.
            4 => {
                if rng.below(2) == 0 {
                    let mut w = Box::pin(b.write_all(vec![0x3C; 512 * 1024]));
                    if poll_once(&mut w).await.is_pending() {
                        percore::nop().await.unwrap();
                        drop(w);
                        dropped();
                    }
                } else {
                    // A gather write (sendmsg: its iovec array and header
                    // live in the op's resources) dropped in flight.
                    let parts = vec![vec![0x3C; 256 * 1024], vec![0x3D; 256 * 1024]];
                    let mut w = Box::pin(b.write_vectored(parts));
                    if poll_once(&mut w).await.is_pending() {
                        percore::nop().await.unwrap();
                        drop(w);
                        dropped();
                    }
                }
                (a, b) = tcp_pair().await;
            }
            // A task reading, aborted from outside (maybe after a steal).
            5 => {
                let (x, y) = tcp_pair().await;
                let h = percore::spawn(async move {
                    let _keep = y;
                    let (_r, _buf) = x.read(Vec::with_capacity(size)).await;
                });
                for _ in 0..rng.below(3) {
                    percore::yield_now().await;
                }
                h.abort();
                let _ = h.await;
                dropped();
            }
            // A datagram receive (recvmsg on io_uring: its header and
            // address live in the op's resources) dropped while a datagram
            // is on its way.
            8 => {
                let mut r = Box::pin(ua.recv_from(Vec::with_capacity(size)));
                if poll_once(&mut r).await.is_pending() {
                    percore::nop().await.unwrap();
                    let n = rng.below(2048) as usize;
                    let _ = ub.send(vec![0x7E; n]).await;
                    for _ in 0..rng.below(3) {
                        percore::nop().await.unwrap();
                    }
                    drop(r);
                    dropped();
                }
                // What the dropped receive did not take stays queued;
                // drain it so the next round starts empty.
                while let Ok((Ok(_), _)) =
                    timeout(Duration::from_micros(50), ua.recv(Vec::with_capacity(2048))).await
                {
                }
            }
            // A plain receive (IORING_OP_RECV) on a Unix datagram pair
            // dropped with a send on its way that may be cut short.
            9 => {
                let mut r = Box::pin(da.recv(Vec::with_capacity(size)));
                if poll_once(&mut r).await.is_pending() {
                    let _ = timeout(Duration::from_micros(100), db.send(vec![0x6B; 256])).await;
                    drop(r);
                    dropped();
                }
                while let Ok((Ok(_), _)) =
                    timeout(Duration::from_micros(50), da.recv(Vec::with_capacity(2048))).await
                {
                }
            }
            // A file read or write dropped after its first poll (in the
            // ring on io_uring; on the blocking pool on epoll).
            10 => {
                let pos = rng.below(64 * 1024);
                if rng.below(2) == 0 {
                    let mut r = Box::pin(file.read_at(Vec::with_capacity(size), pos));
                    if poll_once(&mut r).await.is_pending() {
                        drop(r);
                        dropped();
                    }
                } else {
                    let mut w = Box::pin(file.write_at(vec![0x11; size], pos));
                    if poll_once(&mut w).await.is_pending() {
                        drop(w);
                        dropped();
                    }
                }
            }
            // Drain whatever dropped reads left unread.
            _ => loop {
                let r = timeout(Duration::from_micros(50), a.read(Vec::with_capacity(65536))).await;
                match r {
                    Ok((Ok(n), _)) if n > 0 => {}
                    Err(_) => {
                        dropped();
                        break;
                    }
                    _ => break,
                }
            },
        }
    }
}

/// The net itself: a raw io_uring recv into a buffer freed while the
/// kernel holds it (exactly the bug percore must never have) is caught.
fn the_net_catches_a_kernel_write_after_free() {
    use io_uring::{opcode, types, IoUring};
    let (before, _, _) = alloc::report();
    let (rx, mut tx) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut ring = IoUring::new(8).unwrap();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let recv = opcode::Recv::new(types::Fd(rx.as_raw_fd()), buf.as_mut_ptr(), 4096).build();
    // SAFETY: deliberately not upheld: `buf` is freed below while the recv
    // may write it. The quarantine keeps the block allocated (poisoned), so
    // the kernel's write lands in memory this process still owns.
    unsafe { ring.submission().push(&recv).unwrap() };
    ring.submit().unwrap();
    drop(buf);
    tx.write_all(&[1u8; 64]).unwrap();
    ring.submit_and_wait(1).unwrap();
    assert_eq!(ring.completion().next().unwrap().result(), 64);
    alloc::flush();
    let (after, _, first) = alloc::report();
    assert_eq!(
        after,
        before + 1,
        "the quarantine missed a kernel write after free"
    );
    assert!(first.contains("4096 bytes"), "{first}");
}
