//! Multishot accept (`driver/uring/multishot.rs`, `driver/uring/accept.rs`):
//! one SQE for many connections; re-armed after the kernel ends it (fd
//! exhaustion) and after backpressure cancels it; no connection lost or
//! leaked when the queue fills, when the listener is dropped with
//! connections queued, or when its accepting future moves to another
//! runtime. On epoll the same tests check the same outcomes (and that no
//! multishot op was armed).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use percore::net::TcpListener;
use percore::Driver;

fn uring() -> bool {
    common::driver() == Driver::IoUring
}

/// Connects `n` std clients, each sending its index as 4 bytes.
fn clients(addr: SocketAddr, n: u32) -> Vec<StdStream> {
    (0..n)
        .map(|i| {
            let mut c = StdStream::connect(addr).expect("connect");
            c.write_all(&i.to_le_bytes()).unwrap();
            c
        })
        .collect()
}

/// Accepts `n` connections and returns the indices they sent, sorted.
async fn accept_indices(l: &TcpListener, n: usize) -> Vec<u32> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let (s, peer) = l.accept().await.expect("accept");
        assert!(peer.ip().is_loopback(), "peer address {peer}");
        assert_eq!(s.peer_addr().unwrap(), peer);
        let (r, buf) = s.read(vec![0u8; 4]).await;
        assert_eq!(r.unwrap(), 4, "each client sends 4 bytes");
        seen.push(u32::from_le_bytes(buf[..4].try_into().unwrap()));
    }
    seen.sort_unstable();
    seen
}

#[test]
fn one_sqe_accepts_many_connections() {
    let _w = common::watchdog("one_sqe_accepts_many_connections", 30);
    let rt = common::runtime(1, 64);
    let l = Arc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
    let addr = l.local_addr().unwrap();
    let before = rt.metrics()[0];
    let client = std::thread::spawn(move || clients(addr, 50));
    let seen = rt.block_on(async move { accept_indices(&l, 50).await });
    assert_eq!(seen, (0..50).collect::<Vec<_>>(), "every connection, once");
    let m = rt.metrics()[0];
    let arms = m.accept_arms - before.accept_arms;
    if uring() {
        assert_eq!(arms, 1, "one multishot SQE for 50 connections");
    } else {
        assert_eq!(arms, 0);
    }
    drop(client.join().unwrap());
}

/// More connections arrive than the queue holds while nobody accepts: the
/// driver cancels the op at the cap, the rest wait in the kernel's backlog,
/// and the next accepts re-arm; every connection arrives exactly once.
#[test]
fn a_full_queue_cancels_and_rearms_without_losing_a_connection() {
    let _w = common::watchdog("a_full_queue_cancels_and_rearms", 60);
    let rt = common::runtime(1, 64);
    let l = Arc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
    let addr = l.local_addr().unwrap();
    let before = rt.metrics()[0];
    let n: u32 = 400;
    let all = rt.block_on(async move {
        // Arm the op with a first connection, then let 399 more arrive
        // while this task sleeps.
        let first = std::thread::spawn(move || clients(addr, 1));
        let mut seen = accept_indices(&l, 1).await;
        let keep = first.join().unwrap();
        let rest = std::thread::spawn(move || {
            let mut v = Vec::new();
            for i in 1..n {
                let mut c = StdStream::connect(addr).expect("connect");
                c.write_all(&i.to_le_bytes()).unwrap();
                v.push(c);
            }
            v
        });
        // The clients' connects complete from the kernel's backlog whether
        // or not anybody accepts; wait until all of them are connected.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !rest.is_finished() && Instant::now() < deadline {
            percore::time::sleep(Duration::from_millis(10)).await;
        }
        percore::time::sleep(Duration::from_millis(50)).await;
        seen.extend(accept_indices(&l, n as usize - 1).await);
        seen.sort_unstable();
        (seen, keep, rest.join().unwrap())
    });
    assert_eq!(all.0, (0..n).collect::<Vec<_>>(), "every connection, once");
    let m = rt.metrics()[0];
    if uring() {
        // The op ended (cancelled at the cap of 128, or ended by the kernel
        // when a burst filled the CQ) and was re-armed.
        assert!(m.accept_arms - before.accept_arms >= 2, "re-armed: {m:?}");
    }
}

/// Dropping a listener with connections accepted by the kernel but not yet
/// handed out closes them (their clients see the end) and releases the
/// listening socket: its port can be bound again.
#[test]
fn dropping_a_listener_closes_its_queued_connections_and_frees_the_port() {
    let _w = common::watchdog("dropping_a_listener_closes_its_queued", 30);
    let rt = common::runtime(1, 64);
    let l = Arc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
    let addr = l.local_addr().unwrap();
    let mut queued = rt.block_on(async move {
        let first = std::thread::spawn(move || clients(addr, 1));
        accept_indices(&l, 1).await;
        drop(first.join().unwrap());
        let queued = clients(addr, 5);
        // Let the multishot op take them into the listener's queue.
        percore::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(Arc::strong_count(&l), 1);
        drop(l);
        // One loop pass for the cancel to be submitted and its CQE reaped.
        percore::time::sleep(Duration::from_millis(100)).await;
        queued
    });
    for c in &mut queued {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a queued connection must be closed, got {other:?}"),
        }
    }
    // No leaked clone of the listening socket holds the port.
    let again = std::net::TcpListener::bind(addr);
    assert!(again.is_ok(), "port {addr} still held: {again:?}");
    drop(rt);
}

/// A listener armed on one runtime's ring, then accepting on another: the
/// results come through the shared queue; once the first runtime is gone,
/// the listener re-arms on the second.
#[test]
fn a_listener_moved_to_another_runtime_keeps_accepting() {
    let _w = common::watchdog("a_listener_moved_to_another_runtime", 30);
    let a = common::runtime(1, 64);
    let b = common::runtime(1, 64);
    let l = Arc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
    let addr = l.local_addr().unwrap();
    let c1 = std::thread::spawn(move || clients(addr, 1));
    let la = l.clone();
    assert_eq!(
        a.block_on(async move { accept_indices(&la, 1).await }),
        vec![0]
    );
    let _c1 = c1.join().unwrap();
    // Armed on `a`; accepted on `b`.
    let c2 = std::thread::spawn(move || clients(addr, 3));
    let lb = l.clone();
    assert_eq!(
        b.block_on(async move { accept_indices(&lb, 3).await }),
        vec![0, 1, 2]
    );
    let _c2 = c2.join().unwrap();
    drop(a);
    let c3 = std::thread::spawn(move || clients(addr, 2));
    let lb = l.clone();
    assert_eq!(
        b.block_on(async move { accept_indices(&lb, 2).await }),
        vec![0, 1]
    );
    let _c3 = c3.join().unwrap();
    if uring() {
        assert_eq!(
            b.metrics()[0].accept_arms,
            1,
            "re-armed on b once a was gone"
        );
    }
}

/// Out of fds, accept fails with `EMFILE` (the kernel ends a multishot op
/// with it); once fds are free again the next accept succeeds (re-armed).
/// Runs in a child process, whose `RLIMIT_NOFILE` it lowers.
#[test]
fn accept_recovers_after_fd_exhaustion() {
    const CHILD: &str = "PERCORE_EMFILE_CHILD";
    if std::env::var(CHILD).is_err() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "accept_recovers_after_fd_exhaustion",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    std::mem::forget(common::watchdog("emfile child", 30));
    let rt = common::runtime(1, 64);
    let l = Arc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
    let addr = l.local_addr().unwrap();
    // The clients share this process's fd table: connect them first, fill
    // every free fd number below the highest one open, then lower the limit
    // to two above it, so the server side can take exactly two of the 16
    // connections before it runs out of fds.
    const N: usize = 16;
    let cs = clients(addr, N as u32);
    let mut highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let mut fillers = Vec::new();
    loop {
        let f = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f) as u64;
        fillers.push(f);
        if fd >= highest {
            highest = fd;
            break;
        }
    }
    let lim = libc::rlimit {
        rlim_cur: highest + 1 + 2,
        rlim_max: highest + 1 + 64,
    };
    // SAFETY: setrlimit with a valid rlimit value.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let m0 = rt.metrics()[0];
    let l2 = l.clone();
    let mut held = rt.block_on(async move {
        let l = l2;
        let mut held = Vec::new();
        let err = loop {
            match l.accept().await {
                Ok((s, _)) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() <= 2, "the fd limit must stop accept");
        };
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
        held
    });
    let taken = held.len();
    assert_eq!(taken, 2, "exactly two fd numbers were free");
    // Free those two fds: the remaining 14 connections are all accepted.
    // On io_uring the multishot op takes connections ahead of the caller
    // (two fds, then EMFILE again); each EMFILE is returned and the next
    // call re-arms, so the caller makes progress two at a time.
    held.clear();
    let got = rt.block_on(async move {
        let (mut got, mut emfile) = (0, 0);
        while got < N - taken {
            match percore::time::timeout(Duration::from_secs(5), l.accept()).await {
                Ok(Ok(_)) => got += 1,
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EMFILE) && emfile < 100 => emfile += 1,
                other => panic!("accept after freeing fds: {other:?}"),
            }
        }
        got
    });
    assert_eq!(got, N - taken, "no connection lost to EMFILE");
    if uring() {
        let arms = rt.metrics()[0].accept_arms - m0.accept_arms;
        assert!(arms >= 2, "re-armed after EMFILE ended the op: {arms}");
    }
    drop((cs, fillers));
}
