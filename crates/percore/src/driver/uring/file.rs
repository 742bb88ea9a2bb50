//! File and path operations as io_uring ops: openat, positional read and
//! write, fsync, statx, unlinkat, renameat, mkdirat. Each op's resources
//! own what its SQE points at (paths as `CString`s, the statx buffer, the
//! data buffer) and a clone of the file's fd holder, as for sockets
//! (`net/socket.rs`, "The fd lifetime rule").

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types};

use super::ops::{cqe_result, BufData};
use crate::driver::buf::{IoBuf, IoBufMut};
use crate::driver::op::{Op, OpData};
use crate::net::socket::Socket as Fd;

/// One path an op reads.
struct PathData {
    _path: CString,
}

impl OpData for PathData {}

/// Two paths (rename).
struct TwoPaths {
    _from: CString,
    _to: CString,
}

impl OpData for TwoPaths {}

/// An open's path; a file opened after its future was dropped is closed.
struct OpenData {
    _path: CString,
}

impl OpData for OpenData {
    fn orphaned(self: Box<Self>, res: i32) {
        if res >= 0 {
            // SAFETY: a successful openat CQE carries a new fd that nobody
            // owns (its future is gone).
            drop(unsafe { OwnedFd::from_raw_fd(res) });
        }
    }
}

/// Opens `path` relative to the working directory (`O_CLOEXEC` is added).
pub(crate) async fn open(path: CString, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let op = Op::new(OpenData { _path: path }, |d| {
        opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), d._path.as_ptr())
            .flags(flags | libc::O_CLOEXEC)
            .mode(mode)
            .build()
    });
    let n = cqe_result(op.await.res)?;
    // SAFETY: a successful openat CQE carries a new fd nobody owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n as RawFd) })
}

/// Reads into `buf[0..bytes_total]` from offset `pos`.
pub(crate) async fn read_at<B: IoBufMut>(file: &Fd, buf: B, pos: u64) -> (io::Result<usize>, B) {
    let fd = file.raw();
    let data = BufData {
        buf,
        _socket: file.clone(),
    };
    let op = Op::new(data, |d| {
        let len = u32::try_from(d.buf.bytes_total()).unwrap_or(u32::MAX);
        opcode::Read::new(types::Fd(fd), d.buf.stable_mut_ptr(), len)
            .offset(pos)
            .build()
    });
    let c = op.await;
    let mut buf = c.data.buf;
    let res = cqe_result(c.res).map(|n| {
        // SAFETY: the kernel wrote `n` bytes at the start of the buffer.
        unsafe { buf.set_init(n as usize) };
        n as usize
    });
    (res, buf)
}

/// Writes `buf[0..bytes_init]` (possibly only part of it) at offset `pos`.
pub(crate) async fn write_at<B: IoBuf>(file: &Fd, buf: B, pos: u64) -> (io::Result<usize>, B) {
    let fd = file.raw();
    let data = BufData {
        buf,
        _socket: file.clone(),
    };
    let op = Op::new(data, |d| {
        let len = u32::try_from(d.buf.bytes_init()).unwrap_or(u32::MAX);
        opcode::Write::new(types::Fd(fd), d.buf.stable_ptr(), len)
            .offset(pos)
            .build()
    });
    let c = op.await;
    (cqe_result(c.res).map(|n| n as usize), c.data.buf)
}

/// What an fsync keeps: the file.
struct FileOnly {
    _file: Fd,
}

impl OpData for FileOnly {}

/// `fsync` (`data_only`: `fdatasync`).
pub(crate) async fn sync(file: &Fd, data_only: bool) -> io::Result<()> {
    let fd = file.raw();
    let flags = if data_only {
        types::FsyncFlags::DATASYNC
    } else {
        types::FsyncFlags::empty()
    };
    let op = Op::new(
        FileOnly {
            _file: file.clone(),
        },
        |_| opcode::Fsync::new(types::Fd(fd)).flags(flags).build(),
    );
    cqe_result(op.await.res).map(drop)
}

/// A statx result buffer, the (empty) path it needs, and the file.
struct StatxData {
    out: Box<libc::statx>,
    empty: CString,
    _file: Option<Fd>,
}

impl OpData for StatxData {}

/// `statx` of an open file (`file: Some`) or of `path`.
pub(crate) async fn statx(file: Option<&Fd>, path: Option<CString>) -> io::Result<libc::statx> {
    let (dirfd, flags) = match file {
        Some(f) => (f.raw(), libc::AT_EMPTY_PATH),
        None => (libc::AT_FDCWD, 0),
    };
    let data = StatxData {
        // SAFETY: statx is plain old data; all-zero is valid.
        out: Box::new(unsafe { std::mem::zeroed() }),
        empty: path.unwrap_or_default(),
        _file: file.cloned(),
    };
    let op = Op::new(data, |d| {
        let out: *mut libc::statx = &mut *d.out;
        opcode::Statx::new(types::Fd(dirfd), d.empty.as_ptr(), out.cast())
            .flags(flags)
            .mask(libc::STATX_BASIC_STATS | libc::STATX_BTIME)
            .build()
    });
    let c = op.await;
    cqe_result(c.res)?;
    Ok(*c.data.out)
}

/// `unlinkat` (`dir`: `rmdir`).
pub(crate) async fn unlink(path: CString, dir: bool) -> io::Result<()> {
    let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
    let op = Op::new(PathData { _path: path }, |d| {
        opcode::UnlinkAt::new(types::Fd(libc::AT_FDCWD), d._path.as_ptr())
            .flags(flags)
            .build()
    });
    cqe_result(op.await.res).map(drop)
}

/// `renameat`.
pub(crate) async fn rename(from: CString, to: CString) -> io::Result<()> {
    let op = Op::new(
        TwoPaths {
            _from: from,
            _to: to,
        },
        |d| {
            opcode::RenameAt::new(
                types::Fd(libc::AT_FDCWD),
                d._from.as_ptr(),
                types::Fd(libc::AT_FDCWD),
                d._to.as_ptr(),
            )
            .build()
        },
    );
    cqe_result(op.await.res).map(drop)
}

/// `mkdirat` with `mode` (before the umask).
pub(crate) async fn mkdir(path: CString, mode: u32) -> io::Result<()> {
    let op = Op::new(PathData { _path: path }, |d| {
        opcode::MkDirAt::new(types::Fd(libc::AT_FDCWD), d._path.as_ptr())
            .mode(mode)
            .build()
    });
    cqe_result(op.await.res).map(drop)
}
