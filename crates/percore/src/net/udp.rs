//! `UdpSocket`: owned-buffer datagrams through the worker's ring.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, RawFd};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::driver::buf::{IoBuf, IoBufMut};
use crate::net::ops;
use crate::net::sockaddr::RawAddr;
use crate::net::socket::Socket as Sock;
use crate::BufResult;

/// A UDP socket.
///
/// Datagram boundaries are kept: each `recv`/`recv_from` returns exactly
/// one datagram. A datagram longer than the buffer is cut to the buffer's
/// size and the rest of it is discarded, as `recvfrom(2)` does; pass a
/// buffer as large as the largest datagram you expect (65,507 bytes covers
/// any IPv4 UDP payload).
///
/// As with [`TcpStream`](crate::net::TcpStream), dropping a `recv` future
/// before it completes cancels it; on io_uring a datagram the kernel had
/// already delivered into the cancelled buffer is lost with it.
///
/// ```
/// # let rt = percore::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(async {
///     let a = percore::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
///     let b = percore::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
///     let (res, _) = a.send_to(b"ping".to_vec(), b.local_addr()?).await;
///     res?;
///     let (res, buf) = b.recv_from(Vec::with_capacity(1500)).await;
///     let (n, from) = res?;
///     assert_eq!((&buf[..n], from), (&b"ping"[..], a.local_addr()?));
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct UdpSocket {
    sock: Sock,
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("fd", &self.sock.raw())
            .finish()
    }
}

impl UdpSocket {
    /// Binds a socket to `addr` (port 0: the kernel picks one).
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )?;
        socket
            .bind(&addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("bind UDP {addr}: {e}")))?;
        Ok(UdpSocket {
            sock: Sock::new(socket.into()),
        })
    }

    /// Adopts a std socket (switched to non-blocking mode, as all percore
    /// sockets are).
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            sock: Sock::new(socket.into()),
        })
    }

    /// Gives the socket back as a blocking std socket (a new descriptor of
    /// the same socket; see [`TcpStream::into_std`](crate::net::TcpStream::into_std)).
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        let fd = self.sock.into_owned()?;
        let s = std::net::UdpSocket::from(fd);
        s.set_nonblocking(false)?;
        Ok(s)
    }

    /// Sets the default peer: `send` goes there and `recv` takes only its
    /// datagrams. UDP has no handshake, so this completes at once (after a
    /// host-name lookup on the blocking pool, if `addr` is a name; the
    /// first address is used).
    pub async fn connect(&self, addr: impl crate::net::ToSocketAddrs) -> io::Result<()> {
        let addr = crate::net::addr::resolve(&addr).await?[0];
        SockRef::from(self.sock.owned())
            .connect(&addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("connect UDP to {addr}: {e}")))
    }

    /// Sends `buf`'s initialized bytes as one datagram to the connected
    /// peer; returns how many were sent (all of them, or an error such as
    /// `EMSGSIZE` for a datagram too large).
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        ops::send(&self.sock, buf).await
    }

    /// Receives one datagram from the connected peer into the start of
    /// `buf` (see the type's docs for datagrams longer than `buf`).
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        ops::recv_datagram(&self.sock, buf).await
    }

    /// Sends `buf`'s initialized bytes as one datagram to `target` (a
    /// host name is resolved on the blocking pool first; the first address
    /// is used).
    pub async fn send_to<B: IoBuf>(
        &self,
        buf: B,
        target: impl crate::net::ToSocketAddrs,
    ) -> BufResult<usize, B> {
        // The common case, an address: no lookup, no allocation.
        let target = match crate::net::addr::literal(&target) {
            Some(a) => a,
            None => match crate::net::addr::resolve(&target).await {
                Ok(v) => v[0],
                Err(e) => return (Err(e), buf),
            },
        };
        ops::send_to(&self.sock, buf, RawAddr::from_std(target)).await
    }

    /// Receives one datagram into the start of `buf`; returns its length
    /// (cut to `buf`'s capacity) and its sender.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (res, buf) = ops::recv_from(&self.sock, buf).await;
        let res = res.and_then(|(n, addr)| Ok((n, addr.to_std()?)));
        (res, buf)
    }

    /// The local address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_ip_addr()
    }

    /// The connected peer's address (`ENOTCONN` if not connected).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_ip_addr()
    }

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        SockRef::from(self.sock.owned()).set_broadcast(on)
    }

    /// Reads `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        SockRef::from(self.sock.owned()).broadcast()
    }

    /// Sets `IP_TTL` (IPv4) or `IPV6_UNICAST_HOPS` (IPv6).
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock.set_ttl(ttl)
    }

    /// Reads the TTL (hop limit on IPv6).
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.ttl()
    }

    /// Sets `SO_RCVBUF` (the kernel doubles it and applies its limits).
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        SockRef::from(self.sock.owned()).set_recv_buffer_size(bytes)
    }

    /// Sets `SO_SNDBUF` (the kernel doubles it and applies its limits).
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        SockRef::from(self.sock.owned()).set_send_buffer_size(bytes)
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.raw()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.owned().as_fd()
    }
}

/// As [`UdpSocket::into_std`]; panics if the process is out of fds.
impl IntoRawFd for UdpSocket {
    fn into_raw_fd(self) -> RawFd {
        self.into_std()
            .expect("UdpSocket::into_raw_fd: dup of the socket failed")
            .into_raw_fd()
    }
}
