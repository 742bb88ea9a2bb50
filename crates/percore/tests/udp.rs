//! `UdpSocket` on the driver under test (`PERCORE_TEST_DRIVER`): datagram
//! boundaries, truncation, addresses (v4 and v6), connected sockets,
//! cancellation, std round trips and bad input.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use percore::net::UdpSocket;
use percore::time::timeout;

fn v4() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn send_to_and_recv_from_carry_the_sender_on_v4_and_v6() {
    let _w = watchdog("udp_v4_v6", 30);
    runtime(1, 64).block_on(async {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let a = UdpSocket::bind(local.parse().unwrap()).unwrap();
            let b = UdpSocket::bind(local.parse().unwrap()).unwrap();
            let (res, _) = a.send_to(b"hello".to_vec(), b.local_addr().unwrap()).await;
            assert_eq!(res.unwrap(), 5);
            let (res, buf) = b.recv_from(Vec::with_capacity(64)).await;
            let (n, from) = res.unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from, a.local_addr().unwrap(), "{local}");
        }
    });
}

#[test]
fn each_receive_returns_exactly_one_datagram() {
    let _w = watchdog("udp_boundaries", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = udp_pair().await;
        let sizes = [1usize, 0, 1400, 7, 9000];
        for (i, &n) in sizes.iter().enumerate() {
            let (res, _) = a.send(vec![i as u8; n]).await;
            assert_eq!(res.unwrap(), n);
        }
        for (i, &n) in sizes.iter().enumerate() {
            let (res, buf) = b.recv(Vec::with_capacity(65536)).await;
            assert_eq!(res.unwrap(), n, "datagram {i}: a zero-length one is Ok(0)");
            assert!(buf.iter().all(|&x| x == i as u8));
        }
    });
}

#[test]
fn a_datagram_longer_than_the_buffer_is_cut_and_the_next_is_whole() {
    let _w = watchdog("udp_truncation", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = udp_pair().await;
        let long: Vec<u8> = (0..100u8).collect();
        a.send(long.clone()).await.0.unwrap();
        a.send(b"next".to_vec()).await.0.unwrap();
        let (res, buf) = b.recv_from(Vec::with_capacity(10)).await;
        assert_eq!(res.unwrap().0, 10);
        assert_eq!(buf, long[..10]);
        let (res, buf) = b.recv(Vec::with_capacity(10)).await;
        assert_eq!(
            res.unwrap(),
            4,
            "the rest of the long datagram is discarded"
        );
        assert_eq!(buf, b"next");
    });
}

#[test]
fn a_connected_socket_takes_only_its_peers_datagrams() {
    let _w = watchdog("udp_connected", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = udp_pair().await;
        assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
        let stranger = UdpSocket::bind(v4()).unwrap();
        stranger
            .send_to(b"not for you".to_vec(), b.local_addr().unwrap())
            .await
            .0
            .unwrap();
        a.send(b"mine".to_vec()).await.0.unwrap();
        let (res, buf) = b.recv(Vec::with_capacity(64)).await;
        assert_eq!(&buf[..res.unwrap()], b"mine");
        let nothing = timeout(Duration::from_millis(50), b.recv(Vec::with_capacity(64))).await;
        assert!(nothing.is_err(), "the stranger's datagram was filtered out");
    });
}

#[test]
fn a_dropped_receive_loses_nothing_sent_after_it() {
    let _w = watchdog("udp_cancel", 30);
    runtime(1, 64).block_on(async {
        let (a, b) = udp_pair().await;
        for i in 0..200u32 {
            let pending = timeout(Duration::from_micros(200), b.recv(Vec::with_capacity(64))).await;
            assert!(pending.is_err(), "nothing was sent yet");
            a.send(i.to_le_bytes().to_vec()).await.0.unwrap();
            let (res, buf) = b.recv(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, i.to_le_bytes(), "datagram {i}");
        }
    });
}

#[test]
fn many_tasks_on_two_workers_exchange_datagrams() {
    let _w = watchdog("udp_many", 60);
    let rt = runtime(2, 64);
    rt.block_on(async {
        let server = UdpSocket::bind(v4()).unwrap();
        let addr = server.local_addr().unwrap();
        let echo = percore::spawn(async move {
            for _ in 0..16 * 50 {
                let (res, buf) = server.recv_from(Vec::with_capacity(64)).await;
                let (n, from) = res.unwrap();
                let (res, _) = server.send_to(buf[..n].to_vec(), from).await;
                res.unwrap();
            }
        });
        let clients: Vec<_> = (0..16u8)
            .map(|c| {
                percore::spawn(async move {
                    let s = UdpSocket::bind(v4()).unwrap();
                    s.connect(addr).await.unwrap();
                    for i in 0..50u8 {
                        s.send(vec![c, i]).await.0.unwrap();
                        let (res, buf) = s.recv(Vec::with_capacity(64)).await;
                        assert_eq!(res.unwrap(), 2);
                        assert_eq!(buf, [c, i]);
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        echo.await.unwrap();
    });
}

#[test]
fn std_sockets_go_in_and_out() {
    let _w = watchdog("udp_std", 30);
    runtime(1, 64).block_on(async {
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::from_std(std_sock).unwrap();
        let b = UdpSocket::bind(v4()).unwrap();
        b.send_to(b"in".to_vec(), a.local_addr().unwrap())
            .await
            .0
            .unwrap();
        let (res, buf) = a.recv(Vec::with_capacity(8)).await;
        assert_eq!(&buf[..res.unwrap()], b"in");
        // A receive on this worker registered it (epoll); into_std takes it
        // out, and the std socket then works blocking.
        let back = a.into_std().unwrap();
        b.send_to(b"out".to_vec(), back.local_addr().unwrap())
            .await
            .0
            .unwrap();
        back.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = back.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"out");
    });
}

/// `into_std` away from the worker that registered the socket with epoll
/// (here: a plain thread) takes it out of that worker's epoll set, and the
/// std socket is blocking.
#[test]
fn into_std_off_the_worker_leaves_no_epoll_registration() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let _w = watchdog("udp_into_std_remote", 30);
    let rt = percore::Runtime::builder()
        .driver(percore::Driver::Epoll)
        .workers(1)
        .build()
        .unwrap();
    let sock = rt.block_on(async {
        let s = UdpSocket::bind(v4()).unwrap();
        // A receive that waits registers the socket with the worker's epoll.
        let r = timeout(Duration::from_millis(5), s.recv(Vec::with_capacity(8))).await;
        assert!(r.is_err());
        s
    });
    let std_sock = sock.into_std().unwrap();
    let ino = std::fs::metadata(format!("/proc/self/fd/{}", std_sock.as_raw_fd()))
        .unwrap()
        .ino();
    // Let the worker handle its mail.
    rt.block_on(percore::time::sleep(Duration::from_millis(20)));
    assert!(
        !in_any_epoll_set(ino),
        "the socket is still in an epoll set after into_std"
    );
    // SAFETY: F_GETFL on an open fd.
    let flags = unsafe { libc::fcntl(std_sock.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(flags & libc::O_NONBLOCK, 0, "the std socket blocks");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let _w = watchdog("udp_errors", 30);
    runtime(1, 64).block_on(async {
        let a = UdpSocket::bind(v4()).unwrap();
        let taken = a.local_addr().unwrap();
        let e = UdpSocket::bind(taken).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains(&taken.to_string()), "{e}");
        // Not connected: no peer, and `send` has nowhere to go.
        assert_eq!(
            a.peer_addr().unwrap_err().kind(),
            std::io::ErrorKind::NotConnected
        );
        let (res, _) = a.send(b"x".to_vec()).await;
        assert!(res.is_err());
        // A datagram larger than UDP allows.
        let b = UdpSocket::bind(v4()).unwrap();
        let (res, _) = a.send_to(vec![0u8; 70_000], b.local_addr().unwrap()).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EMSGSIZE));
        // Nobody listens on the connected peer's port: the ICMP error comes
        // back as ECONNREFUSED on the next receive.
        let gone = UdpSocket::bind(v4()).unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        a.connect(gone_addr).await.unwrap();
        a.send(b"anyone?".to_vec()).await.0.unwrap();
        // Bounded: a parallel test may take the port, or ICMP be limited.
        if let Ok((res, _)) = timeout(Duration::from_secs(2), a.recv(Vec::with_capacity(8))).await {
            assert_eq!(
                res.unwrap_err().kind(),
                std::io::ErrorKind::ConnectionRefused
            );
        }
    });
}

#[test]
fn socket_options_round_trip() {
    let _w = watchdog("udp_options", 30);
    runtime(1, 64).block_on(async {
        let a = UdpSocket::bind(v4()).unwrap();
        a.set_broadcast(true).unwrap();
        assert!(a.broadcast().unwrap());
        a.set_ttl(7).unwrap();
        assert_eq!(a.ttl().unwrap(), 7);
        let b = UdpSocket::bind("[::1]:0".parse().unwrap()).unwrap();
        b.set_ttl(9).unwrap();
        assert_eq!(b.ttl().unwrap(), 9);
        a.set_recv_buffer_size(1 << 16).unwrap();
        a.set_send_buffer_size(1 << 16).unwrap();
    });
}
