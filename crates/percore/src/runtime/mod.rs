//! The runtime: builder, workers and their loop, shutdown.
//!
//! - `builder` — configuration, starting worker threads, ring creation.
//! - `worker` — a worker's owned state and loop; shutdown drain.
//! - `shared` — what all workers and handles share; spawning from outside.
//! - `context` — the thread-local current worker.
//! - `info` — what a worker reports at start.
//! - `block_on` — waiting on a plain thread.
//! - `stall` — stall detection: reporting polls longer than the threshold.

mod block_on;
mod builder;
pub(crate) mod context;
mod current;
pub(crate) mod guard;
mod handle;
mod info;
pub(crate) mod shared;
pub(crate) mod stall;
pub(crate) mod worker;

pub(crate) use block_on::wait;
pub use builder::{Builder, WakeMode};
pub use current::{worker_index, Handle};
pub use handle::{Runtime, RuntimeMetrics};
pub use info::WorkerInfo;
pub use stall::Stall;
