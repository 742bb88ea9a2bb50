//! Tasks: the raw task record (`raw`), its state machine (`state`), the join
//! handle and panic-catching harness (`join`), and the spawn functions.

pub(crate) mod join;
pub(crate) mod raw;
mod spawn;
pub(crate) mod state;

pub use join::{JoinError, JoinHandle};
pub use raw::{yield_now, YieldNow};
pub use spawn::{spawn, spawn_local};
