//! `TcpListener`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::stream::TcpStream;
use crate::driver::uring::accept::MultiAccept;
use crate::net::ops;
use crate::net::socket::Socket as Sock;

/// Options for [`TcpListener::bind_with`].
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// Set `SO_REUSEPORT`, so several sockets (one per worker) can listen on
    /// the same address and the kernel spreads connections over them.
    pub reuse_port: bool,
    /// `listen(2)` backlog.
    pub backlog: i32,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            reuse_port: false,
            backlog: 1024,
        }
    }
}

/// A listening TCP socket; `accept` goes through the worker's ring.
///
/// On io_uring (Linux 6.0+) the first `accept` arms a multishot accept on
/// the current worker's ring: one SQE for many connections, queued for this
/// listener (about 128; beyond that they wait in the kernel's backlog). The
/// queued connections hold fds: under a tight `RLIMIT_NOFILE`, `accept`
/// returns `EMFILE` sooner than a one-at-a-time accept would.
/// Dropping the listener closes connections it had accepted but not yet
/// handed out, as closing a listener does with its backlog.
pub struct TcpListener {
    sock: Sock,
    local: SocketAddr,
    multi: MultiAccept,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("fd", &self.sock.raw())
            .field("local", &self.local)
            .finish()
    }
}

impl TcpListener {
    /// Binds and listens on `addr` with default options.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        Self::bind_with(addr, ListenOptions::default())
    }

    /// Binds and listens on `addr`. Errors name the address.
    pub fn bind_with(addr: SocketAddr, opts: ListenOptions) -> io::Result<TcpListener> {
        let ctx = |what: &str, e: io::Error| {
            let hint = if e.kind() == io::ErrorKind::AddrInUse {
                " (another process is listening there; pick another port or stop it)"
            } else {
                ""
            };
            io::Error::new(e.kind(), format!("{what} {addr}: {e}{hint}"))
        };
        // Non-blocking: the epoll driver needs it, and io_uring waits on
        // non-blocking sockets just the same (checked on 6.18).
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )
        .map_err(|e| ctx("socket for", e))?;
        socket
            .set_reuse_address(true)
            .map_err(|e| ctx("SO_REUSEADDR on", e))?;
        if opts.reuse_port {
            socket
                .set_reuse_port(true)
                .map_err(|e| ctx("SO_REUSEPORT on", e))?;
        }
        if addr.is_ipv6() {
            socket
                .set_only_v6(true)
                .map_err(|e| ctx("IPV6_V6ONLY on", e))?;
        }
        socket.bind(&addr.into()).map_err(|e| ctx("bind", e))?;
        socket
            .listen(opts.backlog)
            .map_err(|e| ctx("listen on", e))?;
        let local = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener has no IP address"))?;
        Ok(TcpListener {
            sock: Sock::new(socket.into()),
            local,
            multi: MultiAccept::default(),
        })
    }

    /// Waits for a connection.
    ///
    /// Errors are those of `accept(2)` (`EMFILE` when out of fds: the next
    /// call tries again). Cancel-safe: a dropped `accept` loses no
    /// connection; it stays queued for the next call.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let fd = match std::future::poll_fn(|cx| self.multi.poll_accept(&self.sock, cx)).await {
                Some(accepted) => accepted?,
                None => {
                    let (fd, addr) = ops::accept(&self.sock).await?;
                    let peer = addr.to_std()?;
                    return Ok((TcpStream::from_owned_fd(fd), peer));
                }
            };
            match socket2::SockRef::from(&fd)
                .peer_addr()
                .map(|a| a.as_socket())
            {
                Ok(Some(peer)) => return Ok((TcpStream::from_owned_fd(fd), peer)),
                // Reset by the peer before it was handed out (ENOTCONN):
                // there is nothing to serve; take the next one.
                _ => continue,
            }
        }
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Adopts a listening std socket (switched to non-blocking mode, as all
    /// percore sockets are).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        Ok(TcpListener {
            sock: Sock::new(listener.into()),
            local,
            multi: MultiAccept::default(),
        })
    }
}

impl TcpListener {
    /// Gives the listener back as a blocking std listener (a new
    /// descriptor of the same socket; see [`TcpStream::into_std`]).
    /// Connections a multishot accept had queued and not handed out are
    /// closed, as when the listener is dropped.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        let l = std::net::TcpListener::from(self.sock.clone().into_owned()?);
        l.set_nonblocking(false)?;
        Ok(l)
    }
}

/// As [`TcpListener::into_std`]; panics if the process is out of fds.
impl std::os::fd::IntoRawFd for TcpListener {
    fn into_raw_fd(self) -> RawFd {
        self.into_std()
            .expect("TcpListener::into_raw_fd: dup of the socket failed")
            .into_raw_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.raw()
    }
}

impl std::os::fd::AsFd for TcpListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.owned().as_fd()
    }
}
