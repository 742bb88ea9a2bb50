//! Scheduling between threads: each worker's remote queue (`remote`) and
//! its park/unpark latch (`park`). The local run queue is a plain `VecDeque`
//! owned by the worker (`runtime/worker.rs`).

mod park;
mod remote;

pub(crate) use remote::Remote;
