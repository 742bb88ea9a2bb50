//! `scope`: a body and the child tasks it spawns, as one unit. The scope
//! ends when the body and every child have finished; the first error seen
//! (of the body or a child) cancels the rest and is returned, and a child's
//! panic cancels the rest and is resumed in the caller, in both cases once
//! every child has ended. Dropping the scope's future cancels every child
//! without waiting (a drop cannot wait): a child in the middle of a poll
//! on another worker finishes that poll.

use std::fmt;
use std::future::Future;
use std::panic::resume_unwind;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use super::JoinSet;

/// Why a scope failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ScopeError<E> {
    /// The body or a child returned this error (the first one).
    Failed(E),
    /// A child was cancelled from outside (the runtime shutting down).
    Cancelled,
}

impl<E: fmt::Display> fmt::Display for ScopeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeError::Failed(e) => write!(f, "a scope's task failed: {e}"),
            ScopeError::Cancelled => f.write_str("a scope's child task was cancelled"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ScopeError<E> {}

struct Inner<E> {
    children: JoinSet<Result<(), E>>,
    /// The scope's own task, woken when a child is added.
    waker: Option<Waker>,
    /// The scope ended: later spawns are dropped unrun.
    ended: bool,
}

/// Spawns children into a [`scope`]; cheap to clone and `Send`, so the
/// body and the children themselves can spawn more.
pub struct Scope<E> {
    inner: Arc<Mutex<Inner<E>>>,
}

impl<E> Clone for Scope<E> {
    fn clone(&self) -> Scope<E> {
        Scope {
            inner: self.inner.clone(),
        }
    }
}

impl<E> fmt::Debug for Scope<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

impl<E: Send + 'static> Scope<E> {
    fn lock(&self) -> MutexGuard<'_, Inner<E>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns a child (as [`spawn`](super::spawn)). A child spawned after
    /// the scope ended is dropped without running.
    ///
    /// # Panics
    ///
    /// Outside a percore worker thread.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let mut inner = self.lock();
        if inner.ended {
            return;
        }
        inner.children.spawn(future);
        let waker = inner.waker.clone();
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Runs `body` with a [`Scope`] to spawn children into, and waits for the
/// body and every child. The first error cancels the others and is
/// returned; a child's panic cancels the others and is resumed here.
///
/// ```
/// # let rt = percore::Runtime::builder().workers(2).build().unwrap();
/// # rt.block_on(async {
/// use percore::task::{scope, ScopeError};
/// let r: Result<u32, ScopeError<String>> = scope(|s| async move {
///     for i in 0..4 {
///         s.spawn(async move { if i < 10 { Ok(()) } else { Err(format!("{i}")) } });
///     }
///     Ok(4)
/// })
/// .await;
/// assert_eq!(r, Ok(4));
/// # });
/// ```
pub async fn scope<T, E, F, Fut>(body: F) -> Result<T, ScopeError<E>>
where
    E: Send + 'static,
    F: FnOnce(Scope<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let scope = Scope {
        inner: Arc::new(Mutex::new(Inner {
            children: JoinSet::new(),
            waker: None,
            ended: false,
        })),
    };
    // Ends the scope however this future ends (returned, dropped,
    // unwound): children aborted, handles dropped (breaking the cycle of
    // children holding the scope).
    struct End<'a, E: Send + 'static>(&'a Scope<E>);
    impl<E: Send + 'static> Drop for End<'_, E> {
        fn drop(&mut self) {
            let children = {
                let mut inner = self.0.lock();
                inner.ended = true;
                inner.waker = None;
                std::mem::take(&mut inner.children)
            };
            drop(children);
        }
    }
    let _end = End(&scope);
    let mut body = pin!(body(scope.clone()));
    let mut output: Option<T> = None;
    // The first failure; once set, the others are aborted, the body is
    // no longer polled, and the scope waits until every child has ended
    // (an abort takes effect at the child's next turn on its worker).
    let mut failure: Option<Failure<E>> = None;
    let outcome = std::future::poll_fn(|cx| {
        if output.is_none() && failure.is_none() {
            if let Poll::Ready(r) = body.as_mut().poll(cx) {
                match r {
                    Ok(v) => output = Some(v),
                    Err(e) => failure = Some(Failure::Error(e)),
                }
            }
        }
        let mut inner = scope.lock();
        inner.waker = Some(cx.waker().clone());
        if failure.is_some() {
            inner.ended = true;
            inner.children.abort_all();
        }
        loop {
            let next = match inner.children.poll_join_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    return match (failure.take(), output.take()) {
                        (Some(f), _) => Poll::Ready(Err(f)),
                        (None, Some(v)) => Poll::Ready(Ok(v)),
                        (None, None) => Poll::Pending,
                    };
                }
                Poll::Ready(Some(r)) => r,
            };
            if failure.is_some() {
                continue; // already failing: later outcomes are dropped
            }
            let first = match next {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => Failure::Error(e),
                Err(je) if je.is_panic() => Failure::Panic(je.into_panic()),
                Err(_) => Failure::Cancelled,
            };
            failure = Some(first);
            inner.ended = true;
            inner.children.abort_all();
        }
    })
    .await;
    match outcome {
        Ok(v) => Ok(v),
        Err(Failure::Error(e)) => Err(ScopeError::Failed(e)),
        Err(Failure::Cancelled) => Err(ScopeError::Cancelled),
        Err(Failure::Panic(p)) => resume_unwind(p),
    }
}

/// How a scope failed, until it has waited for its children.
enum Failure<E> {
    Error(E),
    Cancelled,
    Panic(Box<dyn std::any::Any + Send>),
}
