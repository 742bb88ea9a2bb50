//! `--metrics-addr`: scraped over HTTP while the server is under load, the
//! response parses with an independent Prometheus text parser
//! (`prometheus-parse`), has every worker's series, and counters grow
//! between scrapes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::*;

/// GET `path`; returns (status line, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, worker: Option<&str>) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && worker.is_none_or(|w| s.labels.get("worker") == Some(w)))
        .unwrap_or_else(|| panic!("no sample {name} worker {worker:?}"));
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: unexpected {other:?}"),
    }
}

#[test]
fn metrics_scraped_under_load_parse_and_grow() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--driver", driver_arg()])
        .args(["--workers", "2", "--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut metrics_addr = None;
    let mut line = String::new();
    while metrics_addr.is_none() {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no `metrics on` line"
        );
        if let Some(a) = line.trim().strip_prefix("percore-echo: metrics on ") {
            metrics_addr = Some(a.parse::<SocketAddr>().unwrap());
        }
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let metrics_addr = metrics_addr.unwrap();
    let mut out = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut out)
        .unwrap();
    let addr: SocketAddr = out
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();

    // Load: 8 clients echoing until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut b = [0u8; 64];
                let mut n = 0u64;
                while !stop.load(SeqCst) {
                    s.write_all(&[7u8; 64]).unwrap();
                    s.read_exact(&mut b).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let scrape = |addr| {
        let (status, body) = get(addr, "/metrics");
        assert!(status.contains("200"), "{status}");
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .expect("the response parses as Prometheus text")
    };
    let first = scrape(metrics_addr);
    std::thread::sleep(Duration::from_millis(500));
    let second = scrape(metrics_addr);
    stop.store(true, SeqCst);
    let echoed: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(echoed > 0);

    for w in ["0", "1"] {
        for name in [
            "percore_polls_total",
            "percore_cqes_total",
            "percore_live_tasks",
            "percore_run_queue",
        ] {
            value(&first, name, Some(w));
        }
    }
    let polls = |s: &prometheus_parse::Scrape| {
        value(s, "percore_polls_total", Some("0")) + value(s, "percore_polls_total", Some("1"))
    };
    assert!(
        polls(&second) > polls(&first),
        "polls did not grow under load"
    );
    assert!(
        value(&second, "percore_echo_bytes_total", None)
            > value(&first, "percore_echo_bytes_total", None)
    );
    assert!(value(&second, "percore_echo_open_connections", None) >= 8.0);
    // The histograms: buckets per worker, and a count that matches polls.
    let hist = second
        .samples
        .iter()
        .find(|s| s.metric == "percore_poll_time_seconds" && s.labels.get("worker") == Some("0"))
        .expect("poll time histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(b) => assert!(b.len() > 10, "{} buckets", b.len()),
        other => panic!("poll time is {other:?}"),
    }
    let (status, _) = get(metrics_addr, "/other");
    assert!(status.contains("404"), "{status}");

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
