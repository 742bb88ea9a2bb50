//! Waiting for SIGINT/SIGTERM on the main thread.
//!
//! The signals are blocked before any worker thread starts (threads inherit
//! the mask), so they are only ever taken by `sigwait` here and never
//! interrupt a worker.

/// Blocks SIGINT and SIGTERM for this thread and the threads it creates.
pub fn block_termination() {
    let set = termination_set();
    // SAFETY: `set` is an initialized sigset; no old mask is requested.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Waits until SIGINT or SIGTERM arrives; returns the signal number.
pub fn wait_termination() -> i32 {
    let set = termination_set();
    let mut sig = 0;
    loop {
        // SAFETY: `set` is initialized and `sig` is a valid out-pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            return sig;
        }
    }
}

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the zeroed set before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}
