//! Converting between `SocketAddr` and the kernel's `sockaddr_storage`.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::net::SocketAddr as UnixAddr;
use std::sync::OnceLock;

/// std has no constructor for the unnamed address (an unbound socket's),
/// so take one from a socket that has it, once.
fn unnamed_unix_addr() -> io::Result<UnixAddr> {
    static UNNAMED: OnceLock<UnixAddr> = OnceLock::new();
    if let Some(a) = UNNAMED.get() {
        return Ok(a.clone());
    }
    let a = std::os::unix::net::UnixDatagram::unbound()?.local_addr()?;
    Ok(UNNAMED.get_or_init(|| a).clone())
}

/// A kernel socket address, boxed so its address is stable while an op that
/// points at it is in flight.
pub(crate) struct RawAddr {
    pub(crate) storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl RawAddr {
    /// Space for the kernel to write an address into (accept).
    pub(crate) fn empty() -> Box<RawAddr> {
        Box::new(RawAddr {
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        })
    }

    pub(crate) fn from_std(addr: SocketAddr) -> Box<RawAddr> {
        let mut raw = RawAddr::empty();
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write(
                        (&mut raw.storage as *mut libc::sockaddr_storage).cast(),
                        sin,
                    )
                };
                raw.len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write(
                        (&mut raw.storage as *mut libc::sockaddr_storage).cast(),
                        sin6,
                    )
                };
                raw.len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        raw
    }

    /// An `AF_UNIX` address: a filesystem path, or (Linux) an abstract name,
    /// taken from a std address.
    pub(crate) fn from_unix(addr: &UnixAddr) -> io::Result<Box<RawAddr>> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        let (bytes, is_abstract) = match (addr.as_pathname(), addr.as_abstract_name()) {
            (Some(p), _) => (p.as_os_str().as_bytes(), false),
            (None, Some(name)) => (name, true),
            (None, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an unnamed Unix socket address cannot be bound or connected to",
                ))
            }
        };
        let mut raw = RawAddr::empty();
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_un.
        let sun = unsafe {
            &mut *(&mut raw.storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_un>()
        };
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let start = usize::from(is_abstract);
        // std checked the length when it made the address.
        for (i, b) in bytes.iter().enumerate() {
            sun.sun_path[start + i] = *b as libc::c_char;
        }
        let path_offset = mem::offset_of!(libc::sockaddr_un, sun_path);
        // A pathname carries its terminating NUL, except one that fills
        // sun_path (108 bytes, as the kernel reports for such a socket); an
        // abstract name is exact.
        let len = (path_offset + start + bytes.len() + usize::from(!is_abstract))
            .min(mem::size_of::<libc::sockaddr_un>());
        raw.len = len as libc::socklen_t;
        Ok(raw)
    }

    /// The `AF_UNIX` address the kernel wrote (recvfrom, accept).
    pub(crate) fn to_unix(&self) -> io::Result<UnixAddr> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        // An unbound sender's datagram carries no address at all.
        if (self.len as usize) < mem::size_of::<libc::sa_family_t>() {
            return unnamed_unix_addr();
        }
        if self.storage.ss_family as libc::c_int != libc::AF_UNIX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "expected a Unix socket address, got family {}",
                    self.storage.ss_family
                ),
            ));
        }
        // SAFETY: the family says the storage holds a sockaddr_un.
        let sun = unsafe {
            &*(&self.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_un>()
        };
        let path_offset = mem::offset_of!(libc::sockaddr_un, sun_path);
        let n = (self.len as usize)
            .saturating_sub(path_offset)
            .min(sun.sun_path.len());
        let path: Vec<u8> = sun.sun_path[..n].iter().map(|c| *c as u8).collect();
        match path.first() {
            None => unnamed_unix_addr(),
            Some(0) => UnixAddr::from_abstract_name(&path[1..]),
            Some(_) => {
                let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
                UnixAddr::from_pathname(std::ffi::OsStr::from_bytes(&path[..end]))
            }
        }
    }

    pub(crate) fn ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    pub(crate) fn to_std(&self) -> io::Result<SocketAddr> {
        let base = &self.storage as *const libc::sockaddr_storage;
        match self.storage.ss_family as libc::c_int {
            libc::AF_INET if self.len as usize >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: family and length say the storage holds a sockaddr_in.
                let sin = unsafe { &*base.cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if self.len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: family and length say the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*base.cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            f => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected socket address family {f}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for a in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:9"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(RawAddr::from_std(a).to_std().unwrap(), a);
        }
    }

    #[test]
    fn round_trips_unix_paths_and_abstract_names() {
        use std::os::linux::net::SocketAddrExt;
        let p = UnixAddr::from_pathname("/tmp/percore.sock").unwrap();
        let back = RawAddr::from_unix(&p).unwrap().to_unix().unwrap();
        assert_eq!(back.as_pathname(), p.as_pathname());
        let a = UnixAddr::from_abstract_name(b"percore\0name").unwrap();
        let back = RawAddr::from_unix(&a).unwrap().to_unix().unwrap();
        assert_eq!(back.as_abstract_name(), Some(&b"percore\0name"[..]));
        let unnamed = unnamed_unix_addr().unwrap();
        assert!(unnamed.is_unnamed());
        assert!(RawAddr::from_unix(&unnamed).is_err());
    }
}
