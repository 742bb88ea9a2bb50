//! Synchronization between tasks, workers and foreign threads: channels
//! (`oneshot`, bounded `mpsc`), a fair [`Semaphore`] and [`Notify`]. Each
//! is a mutex around its state and a FIFO of waiters (`waitlist`): no
//! lock-free parts, so no loom models of their own.

pub mod mpsc;
mod notify;
pub mod oneshot;
mod semaphore;
mod waitlist;

pub use notify::{Notified, Notify};
pub use semaphore::{
    AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit, TryAcquireError,
};
