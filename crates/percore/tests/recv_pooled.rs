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
    (c.wrapping_mul(131) ^ i.wrapping_mul(7) ^ (i >> 8)) as u8
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
/// never loses or reorders data, never spins).
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
            let data: Vec<u8> = (0..BYTES).map(|i| byte(c, i)).collect();
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
            v.push((s, first));
        }
        v
    });
    let clients = clients.join().unwrap();
    let streams = Arc::new(streams);
    let st = streams.clone();
    rt.block_on(async move {
        for (s, first) in st.iter() {
            // Which client is this? Its first byte's pattern says.
            let c = (0..conns)
                .find(|&c| {
                    byte(c, 0) == first[0] && (1..first.len()).all(|i| byte(c, i) == first[i])
                })
                .expect("a known client");
            // The rest after `first`.
            let mut got = first.len();
            while got < BYTES {
                let chunk = s.recv_pooled().await.unwrap();
                assert!(!chunk.is_empty(), "client {c}: EOF after {got}");
                for (k, b) in chunk.iter().enumerate() {
                    assert_eq!(*b, byte(c, got + k), "client {c}, byte {}", got + k);
                }
                got += chunk.len();
            }
            assert_eq!(got, BYTES);
        }
    });
    let m = rt.metrics()[0];
    if uring() {
        assert!(
            m.recv_fallbacks > before.recv_fallbacks,
            "{conns} connections must exhaust 16 buffers: {m:?}"
        );
    }
    drop((clients, streams));
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
