//! File I/O on the epoll driver: regular files are always "ready" to
//! epoll, so their calls run on the runtime's bounded blocking pool
//! (`task::spawn_blocking`) instead, and the awaiting task is woken when
//! the call returns.
//!
//! The buffer travels to the pool thread and back in a shared cell, so it
//! comes back to the caller even when the pool refuses the job (full queue)
//! and the closure is dropped unrun. Dropping the future aborts a job that
//! has not started (so a dropped write that was still queued never lands
//! after later ones); a call already running finishes, and frees the
//! buffer when done. That is the epoll driver's form of cancellation: on
//! io_uring an op already issued may also still complete.

use std::io;
use std::sync::{Arc, Mutex};

use crate::blocking;
use crate::task::{JoinError, JoinHandle};

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

/// A pool job's handle that aborts the job if dropped before it ends (a
/// job not yet started is then skipped).
struct AbortOnDrop<T>(Option<JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, JoinError> {
        let h = self.0.as_mut().expect("joined once");
        let r = h.await;
        self.0 = None;
        r
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// A job's outcome as an `io::Result`; a panic in the call is resumed.
fn joined<T>(r: Result<io::Result<T>, JoinError>) -> io::Result<T> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(io::Error::other(e)),
    }
}

/// Runs `f` on the blocking pool.
pub(crate) async fn run<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match blocking::try_spawn_blocking(f) {
        Ok(h) => joined(AbortOnDrop(Some(h)).join().await),
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
        Ok(h) => joined(AbortOnDrop(Some(h)).join().await),
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
