//! CPU-aware accept (`TcpListener::steer_by_cpu`): with one listener per
//! pinned worker in a `SO_REUSEPORT` group, a connection goes to the worker
//! on the CPU that processed its packets. On loopback that is the CPU the
//! client sends from, so clients pinned to CPU c must all be accepted by
//! the worker on CPU c. Without steering the kernel's hash spreads them.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::{Arc, Mutex};

use percore::net::{ListenOptions, TcpListener};

fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes
    // within it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Runs 2 pinned workers, each with its own listener of one group (bound in
/// worker order), steered or not; clients on each CPU connect 40 times and
/// send their CPU number. Returns (accepting worker's core, client's CPU)
/// per connection.
fn accepted_pairs(steer: bool) -> Option<Vec<(usize, usize)>> {
    let rt = common::runtime(2, 64);
    let cores: Vec<Option<usize>> = rt.workers().iter().map(|w| w.core).collect();
    if cores.iter().any(|c| c.is_none()) || cores[0] == cores[1] {
        return None; // not two pinned workers on two CPUs
    }
    let opts = ListenOptions {
        reuse_port: true,
        backlog: 256,
    };
    let pairs = Arc::new(Mutex::new(Vec::new()));
    let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut accepting = Vec::new();
    for i in 0..2 {
        let (tx, rx) = std::sync::mpsc::channel();
        let (pairs, cores) = (pairs.clone(), cores.clone());
        accepting.push(rt.spawn_local_on(i, move || async move {
            let l = TcpListener::bind_with(addr, opts).unwrap();
            if steer {
                l.steer_by_cpu(&cores).unwrap();
            }
            tx.send(l.local_addr().unwrap()).unwrap();
            loop {
                let (s, _) = l.accept().await.unwrap();
                let (r, buf) = s.read(vec![0u8; 1]).await;
                r.unwrap();
                pairs
                    .lock()
                    .unwrap()
                    .push((cores[i].unwrap(), buf[0] as usize));
            }
        }));
        addr = rx.recv().unwrap();
    }
    let clients: Vec<_> = cores
        .iter()
        .map(|c| {
            let cpu = c.unwrap();
            std::thread::spawn(move || {
                assert!(pin_to(cpu), "pin the client to CPU {cpu}");
                let mut v = Vec::new();
                for _ in 0..40 {
                    let mut s = StdStream::connect(addr).unwrap();
                    s.write_all(&[cpu as u8]).unwrap();
                    v.push(s);
                }
                v
            })
        })
        .collect();
    let _streams: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pairs.lock().unwrap().len() < 80 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for a in &accepting {
        a.abort();
    }
    let out = pairs.lock().unwrap().clone();
    assert_eq!(out.len(), 80, "every connection accepted");
    Some(out)
}

#[test]
fn steering_hands_each_connection_to_the_worker_on_its_cpu() {
    let _w = common::watchdog("steering_hands_each_connection", 60);
    let Some(pairs) = accepted_pairs(true) else {
        eprintln!("skipped: needs two pinned workers on two CPUs");
        return;
    };
    let wrong = pairs.iter().filter(|(w, c)| w != c).count();
    assert_eq!(wrong, 0, "connections accepted off their CPU: {pairs:?}");
    // The control: without steering the hash puts some on the other CPU,
    // so the check above is not passing by accident.
    let pairs = accepted_pairs(false).unwrap();
    let wrong = pairs.iter().filter(|(w, c)| w != c).count();
    assert!(wrong > 0, "the kernel's hash never crossed CPUs: {pairs:?}");
}
