//! The echo server as a real process: concurrent clients with random
//! payloads get every byte back in order, both workers' listeners serve
//! connections, bad flags and busy ports fail with one clear line, and
//! SIGTERM drains and exits cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_percore-echo");

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start percore-echo");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }

    /// SIGTERM, wait for exit; returns stderr.
    fn stop(mut self) -> String {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit {status:?}; stderr:\n{err}");
        err
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    assert!(
        err.contains("io_uring"),
        "start-up lines name the ring setup:\n{err}"
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

#[test]
fn sigterm_lets_open_connections_finish_within_the_drain_timeout() {
    let done = watchdog(60);
    let server = Server::start(&["--workers", "1", "--drain-timeout", "5"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"before").unwrap();
    let mut b = [0u8; 6];
    s.read_exact(&mut b).unwrap();
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(100));
    // Still served while draining.
    s.write_all(b"during").unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"during");
    // The listener is gone: new connections are refused.
    let e = TcpStream::connect(server.addr).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    drop(s);
    let err = server.stop();
    assert!(err.contains("draining"), "{err}");
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
