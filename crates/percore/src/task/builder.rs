//! `task::Builder`: spawning with options (a name, shown in stall reports).

use std::future::Future;

use super::join::JoinHandle;
use crate::runtime::context;

/// Spawns a task with options.
///
/// ```
/// # let rt = percore::Runtime::builder().workers(1).build().unwrap();
/// # rt.block_on(async {
/// let h = percore::task::Builder::new().name("resolver").spawn(async { 1 });
/// assert_eq!(h.await.unwrap(), 1);
/// # });
/// ```
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
}

impl Builder {
    /// No options set.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The task's name, reported with its stalls.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// As [`spawn`](super::spawn), with these options.
    ///
    /// # Panics
    ///
    /// Outside a percore worker thread.
    pub fn spawn<F>(self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let name = self.name;
        context::with_worker(move |w| w.spawn_here(future, true, name))
            .unwrap_or_else(|| panic!("task::Builder::spawn called outside a percore worker"))
    }

    /// As [`spawn_local`](super::spawn_local), with these options.
    ///
    /// # Panics
    ///
    /// Outside a percore worker thread.
    pub fn spawn_local<F>(self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let name = self.name;
        context::with_worker(move |w| w.spawn_here(future, false, name))
            .unwrap_or_else(|| panic!("task::Builder::spawn_local called outside a percore worker"))
    }
}
