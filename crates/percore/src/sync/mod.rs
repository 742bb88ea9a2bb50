//! Synchronization between tasks, workers and foreign threads.

pub mod oneshot;
