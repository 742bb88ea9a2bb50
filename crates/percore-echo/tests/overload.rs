//! The echo server under overload, as a real process: `--max-conns` closes
//! connections past the limit at once and keeps serving the others;
//! `--idle-timeout` closes silent and slow clients but not busy ones;
//! `--block-us/--block-every` (inline or `--offload`) still echoes every
//! byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::*;

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One round trip; false if the server closed the connection instead.
fn echoes(s: &mut TcpStream, msg: &[u8]) -> bool {
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut back = vec![0u8; msg.len()];
    match s.read_exact(&mut back) {
        Ok(()) => {
            assert_eq!(back, msg);
            true
        }
        Err(_) => false,
    }
}

/// Whether the server has closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected byte"),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

fn counter(err: &str, name: &str) -> u64 {
    err.lines()
        .filter_map(|l| {
            l.split_once(&format!(" {name}"))?
                .0
                .rsplit(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn max_conns_closes_connections_past_the_limit_and_keeps_the_others() {
    let server = Server::start(&["--workers", "2", "--max-conns", "5"]);
    let mut kept: Vec<TcpStream> = (0..5).map(|_| connect(server.addr)).collect();
    for (i, s) in kept.iter_mut().enumerate() {
        assert!(echoes(s, format!("hello {i}").as_bytes()), "connection {i}");
    }
    for i in 0..5 {
        let mut extra = connect(server.addr);
        assert!(
            closed_within(&mut extra, Duration::from_secs(5)),
            "connection {} past --max-conns 5 stayed open",
            6 + i
        );
    }
    for (i, s) in kept.iter_mut().enumerate() {
        assert!(echoes(s, b"still here"), "connection {i} after the storm");
    }
    // A slot frees up: the next connection is served.
    drop(kept.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(server.addr);
        if echoes(&mut s, b"again") {
            break;
        }
        assert!(Instant::now() < deadline, "no slot ever freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(kept);
    let err = server.stop();
    assert!(counter(&err, "refused") >= 5, "stderr:\n{err}");
}

#[test]
fn idle_timeout_closes_silent_and_slow_clients_but_not_busy_ones() {
    let server = Server::start(&["--workers", "1", "--idle-timeout", "1"]);
    let mut silent = connect(server.addr);
    let mut slow = connect(server.addr);
    let mut busy = connect(server.addr);
    // The busy client talks every 200 ms; the slow one once at the start
    // and again after 1.6 s (more than the idle timeout in between).
    assert!(echoes(&mut slow, b"s"), "the slow client's first byte");
    let mut slow_closed = false;
    for tick in 1..=15 {
        std::thread::sleep(Duration::from_millis(200));
        assert!(echoes(&mut busy, b"b"), "the busy client was closed");
        if tick == 8 {
            slow_closed = !echoes(&mut slow, b"s");
        }
    }
    assert!(
        closed_within(&mut silent, Duration::from_secs(2)),
        "the silent client is still open after 3 s with --idle-timeout 1"
    );
    assert!(
        slow_closed || closed_within(&mut slow, Duration::from_secs(2)),
        "the slow client is still open"
    );
    assert!(echoes(&mut busy, b"last"));
    drop(busy);
    let err = server.stop();
    assert!(counter(&err, "idle closed") >= 2, "stderr:\n{err}");
}

#[test]
fn blocking_every_message_inline_or_offloaded_still_echoes_every_byte() {
    let mut inline_stalls = 0;
    for offload in [false, true] {
        let mut args = vec![
            "--workers",
            "1",
            "--block-us",
            "2000",
            "--block-every",
            "2",
            "--stall-ms",
            "1.5",
        ];
        if offload {
            args.push("--offload");
        }
        let server = Server::start(&args);
        let mut s = connect(server.addr);
        for i in 0..40u32 {
            assert!(echoes(&mut s, &i.to_le_bytes()), "message {i}");
            // A pause before the next message, so that the server's read
            // after each echo finds nothing and its poll ends there: one
            // blocking call per poll at most. (Without it, on epoll the
            // next message could already be there and one poll echoed
            // many, with all their blocking calls: a clean-clone CI run saw
            // 20 inline calls in 6 polls, 2 stalls.)
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(s);
        let err = server.stop();
        let blocked = counter(&err, "blocking calls");
        assert!(blocked >= 20, "offload {offload}: stderr:\n{err}");
        // --stall-ms 1.5 under 2 ms sleeps: inline, the polls that block
        // are stalls (and reported); offloaded, none of them is, only
        // scheduling noise of a loaded machine. (On epoll one poll can echo
        // several messages when the next one is already there, so there
        // may be fewer stalls than blocking calls.)
        let stalls = counter(&err, "stalls");
        if offload {
            assert!(
                stalls * 2 <= inline_stalls,
                "offloaded: {stalls} stalls, inline {inline_stalls}; stderr:\n{err}"
            );
        } else {
            assert!(stalls >= 5, "inline: {stalls} stalls; stderr:\n{err}");
            assert!(err.contains("without yielding"), "stderr:\n{err}");
            inline_stalls = stalls;
        }
        assert_eq!(
            counter(&err, "offloaded") > 0,
            offload,
            "offload {offload}: stderr:\n{err}"
        );
    }
}

#[test]
fn overload_flags_reject_nonsense_clearly() {
    for (args, what) in [
        (vec!["--max-conns", "0"], "--max-conns"),
        (vec!["--idle-timeout", "-1"], "--idle-timeout"),
        (vec!["--block-every", "0"], "--block-every"),
        (vec!["--offload"], "--block-us"),
    ] {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(what), "{args:?}: {err}");
    }
}

/// Out of file descriptors (RLIMIT_NOFILE 64, then 100 connections): the
/// connections it has keep being served, it does not spin while accepts
/// fail, and once connections close it accepts the waiting ones.
#[test]
fn out_of_fds_it_keeps_serving_does_not_spin_and_recovers() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--driver",
        driver_arg(),
        "--workers",
        "1",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
    // child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start percore-echo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let server = Server { child, addr };
    let pid = server.child.id();

    let mut conns: Vec<TcpStream> = (0..100).map(|_| connect(addr)).collect();
    // The first ones are served (fds for the runtime itself come first).
    for (i, s) in conns.iter_mut().take(20).enumerate() {
        assert!(echoes(s, b"early"), "connection {i}");
    }
    // Saturated: accepts fail with EMFILE. Over a second, the server
    // must not burn a core retrying.
    std::thread::sleep(Duration::from_millis(300));
    let before = stat_cpu(&format!("/proc/{pid}/stat"));
    std::thread::sleep(Duration::from_secs(1));
    let used = stat_cpu(&format!("/proc/{pid}/stat")) - before;
    eprintln!("CPU while out of fds: {used:?} in 1 s");
    assert!(
        used < Duration::from_millis(300),
        "spent {used:?} of CPU in 1 s while out of fds"
    );
    for (i, s) in conns.iter_mut().take(20).enumerate() {
        assert!(echoes(s, b"still"), "connection {i} while out of fds");
    }
    // Close the first 60 (at most ~56 were accepted under 64 fds): every
    // one of the 40 left, most of them waiting in the backlog, is served.
    conns.drain(..60);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut served = 0;
    for s in conns.iter_mut() {
        while !echoes(s, b"late") {
            assert!(
                Instant::now() < deadline,
                "a waiting connection never got served"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        served += 1;
    }
    assert_eq!(served, 40);
    drop(conns);
    server.stop_quietly();
}
