//! `signal::Signals` on both drivers, in a test binary with its own main
//! (no test harness): the signals are blocked before any thread starts, as
//! the module docs require. A process-directed signal is delivered to the
//! waiting task; two signals queued before anyone waits are both read; an
//! invalid signal number is refused.

use std::future::Future;
use std::time::Duration;

use percore::signal::{block, Signals};
use percore::{Driver, Runtime};

fn driver() -> Driver {
    match std::env::var("PERCORE_TEST_DRIVER").as_deref() {
        Ok("epoll") => Driver::Epoll,
        _ => Driver::IoUring,
    }
}

fn main() {
    // First, before any thread exists: every thread inherits the mask.
    block(&[libc::SIGUSR1, libc::SIGUSR2]).expect("block");
    // Watchdog: a signal that never arrives must fail the run, not hang it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        eprintln!("signal test: still running after 60 s");
        std::process::abort();
    });
    let rt = Runtime::builder()
        .driver(driver())
        .workers(2)
        .build()
        .expect("runtime");

    // A signal sent while a task waits.
    let got = rt.block_on(async {
        let mut signals = Signals::new(&[libc::SIGUSR1, libc::SIGUSR2]).unwrap();
        let waiter = percore::spawn(async move { signals.recv().await });
        percore::time::sleep(Duration::from_millis(50)).await;
        // SAFETY: kill(2) on our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR2) };
        waiter.await.unwrap()
    });
    assert_eq!(
        got.unwrap(),
        libc::SIGUSR2,
        "the waiting task gets the signal"
    );

    // Two different signals pending before anyone reads: both come.
    // SAFETY: kill(2) on our own process.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGUSR1);
        libc::kill(libc::getpid(), libc::SIGUSR2);
    }
    let mut both = rt.block_on(async {
        let mut signals = Signals::new(&[libc::SIGUSR1, libc::SIGUSR2]).unwrap();
        let a = signals.recv().await.unwrap();
        let b = signals.recv().await.unwrap();
        vec![a, b]
    });
    both.sort();
    assert_eq!(both, vec![libc::SIGUSR1, libc::SIGUSR2]);

    // A recv dropped after the signal arrived (it lost a select) consumed
    // nothing: the next recv gets it.
    let got = rt.block_on(async {
        let mut signals = Signals::new(&[libc::SIGUSR1]).unwrap();
        {
            let mut first = Box::pin(signals.recv());
            let pending = {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                first.as_mut().poll(&mut cx).is_pending()
            };
            assert!(pending);
            // SAFETY: kill(2) on our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
            percore::time::sleep(Duration::from_millis(20)).await;
            drop(first);
        }
        percore::time::timeout(Duration::from_secs(5), signals.recv()).await
    });
    assert_eq!(
        got.expect("the signal was lost with the dropped recv")
            .unwrap(),
        libc::SIGUSR1
    );

    let bad = Signals::new(&[9999]).unwrap_err();
    assert!(bad.to_string().contains("9999"), "{bad}");
    println!("signal test ({:?}): 4 checks passed", driver());
}
