//! An SQE must never outlive its fd number (DESIGN invariant 7, PITFALLS 16).
//!
//! The interleaving, on one worker: an op on socket `v` (fd number N) is
//! polled once, so its SQE waits in the submission queue for the loop's next
//! `io_uring_enter`; in the same pass the op's future and `v` are dropped,
//! and a new socket is opened. The kernel gives the new socket the lowest
//! free number; if N was closed, that is N. When the loop then submits the
//! stale SQE, the kernel resolves N to the new socket: a send delivers the
//! old connection's bytes to an unrelated peer, a recv eats a new client's
//! bytes, an accept steals a connection.
//!
//! Each scenario fills every free number below N first, so that if N is
//! free the new socket gets exactly N. It then asserts either that the new
//! socket did get N (the dangerous case was really built) or that N was
//! still held open by the op (the fix: the op shares ownership of the fd).
//! Either way the bytes must reach the right peer.
//!
//! One test function on purpose: fd numbers are process-wide, and other
//! tests running in parallel in this binary would take them.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use common::*;
use percore::net::{TcpListener, TcpStream};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Whether fd number `fd` is open in this process.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Takes every free fd number below `n`, so the next socket gets `n` if it
/// is free. The files are closed when the returned vector is dropped.
fn fill_below(n: RawFd) -> Vec<File> {
    let mut held = Vec::new();
    loop {
        let f = File::open("/dev/null").unwrap();
        if f.as_raw_fd() >= n {
            return held; // drops `f`: n (or the first free one above) is free again
        }
        held.push(f);
    }
}

/// The number was reused (the dangerous case), or the op still holds it.
fn check_scenario(name: &str, n: RawFd, new_fd: RawFd, held_open: bool) {
    assert!(
        new_fd == n || held_open,
        "{name}: fd {n} was free but the new socket got {new_fd}: the test did not build the case"
    );
}

#[test]
fn a_queued_op_never_reaches_a_socket_that_reused_its_fd_number() {
    let _w = watchdog("fd_reuse", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        for round in 0..5 {
            stale_send(round).await;
            stale_recv(round).await;
            stale_accept(round).await;
        }
    });
}

async fn stale_send(round: usize) {
    let a = TcpListener::bind(loopback()).unwrap();
    let b = StdListener::bind(loopback()).unwrap();
    let v = TcpStream::connect(a.local_addr().unwrap()).await.unwrap();
    let (a_peer, _) = a.accept().await.unwrap();
    let n = v.as_raw_fd();

    let mut write = Box::pin(v.write(b"SECRET".to_vec()));
    assert!(poll_once(&mut write).await.is_pending() || cfg_epoll());
    drop(write);
    drop(v);
    let held = fill_below(n);
    let held_open = is_open(n);
    let fresh = StdStream::connect(b.local_addr().unwrap()).unwrap();
    check_scenario("send", n, fresh.as_raw_fd(), held_open);
    drop(held);
    // The loop's next enter submits whatever is queued.
    percore::nop().await.unwrap();
    percore::nop().await.unwrap();

    let (mut b_peer, _) = b.accept().unwrap();
    b_peer
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = [0u8; 16];
    match b_peer.read(&mut got) {
        Ok(0) => {}
        Ok(k) => panic!(
            "round {round}: a stale send on reused fd {n} delivered {:?} to the wrong peer",
            String::from_utf8_lossy(&got[..k])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    // The right peer got the bytes, or nothing if the send was cancelled.
    let mut all = Vec::new();
    loop {
        let (r, buf) = a_peer.read(Vec::with_capacity(64)).await;
        let k = r.unwrap();
        if k == 0 {
            break;
        }
        all.extend_from_slice(&buf[..k]);
    }
    assert!(all.is_empty() || all == b"SECRET", "round {round}: {all:?}");
    drop(fresh);
}

async fn stale_recv(round: usize) {
    let a = TcpListener::bind(loopback()).unwrap();
    let b = StdListener::bind(loopback()).unwrap();
    let v = TcpStream::connect(a.local_addr().unwrap()).await.unwrap();
    let (_a_peer, _) = a.accept().await.unwrap();
    let n = v.as_raw_fd();

    let mut read = Box::pin(v.read(Vec::with_capacity(64)));
    assert!(poll_once(&mut read).await.is_pending());
    drop(read);
    drop(v);
    let held = fill_below(n);
    let held_open = is_open(n);
    let mut fresh = StdStream::connect(b.local_addr().unwrap()).unwrap();
    check_scenario("recv", n, fresh.as_raw_fd(), held_open);
    drop(held);
    let (mut b_peer, _) = b.accept().unwrap();
    b_peer.write_all(b"HELLO").unwrap();
    percore::nop().await.unwrap();
    percore::nop().await.unwrap();

    fresh
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = [0u8; 16];
    let k = fresh.read(&mut got).unwrap_or_else(|e| {
        panic!("round {round}: the new client's bytes were eaten by a stale recv on fd {n}: {e}")
    });
    assert_eq!(&got[..k], b"HELLO", "round {round}");
}

async fn stale_accept(round: usize) {
    let l = TcpListener::bind(loopback()).unwrap();
    let n = l.as_raw_fd();
    let mut accept = Box::pin(l.accept());
    assert!(poll_once(&mut accept).await.is_pending());
    drop(accept);
    drop(l);
    let held = fill_below(n);
    let held_open = is_open(n);
    let l2 = StdListener::bind(loopback()).unwrap();
    check_scenario("accept", n, l2.as_raw_fd(), held_open);
    drop(held);
    let _client = StdStream::connect(l2.local_addr().unwrap()).unwrap();
    percore::nop().await.unwrap();
    percore::nop().await.unwrap();

    l2.set_nonblocking(true).unwrap();
    let start = Instant::now();
    loop {
        match l2.accept() {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    start.elapsed() < Duration::from_millis(500),
                    "round {round}: a stale accept on fd {n} stole the new listener's connection"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn cfg_epoll() -> bool {
    driver() == percore::Driver::Epoll
}
