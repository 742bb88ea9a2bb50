//! Networking: TCP, UDP and Unix-domain sockets whose I/O goes through the
//! worker's ring (or its epoll reactor).
//!
//! - `addr` — `ToSocketAddrs`: literals in place, names on the blocking
//!   pool.
//! - `ops` — accept, connect, recv, send, datagrams, nop, dispatched to the
//!   driver.
//! - `socket` — an owned non-blocking socket and its epoll registration.
//! - `sockaddr` — `SocketAddr` and Unix addresses ⇄ `sockaddr_storage`.
//! - `sockopt` — the IP options and addresses TCP and UDP share.
//! - `stream_io` — read-exactly and write-all loops shared by the streams.
//! - `tcp` — `TcpListener`, `TcpStream`.
//! - `udp` — `UdpSocket`.
//! - `unix` — `UnixListener`, `UnixStream`, `UnixDatagram`.

pub(crate) mod addr;
pub(crate) mod ops;
pub(crate) mod sockaddr;
pub(crate) mod socket;
mod sockopt;
pub(crate) mod stream_io;
mod tcp;
mod udp;
pub mod unix;

pub use addr::ToSocketAddrs;
pub use tcp::{ListenOptions, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};
