//! The hyper example (`examples/http.rs`) as a real process, driven by
//! independent HTTP clients: curl for correctness (status, body,
//! keep-alive, 404) and wrk for a bounded load run that must end with zero
//! errors. `.ci/run` installs both; a missing tool fails the test with the
//! install command.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// The example binary cargo built beside this test.
fn example_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join("http");
    assert!(
        bin.exists(),
        "{} is missing: cargo test builds examples; run `cargo build --release -p percore --example http`",
        bin.display()
    );
    bin
}

fn need(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "{tool} is not installed: apt-get install -y {tool} (.ci/run does it)"
    );
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let driver = match driver() {
            percore::Driver::Epoll => "epoll",
            _ => "uring",
        };
        let mut child = Command::new(example_bin())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "2",
                "--driver",
                driver,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the http example");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .trim()
            .to_string();
        Server { child, addr }
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the http example did not exit within 5 s of SIGTERM");
    }
}

/// A test that fails before `stop` still ends the server (killing an
/// exited child is a harmless error).
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn curl_gets_hello_world_with_keep_alive_and_404() {
    let _w = watchdog("http_curl", 60);
    need("curl");
    let s = Server::start(&[]);
    let url = format!("http://{}/", s.addr);
    let out = curl(&["-i", &url]);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("content-length: 13\r\n"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nHello, world!"), "{out}");
    // Three requests on one connection: curl reports one new connection
    // for the first transfer and none for the next two.
    let out = curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects} ",
        &url,
        &url,
        &url,
    ]);
    assert_eq!(
        out.trim(),
        "1 0 0",
        "keep-alive: connections opened per request"
    );
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{url}missing"),
    ]);
    assert_eq!(code, "404");
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-d",
        "x",
        &url,
    ]);
    assert_eq!(code, "404", "only GET / is served");
    assert!(s.stop().success());
}

#[test]
fn wrk_load_run_ends_without_errors() {
    let _w = watchdog("http_wrk", 90);
    need("wrk");
    let s = Server::start(&[]);
    let url = format!("http://{}/", s.addr);
    let out = Command::new("wrk")
        .args(["-t", "2", "-c", "64", "-d", "3s", "--timeout", "5s", &url])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Socket errors"),
        "wrk saw socket errors:\n{text}"
    );
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw non-2xx answers:\n{text}"
    );
    let requests: u64 = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    assert!(requests > 100, "only {requests} requests in 3 s:\n{text}");
    assert!(s.stop().success());
}

#[test]
fn bad_flags_get_a_clear_error() {
    let out = Command::new(example_bin())
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
    // A port taken by another process.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(example_bin())
        .args(["--listen", &addr, "--workers", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    // Taken by a process that also set SO_REUSEPORT: still refused, rather
    // than silently sharing the port's connections with it.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s.listen(16).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap().to_string();
    let out = Command::new(example_bin())
        .args(["--listen", &addr, "--workers", "1"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "joined another process's SO_REUSEPORT group"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");
}
