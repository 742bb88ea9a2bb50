//! A one-value channel that works across workers and foreign threads.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

/// Creates a sender/receiver pair.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Mutex::new(State {
        value: None,
        waker: None,
        sender_gone: false,
        receiver_gone: false,
    }));
    (Sender { state: s.clone() }, Receiver { state: s })
}

/// The sending half.
pub struct Sender<T> {
    state: Arc<Mutex<State<T>>>,
}

/// The receiving half: a future of the value.
pub struct Receiver<T> {
    state: Arc<Mutex<State<T>>>,
}

/// The sender was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the oneshot sender was dropped without sending")
    }
}

impl std::error::Error for RecvError {}

impl<T> Sender<T> {
    /// Sends the value; gives it back if the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        let waker = {
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if g.receiver_gone {
                return Err(value);
            }
            g.value = Some(value);
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            g.sender_gone = true;
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .receiver_gone = true;
    }
}

impl<T> Receiver<T> {
    /// Waits for the value on a plain thread, blocking it.
    ///
    /// # Panics
    ///
    /// On a percore worker thread (it would stall the worker): `.await` there.
    pub fn blocking_recv(self) -> Result<T, RecvError> {
        assert!(
            crate::runtime::context::with_worker(|_| ()).is_none(),
            "oneshot::Receiver::blocking_recv called on a percore worker: await it instead"
        );
        crate::runtime::wait(self)
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = g.value.take() {
            return Poll::Ready(Ok(v));
        }
        if g.sender_gone {
            return Poll::Ready(Err(RecvError));
        }
        g.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot::Sender")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot::Receiver")
    }
}
