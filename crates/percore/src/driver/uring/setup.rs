//! Creating a worker's io_uring: flag probing and errors that say what to do.
//!
//! The setup flags decide io_uring's cost on this class of machine (see
//! `docs/architecture.md`): `SINGLE_ISSUER|DEFER_TASKRUN` keeps completion
//! work on the worker's own thread, so a completion never interrupts another
//! core. We ask for the best set the kernel accepts and record which we got.

use std::fmt;
use std::io;

use io_uring::IoUring;

/// The ring setup a worker ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFeatures {
    /// `IORING_SETUP_SINGLE_ISSUER` accepted.
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` accepted.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN` accepted.
    pub coop_taskrun: bool,
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries.
    pub cq_entries: u32,
    /// `IORING_OP_MSG_RING` (and `IOSQE_CQE_SKIP_SUCCESS`) are available:
    /// workers wake each other by posting a completion into the target's
    /// ring instead of writing its eventfd (`WakeMode`).
    pub msg_ring: bool,
    /// Multishot accept and multishot recv with provided-buffer rings
    /// (Linux 6.0; found by probing for `IORING_OP_SEND_ZC` of the same
    /// release, since the multishot flags have no opcode of their own): one
    /// SQE serves many connections or messages (`driver/uring/multishot.rs`).
    pub multishot: bool,
    /// `IORING_OP_MKDIRAT` (Linux 5.15): `fs::create_dir` as a ring op;
    /// without it the call runs on the blocking pool.
    pub mkdirat: bool,
}

impl fmt::Display for RingFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut flags = Vec::new();
        if self.single_issuer {
            flags.push("single_issuer");
        }
        if self.defer_taskrun {
            flags.push("defer_taskrun");
        }
        if self.coop_taskrun {
            flags.push("coop_taskrun");
        }
        if flags.is_empty() {
            flags.push("plain");
        }
        write!(
            f,
            "io_uring {} (sq {} / cq {})",
            flags.join("+"),
            self.sq_entries,
            self.cq_entries
        )
    }
}

/// Which ring setup flags a worker asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingSetup {
    /// The best the kernel accepts: `SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN`,
    /// then `SINGLE_ISSUER|COOP_TASKRUN`, then `COOP_TASKRUN`, then plain.
    #[default]
    Auto,
    /// At most `COOP_TASKRUN` (completion work may still run off-loop).
    CoopTaskrun,
    /// No task-run flags: completions are posted by task-work interrupts.
    /// For comparisons; slower on most machines.
    Plain,
}

impl RingSetup {
    fn first_attempt(self) -> usize {
        match self {
            RingSetup::Auto => 0,
            RingSetup::CoopTaskrun => 2,
            RingSetup::Plain => 3,
        }
    }
}

/// Flag sets to try, best first.
const ATTEMPTS: [(bool, bool, bool); 4] = [
    (true, true, true),
    (true, false, true),
    (false, false, true),
    (false, false, false),
];

/// Creates a ring with `entries` submission slots and a completion queue four
/// times as large (completions may outnumber submissions in flight; see
/// PITFALLS 4). Must run on the thread that will submit (SINGLE_ISSUER).
pub(crate) fn build_ring(entries: u32, setup: RingSetup) -> io::Result<(IoUring, RingFeatures)> {
    let entries = entries.clamp(2, 32768).next_power_of_two();
    let cq = entries.saturating_mul(4);
    let mut last_err = None;
    for &(single_issuer, defer_taskrun, coop_taskrun) in &ATTEMPTS[setup.first_attempt()..] {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq).setup_clamp();
        if single_issuer {
            b.setup_single_issuer();
        }
        if defer_taskrun {
            b.setup_defer_taskrun();
        }
        if coop_taskrun {
            b.setup_coop_taskrun();
        }
        // With SINGLE_ISSUER (6.0+) the kernel also has SUBMIT_ALL (5.18):
        // an SQE that fails at submission no longer stops the rest of the
        // batch (its error arrives as its CQE), so one bad op cannot leave
        // other tasks' SQEs unsubmitted until the next enter.
        if single_issuer {
            b.setup_submit_all();
        }
        match b.build(entries) {
            Ok(mut ring) => {
                probe_enter(&mut ring)?;
                let probe = probe(&ring);
                let p = ring.params();
                if !p.is_feature_nodrop() || !p.is_feature_ext_arg() {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "io_uring lacks IORING_FEAT_NODROP or IORING_FEAT_EXT_ARG: \
                         percore needs Linux 5.11 or newer (use the epoll driver on older kernels)",
                    ));
                }
                let features = RingFeatures {
                    single_issuer,
                    defer_taskrun,
                    coop_taskrun,
                    sq_entries: p.sq_entries(),
                    cq_entries: p.cq_entries(),
                    msg_ring: p.is_feature_skip_cqe_on_success()
                        && probe
                            .as_ref()
                            .is_some_and(|p| p.is_supported(io_uring::opcode::MsgRingData::CODE)),
                    multishot: probe
                        .as_ref()
                        .is_some_and(|p| p.is_supported(io_uring::opcode::SendZc::CODE)),
                    mkdirat: probe
                        .as_ref()
                        .is_some_and(|p| p.is_supported(io_uring::opcode::MkDirAt::CODE)),
                };
                return Ok((ring, features));
            }
            // An unknown flag: try the next, older set.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
            Err(e) => return Err(explain(e)),
        }
    }
    Err(explain(last_err.unwrap_or_else(|| {
        io::Error::from_raw_os_error(libc::EINVAL)
    })))
}

/// A first `io_uring_enter` (a no-op, submitted and awaited), so that a
/// sandbox that allows `io_uring_setup` but denies `io_uring_enter` is found
/// at build time, where `Driver::Auto` can still fall back to epoll, not in
/// the worker loop.
fn probe_enter(ring: &mut IoUring) -> io::Result<()> {
    let nop = io_uring::opcode::Nop::new().build().user_data(0);
    // SAFETY: a no-op SQE references no memory.
    if unsafe { ring.submission().push(&nop) }.is_err() {
        return Err(io::Error::other("io_uring: a new ring has no free SQE"));
    }
    ring.submit_and_wait(1).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            "io_uring is set up but its use is forbidden: check the container's \
             seccomp profile (io_uring_enter and io_uring_register must be allowed)"
        } else {
            "io_uring is set up but cannot submit"
        };
        io::Error::new(e.kind(), format!("io_uring_enter failed: {e}: {hint}"))
    })?;
    // Consume the no-op's completion.
    ring.completion().for_each(drop);
    Ok(())
}

/// Asks the kernel which opcodes it knows. `None` where
/// `io_uring_register` is forbidden: then percore uses only what every
/// supported kernel has (eventfd wakes, single-shot accept).
fn probe(ring: &IoUring) -> Option<io_uring::Probe> {
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).ok()?;
    Some(probe)
}

/// Wraps an io_uring setup error in a message naming the likely cause and fix.
pub(crate) fn explain(e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSYS) => "this kernel was built without io_uring (CONFIG_IO_URING)",
        Some(libc::EPERM) => {
            "io_uring is forbidden: check `sysctl kernel.io_uring_disabled` (0 allows it) \
             and the container's seccomp profile (io_uring_setup must be allowed)"
        }
        Some(libc::ENOMEM) => {
            "out of locked memory for the ring: raise `ulimit -l` (RLIMIT_MEMLOCK) \
             or use smaller rings (Builder::ring_entries)"
        }
        Some(libc::EMFILE) | Some(libc::ENFILE) => "out of file descriptors: raise `ulimit -n`",
        Some(libc::EINVAL) => "the kernel rejected every io_uring setup percore knows (too old?)",
        _ => "io_uring could not be set up",
    };
    io::Error::new(e.kind(), format!("io_uring_setup failed: {e}: {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_the_cause_and_the_fix() {
        let eperm = explain(io::Error::from_raw_os_error(libc::EPERM)).to_string();
        assert!(
            eperm.contains("kernel.io_uring_disabled") && eperm.contains("seccomp"),
            "{eperm}"
        );
        let enomem = explain(io::Error::from_raw_os_error(libc::ENOMEM)).to_string();
        assert!(enomem.contains("ulimit -l"), "{enomem}");
        let enosys = explain(io::Error::from_raw_os_error(libc::ENOSYS)).to_string();
        assert!(enosys.contains("CONFIG_IO_URING"), "{enosys}");
        assert_eq!(
            explain(io::Error::from_raw_os_error(libc::EPERM)).kind(),
            io::ErrorKind::PermissionDenied
        );
    }

    /// The running kernel's (major, minor), from uname(2)'s release
    /// ("6.18.44-...").
    fn kernel_version() -> (u32, u32) {
        // SAFETY: `utsname` is plain bytes; uname fills it.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid, writable utsname.
        assert_eq!(unsafe { libc::uname(&mut u) }, 0, "uname");
        // SAFETY: uname NUL-terminates `release`.
        let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
        let release = release.to_string_lossy();
        let mut parts = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>());
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
            _ => panic!("cannot parse the kernel release {release:?}"),
        }
    }

    #[test]
    fn rings_get_the_best_flags_and_a_larger_completion_queue() {
        let (_ring, f) = build_ring(100, RingSetup::Auto).expect("io_uring available");
        assert_eq!(f.sq_entries, 128, "rounded up to a power of two");
        assert_eq!(f.cq_entries, 512);
        // COOP_TASKRUN is Linux 5.19, SINGLE_ISSUER 6.0, DEFER_TASKRUN 6.1:
        // from 6.1 on, Auto must get all three (README, "Kernel requirements").
        if kernel_version() >= (6, 1) {
            assert!(
                f.single_issuer && f.defer_taskrun && f.coop_taskrun,
                "Auto on Linux {:?} got {f}",
                kernel_version()
            );
            assert!(f
                .to_string()
                .starts_with("io_uring single_issuer+defer_taskrun+coop_taskrun "));
        }
        let (_ring, coop) = build_ring(8, RingSetup::CoopTaskrun).expect("coop ring");
        if kernel_version() >= (5, 19) {
            assert!(
                !coop.single_issuer && !coop.defer_taskrun && coop.coop_taskrun,
                "CoopTaskrun got {coop}"
            );
            assert_eq!(coop.to_string(), "io_uring coop_taskrun (sq 8 / cq 32)");
        } else {
            assert!(!coop.single_issuer && !coop.defer_taskrun, "{coop}");
        }
        let (_ring, plain) = build_ring(8, RingSetup::Plain).expect("plain ring");
        assert!(!plain.single_issuer && !plain.defer_taskrun && !plain.coop_taskrun);
        assert_eq!(plain.to_string(), "io_uring plain (sq 8 / cq 32)");
    }
}
