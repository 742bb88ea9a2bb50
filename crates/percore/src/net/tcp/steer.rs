//! CPU-aware accept: a classic BPF program on a `SO_REUSEPORT` group
//! (`SO_ATTACH_REUSEPORT_CBPF`) that hands each new connection to the
//! listener of the worker pinned to the CPU the connection's packets were
//! processed on, so its softirq work and its task share a core and cache.
//!
//! The program maps the CPU number to a socket index in the group; the
//! group's order is the order the listeners were bound in, so listeners
//! must be bound in worker order (worker 0 first). A CPU with no worker,
//! or an index the group does not have yet, yields an out-of-range index,
//! and the kernel then falls back to its usual hash.
//!
//! Limits: closing one listener of the group moves the group's last socket
//! into its place, so after that the map is off by one listener (connections
//! are misrouted, not lost); with more workers than cores, only the first
//! worker on a shared core gets steered connections.

use std::io;
use std::os::fd::AsRawFd;

use super::TcpListener;

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h; the same on x86_64
/// and aarch64), which the libc crate does not export for Linux.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// The program: `A = cpu; for each worker i on core c: if A == c return i;
/// return u32::MAX` (out of range: hash).
pub(crate) fn program(cores: &[Option<usize>]) -> Vec<libc::sock_filter> {
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut prog = vec![f(
        BPF_LD_W_ABS,
        0,
        0,
        (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
    )];
    for (index, core) in cores.iter().enumerate() {
        if let Some(core) = core {
            // Equal: fall through to `ret index`; else skip it.
            prog.push(f(BPF_JEQ_K, 0, 1, *core as u32));
            prog.push(f(BPF_RET_K, 0, 0, index as u32));
        }
    }
    prog.push(f(BPF_RET_K, 0, 0, u32::MAX));
    prog
}

impl TcpListener {
    /// Steers new connections of this listener's `SO_REUSEPORT` group by
    /// CPU: a connection whose packets the kernel processed on CPU
    /// `cores[i]` goes to the group's `i`-th listener (bind order), others
    /// by the kernel's hash. For one listener per pinned worker, bound in
    /// worker order, pass each worker's core
    /// ([`WorkerInfo::core`](crate::WorkerInfo)): a connection's softirq
    /// work and its worker then share a core. Setting it on one listener of
    /// the group sets it for the group; setting it again replaces it.
    pub fn steer_by_cpu(&self, cores: &[Option<usize>]) -> io::Result<()> {
        if cores.len() > 1000 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "steer_by_cpu: more than 1000 listeners in one group",
            ));
        }
        let mut prog = program(cores);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: a valid socket fd and a filter program that lives on this
        // stack frame for the duration of the call (the kernel copies it).
        let r = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_CBPF,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "SO_ATTACH_REUSEPORT_CBPF: {e} (needs Linux 4.5+ and a listener \
                     bound with ListenOptions::reuse_port)"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_maps_each_workers_core_to_its_index() {
        let p = program(&[Some(2), None, Some(0)]);
        assert_eq!(p.len(), 1 + 2 * 2 + 1);
        assert_eq!((p[1].code, p[1].k), (BPF_JEQ_K, 2));
        assert_eq!((p[2].code, p[2].k), (BPF_RET_K, 0));
        assert_eq!((p[3].code, p[3].k), (BPF_JEQ_K, 0));
        assert_eq!((p[4].code, p[4].k), (BPF_RET_K, 2), "worker 2 is on core 0");
        assert_eq!((p[5].code, p[5].k), (BPF_RET_K, u32::MAX));
    }
}
