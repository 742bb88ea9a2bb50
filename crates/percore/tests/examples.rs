//! Every example's self-checking demo runs to success as a real process
//! (`echo --demo`, `udp_echo --demo`, `sharded_counter`, `file_copy`); the
//! hyper example has its own tests (`http_example.rs`).

use std::process::Command;
use std::time::{Duration, Instant};

/// The example binary cargo built beside this test.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing (cargo test builds examples)",
        bin.display()
    );
    bin
}

fn run(name: &str, args: &[&str]) -> String {
    let bin = example(name);
    let mut child = Command::new(&bin)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("example {name} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn echo_demo_checks_every_byte() {
    assert!(run("echo", &["--demo"]).contains("80000 bytes echoed and checked"));
}

#[test]
fn udp_echo_demo_keeps_datagram_boundaries() {
    assert!(run("udp_echo", &["--demo"]).contains("16 datagrams echoed"));
}

#[test]
fn sharded_counter_keeps_each_key_on_one_shard() {
    assert!(run("sharded_counter", &[]).contains("1600 increments"));
}

#[test]
fn file_copy_demo_copies_and_checks() {
    assert!(run("file_copy", &[]).contains("8388608 bytes copied and checked"));
}

#[test]
fn file_copy_names_its_usage_on_bad_arguments() {
    let out = Command::new(example("file_copy"))
        .args(["one"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: file_copy SRC DST"));
}
