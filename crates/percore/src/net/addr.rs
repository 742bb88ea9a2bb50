//! `ToSocketAddrs`: what `connect` and `send_to` accept. IP literals are
//! parsed in place; host names are resolved with `getaddrinfo` (std's
//! `ToSocketAddrs`) on the runtime's blocking pool, since a lookup can
//! block for seconds and must not stall the worker.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Addresses to connect or send to: a `SocketAddr`, `(IpAddr, u16)`, a
/// `"host:port"` string or `(host, port)`, or a slice of addresses. Sealed.
pub trait ToSocketAddrs: sealed::Sealed {}

/// What is left to do to get addresses.
#[doc(hidden)]
#[derive(Debug)]
pub enum Lookup {
    /// Ready, no lookup needed.
    Ready(Vec<SocketAddr>),
    /// A `"host:port"` to resolve.
    Name(String),
    /// A host and a port to resolve.
    HostPort(String, u16),
}

mod sealed {
    use super::*;

    pub trait Sealed {
        /// The one address, if known without a lookup (the common case:
        /// no allocation).
        fn literal(&self) -> Option<SocketAddr>;
        /// Otherwise, what to look up.
        fn lookup(&self) -> Lookup;
    }
}

macro_rules! literal {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            fn literal(&self) -> Option<SocketAddr> {
                Some(SocketAddr::from(*self))
            }
            fn lookup(&self) -> Lookup {
                Lookup::Ready(vec![SocketAddr::from(*self)])
            }
        }
        impl ToSocketAddrs for $t {}
    )*};
}

literal!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl sealed::Sealed for str {
    fn literal(&self) -> Option<SocketAddr> {
        self.parse().ok()
    }
    fn lookup(&self) -> Lookup {
        Lookup::Name(self.to_string())
    }
}
impl ToSocketAddrs for str {}

impl sealed::Sealed for String {
    fn literal(&self) -> Option<SocketAddr> {
        self.as_str().literal()
    }
    fn lookup(&self) -> Lookup {
        Lookup::Name(self.clone())
    }
}
impl ToSocketAddrs for String {}

impl sealed::Sealed for (&str, u16) {
    fn literal(&self) -> Option<SocketAddr> {
        self.0
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.1))
    }
    fn lookup(&self) -> Lookup {
        Lookup::HostPort(self.0.to_string(), self.1)
    }
}
impl ToSocketAddrs for (&str, u16) {}

impl sealed::Sealed for (String, u16) {
    fn literal(&self) -> Option<SocketAddr> {
        (self.0.as_str(), self.1).literal()
    }
    fn lookup(&self) -> Lookup {
        Lookup::HostPort(self.0.clone(), self.1)
    }
}
impl ToSocketAddrs for (String, u16) {}

impl sealed::Sealed for [SocketAddr] {
    fn literal(&self) -> Option<SocketAddr> {
        match self {
            [one] => Some(*one),
            _ => None,
        }
    }
    fn lookup(&self) -> Lookup {
        Lookup::Ready(self.to_vec())
    }
}
impl ToSocketAddrs for [SocketAddr] {}

impl<T: sealed::Sealed + ?Sized> sealed::Sealed for &T {
    fn literal(&self) -> Option<SocketAddr> {
        (**self).literal()
    }
    fn lookup(&self) -> Lookup {
        (**self).lookup()
    }
}
impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}

/// A `getaddrinfo` call to run on the blocking pool.
type LookupJob = Box<dyn FnOnce() -> io::Result<Vec<SocketAddr>> + Send>;

/// The one address `addr` names if no lookup is needed.
pub(crate) fn literal(addr: &(impl ToSocketAddrs + ?Sized)) -> Option<SocketAddr> {
    sealed::Sealed::literal(addr)
}

/// The addresses `addr` names, resolving a host name on the blocking pool.
pub(crate) async fn resolve(addr: &(impl ToSocketAddrs + ?Sized)) -> io::Result<Vec<SocketAddr>> {
    if let Some(a) = sealed::Sealed::literal(addr) {
        return Ok(vec![a]);
    }
    let (what, job): (String, LookupJob) = match sealed::Sealed::lookup(addr) {
        Lookup::Ready(v) => return non_empty(v, "an empty address list"),
        Lookup::Name(s) => (
            s.clone(),
            Box::new(move || std::net::ToSocketAddrs::to_socket_addrs(&s).map(Iterator::collect)),
        ),
        Lookup::HostPort(h, p) => (
            format!("{h}:{p}"),
            Box::new(move || {
                std::net::ToSocketAddrs::to_socket_addrs(&(h.as_str(), p)).map(Iterator::collect)
            }),
        ),
    };
    let found = match crate::task::try_spawn_blocking(job) {
        Ok(h) => h.await.map_err(io::Error::other)?,
        Err(e) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("the blocking pool refused the lookup ({e})"),
        )),
    };
    let found = found.map_err(|e| io::Error::new(e.kind(), format!("resolve {what}: {e}")))?;
    non_empty(found, &what)
}

fn non_empty(v: Vec<SocketAddr>, what: &str) -> io::Result<Vec<SocketAddr>> {
    if v.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} resolved to no addresses"),
        ));
    }
    Ok(v)
}
