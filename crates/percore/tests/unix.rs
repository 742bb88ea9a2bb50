//! Unix-domain sockets on the driver under test: streams over paths and
//! abstract names, peer credentials and addresses, datagram boundaries,
//! truncation and senders, std round trips, and bad input.

mod common;

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr;
use std::time::Duration;

use common::*;
use percore::net::{UnixDatagram, UnixListener, UnixStream};
use percore::time::timeout;

#[test]
fn a_stream_over_a_path_echoes_and_knows_its_peer() {
    let _w = watchdog("unix_path", 30);
    let dir = temp_dir("unix-path");
    let path = dir.join("s.sock");
    runtime(2, 64).block_on(async move {
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        let server = percore::spawn(async move {
            let (conn, peer) = listener.accept().await.unwrap();
            assert!(peer.is_unnamed(), "the client did not bind");
            let cred = conn.peer_cred().unwrap();
            assert_eq!(cred.pid, std::process::id() as i32);
            // SAFETY: getuid has no preconditions.
            assert_eq!(cred.uid, unsafe { libc::getuid() });
            loop {
                let (res, buf) = conn.read(Vec::with_capacity(4096)).await;
                if res.unwrap() == 0 {
                    return;
                }
                conn.write_all(buf).await.0.unwrap();
            }
        });
        let c = UnixStream::connect(&path).await.unwrap();
        assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
        let msg: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        // Write and read at once: the echo could fill both socket buffers.
        let c = std::sync::Arc::new(c);
        let writer = {
            let (c, msg) = (c.clone(), msg.clone());
            percore::spawn(async move { c.write_all(msg).await.0 })
        };
        let (res, back) = c.read_exact(vec![0u8; msg.len()]).await;
        res.unwrap();
        writer.await.unwrap().unwrap();
        assert_eq!(back, msg);
        c.shutdown(std::net::Shutdown::Write).unwrap();
        server.await.unwrap();
        let (res, _) = c.read(Vec::with_capacity(8)).await;
        assert_eq!(res.unwrap(), 0, "the server closed after our half-close");
    });
}

#[test]
fn an_abstract_name_needs_no_file() {
    let _w = watchdog("unix_abstract", 30);
    runtime(1, 64).block_on(async {
        let name = format!("percore-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_abstract_name(),
            Some(name.as_bytes())
        );
        let accept = percore::spawn_local(async move { listener.accept().await.unwrap().0 });
        let c = UnixStream::connect_addr(&addr).await.unwrap();
        let s = accept.await.unwrap();
        c.write_all(b"abstract".to_vec()).await.0.unwrap();
        let (res, buf) = s.read_exact(vec![0u8; 8]).await;
        res.unwrap();
        assert_eq!(buf, b"abstract");
        assert_eq!(
            c.peer_addr().unwrap().as_abstract_name(),
            Some(name.as_bytes())
        );
    });
}

#[test]
fn a_socketpair_and_std_streams_go_in_and_out() {
    let _w = watchdog("unix_pair_std", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        a.write_all(b"pair".to_vec()).await.0.unwrap();
        let (res, buf) = b.read_exact(vec![0u8; 4]).await;
        res.unwrap();
        assert_eq!(buf, b"pair");
        // Out to std (blocking), and a std stream in.
        let mut std_b = b.into_std().unwrap();
        a.write_all(b"std".to_vec()).await.0.unwrap();
        std_b
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = [0u8; 3];
        std_b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"std");
        let (std_x, mut std_y) = std::os::unix::net::UnixStream::pair().unwrap();
        let x = UnixStream::from_std(std_x).unwrap();
        std_y.write_all(b"in").unwrap();
        let (res, buf) = x.read_exact(vec![0u8; 2]).await;
        res.unwrap();
        assert_eq!(buf, b"in");
    });
}

#[test]
fn datagrams_keep_boundaries_truncate_and_name_their_sender() {
    let _w = watchdog("unix_dgram", 30);
    let dir = temp_dir("unix-dgram");
    runtime(1, 64).block_on(async move {
        let a = UnixDatagram::bind(dir.join("a.sock")).unwrap();
        let b = UnixDatagram::bind(dir.join("b.sock")).unwrap();
        for n in [3usize, 0, 5000] {
            let (res, _) = a.send_to(vec![n as u8; n], dir.join("b.sock")).await;
            assert_eq!(res.unwrap(), n);
        }
        for n in [3usize, 0, 5000] {
            let (res, buf) = b.recv_from(Vec::with_capacity(8192)).await;
            let (got, from) = res.unwrap();
            assert_eq!(got, n);
            assert!(buf.iter().all(|&x| x == n as u8));
            assert_eq!(from.as_pathname(), Some(dir.join("a.sock").as_path()));
        }
        // Cut to the buffer; the rest of the datagram is gone.
        a.send_to(vec![1u8; 100], dir.join("b.sock"))
            .await
            .0
            .unwrap();
        a.send_to(b"whole".to_vec(), dir.join("b.sock"))
            .await
            .0
            .unwrap();
        let (res, buf) = b.recv(Vec::with_capacity(10)).await;
        assert_eq!(res.unwrap(), 10);
        assert_eq!(buf, [1u8; 10]);
        let (res, buf) = b.recv(Vec::with_capacity(10)).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(buf, b"whole");
        // An unbound sender is unnamed; connect sets the default peer.
        let u = UnixDatagram::unbound().unwrap();
        u.connect(dir.join("b.sock")).unwrap();
        u.send(b"anon".to_vec()).await.0.unwrap();
        let (res, _) = b.recv_from(Vec::with_capacity(8)).await;
        assert!(res.unwrap().1.is_unnamed());
    });
}

#[test]
fn a_datagram_pair_survives_dropped_receives() {
    let _w = watchdog("unix_dgram_cancel", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = UnixDatagram::pair().unwrap();
        for i in 0..200u32 {
            let r = timeout(Duration::from_micros(200), b.recv(Vec::with_capacity(8))).await;
            assert!(r.is_err());
            a.send(i.to_le_bytes().to_vec()).await.0.unwrap();
            let (res, buf) = b.recv(Vec::with_capacity(8)).await;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, i.to_le_bytes());
        }
    });
}

#[test]
fn bad_input_gets_a_clear_error() {
    let _w = watchdog("unix_errors", 30);
    let dir = temp_dir("unix-errors");
    runtime(1, 64).block_on(async move {
        let missing = dir.join("nobody-here.sock");
        let e = UnixStream::connect(&missing).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("nobody-here.sock"), "{e}");
        let path = dir.join("taken.sock");
        let _l = UnixListener::bind(&path).unwrap();
        let e = UnixListener::bind(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("remove it"), "{e}");
        let long = dir.join(&"x".repeat(200));
        let e = UnixListener::bind(&long).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        // A listener whose socket file was removed refuses nothing it has,
        // but a new connect finds no file.
        std::fs::remove_file(&path).unwrap();
        assert!(UnixStream::connect(&path).await.is_err());
        let d = UnixDatagram::unbound().unwrap();
        let (res, _) = d.send(b"x".to_vec()).await;
        assert!(res.is_err(), "not connected");
    });
}
