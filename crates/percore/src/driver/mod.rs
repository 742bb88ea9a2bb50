//! Drivers: what submits I/O to the kernel and parks the worker.
//!
//! - `buf` — owned buffer traits ([`IoBuf`], [`IoBufMut`], [`Slice`]).
//! - `op` — the op lifecycle future shared by every operation.
//! - `uring` — the io_uring driver (ring setup, slots, submit, reap, park).

pub(crate) mod buf;
pub(crate) mod op;
pub(crate) mod uring;
