//! Helpers shared by the echo server's process tests: the driver to test
//! on, and the server as a child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_percore-echo");

/// The driver these tests run the server on (`PERCORE_TEST_DRIVER=epoll`
/// selects epoll; `scripts/test` runs both).
pub fn driver_arg() -> &'static str {
    match std::env::var("PERCORE_TEST_DRIVER").as_deref() {
        Ok("epoll") => "epoll",
        _ => "uring",
    }
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Self::start_on(driver_arg(), args, |_| {})
    }

    pub fn start_on(driver: &str, args: &[&str], setup: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0", "--driver", driver])
            .args(args);
        setup(&mut cmd);
        let mut child = cmd
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
    pub fn stop(mut self) -> String {
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

impl Server {
    /// SIGTERM and wait for a clean exit (stderr not captured).
    pub fn stop_quietly(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit {status:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time in a `/proc/.../stat` file (a process or one
/// thread): fields 14 and 15, counted after the parenthesised name.
pub fn stat_cpu(path: &str) -> std::time::Duration {
    let stat = std::fs::read_to_string(path).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::time::Duration::from_nanos((f[0] + f[1]) * 1_000_000_000 / hz)
}
