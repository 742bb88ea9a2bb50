//! The loops every byte stream (TCP, Unix) and file shares on top of its
//! single `read` and `write`: read exactly, write all. The closures get
//! the window still to do; its `begin()` is the count done so far (a
//! file's offset adds it).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::driver::buf::{IoBuf, IoBufMut, Slice};
use crate::BufResult;

/// Writes all of `buf`'s initialized bytes with repeated `write`s.
///
/// A hand-written future rather than an `async fn`: a connection's task
/// keeps it for as long as it lives, and the `async fn` stored the buffer,
/// its window and the message beside the `write` future it awaited (456
/// bytes for a TCP `write_all`, against 232 for the `write` inside).
pub(crate) fn write_all<B, F, Fut>(buf: B, what: &'static str, write: F) -> WriteAll<B, F, Fut>
where
    B: IoBuf,
    F: FnMut(Slice<B>) -> Fut,
    Fut: Future<Output = BufResult<usize, Slice<B>>>,
{
    let total = buf.bytes_init();
    WriteAll {
        write,
        what,
        total,
        done: 0,
        step: Step::Idle {
            window: Some(buf.slice(..total)),
        },
    }
}

pin_project_lite::pin_project! {
    /// The future of [`write_all`].
    pub(crate) struct WriteAll<B, F, Fut> {
        write: F,
        what: &'static str,
        total: usize,
        done: usize,
        #[pin]
        step: Step<B, Fut>,
    }
}

pin_project_lite::pin_project! {
    /// Between writes (the window still to write; `None` once finished),
    /// or one write in flight.
    #[project = StepProj]
    enum Step<B, Fut> {
        Idle { window: Option<Slice<B>> },
        Writing { #[pin] write: Fut },
    }
}

impl<B, F, Fut> Future for WriteAll<B, F, Fut>
where
    B: IoBuf,
    F: FnMut(Slice<B>) -> Fut,
    Fut: Future<Output = BufResult<usize, Slice<B>>>,
{
    type Output = BufResult<(), B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let (res, window) = match this.step.as_mut().project() {
                StepProj::Idle { window } => {
                    let window = window.take().expect("write_all polled after it completed");
                    if *this.done >= *this.total {
                        return Poll::Ready((Ok(()), window.into_inner()));
                    }
                    let write = (this.write)(window);
                    this.step.set(Step::Writing { write });
                    continue;
                }
                StepProj::Writing { write } => match write.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r,
                },
            };
            let (total, done) = (*this.total, *this.done);
            let next = match res {
                Ok(0) => {
                    this.step.set(Step::Idle { window: None });
                    let e = io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!(
                            "{} accepted no more bytes after {done} of {total}",
                            this.what
                        ),
                    );
                    return Poll::Ready((Err(e), window.into_inner()));
                }
                Ok(n) => {
                    *this.done += n;
                    window.into_inner().slice(*this.done..total)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => window,
                Err(e) => {
                    this.step.set(Step::Idle { window: None });
                    return Poll::Ready((Err(e), window.into_inner()));
                }
            };
            this.step.set(Step::Idle { window: Some(next) });
        }
    }
}

/// Reads until `buf` is full (`bytes_total` bytes), or fails with
/// `UnexpectedEof` if the peer closes first.
pub(crate) async fn read_exact<B, F, Fut>(buf: B, what: &str, mut read: F) -> BufResult<(), B>
where
    B: IoBufMut,
    F: FnMut(Slice<B>) -> Fut,
    Fut: Future<Output = BufResult<usize, Slice<B>>>,
{
    let total = buf.bytes_total();
    let mut slice = buf.slice(..total);
    let mut done = 0;
    while done < total {
        let (res, s) = read(slice).await;
        let buf = s.into_inner();
        match res {
            Ok(0) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{what} ended after {done} of {total} bytes"),
                );
                return (Err(e), buf);
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
        slice = buf.slice(done..total);
    }
    (Ok(()), slice.into_inner())
}

#[cfg(test)]
mod tests {
    use std::future::{ready, Future};
    use std::io;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::write_all;

    /// Polls a future whose steps are all ready.
    fn now<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the fake writes are always ready"),
        }
    }

    /// Each fake write takes what `script` says (`Ok(n)`: at most n bytes).
    fn run(script: Vec<io::Result<usize>>) -> (io::Result<()>, Vec<u8>, Vec<(usize, usize)>) {
        let mut script = script.into_iter();
        let mut windows = Vec::new();
        let (res, buf) = now(write_all(vec![9u8; 10], "peer", |s| {
            windows.push((s.begin(), s.end()));
            let r = match script.next().expect("no more writes scripted") {
                Ok(n) => Ok(n.min(s.end() - s.begin())),
                Err(e) => Err(e),
            };
            ready((r, s))
        }));
        (res, buf, windows)
    }

    #[test]
    fn partial_and_interrupted_writes_continue_from_where_they_stopped() {
        let interrupted = || Err(io::Error::from(io::ErrorKind::Interrupted));
        let (res, buf, windows) = run(vec![Ok(3), interrupted(), Ok(4), Ok(100)]);
        res.unwrap();
        assert_eq!(buf, vec![9u8; 10], "the whole buffer comes back");
        assert_eq!(windows, vec![(0, 10), (3, 10), (3, 10), (7, 10)]);
    }

    #[test]
    fn a_write_of_nothing_or_an_error_ends_it_with_the_buffer_back() {
        let (res, buf, windows) = run(vec![Ok(4), Ok(0)]);
        let e = res.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
        assert!(
            e.to_string()
                .contains("peer accepted no more bytes after 4 of 10"),
            "{e}"
        );
        assert_eq!((buf.len(), windows.len()), (10, 2));

        let reset = || Err(io::Error::from(io::ErrorKind::ConnectionReset));
        let (res, buf, _) = run(vec![reset()]);
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(buf.len(), 10);
    }

    #[test]
    fn an_empty_buffer_is_written_without_a_write() {
        let mut calls = 0;
        let (res, buf) = now(write_all(Vec::<u8>::new(), "peer", |s| {
            calls += 1;
            ready((Ok(0), s))
        }));
        assert_eq!(calls, 0, "no write for an empty buffer");
        res.unwrap();
        assert!(buf.is_empty());
    }
}
