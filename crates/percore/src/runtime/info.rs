//! What a worker reports about itself at start.

use std::fmt;

use crate::driver::uring::RingFeatures;
use crate::driver::Driver;

/// A worker's placement and ring setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Worker index, 0-based.
    pub index: usize,
    /// The core it is pinned to, if pinning succeeded.
    pub core: Option<usize>,
    /// The driver it runs: `IoUring` or `Epoll` (never `Auto`).
    pub driver: Driver,
    /// The io_uring setup it got (io_uring driver only).
    pub ring: Option<RingFeatures>,
    /// Why `Driver::Auto` fell back to epoll, if it did.
    pub fallback: Option<String>,
}

impl fmt::Display for WorkerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.core {
            Some(c) => write!(f, "worker {} on core {}: ", self.index, c)?,
            None => write!(f, "worker {} unpinned: ", self.index)?,
        }
        match &self.ring {
            Some(r) => write!(f, "{r}"),
            None => write!(f, "{}", self.driver),
        }
    }
}
