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
//! the machine's speed. Both drivers (`scripts/test` runs the suite twice);
//! the read loop is the epoll case (on io_uring each read's first poll
//! submits it and waits, so it yields anyway).

mod common;

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;

use common::*;
use percore::net::{ListenOptions, TcpListener};

/// The most ready results one task may take in a row: the budget of one
/// poll (128), and the one taken before the counting starts.
const MOST_IN_A_ROW: u64 = 129;

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
        // Connected before the first accept, so the whole backlog is ready.
        // From a helper thread, waited for at most 10 s: where the kernel's
        // backlog limit (somaxconn) is below 600, the last connects wait for
        // the accepts, and the loop below runs with a partial backlog.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let connector = std::thread::spawn(move || {
            let clients: Vec<std::net::TcpStream> = (0..600)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            let _ = done_tx.send(());
            clients
        });
        let _ = done_rx.recv_timeout(std::time::Duration::from_secs(10));
        let ticks = Rc::new(Cell::new(0));
        let stop = Rc::new(Cell::new(false));
        ticker(ticks.clone(), stop.clone());
        let mut runs = Runs::new(&ticks);
        for _ in 0..600 {
            let (s, _) = l.accept().await.unwrap();
            drop(s);
            runs.got_one();
        }
        drop(connector.join().unwrap());
        stop.set(true);
        runs.longest
    });
    assert!(
        longest <= MOST_IN_A_ROW,
        "the accept loop took {longest} connections in a row without letting another task run"
    );
    // Each accept costs one unit, not two (the epoll path goes through the
    // multishot check and then a budgeted accept: charged once), so 600
    // ready accepts end at most 600 / 128 polls early.
    let yields: u64 = rt.metrics().iter().map(|m| m.budget_yields).sum();
    assert!(
        yields <= 5,
        "{yields} polls ended for want of budget over 600 accepts"
    );
}

#[test]
fn a_read_loop_on_a_socket_with_data_waiting_lets_other_tasks_run() {
    let _w = watchdog("coop read", 60);
    let rt = runtime(1, 256);
    let longest = rt.block_on_local(|| async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(&vec![1u8; 256 * 1024]).unwrap();
            let _ = done_tx.send(());
            c
        });
        let (s, _) = l.accept().await.unwrap();
        // All of it waiting before the reader starts, if the socket buffers
        // hold it (they do with Linux's defaults); else the writer finishes
        // as the reads make room, after at most 10 s of waiting here.
        let _ = done_rx.recv_timeout(std::time::Duration::from_secs(10));
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
        drop(writer.join().unwrap());
        stop.set(true);
        runs.longest
    });
    assert!(
        longest <= MOST_IN_A_ROW,
        "the read loop got {longest} reads in a row without letting another task run"
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
    // Counted once per poll that ran out, not once per refused receiver.
    let yields: u64 = rt.metrics().iter().map(|m| m.budget_yields).sum();
    assert_eq!(yields, u64::from(polls - 1), "budget_yields");
}

#[test]
fn a_send_loop_into_a_channel_with_room_lets_other_tasks_run() {
    let _w = watchdog("coop send", 60);
    let rt = runtime(1, 64);
    let longest = rt.block_on_local(|| async {
        let (tx, mut rx) = percore::sync::mpsc::channel(2000);
        let ticks = Rc::new(Cell::new(0));
        let stop = Rc::new(Cell::new(false));
        ticker(ticks.clone(), stop.clone());
        let mut runs = Runs::new(&ticks);
        for i in 0..2000u32 {
            tx.send(i).await.unwrap();
            runs.got_one();
        }
        for i in 0..2000u32 {
            assert_eq!(rx.try_recv().ok(), Some(i), "in order, none lost");
        }
        stop.set(true);
        runs.longest
    });
    assert!(
        longest <= MOST_IN_A_ROW,
        "the send loop sent {longest} messages in a row without letting another task run"
    );
}

/// A `spawn` task (stealable: its yield goes through the shared queue, not
/// the local one) takes turns the same way. Two workers, stealing off so
/// the task stays beside the ticker on worker 0.
#[test]
fn a_stealable_task_yields_through_its_queue_too() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;

    let _w = watchdog("coop spawn", 60);
    let rt = percore::Runtime::builder()
        .driver(driver())
        .workers(2)
        .steal(false)
        .build()
        .expect("runtime");
    let (longest, worker) = rt.block_on_local(|| async {
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (ticks.clone(), stop.clone());
        percore::task::spawn_local(async move {
            while !st.load(SeqCst) {
                t.fetch_add(1, SeqCst);
                percore::task::yield_now().await;
            }
        });
        let (tx, mut rx) = percore::sync::mpsc::channel(2000);
        for i in 0..2000u32 {
            tx.try_send(i).unwrap();
        }
        let looper = percore::spawn(async move {
            let (mut last, mut run, mut longest) = (ticks.load(SeqCst), 0u64, 0u64);
            for i in 0..2000u32 {
                assert_eq!(rx.recv().await, Some(i), "in order, none lost");
                let now = ticks.load(SeqCst);
                if now != last {
                    last = now;
                    run = 0;
                }
                run += 1;
                longest = longest.max(run);
            }
            (longest, percore::worker_index())
        });
        let r = looper.await.unwrap();
        stop.store(true, SeqCst);
        r
    });
    assert_eq!(worker, Some(0), "stealing is off: the task stays home");
    assert!(
        longest <= MOST_IN_A_ROW,
        "the spawned loop got {longest} messages in a row without letting another task run"
    );
}
