//! The epoll driver (reactor): same public API as io_uring, implemented
//! with readiness plus non-blocking syscalls.
//!
//! - `driver` — registrations, readiness cache, parking in `epoll_pwait2`.
//! - `ops` — accept, connect, recv, send as "try, and on EAGAIN wait for
//!   the edge".

mod driver;
pub(crate) mod ops;

pub(crate) use driver::{Driver, Interest};
