//! `File` and `OpenOptions`: positional, owned-buffer file I/O.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::metadata::Metadata;
use super::{offload, path};
use crate::driver::buf::{IoBuf, IoBufMut};
use crate::driver::{uring, Driver};
use crate::net::ops::current;
use crate::net::socket::Socket as Fd;
use crate::net::stream_io;
use crate::BufResult;

/// An open file. Reads and writes are positional (`read_at`, `write_at`):
/// there is no cursor, so several tasks may use one file at distinct
/// offsets at once. On io_uring they are native ring ops; on the epoll
/// driver they run on the blocking pool (epoll cannot wait on regular
/// files), which is why their buffers must be `Send`.
///
/// Dropping a read or write future cancels it: on io_uring the op is
/// cancelled as for sockets, and one the kernel had already started may
/// still complete; on epoll a call still queued for the blocking pool is
/// skipped, and one already running finishes. Either way a dropped write
/// may or may not have landed; don't rely on its effect.
///
/// Offsets above `i64::MAX` are refused with `InvalidInput` (the kernel
/// takes signed offsets, and io_uring reads `u64::MAX` as "the current
/// position").
///
/// ```
/// # let rt = percore::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(async {
///     let path = std::env::temp_dir().join(format!("percore-file-doc-{}", std::process::id()));
///     let f = percore::fs::OpenOptions::new()
///         .read(true)
///         .write(true)
///         .create(true)
///         .open(&path)
///         .await?;
///     f.write_all_at(b"hello world".to_vec(), 0).await.0?;
///     let (res, buf) = f.read_at(vec![0u8; 5], 6).await;
///     assert_eq!(&buf[..res?], b"world");
///     percore::fs::remove_file(&path).await
/// })
/// .unwrap();
/// ```
pub struct File {
    fd: Fd,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("fd", &self.fd.raw()).finish()
    }
}

/// Options for opening a file, as [`std::fs::OpenOptions`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// No access; set at least `read`, `write` or `append`.
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }

    /// Open for appending: every write goes to the end of the file,
    /// whatever offset `write_at` names (Linux `O_APPEND` semantics).
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }

    /// Cut an existing file to length 0.
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }

    /// Create the file if it does not exist.
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }

    /// Create the file, failing if it exists.
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }

    /// Permission bits for a created file (before the umask; default 0o666).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    fn flags(&self) -> io::Result<i32> {
        let invalid = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg.to_string()));
        let access = match (self.read, self.write || self.append) {
            (true, false) => libc::O_RDONLY,
            (false, true) => libc::O_WRONLY,
            (true, true) => libc::O_RDWR,
            (false, false) => {
                return invalid("open options ask for neither read, write nor append access")
            }
        };
        let writes = self.write || self.append;
        if (self.create || self.create_new || self.truncate) && !writes {
            return invalid("open options create or truncate without write or append access");
        }
        if self.truncate && self.append {
            return invalid("open options ask for both truncate and append");
        }
        let mut flags = access;
        if self.append {
            flags |= libc::O_APPEND;
        }
        if self.create_new {
            flags |= libc::O_CREAT | libc::O_EXCL;
        } else if self.create {
            flags |= libc::O_CREAT;
        }
        if self.truncate {
            flags |= libc::O_TRUNC;
        }
        Ok(flags)
    }

    /// Opens `path` with these options. Errors name the path.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let path = path.as_ref();
        let flags = self.flags().map_err(|e| path::context("open", path, e))?;
        let c = path::c_path(path)?;
        let mode = self.mode;
        let fd = match current() {
            Driver::Epoll => {
                offload::run(move || {
                    // SAFETY: `c` is a NUL-terminated path alive for the call.
                    let r = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
                    if r < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // SAFETY: open returned a new fd that nobody owns.
                    Ok(unsafe { OwnedFd::from_raw_fd(r) })
                })
                .await
            }
            _ => uring::file::open(c, flags, mode).await,
        }
        .map_err(|e| path::context("open", path, e))?;
        Ok(File { fd: Fd::new(fd) })
    }
}

impl File {
    /// Opens `path` for reading.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens `path` for writing, creating it or cutting it to length 0.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// Options for [`OpenOptions::open`].
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Reads up to `buf.bytes_total()` bytes at offset `pos` into the start
    /// of `buf`. `Ok(0)` means `pos` is at or past the end of the file.
    pub async fn read_at<B: IoBufMut + Send>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Err(e) = check_offset(pos) {
            return (Err(e), buf);
        }
        match current() {
            Driver::Epoll => {
                let fd = self.fd.clone();
                offload::run_with(buf, move |b| {
                    // SAFETY: the pointer is valid for `bytes_total` bytes of
                    // writes (IoBufMut); the buffer is held for the call.
                    let r = unsafe {
                        libc::pread(
                            fd.raw(),
                            b.stable_mut_ptr().cast(),
                            b.bytes_total(),
                            pos as libc::off_t,
                        )
                    };
                    if r < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // SAFETY: the kernel wrote `r` bytes at the start.
                    unsafe { b.set_init(r as usize) };
                    Ok(r as usize)
                })
                .await
            }
            _ => uring::file::read_at(&self.fd, buf, pos).await,
        }
    }

    /// Reads exactly `buf.bytes_total()` bytes at `pos`, or fails with
    /// `UnexpectedEof` if the file ends first.
    pub async fn read_exact_at<B: IoBufMut + Send>(&self, buf: B, pos: u64) -> BufResult<(), B> {
        stream_io::read_exact(buf, "file", |s| {
            let at = pos.saturating_add(s.begin() as u64);
            self.read_at(s, at)
        })
        .await
    }

    /// Writes some of `buf`'s initialized bytes at offset `pos`; returns
    /// how many.
    pub async fn write_at<B: IoBuf + Send>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Err(e) = check_offset(pos) {
            return (Err(e), buf);
        }
        match current() {
            Driver::Epoll => {
                let fd = self.fd.clone();
                offload::run_with(buf, move |b| {
                    // SAFETY: the pointer is valid for `bytes_init` bytes of
                    // reads (IoBuf); the buffer is held for the call.
                    let r = unsafe {
                        libc::pwrite(
                            fd.raw(),
                            b.stable_ptr().cast(),
                            b.bytes_init(),
                            pos as libc::off_t,
                        )
                    };
                    if r < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(r as usize)
                })
                .await
            }
            _ => uring::file::write_at(&self.fd, buf, pos).await,
        }
    }

    /// Writes all of `buf`'s initialized bytes at offset `pos`.
    pub async fn write_all_at<B: IoBuf + Send>(&self, buf: B, pos: u64) -> BufResult<(), B> {
        stream_io::write_all(buf, "file", |s| {
            let at = pos.saturating_add(s.begin() as u64);
            self.write_at(s, at)
        })
        .await
    }

    /// Flushes data and metadata to the device (`fsync`).
    pub async fn sync_all(&self) -> io::Result<()> {
        self.sync(false).await
    }

    /// Flushes data, and only the metadata needed to read it back
    /// (`fdatasync`).
    pub async fn sync_data(&self) -> io::Result<()> {
        self.sync(true).await
    }

    async fn sync(&self, data_only: bool) -> io::Result<()> {
        match current() {
            Driver::Epoll => {
                let fd = self.fd.clone();
                offload::run(move || {
                    // SAFETY: fsync/fdatasync of an fd held for the call.
                    let r = unsafe {
                        if data_only {
                            libc::fdatasync(fd.raw())
                        } else {
                            libc::fsync(fd.raw())
                        }
                    };
                    if r < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                })
                .await
            }
            _ => uring::file::sync(&self.fd, data_only).await,
        }
    }

    /// The file's metadata (`statx` on io_uring).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        match current() {
            Driver::Epoll => {
                let fd = self.fd.clone();
                offload::run(move || {
                    // A second descriptor of the file, closed after the call.
                    let f = std::fs::File::from(fd.owned().try_clone()?);
                    f.metadata().map(|m| Metadata::from_std(&m))
                })
                .await
            }
            _ => Ok(Metadata::from_statx(
                &uring::file::statx(Some(&self.fd), None).await?,
            )),
        }
    }

    /// Cuts or extends the file to `len` bytes (`ftruncate`, on the
    /// blocking pool on both drivers).
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        let fd = self.fd.clone();
        offload::run(move || {
            // SAFETY: ftruncate of an fd held for the call.
            if unsafe { libc::ftruncate(fd.raw(), len as libc::off_t) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
        .await
    }

    /// Adopts a std file.
    pub fn from_std(file: std::fs::File) -> File {
        File {
            fd: Fd::new(file.into()),
        }
    }

    /// Gives the file back as a std file (a new descriptor of the same
    /// open file; ops cancelled but not yet ended keep the old one until
    /// they end).
    pub fn into_std(self) -> io::Result<std::fs::File> {
        Ok(std::fs::File::from(self.fd.clone().into_owned()?))
    }
}

/// Refuses offsets the kernel cannot take as a signed `off_t`.
fn check_offset(pos: u64) -> io::Result<()> {
    if pos > i64::MAX as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file offset {pos} is above i64::MAX"),
        ));
    }
    Ok(())
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.owned().as_fd()
    }
}

/// As [`File::into_std`]; panics if the process is out of fds.
impl IntoRawFd for File {
    fn into_raw_fd(self) -> RawFd {
        self.into_std()
            .expect("File::into_raw_fd: dup of the file failed")
            .into_raw_fd()
    }
}
