//! Scheduling between threads: each worker's shared side (`remote`: its
//! stealable and pinned queues, mail, owned tasks), parking (`park`), work
//! stealing (`steal`), and the atomics they are written against
//! (`primitives`, swapped for loom's in the model tests). The queue of
//! `spawn_local` tasks is a plain `VecDeque` owned by the worker
//! (`runtime/worker.rs`).

mod park;
pub(crate) mod primitives;
mod remote;
pub(crate) mod steal;

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(loom)]
pub(crate) use park::Latch;
pub(crate) use remote::Remote;
pub(crate) use steal::StealPolicy;
