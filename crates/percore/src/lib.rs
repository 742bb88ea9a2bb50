//! percore: a proactor-style async runtime for Linux on io_uring, with one
//! pinned worker thread per core.
//!
//! ```
//! let rt = percore::Runtime::builder().workers(2).build()?;
//! rt.block_on(async {
//!     let listener = percore::net::TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
//!     let addr = listener.local_addr()?;
//!     let server = percore::spawn(async move {
//!         let (stream, _) = listener.accept().await?;
//!         let (res, buf) = stream.read(vec![0u8; 4096]).await;
//!         let n = res?;
//!         stream.write_all(buf[..n].to_vec()).await.0
//!     });
//!     let client = percore::net::TcpStream::connect(addr).await?;
//!     client.write_all(&b"ping"[..]).await.0?;
//!     let (res, buf) = client.read(Vec::with_capacity(4)).await;
//!     assert_eq!(&buf[..res?], b"ping");
//!     server.await.expect("the server task panicked")
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Start with `docs/guide.md`; `crates/percore/examples/` has runnable
//! programs (`http`: hyper on percore).
//!
//! Layout: `runtime/` (builder, workers, shutdown), `task/` (task record,
//! join handles), `fs/` (files), `blocking/` (the bounded pool for `spawn_blocking`), `sched/` (cross-thread queues, park/unpark), `driver/`
//! (op lifecycle, buffers, io_uring), `net/`, `time/`, `sync/`, `metrics/`.
//! `docs/architecture.md` walks through them.

#![deny(missing_docs)]

mod blocking;
mod driver;
pub mod fs;
pub mod io;
pub mod metrics;
pub mod net;
mod runtime;
mod sched;
pub mod signal;
pub mod sync;
pub mod task;
pub mod time;

pub use blocking::{BlockingError, BlockingStats};
pub use driver::buf::{IoBuf, IoBufMut, Slice};
pub use driver::uring::bufring::RecvBuf;
pub use driver::uring::{RingFeatures, RingSetup};
pub use driver::Driver;
pub use net::ops::nop;
pub use runtime::{
    worker_index, Builder, Handle, Runtime, RuntimeMetrics, Stall, WakeMode, WorkerInfo,
};
pub use task::{spawn, spawn_local, yield_now, JoinError, JoinHandle, YieldNow};

/// Runs `async fn main` on a percore runtime: `#[percore::main]`, or
/// `#[percore::main(workers = 2, driver = "epoll")]`. The body is built
/// and run on worker 0 (`Runtime::block_on_local`): it may hold `!Send`
/// values, and its output must be `Send`.
pub use percore_macros::main;
/// An `async fn` test on a percore runtime (1 worker unless
/// `workers = N`; `driver = "..."` as for `main`).
pub use percore_macros::test;

// The README's and the guide's code blocks are doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
struct GuideDoctests;

/// The result of an owned-buffer operation: the outcome and the buffer.
pub type BufResult<T, B> = (std::io::Result<T>, B);
