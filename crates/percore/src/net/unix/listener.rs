//! `UnixListener`.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

use super::UnixStream;
use crate::driver::uring::accept::MultiAccept;
use crate::net::ops;
use crate::net::socket::Socket as Sock;

/// A listening Unix stream socket; `accept` goes through the worker's ring
/// (a multishot accept on io_uring, as for [`TcpListener`](crate::net::TcpListener)).
///
/// Binding to a path creates a socket file that outlives the listener:
/// remove it when you are done (or use an abstract name, which needs none).
///
/// ```
/// use percore::net::{UnixListener, UnixStream};
/// # let rt = percore::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(async {
///     let dir = std::env::temp_dir().join(format!("percore-doc-{}", std::process::id()));
///     std::fs::create_dir_all(&dir)?;
///     let path = dir.join("echo.sock");
///     let _ = std::fs::remove_file(&path);
///     let listener = UnixListener::bind(&path)?;
///     let client = percore::spawn(async move {
///         let c = UnixStream::connect(&path).await?;
///         c.write_all(b"hi".to_vec()).await.0
///     });
///     let (conn, _) = listener.accept().await?;
///     let (res, buf) = conn.read_exact(vec![0u8; 2]).await;
///     res?;
///     assert_eq!(buf, b"hi");
///     client.await.unwrap()?;
///     std::fs::remove_dir_all(&dir)
/// })
/// .unwrap();
/// ```
pub struct UnixListener {
    sock: Sock,
    multi: MultiAccept,
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.sock.raw())
            .finish()
    }
}

impl UnixListener {
    /// Binds and listens on the filesystem path `path`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        Self::bind_addr(&super::path_addr(path.as_ref())?)
    }

    /// Binds and listens on `addr`: a path or an abstract name.
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        let socket = super::socket(socket2::Type::STREAM)?;
        super::bind(&socket, addr)?;
        socket.listen(1024)?;
        Ok(UnixListener {
            sock: Sock::new(socket.into()),
            multi: MultiAccept::default(),
        })
    }

    /// Waits for a connection; returns it and the peer's address (usually
    /// unnamed: clients rarely bind). Cancel-safe, like `TcpListener::accept`.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        match std::future::poll_fn(|cx| self.multi.poll_accept(&self.sock, cx)).await {
            Some(accepted) => {
                let stream = UnixStream::from_sock(Sock::new(accepted?));
                let peer = stream.peer_addr()?;
                Ok((stream, peer))
            }
            None => {
                let (fd, addr) = ops::accept(&self.sock).await?;
                Ok((UnixStream::from_sock(Sock::new(fd)), addr.to_unix()?))
            }
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        super::addr_of(&self.sock.raw(), false)
    }

    /// Adopts a listening std socket (switched to non-blocking mode).
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        Ok(UnixListener {
            sock: Sock::new(listener.into()),
            multi: MultiAccept::default(),
        })
    }

    /// Gives the listener back as a blocking std listener (a new
    /// descriptor of the same socket; connections accepted but not handed
    /// out are closed, as on drop).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        let l = std::os::unix::net::UnixListener::from(self.sock.clone().into_owned()?);
        l.set_nonblocking(false)?;
        Ok(l)
    }
}

/// As [`UnixListener::into_std`]; panics if the process is out of fds.
impl std::os::fd::IntoRawFd for UnixListener {
    fn into_raw_fd(self) -> RawFd {
        self.into_std()
            .expect("UnixListener::into_raw_fd: dup of the socket failed")
            .into_raw_fd()
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.raw()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.owned().as_fd()
    }
}
