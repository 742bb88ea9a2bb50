//! A bounded multi-producer, single-consumer channel, usable across
//! workers and foreign threads: `send().await` waits for room (senders are
//! served in order), `try_send` fails with `Full` at once; the receiver
//! sees the end when every sender is gone.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::waitlist::WaitList;

/// Creates a channel holding at most `capacity` messages (0 is taken as 1).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            reserved: 0,
            senders: 1,
            receiver_alive: true,
            receiver: None,
            waiting: WaitList::default(),
        }),
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

struct State<T> {
    queue: VecDeque<T>,
    capacity: usize,
    /// Slots granted to waiting senders, not yet filled: nobody else may
    /// take them.
    reserved: usize,
    senders: usize,
    receiver_alive: bool,
    receiver: Option<Waker>,
    /// Senders waiting for room, in order.
    waiting: WaitList,
}

struct Chan<T> {
    state: Mutex<State<T>>,
}

impl<T> Chan<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The receiver is gone: the message comes back.
#[derive(PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiver is gone")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why `try_send` did not send; the message comes back.
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The channel holds `capacity` messages (or senders wait before us).
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the channel is full"),
            TrySendError::Closed(_) => f.write_str("the receiver is gone"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// Why `try_recv` returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued now.
    Empty,
    /// Nothing queued, and every sender is gone.
    Disconnected,
}

/// The sending half; clone it for more producers.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.chan.lock().senders += 1;
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        st.senders -= 1;
        let waker = if st.senders == 0 {
            st.receiver.take()
        } else {
            None
        };
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full. Cancel-safe in
    /// the sense that dropping the future before it completes sends
    /// nothing (the value is dropped with it).
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        Send {
            chan: &self.chan,
            value: Some(value),
            id: None,
        }
        .await
    }

    /// Sends `value` now, or gives it back.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut st = self.chan.lock();
        if !st.receiver_alive {
            return Err(TrySendError::Closed(value));
        }
        if free(&st) == 0 || st.waiting.any_waiting() {
            return Err(TrySendError::Full(value));
        }
        st.queue.push_back(value);
        let waker = st.receiver.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        !self.chan.lock().receiver_alive
    }
}

struct Send<'a, T> {
    chan: &'a Chan<T>,
    value: Option<T>,
    id: Option<u64>,
}

// `Send` never pins `T`: the value is moved in and out by value.
impl<T> Unpin for Send<'_, T> {}

impl<T> Future for Send<'_, T> {
    type Output = Result<(), SendError<T>>;

    /// A send that finds room counts against the task's budget of ready
    /// results, as a receive does: a producer loop into a channel with room
    /// takes turns with the worker's other tasks.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        crate::task::coop::budgeted(cx, |_| true, |cx| self.poll_now(cx))
    }
}

impl<T> Send<'_, T> {
    fn poll_now(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let this = self;
        let mut st = this.chan.lock();
        let value = this.value.take().expect("Send polled after completion");
        if !st.receiver_alive {
            if let Some(e) = this.id.take().and_then(|id| st.waiting.remove(id)) {
                if e.granted {
                    st.reserved -= 1;
                }
            }
            return Poll::Ready(Err(SendError(value)));
        }
        let send_now = match this.id {
            // First poll: only if nobody waits ahead and a slot is free.
            None => !st.waiting.any_waiting() && free(&st) > 0,
            // Granted: our slot is reserved.
            Some(id) => st.waiting.find(id).is_some_and(|e| e.granted),
        };
        if send_now {
            if let Some(id) = this.id.take() {
                st.waiting.remove(id);
                st.reserved -= 1;
            }
            st.queue.push_back(value);
            let waker = st.receiver.take();
            drop(st);
            if let Some(w) = waker {
                w.wake();
            }
            return Poll::Ready(Ok(()));
        }
        this.value = Some(value);
        match this.id {
            None => this.id = Some(st.waiting.push(1, cx.waker())),
            Some(id) => {
                if let Some(e) = st.waiting.find(id) {
                    match &e.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => e.waker = Some(cx.waker().clone()),
                    }
                }
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for Send<'_, T> {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut st = self.chan.lock();
        let was = st.waiting.remove(id);
        // A slot reserved for it and never filled goes to the next sender.
        let wakers = if was.as_ref().is_some_and(|e| e.granted) {
            st.reserved -= 1;
            grant_room(&mut st)
        } else {
            Vec::new()
        };
        drop(st);
        drop(was);
        super::waitlist::wake_all(wakers);
    }
}

/// Slots neither filled nor reserved.
fn free<T>(st: &State<T>) -> usize {
    st.capacity.saturating_sub(st.queue.len() + st.reserved)
}

/// Reserves free slots for waiting senders, first come first served;
/// returns their wakers.
fn grant_room<T>(st: &mut State<T>) -> Vec<Waker> {
    let mut wakers = Vec::new();
    while free(st) > 0 {
        let Some(e) = st.waiting.first_waiting() else {
            break;
        };
        e.granted = true;
        wakers.extend(e.waker.take());
        st.reserved += 1;
    }
    wakers
}

/// The receiving half.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    /// The next message; `None` once every sender is gone and the queue is
    /// empty.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`recv`](Self::recv) as a poll function.
    ///
    /// A receive that finds a message counts against the task's budget of
    /// ready results per poll: a loop over a full channel yields to the
    /// worker's other tasks every so often instead of holding the core.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        crate::task::coop::budgeted(cx, |_| true, |cx| self.poll_recv_now(cx))
    }

    fn poll_recv_now(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut st = self.chan.lock();
        if let Some(v) = st.queue.pop_front() {
            let next = grant_room(&mut st);
            drop(st);
            super::waitlist::wake_all(next);
            return Poll::Ready(Some(v));
        }
        if st.senders == 0 {
            return Poll::Ready(None);
        }
        match &st.receiver {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.receiver = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next message if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut st = self.chan.lock();
        match st.queue.pop_front() {
            Some(v) => {
                let next = grant_room(&mut st);
                drop(st);
                super::waitlist::wake_all(next);
                Ok(v)
            }
            None if st.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.chan.lock().queue.len()
    }

    /// Whether no message is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    /// Senders waiting or sending later get their message back; queued
    /// messages are dropped here.
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        st.receiver_alive = false;
        let queued = std::mem::take(&mut st.queue);
        let wakers: Vec<Waker> = st
            .waiting
            .queue
            .iter_mut()
            .filter_map(|e| e.waker.take())
            .collect();
        drop(st);
        drop(queued);
        super::waitlist::wake_all(wakers);
    }
}
