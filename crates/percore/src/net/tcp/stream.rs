//! `TcpStream`: owned-buffer reads and writes through the worker's ring.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::driver::buf::{IoBuf, IoBufMut};
use crate::driver::uring::bufring::RecvBuf;
use crate::driver::uring::recv::MultiRecv;
use crate::net::sockaddr::RawAddr;
use crate::net::socket::Socket as Sock;
use crate::net::{ops, stream_io};
use crate::BufResult;

/// A connected TCP socket.
///
/// Every I/O method takes its buffer by value and returns it with the
/// result. Dropping an I/O future before it completes cancels the operation;
/// the buffer is freed once the kernel is done with it. Bytes a cancelled
/// read had already received are lost with the buffer — cancel reads only
/// when you are giving up on the connection.
pub struct TcpStream {
    sock: Sock,
    /// Chunks received by `recv_pooled` (a multishot recv), not yet taken.
    multi: MultiRecv,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.sock.raw())
            .finish()
    }
}

impl TcpStream {
    pub(crate) fn from_owned_fd(fd: OwnedFd) -> TcpStream {
        TcpStream {
            sock: Sock::new(fd),
            multi: MultiRecv::default(),
        }
    }

    /// Opens a connection to `addr`: a `SocketAddr`, `"host:port"`,
    /// `(host, port)` or a slice of addresses ([`ToSocketAddrs`](crate::net::ToSocketAddrs)).
    /// A host name is resolved on the blocking pool; each address is tried
    /// in turn and the last error is returned if none accepts.
    pub async fn connect(addr: impl crate::net::ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last = None;
        for a in crate::net::addr::resolve(&addr).await? {
            match Self::connect_one(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("resolve returns at least one address"))
    }

    async fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        let sock = ops::connect(Sock::new(socket.into()), RawAddr::from_std(addr))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {addr}: {e}")))?;
        Ok(TcpStream {
            sock,
            multi: MultiRecv::default(),
        })
    }

    /// Adopts a connected std stream (switched to non-blocking mode, as all
    /// percore sockets are).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        Ok(TcpStream::from_owned_fd(stream.into()))
    }

    /// Gives the connection back as a blocking std stream: a new
    /// descriptor of the same socket (`dup`), taken out of the driver.
    /// Bytes a [`recv_pooled`](Self::recv_pooled) had queued and not handed
    /// out are lost, and an operation cancelled on io_uring whose
    /// cancellation had not landed yet may still send or receive on the
    /// socket; call it on a stream with no I/O outstanding. The new fd has
    /// a different number from [`as_raw_fd`](AsRawFd::as_raw_fd)'s, and
    /// the old number stays open until such a cancelled op ends (so the
    /// connection is not closed before then). Fails only if the process is
    /// out of fds, and then the stream is closed.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        let s = std::net::TcpStream::from(self.sock.clone().into_owned()?);
        s.set_nonblocking(false)?;
        Ok(s)
    }

    /// Reads up to `buf.bytes_total()` bytes into the start of `buf`.
    /// `Ok(0)` means the peer closed its side (or `buf` has no capacity).
    ///
    /// After [`recv_pooled`](Self::recv_pooled) on this stream, `read`
    /// first returns the bytes that call's multishot receive had queued,
    /// copied into `buf`.
    pub async fn read<B: IoBufMut>(&self, mut buf: B) -> BufResult<usize, B> {
        if !self.multi.active() {
            return ops::recv(&self.sock, buf).await;
        }
        let chunk = match self.recv_pooled().await {
            Ok(c) => c,
            Err(e) => return (Err(e), buf),
        };
        let n = chunk.len().min(buf.bytes_total());
        // SAFETY: `n` bytes fit in `buf`'s writable memory; `chunk` is a
        // separate buffer, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(chunk.as_ptr(), buf.stable_mut_ptr(), n);
            buf.set_init(n);
        }
        if n < chunk.len() {
            let mut rest = chunk;
            rest.consume(n);
            self.multi.put_back(rest);
        }
        (Ok(n), buf)
    }

    /// Receives the next bytes that arrive, in a buffer the runtime
    /// provides: on io_uring, from the worker's pool of provided buffers
    /// (`Builder::recv_buffers`), filled by one multishot receive armed on
    /// the first call, so no submission is made per message and an idle
    /// connection holds no buffer. An empty [`RecvBuf`] means the peer
    /// closed its side.
    ///
    /// Cancel-safe: bytes received while nobody waits stay queued in the
    /// stream (up to 32 chunks, or an eighth of the pool if less; then the
    /// peer is held back by TCP flow control), and so does a receive in
    /// progress. When the pool is empty,
    /// or on the epoll driver, the bytes arrive in an owned buffer instead,
    /// allocated for the call. A stream whose task moved to another worker
    /// ends its receive on the old worker's ring and re-arms on the new
    /// one.
    pub async fn recv_pooled(&self) -> io::Result<RecvBuf> {
        std::future::poll_fn(|cx| self.multi.poll_recv(&self.sock, cx)).await
    }

    /// Writes some of `buf`'s initialized bytes; returns how many.
    ///
    /// (A plain function returning the op's future, as the other writes
    /// here: an `async fn` around it would store `buf` a second time in
    /// every connection's task.)
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
        // Not shared with `write_all_zc` through a flag: the future would
        // then be as large as the zero-copy one (a connection's task holds
        // it for its whole life).
        stream_io::write_all(buf, "connection", move |s| self.write(s))
    }

    /// Like [`write`](Self::write), but the kernel sends from `buf`'s
    /// pages without copying them (`IORING_OP_SEND_ZC`, Linux 6.0+; a plain
    /// send on epoll). The call returns, and gives `buf` back, only once the
    /// kernel has let go of the pages (its notification), so it takes
    /// longer than `write`; whether it costs less CPU depends on the size
    /// and the path: see docs/benchmarks.md for this machine's threshold.
    /// Dropping the future keeps `buf` alive until that notification.
    pub fn write_zc<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> + '_ {
        ops::send_zc(&self.sock, buf)
    }

    /// Writes all of `buf`'s initialized bytes with [`write_zc`](Self::write_zc).
    pub fn write_all_zc<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<(), B>> + '_ {
        stream_io::write_all(buf, "connection", move |s| self.write_zc(s))
    }

    /// Reads until `buf` is full (`bytes_total` bytes), or fails with
    /// `UnexpectedEof` if the peer closes first (the bytes read so far are
    /// in `buf`, its initialised length says how many).
    pub async fn read_exact<B: IoBufMut>(&self, buf: B) -> BufResult<(), B> {
        stream_io::read_exact(buf, "connection", |s| self.read(s)).await
    }

    /// Sets `SO_KEEPALIVE`.
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        SockRef::from(self.sock.owned()).set_keepalive(on)
    }

    /// Reads `SO_KEEPALIVE`.
    pub fn keepalive(&self) -> io::Result<bool> {
        SockRef::from(self.sock.owned()).keepalive()
    }

    /// Sets `SO_LINGER` (`Some(Duration::ZERO)`: close with a reset).
    pub fn set_linger(&self, linger: Option<std::time::Duration>) -> io::Result<()> {
        SockRef::from(self.sock.owned()).set_linger(linger)
    }

    /// Reads `SO_LINGER`.
    pub fn linger(&self) -> io::Result<Option<std::time::Duration>> {
        SockRef::from(self.sock.owned()).linger()
    }

    /// Sets `SO_RCVBUF` (the kernel doubles it and applies its limits).
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        SockRef::from(self.sock.owned()).set_recv_buffer_size(bytes)
    }

    /// Reads `SO_RCVBUF`.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        SockRef::from(self.sock.owned()).recv_buffer_size()
    }

    /// Sets `SO_SNDBUF` (the kernel doubles it and applies its limits).
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        SockRef::from(self.sock.owned()).set_send_buffer_size(bytes)
    }

    /// Reads `SO_SNDBUF`.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        SockRef::from(self.sock.owned()).send_buffer_size()
    }

    /// Sets `IP_TTL` (IPv4) or `IPV6_UNICAST_HOPS` (IPv6).
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock.set_ttl(ttl)
    }

    /// Reads the TTL (hop limit on IPv6).
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.ttl()
    }

    /// Shuts down the read, write or both halves (`shutdown(2)`; it does not
    /// block).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(self.sock.owned()).shutdown(how)
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        SockRef::from(self.sock.owned()).set_tcp_nodelay(on)
    }

    /// Reads `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        SockRef::from(self.sock.owned()).tcp_nodelay()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_ip_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_ip_addr()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.raw()
    }
}

/// As [`TcpStream::into_std`]; panics if the process is out of fds.
impl std::os::fd::IntoRawFd for TcpStream {
    fn into_raw_fd(self) -> RawFd {
        self.into_std()
            .expect("TcpStream::into_raw_fd: dup of the socket failed")
            .into_raw_fd()
    }
}

impl std::os::fd::AsFd for TcpStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.owned().as_fd()
    }
}
