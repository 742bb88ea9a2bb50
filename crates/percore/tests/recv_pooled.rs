//! `TcpStream::recv_pooled`: multishot recv into the worker's provided
//! buffers (`driver/uring/bufring.rs`, `driver/uring/recv.rs`). Every byte
//! arrives once and in order: across many messages on one armed op, when
//! the pool runs dry under many connections sending at once (`ENOBUFS`),
//! when `read` and `recv_pooled` are mixed, when buffers are dropped on
//! other threads, when a stream is dropped with chunks queued, and when a
//! stream moves to another runtime. On epoll the same tests check the same
//! bytes (owned buffers, no arming).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::Arc;
use std::time::Duration;

use percore::net::{TcpListener, TcpStream};
use percore::{Driver, Runtime};

fn uring() -> bool {
    common::driver() == Driver::IoUring
}

fn runtime(count: u16, size: u32) -> Runtime {
    Runtime::builder()
        .driver(common::driver())
        .workers(1)
        .ring_entries(256)
        .recv_buffers(count, size)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("runtime")
}

/// The byte pattern client `c` sends: position `i` of its stream.
fn byte(c: usize, i: usize) -> u8 {
    let x = (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x ^ (x >> 29) ^ (x >> 47)) as u8
}

fn listener() -> (Arc<TcpListener>, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let a = l.local_addr().unwrap();
    (Arc::new(l), a)
}

/// Receives with `recv_pooled` until `total` bytes arrived; checks them
/// against client `c`'s pattern. Returns how many chunks were pooled.
async fn expect_bytes(s: &TcpStream, c: usize, from: usize, total: usize) -> usize {
    let (mut got, mut pooled) = (from, 0);
    let total = from + total;
    while got < total {
        let chunk = s.recv_pooled().await.expect("recv_pooled");
        assert!(!chunk.is_empty(), "EOF after {got} of {total} bytes");
        pooled += usize::from(chunk.is_pooled());
        for (k, b) in chunk.iter().enumerate() {
            assert_eq!(*b, byte(c, got + k), "client {c}, byte {}", got + k);
        }
        got += chunk.len();
    }
    assert_eq!(got, total, "no extra bytes");
    pooled
}

#[test]
fn one_armed_receive_delivers_many_messages_in_order() {
    let _w = common::watchdog("one_armed_receive_delivers_many_messages", 30);
    let rt = runtime(64, 4096);
    let (l, addr) = listener();
    let before = rt.metrics()[0];
    let pooled = rt.block_on(async move {
        let client = std::thread::spawn(move || {
            let mut c = StdStream::connect(addr).unwrap();
            let mut echo = vec![0u8; 64];
            for m in 0..500usize {
                let msg: Vec<u8> = (0..64).map(|i| byte(0, m * 64 + i)).collect();
                c.write_all(&msg).unwrap();
                c.read_exact(&mut echo).unwrap();
                assert_eq!(echo, msg);
            }
        });
        let (s, _) = l.accept().await.unwrap();
        let mut pooled = 0;
        for m in 0..500usize {
            let mut got = Vec::new();
            while got.len() < 64 {
                let chunk = s.recv_pooled().await.unwrap();
                assert!(!chunk.is_empty());
                pooled += usize::from(chunk.is_pooled());
                got.extend_from_slice(&chunk);
            }
            let want: Vec<u8> = (0..64).map(|i| byte(0, m * 64 + i)).collect();
            assert_eq!(got, want, "message {m}");
            let (r, _) = s.write_all(got).await;
            r.unwrap();
        }
        client.join().unwrap();
        let eof = s.recv_pooled().await.unwrap();
        assert!(eof.is_empty(), "end of stream");
        pooled
    });
    let m = rt.metrics()[0];
    if uring() {
        assert!(pooled >= 500, "every chunk pooled: {pooled}");
        // One arm for 500 messages (plus one for the read after EOF at
        // most): no SQE per received message.
        assert!(m.recv_arms - before.recv_arms <= 2, "{m:?}");
        assert!(
            m.submitted - before.submitted < 700,
            "about one SQE per message (the send), not two: {}",
            m.submitted - before.submitted
        );
    } else {
        assert_eq!(m.recv_arms, 0);
    }
}

/// Many connections send at once into a pool far too small for them, while
/// nobody takes the chunks; then every connection is read to the end:
/// every byte arrives, in order (`ENOBUFS` falls back to owned buffers,
/// never loses or reorders data, never spins). Each client's first 4 bytes
/// are its index, so a mix-up between connections cannot pass.
#[test]
fn an_exhausted_pool_loses_no_byte() {
    let conns: usize = std::env::var("PERCORE_POOL_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let _w = common::watchdog("an_exhausted_pool_loses_no_byte", 120);
    let rt = runtime(16, 1024);
    let (l, addr) = listener();
    const BYTES: usize = 6000;
    let before = rt.metrics()[0];
    let clients = std::thread::spawn(move || {
        let mut v = Vec::new();
        for c in 0..conns {
            let mut s = StdStream::connect(addr).unwrap();
            let mut data = (c as u32).to_le_bytes().to_vec();
            data.extend((0..BYTES).map(|i| byte(c, i)));
            s.write_all(&data).unwrap();
            v.push(s);
        }
        v
    });
    let l2 = l.clone();
    let streams = rt.block_on(async move {
        let mut v = Vec::new();
        for _ in 0..conns {
            let (s, _) = l2.accept().await.unwrap();
            // Arm each stream's receive: its first chunk is taken, the rest
            // queue up (or find the pool empty).
            let first = s.recv_pooled().await.unwrap();
            v.push((s, first.to_vec()));
        }
        v
    });
    let clients = clients.join().unwrap();
    let pooled = rt.block_on(async move {
        let mut seen = vec![false; conns];
        let mut pooled = 0;
        for (s, first) in streams.iter() {
            let mut got = first.clone();
            while got.len() < 4 + BYTES {
                let chunk = s.recv_pooled().await.unwrap();
                assert!(!chunk.is_empty(), "EOF after {} bytes", got.len());
                pooled += usize::from(chunk.is_pooled());
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got.len(), 4 + BYTES, "no extra bytes");
            let c = u32::from_le_bytes(got[..4].try_into().unwrap()) as usize;
            assert!(c < conns && !seen[c], "client {c} once");
            seen[c] = true;
            for (i, b) in got[4..].iter().enumerate() {
                assert_eq!(*b, byte(c, i), "client {c}, byte {i}");
            }
        }
        pooled
    });
    let m = rt.metrics()[0];
    if uring() {
        let fallbacks = m.recv_fallbacks - before.recv_fallbacks;
        let arms = m.recv_arms - before.recv_arms;
        assert!(
            fallbacks > 0,
            "{conns} connections must exhaust 16 buffers: {m:?}"
        );
        // No spinning: every arm ends after delivering a pooled chunk, an
        // ENOBUFS (then one owned receive) or the cap.
        assert!(
            arms as usize <= fallbacks as usize + pooled + conns,
            "arms {arms}, fallbacks {fallbacks}, pooled chunks {pooled}"
        );
    }
    drop(clients);
}

/// More chunks arrive than a stream may queue while nobody reads: the
/// driver cancels the receive at the cap (TCP flow control then holds the
/// rest) and the next reads re-arm; every byte arrives in order.
#[test]
fn a_full_stream_queue_cancels_and_rearms_in_order() {
    let _w = common::watchdog("a_full_stream_queue_cancels_and_rearms", 30);
    let rt = runtime(256, 64);
    let (l, addr) = listener();
    let before = rt.metrics()[0];
    rt.block_on(async move {
        let mut c = StdStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        let (s, _) = l.accept().await.unwrap();
        c.write_all(&[byte(9, 0)]).unwrap();
        let first = s.recv_pooled().await.unwrap();
        assert_eq!(first[0], byte(9, 0));
        // 100 separate 10-byte messages, one CQE each, nobody reading.
        for m in 0..100usize {
            let msg: Vec<u8> = (0..10).map(|i| byte(9, 1 + m * 10 + i)).collect();
            c.write_all(&msg).unwrap();
            percore::time::sleep(Duration::from_micros(300)).await;
        }
        expect_bytes(&s, 9, 1, 1000).await;
    });
    if uring() {
        let m = rt.metrics()[0];
        assert!(
            m.multishot_backpressure > before.multishot_backpressure,
            "{m:?}"
        );
        assert!(m.recv_arms - before.recv_arms >= 2, "re-armed: {m:?}");
    }
}

/// Dropping `recv_pooled` futures at arbitrary points (a short timeout),
/// including while a receive into an owned buffer is in flight (the pool is
/// kept empty), loses no byte: the receive stays with the stream.
#[test]
fn dropped_receives_lose_no_byte() {
    let _w = common::watchdog("dropped_receives_lose_no_byte", 60);
    let rt = runtime(2, 64);
    let (l, addr) = listener();
    const BYTES: usize = 20_000;
    rt.block_on(async move {
        let client = std::thread::spawn(move || {
            let mut c = StdStream::connect(addr).unwrap();
            for k in 0..BYTES / 100 {
                let msg: Vec<u8> = (0..100).map(|i| byte(4, k * 100 + i)).collect();
                c.write_all(&msg).unwrap();
                std::thread::sleep(Duration::from_micros(50));
            }
            c
        });
        let (s, _) = l.accept().await.unwrap();
        // Hold every pooled chunk: the pool of 2 stays empty after two.
        let mut held = Vec::new();
        let mut got = 0;
        let mut timeouts = 0;
        while got < BYTES {
            match percore::time::timeout(Duration::from_micros(30), s.recv_pooled()).await {
                Ok(chunk) => {
                    let chunk = chunk.unwrap();
                    assert!(!chunk.is_empty(), "EOF after {got}");
                    for (k, b) in chunk.iter().enumerate() {
                        assert_eq!(*b, byte(4, got + k), "byte {}", got + k);
                    }
                    got += chunk.len();
                    if chunk.is_pooled() {
                        held.push(chunk);
                    }
                }
                Err(_) => timeouts += 1,
            }
        }
        assert_eq!(got, BYTES);
        assert!(timeouts > 0, "some receives were dropped mid-way");
        drop(client.join().unwrap());
    });
}

/// `read` after `recv_pooled` returns the queued bytes first, in pieces as
/// small as the caller's buffer.
#[test]
fn read_and_recv_pooled_mix_in_order() {
    let _w = common::watchdog("read_and_recv_pooled_mix_in_order", 30);
    let rt = runtime(8, 256);
    let (l, addr) = listener();
    rt.block_on(async move {
        let client = std::thread::spawn(move || {
            let mut c = StdStream::connect(addr).unwrap();
            let data: Vec<u8> = (0..5000).map(|i| byte(3, i)).collect();
            c.write_all(&data).unwrap();
            c
        });
        let (s, _) = l.accept().await.unwrap();
        let mut got = 0;
        let mut turn = 0;
        while got < 5000 {
            if turn % 2 == 0 {
                let chunk = s.recv_pooled().await.unwrap();
                for (k, b) in chunk.iter().enumerate() {
                    assert_eq!(*b, byte(3, got + k));
                }
                got += chunk.len();
            } else {
                let (r, buf) = s.read(Vec::with_capacity(7)).await;
                let n = r.unwrap();
                assert_eq!(
                    &buf[..n],
                    &(0..n).map(|k| byte(3, got + k)).collect::<Vec<_>>()[..]
                );
                got += n;
            }
            turn += 1;
        }
        assert_eq!(got, 5000);
        drop(client.join().unwrap());
    });
}

/// Buffers dropped on another thread go back to the pool: with a pool of
/// two, chunks sent away and dropped elsewhere do not starve later
/// receives.
#[test]
fn buffers_dropped_on_other_threads_return_to_the_pool() {
    let _w = common::watchdog("buffers_dropped_on_other_threads", 30);
    let rt = runtime(2, 64);
    let (l, addr) = listener();
    let before = rt.metrics()[0].recv_fallbacks;
    rt.block_on(async move {
        let mut c = StdStream::connect(addr).unwrap();
        let (s, _) = l.accept().await.unwrap();
        for round in 0..50usize {
            c.write_all(&[round as u8; 10]).unwrap();
            let chunk = s.recv_pooled().await.unwrap();
            assert_eq!(&chunk[..], &[round as u8; 10]);
            // Dropped on a plain thread.
            std::thread::spawn(move || drop(chunk)).join().unwrap();
        }
    });
    let fallbacks = rt.metrics()[0].recv_fallbacks - before;
    if uring() {
        assert_eq!(
            fallbacks, 0,
            "buffers returned from other threads are reused"
        );
    }
}

/// A stream dropped with chunks queued gives their buffers back: later
/// streams still receive into pooled buffers.
#[test]
fn a_dropped_stream_gives_its_queued_buffers_back() {
    let _w = common::watchdog("a_dropped_stream_gives_its_queued_buffers_back", 30);
    let rt = runtime(4, 64);
    let (l, addr) = listener();
    let pooled_last = rt.block_on(async move {
        let mut last = false;
        for round in 0..20usize {
            let mut c = StdStream::connect(addr).unwrap();
            let (s, _) = l.accept().await.unwrap();
            c.write_all(&[round as u8; 64]).unwrap();
            let first = s.recv_pooled().await.unwrap();
            last = first.is_pooled();
            drop(first);
            // Three more chunks queue up in the stream's pool buffers.
            for _ in 0..3 {
                c.write_all(&[1u8; 64]).unwrap();
                percore::time::sleep(Duration::from_millis(2)).await;
            }
            drop(s);
            percore::time::sleep(Duration::from_millis(5)).await;
        }
        last
    });
    if uring() {
        assert!(pooled_last, "the pool of 4 must not have leaked buffers");
    }
}

/// A stream armed on one runtime and read on another: its chunks come
/// through; once the first runtime is gone, it re-arms on the second; a
/// chunk kept past its runtime's end stays readable.
#[test]
fn a_stream_moved_to_another_runtime_keeps_receiving() {
    let _w = common::watchdog("a_stream_moved_to_another_runtime", 30);
    let a = runtime(8, 256);
    let b = runtime(8, 256);
    let (l, addr) = listener();
    let mut c = StdStream::connect(addr).unwrap();
    let s = Arc::new(a.block_on(async move { l.accept().await.unwrap().0 }));
    c.write_all(&(0..100).map(|i| byte(5, i)).collect::<Vec<_>>())
        .unwrap();
    let s1 = s.clone();
    let kept = a.block_on(async move {
        let chunk = s1.recv_pooled().await.unwrap();
        assert_eq!(chunk.len(), 100);
        chunk
    });
    c.write_all(&(100..300).map(|i| byte(5, i)).collect::<Vec<_>>())
        .unwrap();
    let s2 = s.clone();
    b.block_on(async move { expect_bytes(&s2, 5, 100, 200).await });
    drop(a);
    // The chunk outlived its runtime: its memory is still the pool's.
    assert!(kept.iter().enumerate().all(|(i, b)| *b == byte(5, i)));
    drop(kept);
    let s3 = s.clone();
    let data: Vec<u8> = (0..50).map(|i| byte(6, i)).collect();
    c.write_all(&data).unwrap();
    b.block_on(async move { expect_bytes(&s3, 6, 0, 50).await });
    if uring() {
        assert!(b.metrics()[0].recv_arms >= 1, "re-armed on b");
    }
}
