//! TCP API around the I/O: `TcpListener::from_std`, `read_exact` (full and
//! cut short by the peer), socket options, `AsFd`. Both drivers.

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use common::*;
use percore::net::{TcpListener, TcpStream};

#[test]
fn from_std_read_exact_and_socket_options() {
    let _w = watchdog("tcp api", 60);
    let rt = runtime(1, 64);
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    rt.block_on(async move {
        let l = TcpListener::from_std(std_listener).unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().await.unwrap();

        // read_exact waits for all 10 bytes, sent in two parts.
        c.write_all(b"hello").unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            c.write_all(b"world").unwrap();
            c
        });
        let (r, buf) = s.read_exact(Vec::with_capacity(10)).await;
        r.unwrap();
        assert_eq!(&buf[..], b"helloworld");
        let mut c = writer.join().unwrap();

        // Cut short: 3 of 8 bytes, then the peer closes.
        c.write_all(b"abc").unwrap();
        drop(c);
        let (r, buf) = s.read_exact(Vec::with_capacity(8)).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(&buf[..], b"abc", "the bytes read so far are kept");
        assert!(e.to_string().contains("3 of 8"), "{e}");

        // Options round-trip.
        s.set_keepalive(true).unwrap();
        assert!(s.keepalive().unwrap());
        s.set_linger(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(s.linger().unwrap(), Some(Duration::from_secs(1)));
        s.set_ttl(33).unwrap();
        assert_eq!(s.ttl().unwrap(), 33);
        s.set_recv_buffer_size(64 * 1024).unwrap();
        assert!(s.recv_buffer_size().unwrap() >= 64 * 1024);
        s.set_send_buffer_size(64 * 1024).unwrap();
        assert!(s.send_buffer_size().unwrap() >= 64 * 1024);
        // AsFd: usable by other socket libraries.
        let peer = socket2::SockRef::from(&s.as_fd()).peer_addr().unwrap();
        assert!(peer.as_socket().is_some());
        assert!(socket2::SockRef::from(&l.as_fd()).local_addr().is_ok());
    });
}

#[test]
fn ttl_on_ipv6() {
    let _w = watchdog("tcp v6", 60);
    let rt = runtime(1, 64);
    let Ok(std_listener) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    let addr = std_listener.local_addr().unwrap();
    rt.block_on(async move {
        let l = TcpListener::from_std(std_listener).unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let _s = l.accept().await.unwrap();
        c.set_ttl(7).unwrap();
        assert_eq!(c.ttl().unwrap(), 7);
    });
}

#[test]
fn connect_takes_names_tuples_and_lists_and_tries_each_address() {
    use percore::net::{TcpListener, TcpStream, UdpSocket};
    let _w = watchdog("to_socket_addrs", 60);
    runtime(1, 64).block_on(async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = l.local_addr().unwrap().port();
        let accepts = percore::spawn(async move {
            for _ in 0..4 {
                l.accept().await.unwrap();
            }
        });
        // A name (resolved on the blocking pool; "localhost" may list ::1
        // first, where nothing listens: the next address is tried).
        TcpStream::connect(format!("localhost:{port}"))
            .await
            .unwrap();
        TcpStream::connect(("localhost", port)).await.unwrap();
        TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // A list whose first address refuses.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        let good: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        TcpStream::connect(&[refused, good][..]).await.unwrap();
        accepts.await.unwrap();
        // Refused everywhere: the error names the address.
        let e = TcpStream::connect(refused).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(e.to_string().contains(&refused.to_string()), "{e}");
        // Not an address and not host:port: a clear error, no lookup hang.
        let e = TcpStream::connect("no port here").await.unwrap_err();
        assert!(e.to_string().contains("no port here"), "{e}");
        let e = TcpStream::connect(&[][..]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        // UDP: connect and send_to by name or tuple.
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let bport = b.local_addr().unwrap().port();
        a.send_to(&b"t"[..], ("127.0.0.1", bport)).await.0.unwrap();
        a.connect(format!("127.0.0.1:{bport}")).await.unwrap();
        a.send(&b"c"[..]).await.0.unwrap();
        for want in [b"t", b"c"] {
            let (res, buf) = b.recv(Vec::with_capacity(4)).await;
            res.unwrap();
            assert_eq!(&buf, want);
        }
    });
}

#[test]
fn write_vectored_gathers_buffers_in_order_and_gives_them_back() {
    let _w = watchdog("write_vectored", 60);
    runtime(1, 64).block_on(async {
        let (a, b) = tcp_pair().await;
        let bufs = vec![
            b"head:".to_vec(),
            Vec::new(),
            b"body".to_vec(),
            b"!".to_vec(),
        ];
        let (res, back) = a.write_vectored(bufs.clone()).await;
        assert_eq!(res.unwrap(), 10);
        assert_eq!(back, bufs, "the buffers come back unchanged");
        let (res, got) = b.read_exact(vec![0u8; 10]).await;
        res.unwrap();
        assert_eq!(got, b"head:body!");
        let (res, _) = a.write_vectored(Vec::<Vec<u8>>::new()).await;
        assert_eq!(res.unwrap(), 0);
        // More than IOV_MAX buffers: at most 1,024 go in one call.
        let many: Vec<Vec<u8>> = (0..2000).map(|i| vec![(i % 256) as u8]).collect();
        let (res, _) = a.write_vectored(many).await;
        let n = res.unwrap();
        assert_eq!(n, 1024);
        let (res, got) = b.read_exact(vec![0u8; n]).await;
        res.unwrap();
        assert!(got.iter().enumerate().all(|(i, &x)| x == (i % 256) as u8));
        // A peer that does not read: a big gather write goes out partly.
        let big = vec![vec![7u8; 4 << 20], vec![8u8; 4 << 20]];
        let (res, _) = a.write_vectored(big).await;
        let n = res.unwrap();
        assert!(n > 0 && n < 8 << 20, "{n}");
    });
}

/// A connection's task holds its `write_all` future for as long as it
/// lives, so that future must not carry the larger zero-copy machinery it
/// does not use. (It did: both went through one function with a flag, and
/// `write_all`'s future was as large as `write_all_zc`'s.)
#[test]
fn write_all_future_is_smaller_than_the_zero_copy_one() {
    let _w = watchdog("tcp api sizes", 60);
    let rt = runtime(1, 64);
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let plain = std::mem::size_of_val(&s.write_all(Vec::<u8>::new()));
        let zc = std::mem::size_of_val(&s.write_all_zc(Vec::<u8>::new()));
        assert!(
            plain < zc,
            "write_all's future is {plain} bytes, write_all_zc's {zc}"
        );
        // And it adds a few words to the `write` it runs, not a second copy
        // of its buffer and state (an `async fn` loop: 456 against 232).
        let one = std::mem::size_of_val(&s.write(Vec::<u8>::new()));
        assert!(
            plain <= one + 128,
            "write_all's future is {plain} bytes around a write of {one}"
        );
    });
}
