//! Blocking thread-per-connection: the classic model, for reference.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

pub fn run(listen: SocketAddr) -> io::Result<()> {
    let l = super::listener(listen, false)?;
    super::announce(l.local_addr()?);
    for conn in l.incoming() {
        let Ok(mut s) = conn else { continue };
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; super::BUFFER];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("threads server: cannot spawn a thread for a connection: {e}");
        }
    }
    Ok(())
}
