//! Scheduling between threads: each worker's shared side (`remote`: its
//! stealable and pinned queues, mail, owned tasks), parking (`park`), work
//! stealing (`steal`), mail about what a moved task left behind (`mail`),
//! the process-wide worker registry (`registry`), and the atomics they are written against
//! (`primitives`, swapped for loom's in the model tests). The queue of
//! `spawn_local` tasks is a plain `VecDeque` owned by the worker
//! (`runtime/worker.rs`).

pub(crate) mod mail;
mod park;
pub(crate) mod primitives;
pub(crate) mod registry;
mod remote;
pub(crate) mod steal;

#[cfg(all(test, loom))]
mod loom_tests;

pub(crate) use remote::Remote;
pub(crate) use steal::StealPolicy;
