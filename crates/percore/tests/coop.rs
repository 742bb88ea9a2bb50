//! Cooperative yielding: a task whose I/O is always ready (a full accept
//! backlog, a socket with megabytes waiting, a channel full of messages)
//! must still let the other tasks of its worker run. Without a budget such
//! a loop never returns `Pending`, and every other connection on the core
//! waits for it (the echo server's accept loop was seen holding its worker
//! for 13.8 ms while 10,000 connections arrived).
//!
//! Each test counts, with a ticker task that yields in a loop, the longest
//! run of ready results the looping task got without the ticker running
//! once. Counted in results, not in time, so the checks do not depend on
//! the machine's speed. Both drivers (`scripts/test` runs the suite twice).

mod common;

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;

use common::*;
use percore::net::{ListenOptions, TcpListener, TcpStream};

/// The most ready results one task may take in a row (the budget is 128
/// per poll; a yield may land just before the limit is reached).
const MOST_IN_A_ROW: u64 = 256;

/// Ticks for as long as the test runs; stops when `stop` is set.
fn ticker(ticks: Rc<Cell<u64>>, stop: Rc<Cell<bool>>) {
    percore::task::spawn_local(async move {
        while !stop.get() {
            ticks.set(ticks.get() + 1);
            percore::task::yield_now().await;
        }
    });
}

/// Tracks the longest run of ready results between two ticks.
struct Runs {
    ticks: Rc<Cell<u64>>,
    last: u64,
    run: u64,
    longest: u64,
}

impl Runs {
    fn new(ticks: &Rc<Cell<u64>>) -> Runs {
        Runs {
            ticks: ticks.clone(),
            last: ticks.get(),
            run: 0,
            longest: 0,
        }
    }

    fn got_one(&mut self) {
        let now = self.ticks.get();
        if now != self.last {
            self.last = now;
            self.run = 0;
        }
        self.run += 1;
        self.longest = self.longest.max(self.run);
    }
}

#[test]
fn an_accept_loop_with_a_full_backlog_lets_other_tasks_run() {
    let _w = watchdog("coop accept", 60);
    let rt = runtime(1, 256);
    let longest = rt.block_on_local(|| async {
        let opts = ListenOptions {
            backlog: 2048,
            ..ListenOptions::default()
        };
        let l = TcpListener::bind_with("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        let addr = l.local_addr().unwrap();
        // Connected before the first accept: the whole backlog is ready.
        let clients: Vec<std::net::TcpStream> = (0..600)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let ticks = Rc::new(Cell::new(0));
        let stop = Rc::new(Cell::new(false));
        ticker(ticks.clone(), stop.clone());
        let mut runs = Runs::new(&ticks);
        for _ in 0..clients.len() {
            let (s, _) = l.accept().await.unwrap();
            drop(s);
            runs.got_one();
        }
        stop.set(true);
        runs.longest
    });
    assert!(
        longest <= MOST_IN_A_ROW,
        "the accept loop took {longest} connections in a row without letting another task run"
    );
}

#[test]
fn a_read_loop_on_a_socket_with_data_waiting_lets_other_tasks_run() {
    let _w = watchdog("coop read", 60);
    let rt = runtime(1, 256);
    let longest = rt.block_on_local(|| async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            // Small enough for the socket buffers: all of it is waiting
            // before the reader starts.
            c.write_all(&vec![1u8; 256 * 1024]).unwrap();
            c
        });
        let (s, _) = l.accept().await.unwrap();
        let client = writer.join().unwrap();
        let ticks = Rc::new(Cell::new(0));
        let stop = Rc::new(Cell::new(false));
        ticker(ticks.clone(), stop.clone());
        let mut runs = Runs::new(&ticks);
        let mut buf = Vec::with_capacity(256);
        let mut total = 0;
        while total < 256 * 1024 {
            buf.clear();
            let (res, b) = s.read(buf).await;
            buf = b;
            total += res.unwrap();
            runs.got_one();
        }
        drop(client);
        stop.set(true);
        runs.longest
    });
    assert!(
        longest <= MOST_IN_A_ROW,
        "the read loop got {longest} reads in a row without letting another task run"
    );
}

#[test]
fn a_pooled_receive_loop_lets_other_tasks_run() {
    let _w = watchdog("coop recv_pooled", 60);
    // 64-byte provided buffers: one queued result per 64 bytes however the
    // segments were merged in the socket.
    let rt = percore::Runtime::builder()
        .driver(driver())
        .workers(1)
        .ring_entries(256)
        .recv_buffers(4096, 64)
        .build()
        .expect("runtime");
    let longest = rt.block_on_local(|| async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let s = TcpStream::connect(addr).await.unwrap();
        let (peer, _) = l.accept().await.unwrap();
        let ticks = Rc::new(Cell::new(0));
        let stop = Rc::new(Cell::new(false));
        ticker(ticks.clone(), stop.clone());
        let mut runs = Runs::new(&ticks);
        // Armed first, so that each small write after it, a segment of
        // its own, completes the multishot receive once and queues one
        // result while the reader is busy writing.
        peer.set_nodelay(true).unwrap();
        let (r, _) = peer.write_all(vec![2u8; 64]).await;
        r.unwrap();
        let first = s.recv_pooled().await.unwrap();
        let total = 64 * 1024;
        let mut sent = 64;
        while sent < total {
            let (r, _) = peer.write_all(vec![2u8; 64]).await;
            r.unwrap();
            sent += 64;
        }
        let mut got = first.len();
        drop(first);
        while got < total {
            let chunk = s.recv_pooled().await.unwrap();
            assert!(!chunk.is_empty(), "the peer is still open");
            got += chunk.len();
            runs.got_one();
        }
        stop.set(true);
        runs.longest
    });
    assert!(
        longest <= MOST_IN_A_ROW,
        "the receive loop got {longest} chunks in a row without letting another task run"
    );
}

#[test]
fn a_channel_receive_loop_lets_other_tasks_run() {
    let _w = watchdog("coop channel", 60);
    let rt = runtime(1, 64);
    let longest = rt.block_on_local(|| async {
        let (tx, mut rx) = percore::sync::mpsc::channel(2000);
        for i in 0..2000u32 {
            tx.try_send(i).unwrap();
        }
        let ticks = Rc::new(Cell::new(0));
        let stop = Rc::new(Cell::new(false));
        ticker(ticks.clone(), stop.clone());
        let mut runs = Runs::new(&ticks);
        for i in 0..2000u32 {
            assert_eq!(rx.recv().await, Some(i), "in order, none lost");
            runs.got_one();
        }
        stop.set(true);
        runs.longest
    });
    assert!(
        longest <= MOST_IN_A_ROW,
        "the channel loop got {longest} messages in a row without letting another task run"
    );
}

/// Only results handed out count against the budget: one poll over 300
/// receivers, each with a message, takes 128 and yields, and the next
/// polls take the rest. (Were a `Pending` to cost budget too, the
/// receivers past the 128th would be refused on every poll, for ever.)
#[test]
fn one_poll_over_many_ready_receivers_finishes_them_all_over_a_few_polls() {
    let _w = watchdog("coop many", 60);
    let rt = runtime(1, 64);
    let polls = rt.block_on_local(|| async {
        let mut rxs = Vec::new();
        let mut txs = Vec::new();
        for i in 0..300u32 {
            let (tx, rx) = percore::sync::mpsc::channel(1);
            tx.try_send(i).unwrap();
            txs.push(tx);
            rxs.push(Some(rx));
        }
        let mut got = vec![None; 300];
        let mut polls = 0u32;
        std::future::poll_fn(|cx| {
            polls += 1;
            for (i, slot) in rxs.iter_mut().enumerate() {
                if let Some(rx) = slot {
                    if let std::task::Poll::Ready(v) = rx.poll_recv(cx) {
                        got[i] = v;
                        *slot = None;
                    }
                }
            }
            if rxs.iter().all(Option::is_none) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        for (i, v) in got.iter().enumerate() {
            assert_eq!(*v, Some(i as u32), "receiver {i}");
        }
        polls
    });
    assert!(
        (3..=10).contains(&polls),
        "300 ready receivers took {polls} polls; with a budget of 128 per poll, 3 are needed"
    );
    let yields: u64 = rt.metrics().iter().map(|m| m.budget_yields).sum();
    assert!(yields >= 2, "budget_yields = {yields}");
}
