//! Networking: TCP sockets whose I/O goes through the worker's ring.
//!
//! - `ops` — accept, connect, recv, send, nop as io_uring ops.
//! - `sockaddr` — `SocketAddr` ⇄ `sockaddr_storage`.
//! - `tcp` — `TcpListener`, `TcpStream`.

pub(crate) mod ops;
mod sockaddr;
mod tcp;

pub use tcp::{ListenOptions, TcpListener, TcpStream};
