//! bench-harness: the instrument behind every performance claim percore
//! makes.
//!
//! - `load` — the echo load generator (open and closed loop, verified bytes,
//!   coordinated-omission-free latency, self-monitoring).
//! - `serve` — baseline echo servers (tokio multi-thread, tokio
//!   thread-per-core, blocking threads).
//! - `compare` — the comparison runner: servers as pinned child processes,
//!   alternating runs, medians, results.json, .hgrm files and SVG plots.
//! - `agent` — the server host's CPU sampler for two-host runs.
//! - `hist` — histogram helpers.

pub mod agent;
pub mod compare;
pub mod hist;
pub mod load;
pub mod serve;
