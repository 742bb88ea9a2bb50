//! TCP: `listener` (bind, `SO_REUSEPORT`, accept), `steer` (CPU-aware
//! accept for a `SO_REUSEPORT` group) and `stream`.

mod listener;
mod steer;
mod stream;

pub use listener::{ListenOptions, TcpListener};
pub use stream::TcpStream;
