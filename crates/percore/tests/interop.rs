//! Interop on the driver under test: percore streams behind tokio's and
//! futures' I/O traits (`io::Compat`), a hyper client and server both on
//! percore, and tokio's sync primitives and futures' combinators inside
//! percore tasks (they need only wakers).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use percore::io::Compat;
use percore::net::{TcpListener, UnixStream};

#[test]
fn tokio_io_traits_move_large_data_both_ways_and_see_eof() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let _w = watchdog("interop_tokio_io", 60);
    runtime(2, 64).block_on(async {
        let (a, b) = tcp_pair().await;
        let (mut a, mut b) = (Compat::new(a), Compat::with_capacity(1000, 777, b));
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let expect = data.clone();
        let writer = percore::spawn(async move {
            b.write_all(&data).await.unwrap();
            // A gather write keeps the parts' order.
            let parts = [
                std::io::IoSlice::new(b"\nlast "),
                std::io::IoSlice::new(b"line\n"),
            ];
            let sent = b.write_vectored(&parts).await.unwrap();
            assert_eq!(sent, 11, "both parts fit the write buffer in one call");
            b.shutdown().await.unwrap();
        });
        let mut got = vec![0u8; expect.len()];
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expect);
        let mut line = String::new();
        a.read_line(&mut line).await.unwrap();
        assert_eq!(line, "\n");
        line.clear();
        a.read_line(&mut line).await.unwrap();
        assert_eq!(line, "last line\n");
        let mut rest = Vec::new();
        assert_eq!(
            a.read_to_end(&mut rest).await.unwrap(),
            0,
            "EOF after shutdown"
        );
        writer.await.unwrap();
    });
}

#[test]
fn futures_io_traits_round_trip_over_a_unix_pair() {
    use futures_util::io::{AsyncReadExt, AsyncWriteExt};
    let _w = watchdog("interop_futures_io", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Compat::new(a), Compat::new(b));
        a.write_all(b"over futures-io").await.unwrap();
        a.close().await.unwrap();
        let mut s = String::new();
        b.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "over futures-io");
        let inner: UnixStream = b.into_inner();
        let (res, _) = inner.read(Vec::with_capacity(4)).await;
        assert_eq!(res.unwrap(), 0);
    });
}

#[test]
fn a_write_error_surfaces_by_flush_at_the_latest() {
    use tokio::io::AsyncWriteExt;
    let _w = watchdog("interop_write_error", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = tcp_pair().await;
        b.set_linger(Some(Duration::ZERO)).unwrap();
        drop(b); // a reset
        percore::time::sleep(Duration::from_millis(20)).await;
        let mut a = Compat::new(a);
        let mut failed = false;
        for _ in 0..100 {
            let w = a.write_all(&[0u8; 1024]).await;
            let f = a.flush().await;
            if w.is_err() || f.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "writes to a reset connection must fail");
    });
}

async fn hello(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    Ok(hyper::Response::new(Full::new(Bytes::from(format!(
        "got {} bytes",
        body.len()
    )))))
}

#[test]
fn hyper_client_and_server_both_on_percore() {
    let _w = watchdog("interop_hyper", 60);
    runtime(2, 64).block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = percore::spawn(async move {
            let mut conns = Vec::new();
            for _ in 0..2 {
                let (s, _) = listener.accept().await.unwrap();
                conns.push(percore::spawn(async move {
                    hyper::server::conn::http1::Builder::new()
                        .timer(percore::io::HyperTimer)
                        .serve_connection(Compat::new(s), hyper::service::service_fn(hello))
                        .await
                }));
            }
            for c in conns {
                c.await
                    .unwrap()
                    .expect("the server side of a connection failed");
            }
        });
        for _ in 0..2 {
            let s = percore::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(Compat::new(s))
                .await
                .unwrap();
            let driver = percore::spawn(async move { conn.await.unwrap() });
            // Keep-alive: several requests on one connection, bodies of
            // several sizes.
            for size in [0usize, 10, 100_000] {
                let req = hyper::Request::post("/")
                    .header("host", "localhost")
                    .body(Full::new(Bytes::from(vec![b'x'; size])))
                    .unwrap();
                let res = sender.send_request(req).await.unwrap();
                assert_eq!(res.status(), 200);
                let body = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, format!("got {size} bytes"));
            }
            drop(sender);
            driver.await.unwrap();
        }
        server.await.unwrap();
    });
}

#[test]
fn hyper_executor_and_timer_run_on_percore() {
    use hyper::rt::{Executor, Timer};
    let _w = watchdog("interop_hyper_rt", 30);
    runtime(2, 64).block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        percore::io::HyperExecutor.execute(async move {
            tx.send(percore::worker_index()).unwrap();
        });
        assert!(rx.await.unwrap().is_some());
        let t = percore::io::HyperTimer;
        let start = std::time::Instant::now();
        t.sleep(Duration::from_millis(20)).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        let mut s = t.sleep(Duration::from_secs(3600));
        t.reset(
            &mut s,
            std::time::Instant::now() + Duration::from_millis(10),
        );
        s.await;
        assert!(start.elapsed() < Duration::from_secs(60));
    });
}

#[test]
fn tokio_sync_and_futures_combinators_work_in_percore_tasks() {
    let _w = watchdog("interop_sync", 30);
    runtime(2, 64).block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(4);
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let tx = tx.clone();
                percore::spawn(async move {
                    for i in 0..100 {
                        tx.send(p * 1000 + i).await.unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut n = 0;
        while let Some(_v) = rx.recv().await {
            n += 1;
        }
        assert_eq!(n, 400);
        for p in producers {
            p.await.unwrap();
        }
        let m = std::sync::Arc::new(tokio::sync::Mutex::new(0));
        let (a, b) = futures_util::join!(
            {
                let m = m.clone();
                async move {
                    *m.lock().await += 1;
                    percore::time::sleep(Duration::from_millis(5)).await;
                    1
                }
            },
            {
                let m = m.clone();
                async move {
                    *m.lock().await += 1;
                    2
                }
            }
        );
        assert_eq!((a, b, *m.lock().await), (1, 2, 2));
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let n2 = notify.clone();
        let waiter = percore::spawn(async move { n2.notified().await });
        percore::time::sleep(Duration::from_millis(5)).await;
        notify.notify_one();
        waiter.await.unwrap();
        use futures_util::FutureExt;
        let slow = percore::time::sleep(Duration::from_secs(3600)).fuse();
        let fast = percore::time::sleep(Duration::from_millis(5)).fuse();
        futures_util::pin_mut!(slow, fast);
        let which = futures_util::select_biased! {
            _ = slow => "slow",
            _ = fast => "fast",
        };
        assert_eq!(which, "fast");
    });
}

#[test]
fn bytes_and_bytes_mut_are_owned_buffers() {
    let _w = watchdog("interop_bytes", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = tcp_pair().await;
        let shared = Bytes::from(vec![9u8; 5000]);
        let (res, back) = a.write_all(shared.clone()).await;
        res.unwrap();
        assert_eq!(back, shared, "the Bytes handle comes back");
        let (res, _) = a.write_all(Bytes::from_static(b"tail")).await;
        res.unwrap();
        let got = bytes::BytesMut::with_capacity(5004);
        let (res, got) = b.read_exact(percore::IoBuf::slice(got, ..5004)).await;
        res.unwrap();
        let got = got.into_inner();
        assert_eq!(got.len(), 5004);
        assert_eq!(&got[..5000], &[9u8; 5000][..]);
        assert_eq!(&got[5000..], b"tail");
    });
}

#[test]
fn a_bytes_mut_window_past_its_length_is_zero_filled_first() {
    let _w = watchdog("interop_bytes_mut_window", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = tcp_pair().await;
        a.write_all(&b"abcd"[..]).await.0.unwrap();
        let buf = bytes::BytesMut::with_capacity(16);
        let (res, window) = b.read_exact(percore::IoBuf::slice(buf, 8..12)).await;
        res.unwrap();
        let buf = window.into_inner();
        assert_eq!(&buf[..], b"\0\0\0\0\0\0\0\0abcd");
    });
}

#[test]
fn dropping_compat_without_flush_still_sends_what_it_took() {
    let _w = watchdog("interop_drop_unflushed", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = tcp_pair().await;
        // Small socket buffers and a peer that reads only after the drop:
        // the adapter takes 64 KiB in one write call, and its send cannot
        // finish before the peer reads, so it is in flight at the drop.
        a.set_send_buffer_size(4096).unwrap();
        b.set_recv_buffer_size(4096).unwrap();
        let data: Vec<u8> = (0..65_536u32).map(|i| (i % 241) as u8).collect();
        let mut w = Compat::new(a);
        let taken = std::future::poll_fn(|cx| w.poll_write_bytes(cx, &data))
            .await
            .unwrap();
        assert_eq!(taken, data.len());
        drop(w);
        let mut got = Vec::new();
        loop {
            let (res, buf) = b.read(Vec::with_capacity(1 << 16)).await;
            if res.unwrap() == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert_eq!(
            got.len(),
            data.len(),
            "bytes taken by the adapter were lost"
        );
        assert!(got == data);
    });
}

#[test]
fn a_runtime_dropped_with_a_compat_write_in_flight_shuts_down() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let _w = watchdog("interop_compat_shutdown", 30);
    let rt = runtime(1, 64);
    let started = std::sync::Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    let (peer_tx, peer_rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let (a, b) = tcp_pair().await;
        a.set_send_buffer_size(4096).unwrap();
        b.set_recv_buffer_size(4096).unwrap();
        // The peer never reads: the adapter's write stays in flight.
        peer_tx.send(b).unwrap();
        let mut w = Compat::new(a);
        let data = vec![1u8; 1 << 20];
        let _ = std::future::poll_fn(|cx| w.poll_write_bytes(cx, &data)).await;
        s2.store(true, SeqCst);
        // Dropped here with the write in flight: its finishing task waits
        // for a peer that never reads.
        drop(w);
        std::future::pending::<()>().await;
    });
    let _peer = peer_rx.recv().unwrap();
    while !started.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = std::time::Instant::now();
    drop(rt);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        t.elapsed()
    );
}
