//! What a worker reports about itself at start.

use std::fmt;

use crate::driver::uring::RingFeatures;

/// A worker's placement and ring setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Worker index, 0-based.
    pub index: usize,
    /// The core it is pinned to, if pinning succeeded.
    pub core: Option<usize>,
    /// The io_uring setup it got.
    pub ring: RingFeatures,
}

impl fmt::Display for WorkerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.core {
            Some(c) => write!(f, "worker {} on core {}: {}", self.index, c, self.ring),
            None => write!(f, "worker {} unpinned: {}", self.index, self.ring),
        }
    }
}
