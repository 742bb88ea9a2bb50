//! User code a worker runs outside any task's poll, and what a panic in it
//! does (DESIGN invariant 8, PITFALLS 17).
//!
//! A worker calls wakers (when an op completes or a timer fires) and drops
//! the resources of cancelled ops (a buffer's `Drop`) from its loop, not
//! from inside a task. A panic there would unwind out of the loop and end
//! the worker thread, and every task, `block_on` and wake routed to that
//! worker would then wait forever. So each such call is caught: the panic is
//! reported on stderr (one line: worker, what, message), counted in
//! `WorkerMetrics::user_panics`, and the worker carries on. A panic inside
//! a task's poll is not this: the task's body catches it and its
//! `JoinHandle` returns it.
//!
//! Failures of the worker itself (an `io_uring_enter` or `epoll_pwait2`
//! error, a bug in percore) are not carried on from: the runtime fails
//! loudly (`Shared::fail`), see `runtime/builder.rs`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::context;

/// Runs `f`, user code described by `what` ("a waker", "a buffer's drop"),
/// catching and reporting a panic instead of letting it end the worker.
pub(crate) fn run_user_code(what: &str, f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        let who = context::with_worker(|w| {
            w.metrics.user_panics.bump();
            format!("worker {}", w.remote.index)
        })
        .unwrap_or_else(|| {
            let t = std::thread::current();
            format!("thread {}", t.name().unwrap_or("(unnamed)"))
        });
        report(format_args!(
            "percore: {who}: {what} panicked: {}; the thread carries on",
            panic_message(&*p)
        ));
        // The payload's own drop is user code too; it must not escape.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(p)));
    }
}

/// Writes one line to stderr, ignoring errors: `eprintln!` panics when
/// stderr is gone (EPIPE), which on a worker is the very death this module
/// exists to prevent.
pub(crate) fn report(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The message of a panic payload, if it is a string.
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string payload)")
}
