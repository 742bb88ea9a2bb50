//! The io_uring driver: one ring per worker, owned and entered only by that
//! worker's thread.

pub(crate) mod accept;
pub(crate) mod bufring;
mod driver;
pub(crate) mod file;
pub(crate) mod forward;
pub(crate) mod msg;
pub(crate) mod multishot;
pub(crate) mod ops;
pub(crate) mod recv;
mod setup;

pub(crate) use driver::Driver;
pub use setup::{RingFeatures, RingSetup};
