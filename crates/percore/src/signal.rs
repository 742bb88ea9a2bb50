//! Signals as async events: a `signalfd(2)` waited on through the worker's
//! driver (a readiness poll on io_uring, epoll readiness on epoll) and then
//! read with `read(2)`, so waiting for a signal costs no thread, and a
//! dropped `recv` consumes no signal.
//!
//! Each signal is delivered once, to one reader: two `Signals` (or two
//! libraries) waiting for the same signal share its deliveries. Signals
//! sent to one thread (`pthread_kill`) are only seen by a read on that
//! thread.
//!
//! **Block the signals first.** A signalfd only sees signals that are
//! blocked in every thread of the process; an unblocked one runs its
//! default action (SIGINT, SIGTERM: the process ends) or goes to a thread
//! that does not read it. Call [`block`] on the main thread *before*
//! building any runtime or starting any thread, so that every thread
//! inherits the mask:
//!
//! ```
//! percore::signal::block(&[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1])?;
//! let rt = percore::Runtime::new()?;
//! let sig = rt.block_on(async {
//!     let mut signals = percore::signal::Signals::new(&[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1])?;
//!     // Here the process signals itself; a service waits for Ctrl-C or
//!     // its supervisor's SIGTERM.
//!     // SAFETY: kill(2) of this process with a blocked signal.
//!     unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
//!     signals.recv().await
//! })?;
//! assert_eq!(sig, libc::SIGUSR1);
//! println!("got signal {sig}; shutting down");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::net::socket::Socket;

fn set_of(signals: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigemptyset initialises the zeroed set before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in signals {
        // SAFETY: as above; an invalid signal number is reported.
        if unsafe { libc::sigaddset(&mut set, s) } != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("signal {s} is not a valid signal number"),
            ));
        }
    }
    Ok(set)
}

/// Blocks `signals` in the calling thread and in every thread it starts
/// from now on (the mask is inherited). Call it before building runtimes.
pub fn block(signals: &[i32]) -> io::Result<()> {
    let set = set_of(signals)?;
    // SAFETY: `set` is initialised; no old mask is requested.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// A stream of the given signals (see the module docs: block them first).
#[derive(Debug)]
pub struct Signals {
    fd: Socket,
}

impl Signals {
    /// A signalfd for `signals` (non-blocking, close-on-exec).
    pub fn new(signals: &[i32]) -> io::Result<Signals> {
        let set = set_of(signals)?;
        // SAFETY: `set` is initialised; -1 asks for a new fd.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Signals {
            fd: Socket::new(fd),
        })
    }

    /// Waits for the next of the signals; returns its number. Cancel-safe:
    /// dropping the future loses no signal. `&mut self`: one waiter at a
    /// time.
    pub async fn recv(&mut self) -> io::Result<i32> {
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            let (res, buf) =
                crate::net::ops::read_when_ready(&self.fd, Vec::with_capacity(size)).await;
            match res {
                Ok(n) if n == size => {
                    // SAFETY: the kernel wrote one whole signalfd_siginfo;
                    // read_unaligned copes with the Vec's alignment.
                    let info: libc::signalfd_siginfo =
                        unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
                    return Ok(info.ssi_signo as i32);
                }
                Ok(n) => {
                    return Err(io::Error::other(format!(
                        "signalfd read {n} bytes, expected {size}"
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Waits for SIGINT (Ctrl-C). SIGINT must be blocked in every thread (see
/// the module docs), else it ends the process before this sees it.
pub async fn ctrl_c() -> io::Result<()> {
    Signals::new(&[libc::SIGINT])?.recv().await.map(drop)
}
