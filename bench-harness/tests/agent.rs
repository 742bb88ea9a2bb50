//! `bench-harness agent` and `load --server-pid/--agent`, as real
//! processes: the two-host set-up's parts, run on loopback (the agent and
//! the server would be on the other host).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_bench-harness");

/// A child killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bench-harness ARGS` and returns it with the address on its
/// first stdout line (`... listening on ADDR`).
fn start(args: &[&str]) -> (Killed, String) {
    let mut child = Command::new(EXE)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start bench-harness");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("an address")
        .to_string();
    (Killed(child), addr)
}

fn load(args: &[&str]) -> std::process::Output {
    Command::new(EXE)
        .arg("load")
        .args(args)
        .output()
        .expect("run load")
}

#[test]
fn load_samples_the_server_through_an_agent_and_here() {
    let (_agent, agent) = start(&["agent", "--listen", "127.0.0.1:0"]);
    let (server, addr) = start(&["serve", "epoll-loop"]);
    let pid = server.0.id().to_string();
    for extra in [&["--agent", agent.as_str()][..], &[][..]] {
        let mut args = vec![
            "--addr",
            &addr,
            // Closed loop: an open-loop run is refused as invalid when the
            // generator falls behind, as it can on a loaded test machine.
            "--depth",
            "1",
            "--duration",
            "1",
            "--warmup",
            "0.3",
            "--conns",
            "4",
            "--server-pid",
            &pid,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = load(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "load {extra:?} failed: {stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        let s = &v["server"];
        let want_source = if extra.is_empty() {
            "local".to_string()
        } else {
            format!("agent {agent}")
        };
        assert_eq!(s["source"], want_source.as_str());
        assert_eq!(s["pid"], server.0.id());
        // The echo server did work for every message: its CPU clock moved.
        let cpu = s["cpu_ns_per_msg"].as_f64().unwrap();
        assert!(cpu > 0.0, "{extra:?}: cpu_ns_per_msg {cpu}");
        assert!(s["core_busy_ns_per_msg"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn a_wrong_agent_or_pid_fails_before_any_load_with_the_reason() {
    let (_agent, agent) = start(&["agent", "--listen", "127.0.0.1:0"]);
    let (_server, addr) = start(&["serve", "epoll-loop"]);
    // A port nothing listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let no_such = format!("agent {agent}: no process 999999999 on this host");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--agent", &closed, "--server-pid", "1"],
            "is `bench-harness agent` running there?",
        ),
        (&["--agent", &agent, "--server-pid", "999999999"], &no_such),
        (
            &["--server-pid", "999999999"],
            "no process 999999999 on this host (for a server on another host use --agent)",
        ),
        (&["--agent", &agent], "--server-pid"),
    ];
    for (extra, want) in cases {
        let started = std::time::Instant::now();
        let mut args = vec!["--addr", &addr, "--rate", "1000", "--duration", "5"];
        args.extend_from_slice(extra);
        let out = load(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
        // Refused up front, not after the 5 s run.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "{extra:?} ran the load before failing"
        );
    }
}

#[test]
fn the_agent_answers_a_malformed_request_with_an_error_line_and_keeps_serving() {
    use std::io::Write;
    let (_agent, agent) = start(&["agent", "--listen", "127.0.0.1:0"]);
    let s = std::net::TcpStream::connect(&agent).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut ask = |q: &str| {
        writeln!(w, "{q}").unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line
    };
    assert!(ask("hello").starts_with("error cannot read"));
    let me = std::process::id();
    let ok = ask(&format!("sample {me} all"));
    let f: Vec<&str> = ok.split_whitespace().collect();
    assert_eq!(f.len(), 4, "{ok}");
    assert_eq!(f[0], "ok");
    assert!(
        f[1].parse::<u64>().unwrap() > 0,
        "this process has used CPU"
    );
}
