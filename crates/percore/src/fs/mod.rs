//! Files and paths: [`File`] with positional owned-buffer I/O, and the
//! whole-file and directory helpers (`read`, `write`, `remove_file`,
//! `rename`, `create_dir`, ...).
//!
//! On io_uring each call is a native ring op (openat, read, write, fsync,
//! statx, unlinkat, renameat, mkdirat). On the epoll driver, which cannot
//! wait on regular files, the same calls run on the runtime's bounded
//! blocking pool (`offload.rs`); if the pool is full they fail at once with
//! `WouldBlock` and a message naming the pool's limits.
//!
//! - `file` — `File`, `OpenOptions`.
//! - `metadata` — `Metadata` (from statx or std).
//! - `offload` — the epoll driver's blocking-pool path.
//! - `path` — paths as C strings, errors that name them.

mod file;
mod metadata;
mod offload;
mod path;

use std::io;
use std::path::Path;

pub use file::{File, OpenOptions};
pub use metadata::Metadata;

use crate::driver::buf::IoBuf;
use crate::driver::{uring, Driver};
use crate::net::ops::current;

/// Reads the whole file at `path`.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    let f = File::open(path).await?;
    // The size is a hint: the file may grow or shrink while it is read.
    // One byte beyond the size, so that when the hint is exact the read
    // that finds the end needs no growth. A bogus huge size is an error,
    // not an abort.
    let hint = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut out = Vec::new();
    usize::try_from(hint)
        .ok()
        .and_then(|h| out.try_reserve_exact(h.saturating_add(1).max(4096)).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "read {}: cannot hold {hint} bytes in memory",
                    path.display()
                ),
            )
        })?;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let at = out.len();
        let (res, slice) = f.read_at(out.slice(at..), at as u64).await;
        out = slice.into_inner();
        match res {
            Ok(0) => return Ok(out),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(path::context("read", path, e)),
        }
    }
}

/// Writes `contents` to `path`, creating the file or replacing its
/// contents.
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let path = path.as_ref();
    let f = File::create(path).await?;
    let (res, _) = f.write_all_at(contents.as_ref().to_vec(), 0).await;
    res.map_err(|e| path::context("write", path, e))
}

/// Removes the file at `path`.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    unlink(path.as_ref(), false).await
}

/// Removes the empty directory at `path`.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    unlink(path.as_ref(), true).await
}

async fn unlink(path: &Path, dir: bool) -> io::Result<()> {
    let what = if dir { "remove directory" } else { "remove" };
    let res = match current() {
        Driver::Epoll => {
            let p = path.to_path_buf();
            offload::run(move || {
                if dir {
                    std::fs::remove_dir(p)
                } else {
                    std::fs::remove_file(p)
                }
            })
            .await
        }
        _ => uring::file::unlink(path::c_path(path)?, dir).await,
    };
    res.map_err(|e| path::context(what, path, e))
}

/// Renames `from` to `to`, replacing `to` if it exists (`rename(2)`).
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    let res = match current() {
        Driver::Epoll => {
            let (f, t) = (from.to_path_buf(), to.to_path_buf());
            offload::run(move || std::fs::rename(f, t)).await
        }
        _ => uring::file::rename(path::c_path(from)?, path::c_path(to)?).await,
    };
    res.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("rename {} to {}: {e}", from.display(), to.display()),
        )
    })
}

/// Creates the directory `path` (its parent must exist).
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    let native = crate::runtime::context::with_worker(|w| match &*w.driver.borrow() {
        crate::driver::IoDriver::Uring(d) => d.features().mkdirat,
        crate::driver::IoDriver::Epoll(_) => false,
    })
    .unwrap_or(false);
    let res = if native {
        uring::file::mkdir(path::c_path(path)?, 0o777).await
    } else {
        // The epoll driver, or a kernel before 5.15 (no mkdirat op).
        let p = path.to_path_buf();
        offload::run(move || std::fs::create_dir(p)).await
    };
    res.map_err(|e| path::context("create directory", path, e))
}

/// Creates `path` and any missing parents (on the blocking pool: it is a
/// walk of lookups).
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let p = path.as_ref().to_path_buf();
    offload::run(move || {
        std::fs::create_dir_all(&p).map_err(|e| path::context("create directory", &p, e))
    })
    .await
}

/// The metadata of the file at `path`, following symlinks.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref();
    let res = match current() {
        Driver::Epoll => {
            let p = path.to_path_buf();
            offload::run(move || std::fs::metadata(p).map(|m| Metadata::from_std(&m))).await
        }
        _ => uring::file::statx(None, Some(path::c_path(path)?))
            .await
            .map(|s| Metadata::from_statx(&s)),
    };
    res.map_err(|e| path::context("metadata of", path, e))
}
