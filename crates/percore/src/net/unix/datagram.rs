//! `UnixDatagram`: owned-buffer datagrams on a Unix socket.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

use crate::driver::buf::{IoBuf, IoBufMut};
use crate::net::ops;
use crate::net::sockaddr::RawAddr;
use crate::net::socket::Socket as Sock;
use crate::BufResult;

/// A Unix datagram socket. Boundaries and truncation as for
/// [`UdpSocket`](crate::net::UdpSocket): one datagram per receive, cut to
/// the buffer's size.
pub struct UnixDatagram {
    sock: Sock,
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("fd", &self.sock.raw())
            .finish()
    }
}

impl UnixDatagram {
    fn raw_socket() -> io::Result<socket2::Socket> {
        super::socket(socket2::Type::DGRAM)
    }

    /// A socket bound to the filesystem path `path`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        Self::bind_addr(&super::path_addr(path.as_ref())?)
    }

    /// A socket bound to `addr`: a path or an abstract name.
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixDatagram> {
        let s = Self::raw_socket()?;
        super::bind(&s, addr)?;
        Ok(UnixDatagram {
            sock: Sock::new(s.into()),
        })
    }

    /// A socket bound to no address: it can send, and receive replies
    /// only on a connected pair or after `connect`.
    pub fn unbound() -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            sock: Sock::new(Self::raw_socket()?.into()),
        })
    }

    /// A connected, unnamed pair (`socketpair(2)`).
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = socket2::Socket::pair(
            socket2::Domain::UNIX,
            socket2::Type::DGRAM.nonblocking().cloexec(),
            None,
        )?;
        Ok((
            UnixDatagram {
                sock: Sock::new(a.into()),
            },
            UnixDatagram {
                sock: Sock::new(b.into()),
            },
        ))
    }

    /// Adopts a std socket (switched to non-blocking mode).
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        Ok(UnixDatagram {
            sock: Sock::new(socket.into()),
        })
    }

    /// Sets the default peer to the socket at `path` (completes at once).
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.connect_addr(&super::path_addr(path.as_ref())?)
    }

    /// Sets the default peer to `addr`: a path or an abstract name.
    pub fn connect_addr(&self, addr: &SocketAddr) -> io::Result<()> {
        let raw = RawAddr::from_unix(addr)?;
        // SAFETY: `raw` holds a valid sockaddr_un of `raw.len` bytes.
        let r = unsafe { libc::connect(self.sock.raw(), raw.ptr(), raw.len) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("connect to Unix socket {}: {e}", super::describe(addr)),
            ));
        }
        Ok(())
    }

    /// Gives the socket back as a blocking std socket (a new descriptor of
    /// the same socket; see [`TcpStream::into_std`](crate::net::TcpStream::into_std)).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixDatagram> {
        let s = std::os::unix::net::UnixDatagram::from(self.sock.clone().into_owned()?);
        s.set_nonblocking(false)?;
        Ok(s)
    }

    /// Sends `buf`'s initialized bytes as one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        ops::send(&self.sock, buf).await
    }

    /// Receives one datagram into the start of `buf`.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        ops::recv_datagram(&self.sock, buf).await
    }

    /// Sends one datagram to the socket bound at `path`.
    pub async fn send_to<B: IoBuf>(&self, buf: B, path: impl AsRef<Path>) -> BufResult<usize, B> {
        match super::path_addr(path.as_ref()) {
            Ok(addr) => self.send_to_addr(buf, &addr).await,
            Err(e) => (Err(e), buf),
        }
    }

    /// Sends one datagram to `addr`: a path or an abstract name.
    pub async fn send_to_addr<B: IoBuf>(&self, buf: B, addr: &SocketAddr) -> BufResult<usize, B> {
        match RawAddr::from_unix(addr) {
            Ok(raw) => ops::send_to(&self.sock, buf, raw).await,
            Err(e) => (Err(e), buf),
        }
    }

    /// Receives one datagram and its sender's address (unnamed if the
    /// sender is not bound).
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (res, buf) = ops::recv_from(&self.sock, buf).await;
        (res.and_then(|(n, a)| Ok((n, a.to_unix()?))), buf)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        super::addr_of(&self.sock.raw(), false)
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        super::addr_of(&self.sock.raw(), true)
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.raw()
    }
}

/// As [`UnixDatagram::into_std`]; panics if the process is out of fds.
impl std::os::fd::IntoRawFd for UnixDatagram {
    fn into_raw_fd(self) -> RawFd {
        self.into_std()
            .expect("UnixDatagram::into_raw_fd: dup of the socket failed")
            .into_raw_fd()
    }
}

impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.owned().as_fd()
    }
}
