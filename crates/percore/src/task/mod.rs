//! Tasks: the task record (`raw`) with its typed future and output
//! (`body`), its state machine (`state`), its wakers (`waker`), the join
//! handle (`join`), the spawn functions, and the cooperative budget
//! (`coop`).

pub(crate) mod body;
mod builder;
pub(crate) mod coop;
pub(crate) mod join;
mod join_set;
pub(crate) mod raw;
mod scope;
mod spawn;
pub(crate) mod state;
mod waker;
mod yield_now;

pub use crate::blocking::{spawn_blocking, try_spawn_blocking};
pub use builder::Builder;
pub use join::{JoinError, JoinHandle};
pub use join_set::JoinSet;
pub use scope::{scope, Scope, ScopeError};
pub use spawn::{spawn, spawn_local};
pub use yield_now::{yield_now, YieldNow};
