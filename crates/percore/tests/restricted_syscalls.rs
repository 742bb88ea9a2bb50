//! Sandboxes that forbid some of the syscalls percore uses (PITFALLS 8) and
//! drivers that fail mid-run (DESIGN invariant 8): each gets a defined,
//! loud outcome, never a panicking or silently dead worker.
//!
//! Each test re-runs itself in a child process (this test binary, with
//! `PERCORE_SECCOMP_CHILD` naming the test) that installs a seccomp filter
//! making the named syscalls fail with an errno, for every thread of the
//! child. The parent checks that the child's test ran and passed.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::time::{Duration, Instant};

use percore::net::{TcpListener, TcpStream};
use percore::{Driver, Runtime};

const CHILD: &str = "PERCORE_SECCOMP_CHILD";

/// True in the child run of test `name`; in the parent, runs that child and
/// asserts it passed.
fn in_child(name: &'static str) -> bool {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        // A hang fails the child (abort), and so the parent's assertion.
        std::mem::forget(common::watchdog("seccomp child", 30));
        return true;
    }
    if !cfg!(target_arch = "x86_64") {
        return false; // the filter checks the x86_64 syscall table
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    false
}

/// Makes each `(syscall, errno)` fail with that errno from now on, in every
/// thread of this process (`SECCOMP_FILTER_FLAG_TSYNC`).
fn deny(calls: &[(libc::c_long, i32)]) {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: libc::c_long = 1;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut prog = vec![
        f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        f(JEQ_K, 0, 0, AUDIT_ARCH_X86_64),
        f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
    ];
    for &(nr, errno) in calls {
        prog.push(f(JEQ_K, 0, 1, nr as u32));
        prog.push(f(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | errno as u32));
    }
    prog.push(f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    // Another architecture: allow (jump to the last instruction).
    prog[1].jf = (prog.len() - 3) as u8;
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl and seccomp with a filter program that lives on this
    // stack frame for the duration of the calls.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let r = libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        );
        assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}

fn runtime(driver: Driver) -> std::io::Result<Runtime> {
    Runtime::builder()
        .driver(driver)
        .workers(1)
        .shutdown_timeout(Duration::from_secs(2))
        .build()
}

/// An echo round trip and a timer on `rt`: the runtime really works.
fn exercise(rt: &Runtime) {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let server = percore::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (r, buf) = s.read(Vec::with_capacity(16)).await;
            r.unwrap();
            s.write_all(buf).await.0.unwrap();
        });
        let c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"ping".to_vec()).await.0.unwrap();
        let (r, buf) = c.read(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..r.unwrap()], b"ping");
        server.await.unwrap();
        let start = Instant::now();
        percore::time::sleep(Duration::from_millis(5)).await;
        assert!(start.elapsed() >= Duration::from_millis(5));
    });
}

#[test]
fn epoll_without_epoll_pwait2_falls_back_to_epoll_wait() {
    if !in_child("epoll_without_epoll_pwait2_falls_back_to_epoll_wait") {
        return;
    }
    deny(&[(libc::SYS_epoll_pwait2, libc::ENOSYS)]);
    let rt = runtime(Driver::Epoll).expect("the epoll driver builds without epoll_pwait2");
    exercise(&rt);
}

#[test]
fn auto_falls_back_to_epoll_when_io_uring_enter_is_forbidden() {
    if !in_child("auto_falls_back_to_epoll_when_io_uring_enter_is_forbidden") {
        return;
    }
    deny(&[(libc::SYS_io_uring_enter, libc::EPERM)]);
    let err = runtime(Driver::IoUring).expect_err("io_uring cannot submit");
    let msg = err.to_string();
    assert!(
        msg.contains("io_uring_enter failed") && msg.contains("seccomp"),
        "{msg}"
    );
    let rt = runtime(Driver::Auto).expect("Auto falls back");
    assert_eq!(rt.workers()[0].driver, Driver::Epoll);
    let why = rt.workers()[0].fallback.clone().unwrap_or_default();
    assert!(why.contains("io_uring_enter"), "{why}");
    exercise(&rt);
}

#[test]
fn io_uring_without_io_uring_register_still_runs() {
    if !in_child("io_uring_without_io_uring_register_still_runs") {
        return;
    }
    deny(&[(libc::SYS_io_uring_register, libc::EPERM)]);
    let rt = runtime(Driver::Auto).unwrap();
    assert_eq!(rt.workers()[0].driver, Driver::IoUring);
    // Wakes use the eventfd instead of MSG_RING (its probe needs register).
    assert!(!rt.workers()[0].ring.unwrap().msg_ring);
    exercise(&rt);
}

/// A driver that starts failing mid-run: the runtime stops, says why on
/// stderr, and `block_on` panics naming the cause instead of hanging.
fn driver_failure_is_loud(driver: Driver, calls: &[(libc::c_long, i32)]) {
    let rt = runtime(driver).unwrap();
    exercise(&rt);
    deny(calls);
    let start = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async {
            percore::time::sleep(Duration::from_millis(1)).await;
        })
    }));
    let p = r.expect_err("block_on on a failed runtime panics");
    let msg = p
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| p.downcast_ref::<&str>().unwrap_or(&"").to_string());
    assert!(
        msg.contains("worker 0 failed") && msg.contains("failed while"),
        "{msg}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    // Later calls fail the same way, at once.
    let again = catch_unwind(AssertUnwindSafe(|| rt.block_on(async { 1 })));
    assert!(again.is_err());
    drop(rt);
}

#[test]
fn an_io_uring_enter_error_fails_the_runtime_loudly() {
    if !in_child("an_io_uring_enter_error_fails_the_runtime_loudly") {
        return;
    }
    driver_failure_is_loud(Driver::IoUring, &[(libc::SYS_io_uring_enter, libc::EPERM)]);
}

#[test]
fn an_epoll_wait_error_fails_the_runtime_loudly() {
    if !in_child("an_epoll_wait_error_fails_the_runtime_loudly") {
        return;
    }
    driver_failure_is_loud(
        Driver::Epoll,
        &[
            (libc::SYS_epoll_pwait2, libc::EPERM),
            (libc::SYS_epoll_wait, libc::EPERM),
        ],
    );
}
