//! An async counting semaphore, fair (first come, first served), usable
//! across workers and foreign threads.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::waitlist::{wake_all, WaitList};

/// The semaphore was closed while waiting, or before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquireError;

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the semaphore was closed")
    }
}

impl std::error::Error for AcquireError {}

/// Why `try_acquire` got no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryAcquireError {
    /// Not enough permits now (or others are queued first).
    NoPermits,
    /// The semaphore was closed.
    Closed,
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::NoPermits => f.write_str("no permits available"),
            TryAcquireError::Closed => f.write_str("the semaphore was closed"),
        }
    }
}

impl std::error::Error for TryAcquireError {}

struct State {
    permits: usize,
    closed: bool,
    waiters: WaitList,
}

/// A counting semaphore: `acquire` waits for a permit, dropping the permit
/// gives it back. Waiters are served in order; a large request at the head
/// is not overtaken by smaller ones behind it.
pub struct Semaphore {
    state: Mutex<State>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("permits", &self.available_permits())
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            state: Mutex::new(State {
                permits,
                closed: false,
                waiters: WaitList::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        self.lock().permits
    }

    /// Adds `n` permits (serving waiters in order).
    ///
    /// # Panics
    ///
    /// If the count would overflow `usize`.
    pub fn add_permits(&self, n: usize) {
        let mut st = self.lock();
        st.permits = st
            .permits
            .checked_add(n)
            .expect("Semaphore::add_permits: the permit count overflowed usize");
        let wakers = grant(&mut st);
        drop(st);
        wake_all(wakers);
    }

    /// Closes the semaphore: waiting and later `acquire` calls fail;
    /// permits already held stay valid.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let wakers = st
            .waiters
            .queue
            .iter_mut()
            .filter_map(|e| e.waker.take())
            .collect();
        drop(st);
        wake_all(wakers);
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits for one permit.
    pub async fn acquire(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.acquire_many(1).await
    }

    /// Waits for `n` permits at once.
    pub async fn acquire_many(&self, n: usize) -> Result<SemaphorePermit<'_>, AcquireError> {
        Acquire {
            sem: self,
            n,
            id: None,
        }
        .await?;
        Ok(SemaphorePermit { sem: self, n })
    }

    /// One permit now, or an error (no waiting).
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_take(1)?;
        Ok(SemaphorePermit { sem: self, n: 1 })
    }

    fn try_take(&self, n: usize) -> Result<(), TryAcquireError> {
        let mut st = self.lock();
        if st.closed {
            return Err(TryAcquireError::Closed);
        }
        if st.waiters.any_waiting() || st.permits < n {
            return Err(TryAcquireError::NoPermits);
        }
        st.permits -= n;
        Ok(())
    }

    /// Waits for one permit that owns a reference to the semaphore, so it
    /// can move into a spawned task.
    pub async fn acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, AcquireError> {
        Acquire {
            sem: &self,
            n: 1,
            id: None,
        }
        .await?;
        Ok(OwnedSemaphorePermit { sem: self, n: 1 })
    }

    /// [`try_acquire`](Self::try_acquire) for an owned permit.
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.try_take(1)?;
        Ok(OwnedSemaphorePermit { sem: self, n: 1 })
    }

    fn release(&self, n: usize) {
        self.add_permits(n);
    }
}

/// Hands permits to waiters at the head of the queue while they fit.
fn grant(st: &mut State) -> Vec<Waker> {
    let mut wakers = Vec::new();
    if st.closed {
        // Waiters were woken to fail; permits stay in the count.
        return wakers;
    }
    while let Some(e) = st.waiters.first_waiting() {
        if e.need > st.permits {
            break;
        }
        let need = e.need;
        e.granted = true;
        if let Some(w) = e.waker.take() {
            wakers.push(w);
        }
        st.permits -= need;
    }
    wakers
}

struct Acquire<'a> {
    sem: &'a Semaphore,
    n: usize,
    /// Registered in the wait list.
    id: Option<u64>,
}

impl Future for Acquire<'_> {
    type Output = Result<(), AcquireError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.sem.lock();
        match self.id {
            None => {
                if st.closed {
                    return Poll::Ready(Err(AcquireError));
                }
                if !st.waiters.any_waiting() && st.permits >= self.n {
                    st.permits -= self.n;
                    return Poll::Ready(Ok(()));
                }
                let id = st.waiters.push(self.n, cx.waker());
                drop(st);
                self.id = Some(id);
                Poll::Pending
            }
            Some(id) => {
                let granted = st.waiters.find(id).is_some_and(|e| e.granted);
                if granted || st.closed {
                    st.waiters.remove(id);
                    drop(st);
                    self.id = None;
                    // Granted before the close: the permits are ours.
                    return Poll::Ready(if granted { Ok(()) } else { Err(AcquireError) });
                }
                if let Some(e) = st.waiters.find(id) {
                    match &e.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => e.waker = Some(cx.waker().clone()),
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Acquire<'_> {
    /// Dropped while queued: leave the queue; permits granted but not yet
    /// seen go back (to the next waiters).
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut st = self.sem.lock();
        let Some(e) = st.waiters.remove(id) else {
            return;
        };
        if e.granted {
            st.permits += e.need;
        }
        // A large request at the head that left may let smaller ones in.
        let wakers = grant(&mut st);
        drop(st);
        wake_all(wakers);
    }
}

/// Permits borrowed from a [`Semaphore`]; dropping it gives them back.
#[must_use = "dropping the permit gives it back at once"]
#[derive(Debug)]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    n: usize,
}

impl SemaphorePermit<'_> {
    /// Keeps the permits out of the semaphore for good.
    pub fn forget(mut self) {
        self.n = 0;
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.sem.release(self.n);
        }
    }
}

/// A permit holding an `Arc` of its [`Semaphore`] (`acquire_owned`).
#[must_use = "dropping the permit gives it back at once"]
#[derive(Debug)]
pub struct OwnedSemaphorePermit {
    sem: Arc<Semaphore>,
    n: usize,
}

impl OwnedSemaphorePermit {
    /// Keeps the permit out of the semaphore for good.
    pub fn forget(mut self) {
        self.n = 0;
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        if self.n > 0 {
            self.sem.release(self.n);
        }
    }
}
