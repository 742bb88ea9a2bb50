//! `Metadata`: what `statx(2)` says about a file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Metadata of a file: from `statx` on io_uring, from `fstat`/`stat` (via
/// std) on the epoll driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    len: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    ino: u64,
    nlink: u64,
    modified: SystemTime,
    accessed: SystemTime,
    created: Option<SystemTime>,
}

fn time(sec: i64, nsec: u32) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec.into())
    }
}

impl Metadata {
    pub(crate) fn from_statx(s: &libc::statx) -> Metadata {
        let btime = s.stx_mask & libc::STATX_BTIME != 0;
        Metadata {
            len: s.stx_size,
            mode: s.stx_mode.into(),
            uid: s.stx_uid,
            gid: s.stx_gid,
            ino: s.stx_ino,
            nlink: s.stx_nlink.into(),
            modified: time(s.stx_mtime.tv_sec, s.stx_mtime.tv_nsec),
            accessed: time(s.stx_atime.tv_sec, s.stx_atime.tv_nsec),
            created: btime.then(|| time(s.stx_btime.tv_sec, s.stx_btime.tv_nsec)),
        }
    }

    pub(crate) fn from_std(m: &std::fs::Metadata) -> Metadata {
        use std::os::unix::fs::MetadataExt;
        Metadata {
            len: m.len(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            ino: m.ino(),
            nlink: m.nlink(),
            modified: time(m.mtime(), m.mtime_nsec() as u32),
            accessed: time(m.atime(), m.atime_nsec() as u32),
            created: m.created().ok(),
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the size is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// A symbolic link (only from a path lookup that does not follow it;
    /// percore's lookups follow links, so this is false for them).
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }

    /// File type and permission bits (`st_mode`).
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Owner's user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Owner's group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        self.nlink
    }

    /// Last modification time.
    pub fn modified(&self) -> SystemTime {
        self.modified
    }

    /// Last access time.
    pub fn accessed(&self) -> SystemTime {
        self.accessed
    }

    /// Creation time, where the filesystem records it.
    pub fn created(&self) -> Option<SystemTime> {
        self.created
    }
}
