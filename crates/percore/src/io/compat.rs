//! `Compat`: a percore stream behind poll-based read and write traits.
//!
//! Poll-based traits (`tokio::io`, `futures::io`, `hyper::rt`) lend the
//! caller's buffer for one poll only, while an io_uring op needs a buffer
//! that lives until its completion. So `Compat` owns two buffers and keeps
//! at most one read and one write in flight, each as a boxed future that
//! owns its buffer and a shared handle to the stream:
//!
//! - **read**: a receive into the read buffer (8 KiB by default); its bytes
//!   are copied out to callers until it is empty, then the next receive
//!   starts. One copy per byte, one op per buffer fill.
//! - **write**: bytes are copied into the write buffer and a `write_all` of
//!   it starts at once; the call reports them written. The next write (or
//!   flush, or shutdown) first waits for that one to finish and returns its
//!   error, if any. So an error can surface one call late, as with a
//!   `BufWriter`, and `flush` is where a caller learns that everything
//!   went out. One copy per byte, one op per write call.
//!
//! Each op boxes one future (a heap allocation per read and per write).
//! Dropping a `Compat` cancels a read in flight (bytes received and not yet
//! read are lost), but a write in flight is finished by a task of its own,
//! which then lets go of the stream: bytes a write call took are sent, as
//! a kernel socket sends what `write` accepted before `close`. (Off a
//! worker thread there is nowhere to run that task, and the write is
//! cancelled.) `into_inner` cancels both.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use crate::net::{TcpStream, UnixStream};
use crate::BufResult;

/// A stream `Compat` can drive: owned-buffer read and write-all. Sealed:
/// implemented for [`TcpStream`] and [`UnixStream`].
pub trait CompatStream: sealed::Sealed + Send + Sync + 'static {}

mod sealed {
    use super::*;

    pub trait Sealed {
        fn read_owned(
            &self,
            buf: Vec<u8>,
        ) -> impl Future<Output = BufResult<usize, Vec<u8>>> + Send;
        fn write_all_owned(
            &self,
            buf: Vec<u8>,
        ) -> impl Future<Output = BufResult<(), Vec<u8>>> + Send;
        fn shutdown_write(&self) -> io::Result<()>;
    }
}

/// The same three calls on each stream type.
macro_rules! compat_stream {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            fn read_owned(
                &self,
                buf: Vec<u8>,
            ) -> impl Future<Output = BufResult<usize, Vec<u8>>> + Send {
                self.read(buf)
            }
            fn write_all_owned(
                &self,
                buf: Vec<u8>,
            ) -> impl Future<Output = BufResult<(), Vec<u8>>> + Send {
                self.write_all(buf)
            }
            fn shutdown_write(&self) -> io::Result<()> {
                self.shutdown(std::net::Shutdown::Write)
            }
        }
        impl CompatStream for $t {}
    )*};
}

compat_stream!(TcpStream, UnixStream);

type ReadOp = Pin<Box<dyn Future<Output = BufResult<usize, Vec<u8>>> + Send>>;
type WriteOp = Pin<Box<dyn Future<Output = BufResult<(), Vec<u8>>> + Send>>;

enum ReadState {
    /// The buffer, with `pos..len` still to hand out.
    Idle {
        buf: Vec<u8>,
        pos: usize,
    },
    Reading(ReadOp),
    /// The peer closed its side; every read returns 0 from now on.
    Eof,
}

enum WriteState {
    Idle(Vec<u8>),
    Writing(WriteOp),
}

/// A [`TcpStream`] or [`UnixStream`] behind the poll-based I/O traits:
/// `tokio::io::{AsyncRead, AsyncWrite}` (feature `tokio`),
/// `futures_io::{AsyncRead, AsyncWrite}` (feature `futures-io`) and
/// `hyper::rt::{Read, Write}` (feature `hyper`). See the module docs in
/// `io/compat.rs` for the buffering and its cost: one copy per byte each
/// way, one boxed future per op, and write errors reported by the next
/// call or by `flush`.
///
/// ```
/// # let rt = percore::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(async {
///     let (a, b) = percore::net::UnixStream::pair()?;
///     let mut a = percore::io::Compat::new(a);
///     let mut b = percore::io::Compat::new(b);
///     a.write_bytes(b"hello").await?;
///     a.flush().await?;
///     let mut got = [0u8; 5];
///     let n = b.read_bytes(&mut got).await?;
///     assert_eq!(&got[..n], b"hello");
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct Compat<S: CompatStream> {
    stream: Arc<S>,
    read: ReadState,
    write: WriteState,
    read_capacity: usize,
    write_capacity: usize,
}

impl<S: CompatStream> std::fmt::Debug for Compat<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compat")
            .field("reading", &matches!(self.read, ReadState::Reading(_)))
            .field("writing", &matches!(self.write, WriteState::Writing(_)))
            .finish()
    }
}

impl<S: CompatStream> Compat<S> {
    /// Wraps `stream` with 8 KiB read and 64 KiB write buffers.
    pub fn new(stream: S) -> Compat<S> {
        Self::with_capacity(8 * 1024, 64 * 1024, stream)
    }

    /// Wraps `stream`: each receive asks for up to `read` bytes, and a
    /// write call takes up to `write` bytes (both at least 1).
    pub fn with_capacity(read: usize, write: usize, stream: S) -> Compat<S> {
        Compat {
            stream: Arc::new(stream),
            read: ReadState::Idle {
                buf: Vec::new(),
                pos: 0,
            },
            write: WriteState::Idle(Vec::new()),
            read_capacity: read.max(1),
            write_capacity: write.max(1),
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream back, after cancelling what is in flight: received bytes
    /// not yet read and written bytes not yet flushed are lost (call
    /// `flush` first).
    pub fn into_inner(mut self) -> S {
        // Cancel the ops: their futures hold the other references to the
        // stream. With the write state idle, `Drop` has nothing to finish.
        self.read = ReadState::Eof;
        self.write = WriteState::Idle(Vec::new());
        let stream = self.stream.clone();
        drop(self);
        match Arc::try_unwrap(stream) {
            Ok(s) => s,
            Err(_) => unreachable!("only Compat's own ops share the stream"),
        }
    }

    /// The received bytes not yet consumed, receiving more first if there
    /// are none; empty at end of stream. Pair with [`consume`](Self::consume)
    /// (the `AsyncBufRead` protocol; no copy until the caller's).
    pub fn poll_fill_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        loop {
            match &mut self.read {
                ReadState::Eof => return Poll::Ready(Ok(&[])),
                ReadState::Idle { buf, pos } if *pos < buf.len() => break,
                ReadState::Idle { buf, .. } => {
                    let mut buf = std::mem::take(buf);
                    buf.clear();
                    buf.reserve(self.read_capacity);
                    let s = self.stream.clone();
                    self.read =
                        ReadState::Reading(Box::pin(async move { s.read_owned(buf).await }));
                }
                ReadState::Reading(op) => {
                    let (res, buf) = ready!(op.as_mut().poll(cx));
                    match res {
                        Ok(0) => self.read = ReadState::Eof,
                        Ok(_) => self.read = ReadState::Idle { buf, pos: 0 },
                        Err(e) => {
                            self.read = ReadState::Idle { buf, pos: 0 };
                            return Poll::Ready(Err(e));
                        }
                    }
                }
            }
        }
        match &self.read {
            ReadState::Idle { buf, pos } => Poll::Ready(Ok(&buf[*pos..])),
            _ => unreachable!("the loop breaks only with bytes to hand out"),
        }
    }

    /// Marks `n` bytes of what [`poll_fill_buf`](Self::poll_fill_buf)
    /// returned as consumed.
    pub fn consume(&mut self, n: usize) {
        if let ReadState::Idle { buf, pos } = &mut self.read {
            *pos = (*pos + n).min(buf.len());
        }
    }

    /// Copies received bytes into `dst`; `Ok(0)`: end of stream (or an
    /// empty `dst`).
    pub fn poll_read_bytes(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let src = ready!(self.poll_fill_buf(cx))?;
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }

    /// Waits for the write in flight, if any; its error, if it failed.
    fn poll_write_done(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let WriteState::Writing(op) = &mut self.write {
            let (res, mut buf) = ready!(op.as_mut().poll(cx));
            buf.clear();
            self.write = WriteState::Idle(buf);
            res?;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes bytes from `srcs` (in order, up to the write capacity) and
    /// starts sending them; returns how many it took.
    pub fn poll_write_bytes_vectored(
        &mut self,
        cx: &mut Context<'_>,
        srcs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_write_done(cx))?;
        let WriteState::Idle(buf) = &mut self.write else {
            unreachable!("poll_write_done leaves no write in flight");
        };
        let mut buf = std::mem::take(buf);
        for s in srcs {
            let room = self.write_capacity - buf.len();
            if room == 0 {
                break;
            }
            buf.extend_from_slice(&s[..s.len().min(room)]);
        }
        let n = buf.len();
        if n == 0 {
            self.write = WriteState::Idle(buf);
            return Poll::Ready(Ok(0));
        }
        let s = self.stream.clone();
        let mut op: WriteOp = Box::pin(async move { s.write_all_owned(buf).await });
        // Poll once so the send is submitted now, not at the next call.
        match op.as_mut().poll(cx) {
            Poll::Pending => self.write = WriteState::Writing(op),
            Poll::Ready((res, mut buf)) => {
                buf.clear();
                self.write = WriteState::Idle(buf);
                res?;
            }
        }
        Poll::Ready(Ok(n))
    }

    /// Takes bytes from `src` and starts sending them.
    pub fn poll_write_bytes(
        &mut self,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_bytes_vectored(cx, &[io::IoSlice::new(src)])
    }

    /// Waits until every byte taken so far has been sent.
    pub fn poll_flush_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_done(cx)
    }

    /// Flushes, then shuts down the write half (the peer reads end of
    /// stream).
    pub fn poll_shutdown_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_done(cx))?;
        match self.stream.shutdown_write() {
            // Already shut down, or the peer is gone: nothing left to do.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            r => Poll::Ready(r),
        }
    }

    /// Reads some bytes into `dst` (`Ok(0)`: end of stream).
    pub async fn read_bytes(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_bytes(cx, dst)).await
    }

    /// Takes all of `src` for sending (call [`flush`](Self::flush) to wait
    /// until it is sent).
    pub async fn write_bytes(&mut self, mut src: &[u8]) -> io::Result<()> {
        while !src.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_write_bytes(cx, src)).await?;
            src = &src[n..];
        }
        Ok(())
    }

    /// Waits until every byte taken so far has been sent.
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush_bytes(cx)).await
    }
}

impl<S: CompatStream> Drop for Compat<S> {
    fn drop(&mut self) {
        let WriteState::Writing(op) =
            std::mem::replace(&mut self.write, WriteState::Idle(Vec::new()))
        else {
            return;
        };
        if crate::runtime::context::with_worker(|_| ()).is_some() {
            // Detached: it ends when the kernel has the bytes (or the
            // connection fails), and then drops its share of the stream.
            drop(crate::spawn(async move {
                let _ = op.await;
            }));
        }
    }
}
