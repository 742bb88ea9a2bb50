//! TCP: `listener` (bind, `SO_REUSEPORT`, accept) and `stream`.

mod listener;
mod stream;

pub use listener::{ListenOptions, TcpListener};
pub use stream::TcpStream;
