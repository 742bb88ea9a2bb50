//! The IP-level socket options and addresses that TCP and UDP sockets
//! share, on the internal [`Socket`].

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;

use super::socket::Socket;

impl Socket {
    /// The local IP address.
    pub(crate) fn local_ip_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(SockRef::from(self.owned()).local_addr()?)
    }

    /// The peer's IP address.
    pub(crate) fn peer_ip_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(SockRef::from(self.owned()).peer_addr()?)
    }

    /// `IP_TTL` (IPv4) or `IPV6_UNICAST_HOPS` (IPv6).
    pub(crate) fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let s = SockRef::from(self.owned());
        match self.local_ip_addr()? {
            SocketAddr::V4(_) => s.set_ttl_v4(ttl),
            SocketAddr::V6(_) => s.set_unicast_hops_v6(ttl),
        }
    }

    /// The TTL (hop limit on IPv6).
    pub(crate) fn ttl(&self) -> io::Result<u32> {
        let s = SockRef::from(self.owned());
        match self.local_ip_addr()? {
            SocketAddr::V4(_) => s.ttl_v4(),
            SocketAddr::V6(_) => s.unicast_hops_v6(),
        }
    }
}

fn ip_addr(a: socket2::SockAddr) -> io::Result<SocketAddr> {
    a.as_socket()
        .ok_or_else(|| io::Error::other("socket has no IP address"))
}
