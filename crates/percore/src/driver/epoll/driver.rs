//! The per-worker epoll driver (reactor): readiness, not completion.
//!
//! Each socket is registered once per worker, edge-triggered, for reads and
//! writes. The driver caches "may be readable/writable" per fd; an operation
//! clears the flag, tries its syscall, and only on `EAGAIN` waits for the
//! next edge (`Driver::poll_ready`). No `epoll_ctl` per operation.
//!
//! A registration is identified by a process-unique token that the socket
//! also keeps: a socket whose token does not match this worker's entry for
//! its fd (first use here, or the fd number was reused after a close
//! elsewhere) is registered afresh, so a stale entry can never swallow a new
//! socket's events.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::driver::Released;
use crate::metrics::WorkerMetrics;

/// Event data of the unpark eventfd.
const UNPARK_TOKEN: u64 = u64::MAX;

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Which direction an operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

#[derive(Default)]
struct Reg {
    token: u64,
    readable: bool,
    writable: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

/// Registrations by fd number: fds are small, dense integers, so a vector
/// indexed by the fd replaces a hash map (hashing was about a quarter of the
/// echo server's instructions on this driver, measured with callgrind).
#[derive(Default)]
struct FdTable(Vec<Option<Reg>>);

impl FdTable {
    fn get(&self, fd: RawFd) -> Option<&Reg> {
        self.0.get(usize::try_from(fd).ok()?)?.as_ref()
    }

    fn get_mut(&mut self, fd: RawFd) -> Option<&mut Reg> {
        self.0.get_mut(usize::try_from(fd).ok()?)?.as_mut()
    }

    fn insert(&mut self, fd: RawFd, reg: Reg) {
        let Ok(i) = usize::try_from(fd) else { return };
        if i >= self.0.len() {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some(reg);
    }

    fn remove(&mut self, fd: RawFd) -> Option<Reg> {
        self.0.get_mut(usize::try_from(fd).ok()?)?.take()
    }
}

pub(crate) struct Driver {
    ep: OwnedFd,
    /// `epoll_pwait2` works here (Linux 5.11+, allowed by seccomp): timer
    /// deadlines to the nanosecond. Else `epoll_wait`, its millisecond
    /// timeout rounded up so a timer never fires early.
    pwait2: bool,
    regs: FdTable,
    events: Vec<libc::epoll_event>,
    wakers: Vec<Waker>,
    /// Wakers replaced or forgot here, dropped by the worker later.
    retired: Vec<Waker>,
    unpark_fd: RawFd,
}

impl Driver {
    pub(crate) fn new(unpark_fd: RawFd) -> io::Result<Driver> {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("epoll_create1: {e}")));
        }
        // SAFETY: a fresh fd nobody else owns.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: UNPARK_TOKEN,
        };
        // SAFETY: valid fds and a live event struct.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, unpark_fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let pwait2 = probe_pwait2(ep.as_raw_fd());
        Ok(Driver {
            ep,
            pwait2,
            regs: FdTable::default(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
            wakers: Vec::new(),
            retired: Vec::new(),
            unpark_fd,
        })
    }

    /// Makes sure `fd` is registered here under `token` (0: never
    /// registered); returns the token to keep.
    pub(crate) fn register(&mut self, fd: RawFd, token: u64) -> io::Result<u64> {
        if token != 0 && self.regs.get(fd).is_some_and(|r| r.token == token) {
            return Ok(token);
        }
        let token = NEXT_TOKEN.fetch_add(1, Relaxed);
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: fd as u64,
        };
        // SAFETY: valid epoll fd and a live event struct.
        let mut r =
            unsafe { libc::epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            // SAFETY: as above.
            r = unsafe { libc::epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, &mut ev) };
        }
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // Optimistic: try the syscall first; the edge comes if it would block.
        self.regs.insert(
            fd,
            Reg {
                token,
                readable: true,
                writable: true,
                ..Reg::default()
            },
        );
        Ok(token)
    }

    /// Forgets registration `token` of `fd`, if it is still the current
    /// one here. `remove_from_set`: also take the fd out of the epoll set
    /// (it stays open: its socket moved to another worker); not needed when
    /// the socket is being closed, which removes it. Returns the wakers it
    /// held, for the caller to drop outside any borrow.
    pub(crate) fn deregister(
        &mut self,
        fd: RawFd,
        token: u64,
        remove_from_set: bool,
    ) -> Vec<Waker> {
        if self.regs.get(fd).is_none_or(|r| r.token != token) {
            return Vec::new();
        }
        let reg = self.regs.remove(fd);
        if remove_from_set {
            // SAFETY: valid epoll fd; DEL ignores the event pointer. The
            // token matched, so `fd` still names the socket registered here
            // (a reused number would have been registered under a new one).
            unsafe {
                libc::epoll_ctl(
                    self.ep.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    fd,
                    std::ptr::null_mut(),
                )
            };
        }
        reg.into_iter()
            .flat_map(|r| r.read_waker.into_iter().chain(r.write_waker))
            .collect()
    }

    /// Clears the cached readiness before a syscall attempt.
    pub(crate) fn clear(&mut self, fd: RawFd, interest: Interest) {
        if let Some(r) = self.regs.get_mut(fd) {
            match interest {
                Interest::Read => r.readable = false,
                Interest::Write => r.writable = false,
            }
        }
    }

    /// Ready if an edge arrived since the last `clear`; else stores `waker`.
    pub(crate) fn poll_ready(&mut self, fd: RawFd, interest: Interest, waker: &Waker) -> Poll<()> {
        let Some(r) = self.regs.get_mut(fd) else {
            // Not registered (any more): let the caller retry its syscall.
            return Poll::Ready(());
        };
        let (ready, slot) = match interest {
            Interest::Read => (r.readable, &mut r.read_waker),
            Interest::Write => (r.writable, &mut r.write_waker),
        };
        if ready {
            return Poll::Ready(());
        }
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => self.retired.extend(slot.replace(waker.clone())),
        }
        Poll::Pending
    }

    /// Drops a waiting operation's waker (its future was dropped).
    pub(crate) fn unwait(&mut self, fd: RawFd, interest: Interest) {
        if let Some(r) = self.regs.get_mut(fd) {
            let w = match interest {
                Interest::Read => r.read_waker.take(),
                Interest::Write => r.write_waker.take(),
            };
            self.retired.extend(w);
        }
    }

    /// Collects ready events without waiting.
    pub(crate) fn submit_and_reap(&mut self, metrics: &WorkerMetrics) -> io::Result<()> {
        self.wait_events(Some(Duration::ZERO), metrics)
    }

    /// Waits for events until `timeout` (None: until an event or unpark).
    pub(crate) fn park(
        &mut self,
        timeout: Option<Duration>,
        metrics: &WorkerMetrics,
    ) -> io::Result<()> {
        self.wait_events(timeout, metrics)
    }

    fn wait_events(
        &mut self,
        timeout: Option<Duration>,
        metrics: &WorkerMetrics,
    ) -> io::Result<()> {
        metrics.enters.bump();
        let n = if self.pwait2 {
            pwait2(self.ep.as_raw_fd(), &mut self.events, timeout)
        } else {
            wait_ms(self.ep.as_raw_fd(), &mut self.events, timeout)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        for i in 0..n as usize {
            let ev = self.events[i];
            metrics.completed.bump();
            if ev.u64 == UNPARK_TOKEN {
                metrics.remote_wakes.bump();
                let mut buf = 0u64;
                // SAFETY: reads 8 bytes into a live u64; the eventfd is
                // readable (epoll said so), so the read does not block.
                unsafe { libc::read(self.unpark_fd, (&mut buf as *mut u64).cast(), 8) };
                continue;
            }
            let Some(r) = self.regs.get_mut(ev.u64 as RawFd) else {
                continue;
            };
            let bits = ev.events;
            let err = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
            if bits & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32 | err) != 0 {
                r.readable = true;
                self.wakers.extend(r.read_waker.take());
            }
            if bits & (libc::EPOLLOUT as u32 | err) != 0 {
                r.writable = true;
                self.wakers.extend(r.write_waker.take());
            }
        }
        Ok(())
    }

    pub(crate) fn take_ready(&mut self, wakers: &mut Vec<Waker>, dead: &mut Released) {
        std::mem::swap(&mut self.wakers, wakers);
        dead.retired.append(&mut self.retired);
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.wakers.is_empty() || !self.retired.is_empty()
    }
}

/// Whether `epoll_pwait2` works: a zero-timeout call on the new (empty but
/// for the unpark eventfd) epoll set. ENOSYS (kernel before 5.11) or EPERM
/// (seccomp) mean no; so does any other error, since the loop could not use
/// it either.
fn probe_pwait2(ep: RawFd) -> bool {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
    pwait2(ep, &mut events, Some(Duration::ZERO)) >= 0
}

/// `epoll_pwait2` with a nanosecond timeout (None: wait indefinitely).
fn pwait2(ep: RawFd, events: &mut [libc::epoll_event], timeout: Option<Duration>) -> isize {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `events` has `len` writable slots; `tsp` is null or points to
    // a live timespec; no signal mask is passed.
    let n = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            ep,
            events.as_mut_ptr(),
            events.len() as libc::c_int,
            tsp,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    n as isize
}

/// `epoll_wait` with the timeout rounded *up* to whole milliseconds (a
/// timer must never fire early), capped at `i32::MAX` ms.
fn wait_ms(ep: RawFd, events: &mut [libc::epoll_event], timeout: Option<Duration>) -> isize {
    let ms = match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            ms.min(i32::MAX as u128) as libc::c_int
        }
    };
    // SAFETY: `events` has `len` writable slots.
    let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as libc::c_int, ms) };
    n as isize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_millisecond_fallback_rounds_timeouts_up() {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0);
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
        for wait in [Duration::from_micros(10), Duration::from_micros(1500)] {
            let start = std::time::Instant::now();
            assert_eq!(wait_ms(ep, &mut events, Some(wait)), 0);
            assert!(
                start.elapsed() >= wait,
                "{wait:?} waited {:?}",
                start.elapsed()
            );
        }
        assert_eq!(wait_ms(ep, &mut events, Some(Duration::ZERO)), 0);
        // SAFETY: closing the fd created above.
        unsafe { libc::close(ep) };
    }
}
