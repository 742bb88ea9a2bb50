//! Zero-copy sends (`TcpStream::write_zc`, `IORING_OP_SEND_ZC`): every byte
//! arrives; the call returns its buffer only after the kernel's
//! notification CQE (until then the kernel may still read the pages); a
//! dropped zero-copy write keeps its buffer alive until then too. On epoll
//! (and kernels without it) `write_zc` is a plain send.

mod common;

use std::sync::Arc;

use common::{driver, poll_once, tcp_pair, CountedBuf, Counts};
use percore::Driver;

/// Reads until nothing arrives for `quiet_ms` (or the peer closes).
async fn drain_until_quiet(server: &percore::net::TcpStream, quiet_ms: u64) {
    loop {
        let r = percore::time::timeout(
            std::time::Duration::from_millis(quiet_ms),
            server.read(Vec::with_capacity(1 << 20)),
        )
        .await;
        match r {
            Ok((Ok(n), _)) if n > 0 => {}
            _ => return,
        }
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn zero_copy_writes_deliver_every_byte() {
    let _w = common::watchdog("zero_copy_writes_deliver_every_byte", 60);
    let rt = common::runtime(1, 64);
    rt.block_on(async {
        for size in [1usize, 4096, 65_536, 1 << 20] {
            let (client, server) = tcp_pair().await;
            let data = pattern(size);
            let reader = percore::spawn_local(async move {
                let mut got = Vec::with_capacity(size);
                while got.len() < size {
                    let (r, buf) = server.read(Vec::with_capacity(64 * 1024)).await;
                    assert!(r.unwrap() > 0, "EOF");
                    got.extend_from_slice(&buf);
                }
                got
            });
            let (r, back) = client.write_all_zc(data.clone()).await;
            r.unwrap();
            assert_eq!(back, data, "the buffer comes back untouched");
            assert_eq!(reader.await.unwrap(), data, "{size} bytes");
        }
    });
}

#[test]
fn a_zero_copy_write_returns_only_after_its_notification() {
    let _w = common::watchdog("a_zero_copy_write_returns_only_after_its_notification", 30);
    let rt = Arc::new(common::runtime(1, 64));
    let (client, server) = rt.block_on(tcp_pair());
    let (client, server) = (Arc::new(client), Arc::new(server));
    let s = server.clone();
    let drain = rt.spawn(async move {
        let mut total = 0;
        while total < 20 * 65_536 {
            let (r, _) = s.read(Vec::with_capacity(65_536)).await;
            total += r.unwrap();
        }
    });
    let before = rt.metrics()[0].zc_notifs;
    for k in 1..=20u64 {
        let c = client.clone();
        let (r, _) = rt.block_on(async move { c.write_zc(pattern(65_536)).await });
        assert!(r.unwrap() > 0);
        if driver() == Driver::IoUring {
            let notifs = rt.metrics()[0].zc_notifs - before;
            assert!(
                notifs >= k,
                "write {k} returned before its notification ({notifs})"
            );
        }
    }
    // The last writes may have been partial: finish the drain's quota.
    let c = client.clone();
    rt.block_on(async move {
        let (r, _) = c.write_all(vec![0u8; 20 * 65_536]).await;
        r.unwrap();
    });
    rt.block_on(async move { drain.await.unwrap() });
    drop(server);
}

#[test]
fn a_dropped_zero_copy_write_keeps_its_buffer_until_the_final_cqe() {
    let _w = common::watchdog("a_dropped_zero_copy_write_keeps_its_buffer", 30);
    let rt = common::runtime(1, 64);
    let c = Arc::new(Counts::default());
    let c2 = c.clone();
    rt.block_on(async move {
        let c = c2;
        let (client, server) = tcp_pair().await;
        for round in 0..50 {
            let mut fut = Box::pin(client.write_zc(CountedBuf::filled(&c, &pattern(256 * 1024))));
            let pending = poll_once(&mut fut).await.is_pending();
            let live = c.live();
            drop(fut);
            if pending && driver() == Driver::IoUring {
                assert_eq!(
                    c.live(),
                    live,
                    "round {round}: buffer freed while the kernel held it"
                );
            }
            // Drain what arrived so the next round's send can proceed.
            drain_until_quiet(&server, 5).await;
            for _ in 0..3 {
                percore::nop().await.unwrap();
            }
        }
        for _ in 0..20 {
            if c.live() == 0 {
                break;
            }
            percore::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(c.live(), 0, "every buffer freed once its final CQE came");
    });
}

/// A zero-copy write larger than the socket buffers, to a peer that does
/// not read: the kernel holds the buffer's pages (part sent, part waiting
/// for window), so the call is still pending after 100 ms; dropped, its
/// buffer must stay alive until the reader has drained the connection and
/// the kernel has let go (checked to fail when the driver ends the op at
/// its first CQE and ignores the notification).
#[test]
fn an_unread_zero_copy_write_holds_its_buffer_until_the_peer_reads() {
    if driver() != Driver::IoUring {
        return;
    }
    let _w = common::watchdog("an_unread_zero_copy_write_holds_its_buffer", 30);
    let rt = common::runtime(1, 64);
    let c = Arc::new(Counts::default());
    let c2 = c.clone();
    rt.block_on(async move {
        let c = c2;
        let (client, server) = tcp_pair().await;
        const SIZE: usize = 16 << 20;
        let mut fut = Box::pin(client.write_zc(CountedBuf::filled(&c, &pattern(SIZE))));
        assert!(poll_once(&mut fut).await.is_pending());
        percore::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            poll_once(&mut fut).await.is_pending(),
            "the write returned while the kernel still held unsent pages"
        );
        drop(fut);
        percore::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            c.live(),
            1,
            "buffer freed while the kernel still held its pages"
        );
        drain_until_quiet(&server, 200).await;
        for _ in 0..100 {
            if c.live() == 0 {
                break;
            }
            percore::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(c.live(), 0, "freed once the notification came");
    });
}
