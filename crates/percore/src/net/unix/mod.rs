//! Unix-domain sockets: `listener` and `stream` (`SOCK_STREAM`), `datagram`
//! (`SOCK_DGRAM`), and the peer credentials type. Addresses are std's
//! [`std::os::unix::net::SocketAddr`]: a filesystem path, or on Linux an
//! abstract name (`std::os::linux::net::SocketAddrExt::from_abstract_name`),
//! which needs no file and vanishes with the socket.

mod datagram;
mod listener;
mod stream;

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::SocketAddr;
use std::path::Path;

pub use datagram::UnixDatagram;
pub use listener::UnixListener;
pub use stream::UnixStream;

use crate::net::sockaddr::RawAddr;

/// The credentials of the process at the other end of a Unix socket, as the
/// kernel recorded them when the connection was made (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UCred {
    /// Its process id.
    pub pid: i32,
    /// Its effective user id.
    pub uid: u32,
    /// Its effective group id.
    pub gid: u32,
}

fn peer_cred(fd: &impl AsRawFd) -> io::Result<UCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: out-pointers to a live ucred and its length.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// `getsockname` / `getpeername` of a Unix socket.
fn addr_of(fd: &impl AsRawFd, peer: bool) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::empty();
    let f = if peer {
        libc::getpeername
    } else {
        libc::getsockname
    };
    // SAFETY: out-pointers into `raw`, alive for the call.
    let r = unsafe {
        f(
            fd.as_raw_fd(),
            (&mut raw.storage as *mut libc::sockaddr_storage).cast(),
            &mut raw.len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    raw.to_unix()
}

/// A Unix socket of `ty`, non-blocking and close-on-exec.
fn socket(ty: socket2::Type) -> io::Result<socket2::Socket> {
    socket2::Socket::new(socket2::Domain::UNIX, ty.nonblocking().cloexec(), None)
}

/// Binds `sock` to `addr`, naming the address in the error.
fn bind(sock: &socket2::Socket, addr: &SocketAddr) -> io::Result<()> {
    let raw = RawAddr::from_unix(addr)?;
    // SAFETY: `raw` holds a valid sockaddr_un of `raw.len` bytes.
    let r = unsafe { libc::bind(sock.as_raw_fd(), raw.ptr(), raw.len) };
    if r < 0 {
        let e = io::Error::last_os_error();
        let hint = if e.kind() == io::ErrorKind::AddrInUse {
            " (a socket file is there already: remove it if no server uses it)"
        } else {
            ""
        };
        return Err(io::Error::new(
            e.kind(),
            format!("bind Unix socket {}: {e}{hint}", describe(addr)),
        ));
    }
    Ok(())
}

/// A path as a std address, with the path in the error if it is too long.
fn path_addr(path: &Path) -> io::Result<SocketAddr> {
    SocketAddr::from_pathname(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("Unix socket path {}: {e}", path.display()),
        )
    })
}

/// A readable form of an address for errors.
fn describe(addr: &SocketAddr) -> String {
    use std::os::linux::net::SocketAddrExt;
    if let Some(p) = addr.as_pathname() {
        p.display().to_string()
    } else if let Some(n) = addr.as_abstract_name() {
        format!("@{}", String::from_utf8_lossy(n))
    } else {
        "(unnamed)".to_string()
    }
}
