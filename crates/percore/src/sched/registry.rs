//! The process-wide registry of running workers, by their process-unique id.
//!
//! An op records the id of the worker whose ring it was submitted on. Its
//! future may later be polled or dropped anywhere: on a worker of the same
//! runtime (its task was stolen), on a worker of *another* runtime (the
//! future was sent there), or on a plain thread. Wherever that is, the op
//! must reach its ring's worker to get its result or to hand back its
//! resources (`driver/op.rs`), so the lookup cannot go through the current
//! runtime's worker list. It goes through here.
//!
//! Only rare paths use it (a foreign poll or drop, a failed `MSG_RING`), so
//! a mutex-protected map is enough. Entries are weak: a worker that has
//! exited is simply not found, and callers then leak what they hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::Remote;

fn map() -> &'static Mutex<HashMap<u64, Weak<Remote>>> {
    static MAP: OnceLock<Mutex<HashMap<u64, Weak<Remote>>>> = OnceLock::new();
    MAP.get_or_init(Default::default)
}

fn locked() -> std::sync::MutexGuard<'static, HashMap<u64, Weak<Remote>>> {
    map().lock().unwrap_or_else(|e| e.into_inner())
}

/// Worker start-up: `id` serves `remote`.
pub(crate) fn register(id: u64, remote: &Arc<Remote>) {
    locked().insert(id, Arc::downgrade(remote));
}

/// Worker exit, after its remote side is closed.
pub(crate) fn unregister(id: u64) {
    locked().remove(&id);
}

/// The running worker with process-unique id `id`, if it is still there.
pub(crate) fn find(id: u64) -> Option<Arc<Remote>> {
    locked().get(&id).and_then(Weak::upgrade)
}
