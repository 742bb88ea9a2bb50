//! Networking: TCP sockets whose I/O goes through the worker's ring.
//!
//! - `ops` — accept, connect, recv, send, nop, dispatched to the driver.
//! - `socket` — an owned non-blocking socket and its epoll registration.
//! - `sockaddr` — `SocketAddr` ⇄ `sockaddr_storage`.
//! - `tcp` — `TcpListener`, `TcpStream`.

pub(crate) mod ops;
pub(crate) mod sockaddr;
pub(crate) mod socket;
mod tcp;

pub use tcp::{ListenOptions, TcpListener, TcpStream};
