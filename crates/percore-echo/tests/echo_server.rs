//! The echo server as a real process: concurrent clients with random
//! payloads get every byte back in order, both workers' listeners serve
//! connections, bad flags and busy ports fail with one clear line, and
//! SIGTERM drains and exits cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

mod common;

use common::*;

/// Kills the test process if it runs too long (a hang must fail, not stall).
fn watchdog(secs: u64) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        for _ in 0..secs * 10 {
            std::thread::sleep(Duration::from_millis(100));
            if d.load(SeqCst) {
                return;
            }
        }
        eprintln!("watchdog: echo test still running after {secs} s");
        std::process::abort();
    });
    done
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// FNV-1a, to compare what came back with what was sent.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// One client: a few random payloads of 1 B–256 KiB, written by one thread
/// while another reads the echo back; returns bytes verified.
fn client(addr: SocketAddr, seed: u64) -> usize {
    let mut rng = Rng(seed | 1);
    let messages = 1 + (rng.next() % 3) as usize;
    let mut payload = Vec::new();
    for _ in 0..messages {
        let len = 1 + (rng.next() % (256 * 1024)) as usize;
        payload.extend((0..len).map(|_| rng.next() as u8));
    }
    let expect = hash(&payload);
    let total = payload.len();
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&payload).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::with_capacity(total);
    (&s).read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), total, "client {seed}: length differs");
    assert_eq!(hash(&back), expect, "client {seed}: bytes differ");
    total
}

#[test]
fn two_hundred_concurrent_clients_get_every_byte_back_from_both_workers() {
    let done = watchdog(240);
    let server = Server::start(&["--workers", "2"]);
    let addr = server.addr;
    let clients: Vec<_> = (0..200u64)
        .map(|i| std::thread::spawn(move || client(addr, 0x9e37_79b9 * (i + 1))))
        .collect();
    let bytes: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(bytes > 200);
    let err = server.stop();
    let per_worker: Vec<u64> = err
        .lines()
        .filter_map(|l| l.strip_prefix("percore-echo: worker "))
        .filter_map(|l| l.split_once(": ")?.1.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(per_worker.len(), 2, "stderr:\n{err}");
    assert_eq!(per_worker.iter().sum::<u64>(), 200, "stderr:\n{err}");
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both listeners serve: {per_worker:?}"
    );
    let named = if driver_arg() == "epoll" {
        "epoll"
    } else {
        "io_uring single_issuer"
    };
    assert!(
        err.contains(named),
        "start-up lines name the driver:\n{err}"
    );
    done.store(true, SeqCst);
}

#[test]
fn silent_and_resetting_clients_do_not_disturb_others() {
    let done = watchdog(60);
    let server = Server::start(&["--workers", "2"]);
    let silent: Vec<_> = (0..20)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    for _ in 0..20 {
        let s = TcpStream::connect(server.addr).unwrap();
        (&s).write_all(b"abc").unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    }
    assert_eq!(client(server.addr, 5), client(server.addr, 5));
    drop(silent);
    server.stop();
    done.store(true, SeqCst);
}

/// Reads `child`'s stderr on a thread, line by line, so a test can wait for
/// a line while the process runs.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (up to `within`) for a line of `lines` that contains `what`;
/// returns every line read so far, that one last.
fn wait_for_line(lines: &mpsc::Receiver<String>, what: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(what);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(e) => panic!("no stderr line with {what:?} ({e:?}); stderr so far:\n{seen:#?}"),
        }
    }
}

#[test]
fn sigterm_lets_open_connections_finish_within_the_drain_timeout() {
    let done = watchdog(60);
    let mut server = Server::start(&["--workers", "1", "--drain-timeout", "5"]);
    let lines = stderr_lines(&mut server.child);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"before").unwrap();
    let mut b = [0u8; 6];
    s.read_exact(&mut b).unwrap();
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    // The signal has landed once the server says it drains (however slow
    // the machine: up to 10 s).
    let mut err = wait_for_line(&lines, "draining", Duration::from_secs(10));
    // Still served while draining.
    s.write_all(b"during").unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"during");
    // The listener goes (its accept task is aborted just after that line):
    // new connections are refused. A connection made before it closed is
    // reset with the listener.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(server.addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            r => assert!(
                Instant::now() < deadline,
                "connections still accepted 10 s after the drain began: {r:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(s);
    // With the last connection closed the drain ends early: the server
    // exits well within the drain timeout, cleanly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM with no connection open"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    err.extend(lines.iter());
    let err = err.join("\n");
    assert!(status.success(), "exit {status:?}; stderr:\n{err}");
    assert!(
        err.contains("percore-echo: worker 0: ") && !err.contains("still open"),
        "{err}"
    );
    done.store(true, SeqCst);
}

#[test]
fn bad_flags_and_busy_ports_fail_with_one_clear_line() {
    let out = Command::new(BIN)
        .args(["--listen", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'nonsense'"));

    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--workers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("already in use") && err.contains(&addr),
        "{err}"
    );

    // Another percore-echo on the port is refused too (no silent SO_REUSEPORT join).
    let first = Server::start(&["--workers", "1"]);
    let out = Command::new(BIN)
        .args(["--listen", &first.addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    first.stop();
}

#[test]
fn accept_on_one_worker_still_serves_everyone_and_bad_counts_fail_clearly() {
    let done = watchdog(120);
    let out = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--accept-on",
            "3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--accept-on 3") && err.contains("1..=2"),
        "{err}"
    );

    // One listener, CPU work per message: the other worker has no listener,
    // so it runs connection tasks only if it steals them. With stealing on
    // it must (and every byte still comes back); with --no-steal it must not.
    for steal in [true, false] {
        let mut args = vec!["--workers", "2", "--accept-on", "1", "--work-us", "200"];
        if !steal {
            args.push("--no-steal");
        }
        let server = Server::start(&args);
        let addr = server.addr;
        let clients: Vec<_> = (0..40u64)
            .map(|i| std::thread::spawn(move || client(addr, 0x51_7cc1 * (i + 1))))
            .collect();
        let bytes: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
        assert!(bytes > 40);
        let cpu = worker_cpu(server.child.id());
        let err = server.stop();
        assert!(
            err.contains("no listener (serves stolen connections)"),
            "stderr:\n{err}"
        );
        assert!(
            err.contains("percore-echo: worker 0: 40 connections"),
            "stderr:\n{err}"
        );
        assert_eq!(cpu.len(), 2, "two worker threads: {cpu:?}");
        // Worker 0 accepts and serves, so the quieter thread is worker 1, or
        // both are busy. Its CPU time says whether it ran connections: each
        // message echoed burns 200 µs, ~160 ms in all; a stealing worker 1
        // ran 40..90 ms of that in trials (loaded or not), an idle one uses
        // well under 1 ms.
        let quieter = *cpu.iter().min().unwrap();
        if steal {
            assert!(
                quieter >= Duration::from_millis(10),
                "worker 1 served no stolen connections (CPU time {cpu:?}); stderr:\n{err}"
            );
        } else {
            assert!(
                quieter < Duration::from_millis(5),
                "worker 1 ran tasks with --no-steal (CPU time {cpu:?}); stderr:\n{err}"
            );
        }
    }
    done.store(true, SeqCst);
}

/// CPU time used so far by each worker thread (`percore-worker-N`) of
/// process `pid`: from `/proc/PID/task/TID/schedstat` (nanoseconds on a
/// CPU), else `stat`'s utime + stime (clock ticks).
fn worker_cpu(pid: u32) -> Vec<Duration> {
    let mut cpu = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("percore-worker") {
            continue;
        }
        let from_schedstat = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map(Duration::from_nanos);
        let from_stat = || stat_cpu(&dir.join("stat").to_string_lossy());
        cpu.push(from_schedstat.unwrap_or_else(from_stat));
    }
    cpu
}

/// Link targets of a process's fds (`anon_inode:[io_uring]`, `anon_inode:[eventpoll]`, ...).
fn fd_kinds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn each_driver_holds_only_its_own_kernel_objects() {
    for (driver, own, other) in [
        ("epoll", "[eventpoll]", "[io_uring]"),
        ("uring", "[io_uring]", "[eventpoll]"),
    ] {
        let server = Server::start_on(driver, &["--workers", "2"], |_| {});
        assert_eq!(client(server.addr, 9), client(server.addr, 9));
        let kinds = fd_kinds(server.child.id());
        assert_eq!(
            kinds.iter().filter(|k| k.contains(own)).count(),
            2,
            "{driver}: one {own} per worker: {kinds:?}"
        );
        assert!(
            !kinds.iter().any(|k| k.contains(other)),
            "{driver} process holds {other}: {kinds:?}"
        );
        server.stop();
    }
}

/// Installs (in the child, before exec) a seccomp filter that makes
/// `io_uring_setup` fail with EPERM, as container runtimes' default
/// profiles do.
fn forbid_io_uring(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only prctl runs, with a filter program
    // that lives on the stack for the duration of the call.
    unsafe {
        cmd.pre_exec(|| {
            const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
            const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
            const RET_K: u16 = 0x06; // BPF_RET | BPF_K
            const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
            let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
            let prog = [
                f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
                f(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
                f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
                f(JEQ_K, 0, 1, libc::SYS_io_uring_setup as u32),
                f(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
                f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
            ];
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn without_io_uring_auto_falls_back_to_epoll_and_uring_fails_clearly() {
    if !cfg!(target_arch = "x86_64") {
        return; // the filter above checks the x86_64 syscall table
    }
    let done = watchdog(60);
    // Auto: serves on epoll and says why, once.
    let server = Server::start_on("auto", &["--workers", "2"], forbid_io_uring);
    assert_eq!(client(server.addr, 3), client(server.addr, 3));
    let kinds = fd_kinds(server.child.id());
    assert!(!kinds.iter().any(|k| k.contains("[io_uring]")), "{kinds:?}");
    let err = server.stop();
    let fallback: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("using the epoll driver"))
        .collect();
    assert_eq!(fallback.len(), 1, "one line names the cause:\n{err}");
    assert!(
        fallback[0].contains("seccomp") && fallback[0].contains("kernel.io_uring_disabled"),
        "{err}"
    );
    assert!(
        err.contains("worker 0 on core 0: epoll") || err.contains("worker 0 unpinned: epoll"),
        "{err}"
    );

    // io_uring required: a one-line error with the cause and the fix.
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--driver", "uring"]);
    forbid_io_uring(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("io_uring_setup failed") && err.contains("seccomp"),
        "{err}"
    );
    done.store(true, SeqCst);
}

/// `--steer cpu`: a connection goes to the worker on the CPU its packets
/// were processed on, which on loopback is the client's. Clients pinned to
/// core 0 (30) and core 1 (10) give exactly those counts per worker.
#[test]
fn steer_cpu_accepts_each_connection_on_the_clients_cpu() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs 2 CPUs");
        return;
    }
    let done = watchdog(120);
    let server = Server::start(&["--workers", "2", "--steer", "cpu"]);
    let addr = server.addr;
    let pinned_client = |cpu: usize, n: usize| {
        std::thread::spawn(move || {
            // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET
            // writes within it; sched_setaffinity reads it.
            let pinned = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
            };
            assert!(pinned, "pin a client to CPU {cpu}");
            for _ in 0..n {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
            }
        })
    };
    pinned_client(0, 30).join().unwrap();
    pinned_client(1, 10).join().unwrap();
    let err = server.stop();
    if !(err.contains("worker 0 on core 0") && err.contains("worker 1 on core 1")) {
        eprintln!("skipped: workers not pinned to cores 0 and 1:\n{err}");
        done.store(true, SeqCst);
        return;
    }
    assert!(
        err.contains("steer Cpu"),
        "start-up line names the steering:\n{err}"
    );
    assert!(
        err.contains("percore-echo: worker 0: 30 connections")
            && err.contains("percore-echo: worker 1: 10 connections"),
        "stderr:\n{err}"
    );
    done.store(true, SeqCst);
}
