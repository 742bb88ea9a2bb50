//! `recv_pooled` when the worker's buffer pool is exhausted: a connection
//! waiting for data must not hold memory for it. Under 10,000 idle
//! connections an owned buffer per waiting receive is 40 MiB; the pool
//! exists so that idle connections hold none.
//!
//! Its own binary: a global allocator counts live heap bytes, which other
//! tests running at the same time would disturb.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::TcpStream as StdStream;
use std::sync::atomic::{AtomicIsize, Ordering::SeqCst};
use std::time::Duration;

use common::*;
use percore::net::{TcpListener, TcpStream};
use percore::time::{sleep, timeout};
use percore::{Driver, RecvBuf, Runtime};
use std::sync::Arc;

struct Live;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Live {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, SeqCst);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, SeqCst);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, SeqCst);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Live = Live;

const IDLE: usize = 64;

/// The live-byte count is process-wide: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

type Held = (Vec<RecvBuf>, Vec<(StdStream, TcpStream)>);

/// Drains an 8-buffer pool: connections each with one received chunk kept.
async fn drain(l: &TcpListener, addr: std::net::SocketAddr) -> Held {
    let mut held = Vec::new();
    let mut keep = Vec::new();
    while held.iter().filter(|c: &&RecvBuf| c.is_pooled()).count() < 8 {
        let mut c = StdStream::connect(addr).unwrap();
        let (s, _) = l.accept().await.unwrap();
        c.write_all(b"x").unwrap();
        held.push(s.recv_pooled().await.unwrap());
        keep.push((c, s));
    }
    (held, keep)
}

fn small_pool() -> Runtime {
    Runtime::builder()
        .workers(1)
        .ring_entries(256)
        .recv_buffers(8, BUF)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("runtime")
}
const BUF: u32 = 4096;

/// The pool is drained (its buffers held by the application); 64 more
/// connections then wait in `recv_pooled` with no data. They wait without
/// an owned buffer each, and once data comes every byte arrives, in order.
#[test]
fn waiting_on_an_exhausted_pool_holds_no_buffer_and_loses_no_byte() {
    if driver() != Driver::IoUring {
        return; // the pool is io_uring's; epoll reads into owned buffers
    }
    let _s = serial();
    let _w = watchdog("exhausted pool", 60);
    let rt = small_pool();
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let (growth, clients, tasks, held) = rt.block_on(async move {
        // Drain the pool: 8 connections, one received chunk kept from each.
        let mut held = Vec::new();
        let mut keep = Vec::new();
        while held
            .iter()
            .filter(|c: &&percore::RecvBuf| c.is_pooled())
            .count()
            < 8
        {
            let mut c = StdStream::connect(addr).unwrap();
            let (s, _) = l.accept().await.unwrap();
            c.write_all(b"x").unwrap();
            held.push(s.recv_pooled().await.unwrap());
            keep.push((c, s));
        }
        let before = LIVE.load(SeqCst);
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..IDLE {
            clients.push(StdStream::connect(addr).unwrap());
            let (s, _) = l.accept().await.unwrap();
            tasks.push(percore::spawn(async move {
                let mut got = Vec::new();
                while got.len() < 100 {
                    let c = s.recv_pooled().await.expect("recv_pooled");
                    assert!(!c.is_empty(), "EOF on connection {i}");
                    got.extend_from_slice(&c);
                }
                got
            }));
        }
        // Every task is now parked in its receive.
        percore::time::sleep(Duration::from_millis(100)).await;
        let growth = LIVE.load(SeqCst) - before;
        (growth, clients, tasks, (held, keep))
    });
    let per_conn = growth / IDLE as isize;
    assert!(
        per_conn < 2048,
        "{per_conn} heap bytes per idle connection waiting on an empty pool \
         (an owned {BUF}-byte buffer each?)"
    );
    // Data for every waiting connection, then the held buffers go back.
    for (i, mut c) in clients.into_iter().enumerate() {
        let msg: Vec<u8> = (0..100).map(|k| (i * 7 + k) as u8).collect();
        c.write_all(&msg).unwrap();
        std::mem::forget(c); // kept open until the process ends
    }
    drop(held);
    for (i, t) in tasks.into_iter().enumerate() {
        let got = rt.block_on(t).expect("task");
        let want: Vec<u8> = (0..100).map(|k| (i * 7 + k) as u8).collect();
        assert_eq!(got, want, "connection {i}");
    }
}

/// Two tasks wait in `recv_pooled` on one stream while the pool is low
/// (one of them on the readiness wait, the other registered beside it).
/// The pool recovers and bytes come: the receive re-arms, and both tasks
/// still get a chunk: the one not polling the wait must be woken too.
#[test]
fn every_waiter_wakes_when_readiness_rearms() {
    if driver() != Driver::IoUring {
        return;
    }
    let _s = serial();
    let _w = watchdog("rearm waiters", 60);
    let rt = small_pool();
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    rt.block_on(async move {
        let (held, _keep) = drain(&l, addr).await;
        let mut c = StdStream::connect(addr).unwrap();
        let s = Arc::new(l.accept().await.unwrap().0);
        let (a, b) = (s.clone(), s.clone());
        let t1 = percore::spawn(async move { a.recv_pooled().await.unwrap().to_vec() });
        sleep(Duration::from_millis(50)).await;
        let t2 = percore::spawn(async move { b.recv_pooled().await.unwrap().to_vec() });
        sleep(Duration::from_millis(50)).await;
        drop(held);
        c.write_all(b"a").unwrap();
        sleep(Duration::from_millis(100)).await;
        c.write_all(b"b").unwrap();
        let x = timeout(Duration::from_secs(5), t1).await.expect("t1 hung");
        let y = timeout(Duration::from_secs(5), t2).await.expect("t2 hung");
        let mut got = [x.unwrap(), y.unwrap()];
        got.sort();
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    });
}

/// As above, but the pool stays low and the peer resets the connection:
/// both waiters finish (an error or the end), neither hangs.
#[test]
fn every_waiter_wakes_when_a_reset_ends_the_wait() {
    if driver() != Driver::IoUring {
        return;
    }
    let _s = serial();
    let _w = watchdog("reset waiters", 60);
    let rt = small_pool();
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    rt.block_on(async move {
        let (_held, _keep) = drain(&l, addr).await;
        let c = StdStream::connect(addr).unwrap();
        let s = Arc::new(l.accept().await.unwrap().0);
        let (a, b) = (s.clone(), s.clone());
        let t1 = percore::spawn(async move { a.recv_pooled().await.map(|c| c.len()) });
        sleep(Duration::from_millis(50)).await;
        let t2 = percore::spawn(async move { b.recv_pooled().await.map(|c| c.len()) });
        sleep(Duration::from_millis(50)).await;
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c);
        let x = timeout(Duration::from_secs(5), t1).await.expect("t1 hung");
        let y = timeout(Duration::from_secs(5), t2).await.expect("t2 hung");
        for r in [x.unwrap(), y.unwrap()] {
            assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        }
    });
}
