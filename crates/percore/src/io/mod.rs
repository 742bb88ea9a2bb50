//! Interop with poll-based I/O: [`Compat`] puts a percore stream behind
//! the async read/write traits of tokio (feature `tokio`), futures
//! (feature `futures-io`) and hyper 1.x (feature `hyper`, which also brings
//! [`HyperExecutor`] and [`HyperTimer`]).
//!
//! - `compat` — the buffering adapter and its costs.
//! - `traits` — the trait impls, one block per feature.
//! - `hyper_rt` — hyper's executor and timer on percore.

mod compat;
#[cfg(feature = "hyper")]
mod hyper_rt;
mod traits;

pub use compat::{Compat, CompatStream};
#[cfg(feature = "hyper")]
pub use hyper_rt::{HyperExecutor, HyperTimer};
