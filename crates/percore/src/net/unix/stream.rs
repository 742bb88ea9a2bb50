//! `UnixStream`: owned-buffer reads and writes on a Unix stream socket.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

use super::UCred;
use crate::driver::buf::{IoBuf, IoBufMut};
use crate::net::sockaddr::RawAddr;
use crate::net::socket::Socket as Sock;
use crate::net::{ops, stream_io};
use crate::BufResult;

/// A connected Unix stream socket. Reads and writes behave as on
/// [`TcpStream`](crate::net::TcpStream): owned buffers, and dropping an
/// I/O future cancels it (bytes a cancelled read had received are lost).
pub struct UnixStream {
    sock: Sock,
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.sock.raw())
            .finish()
    }
}

impl UnixStream {
    pub(super) fn from_sock(sock: Sock) -> UnixStream {
        UnixStream { sock }
    }

    /// Connects to the socket bound at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        Self::connect_addr(&super::path_addr(path.as_ref())?).await
    }

    /// Connects to `addr`: a path or an abstract name.
    pub async fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        let socket = super::socket(socket2::Type::STREAM)?;
        let raw = RawAddr::from_unix(addr)?;
        let sock = ops::connect(Sock::new(socket.into()), raw)
            .await
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("connect to Unix socket {}: {e}", super::describe(addr)),
                )
            })?;
        Ok(UnixStream { sock })
    }

    /// A connected pair (`socketpair(2)`), unnamed.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = socket2::Socket::pair(
            socket2::Domain::UNIX,
            socket2::Type::STREAM.nonblocking().cloexec(),
            None,
        )?;
        Ok((
            UnixStream::from_sock(Sock::new(a.into())),
            UnixStream::from_sock(Sock::new(b.into())),
        ))
    }

    /// Adopts a connected std stream (switched to non-blocking mode).
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        Ok(UnixStream::from_sock(Sock::new(stream.into())))
    }

    /// Gives the stream back as a blocking std stream (a new descriptor of
    /// the same socket; see [`TcpStream::into_std`](crate::net::TcpStream::into_std)).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        let s = std::os::unix::net::UnixStream::from(self.sock.clone().into_owned()?);
        s.set_nonblocking(false)?;
        Ok(s)
    }

    /// Reads up to `buf.bytes_total()` bytes into the start of `buf`.
    /// `Ok(0)` means the peer closed its side.
    pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        ops::recv(&self.sock, buf).await
    }

    /// Reads until `buf` is full, or fails with `UnexpectedEof`.
    pub async fn read_exact<B: IoBufMut>(&self, buf: B) -> BufResult<(), B> {
        stream_io::read_exact(buf, "connection", |s| self.read(s)).await
    }

    /// Writes some of `buf`'s initialized bytes; returns how many.
    pub fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> + '_ {
        ops::send(&self.sock, buf)
    }

    /// Writes the initialized bytes of `bufs`, in order, with one
    /// `sendmsg` (a gather write: a header and a body without copying them
    /// together); returns how many bytes went, which may be fewer than all
    /// (at most 1,024 buffers are sent per call). The buffers come back.
    pub async fn write_vectored<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        ops::send_vectored(&self.sock, bufs).await
    }

    /// Writes all of `buf`'s initialized bytes.
    pub fn write_all<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<(), B>> + '_ {
        stream_io::write_all(buf, "connection", move |s| self.write(s))
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        socket2::SockRef::from(self.sock.owned()).shutdown(how)
    }

    /// The local address (unnamed unless this side was bound).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        super::addr_of(&self.sock.raw(), false)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        super::addr_of(&self.sock.raw(), true)
    }

    /// The peer process's credentials (`SO_PEERCRED`).
    pub fn peer_cred(&self) -> io::Result<UCred> {
        super::peer_cred(&self.sock.raw())
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.raw()
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.owned().as_fd()
    }
}

/// As [`UnixStream::into_std`]; panics if the process is out of fds.
impl IntoRawFd for UnixStream {
    fn into_raw_fd(self) -> RawFd {
        self.into_std()
            .expect("UnixStream::into_raw_fd: dup of the socket failed")
            .into_raw_fd()
    }
}
