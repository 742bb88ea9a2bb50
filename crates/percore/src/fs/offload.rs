//! File I/O on the epoll driver: regular files are always "ready" to
//! epoll, so their calls run on the runtime's bounded blocking pool
//! (`task::spawn_blocking`) instead, and the awaiting task is woken when
//! the call returns.
//!
//! The buffer travels to the pool thread and back in a shared cell, so it
//! comes back to the caller even when the pool refuses the job (full queue)
//! and the closure is dropped unrun. A future dropped while its call runs
//! leaves the buffer with the call, which frees it when done.

use std::io;
use std::sync::{Arc, Mutex};

use crate::blocking;

/// Why a file call could not be queued.
fn refused(e: crate::BlockingError) -> io::Error {
    io::Error::new(
        io::ErrorKind::WouldBlock,
        format!(
            "file I/O on the epoll driver runs on the blocking pool, which refused it ({e}); \
             retry later or raise Builder::blocking_threads / blocking_queue"
        ),
    )
}

/// Runs `f` on the blocking pool.
pub(crate) async fn run<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match blocking::try_spawn_blocking(f) {
        Ok(h) => h.await.map_err(io::Error::other)?,
        Err(e) => Err(refused(e)),
    }
}

/// Runs `f` with `buf` on the blocking pool and gives `buf` back.
pub(crate) async fn run_with<B, T, F>(buf: B, f: F) -> (io::Result<T>, B)
where
    B: Send + 'static,
    F: FnOnce(&mut B) -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let cell = Arc::new(Mutex::new(Some(buf)));
    let theirs = cell.clone();
    let job = move || {
        let mut slot = theirs.lock().unwrap_or_else(|p| p.into_inner());
        let buf = slot.as_mut().expect("the buffer is with the call");
        f(buf)
    };
    let res = match blocking::try_spawn_blocking(job) {
        Ok(h) => h.await.map_err(io::Error::other).and_then(|r| r),
        Err(e) => Err(refused(e)),
    };
    // The call has returned or never ran (a refused or cancelled job's
    // closure is dropped before its handle resolves), so the buffer is here.
    let buf = cell
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .expect("the buffer came back");
    (res, buf)
}
