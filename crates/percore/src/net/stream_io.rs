//! The loops every byte stream (TCP, Unix) and file shares on top of its
//! single `read` and `write`: read exactly, write all. The closures get
//! the window still to do; its `begin()` is the count done so far (a
//! file's offset adds it).

use std::future::Future;
use std::io;

use crate::driver::buf::{IoBuf, IoBufMut, Slice};
use crate::BufResult;

/// Writes all of `buf`'s initialized bytes with repeated `write`s.
pub(crate) async fn write_all<B, F, Fut>(buf: B, what: &str, mut write: F) -> BufResult<(), B>
where
    B: IoBuf,
    F: FnMut(Slice<B>) -> Fut,
    Fut: Future<Output = BufResult<usize, Slice<B>>>,
{
    let total = buf.bytes_init();
    let mut slice = buf.slice(..total);
    let mut done = 0;
    while done < total {
        let (res, s) = write(slice).await;
        slice = s;
        match res {
            Ok(0) => {
                let e = io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("{what} accepted no more bytes after {done} of {total}"),
                );
                return (Err(e), slice.into_inner());
            }
            Ok(n) => {
                done += n;
                slice = slice.into_inner().slice(done..total);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), slice.into_inner()),
        }
    }
    (Ok(()), slice.into_inner())
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
