//! A bound on how long a client may keep a response waiting by not reading
//! it.
//!
//! hyper bounds reading a request's head (`header_read_timeout`), but not
//! writing the response: a client that stops reading once the socket
//! buffers are full would hold its connection, hyper's buffers and the
//! body (a block of the server's shared region, or a slice of an upstream
//! read buffer) for as long as it likes. [`SendTimeout`] wraps the stream
//! and fails a write that has made no progress for the configured time,
//! which ends the connection. The bound is on progress, not on the whole
//! response, so a slow but live client (a dnf on a poor link) is never cut
//! off; nginx's `send_timeout` works the same way.
//!
//! The common case, a write the socket takes at once, costs one branch: the
//! timer is armed only when a write has to wait, and allocated once per
//! connection at most.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `S`, whose writes fail with [`io::ErrorKind::TimedOut`] after `timeout`
/// without progress.
#[derive(Debug)]
pub struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    /// The deadline of the current wait, once a write has had to wait.
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether `stall` is armed for the wait in progress.
    waiting: bool,
}

impl<S> SendTimeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> SendTimeout<S> {
        SendTimeout {
            inner,
            timeout,
            stall: None,
            waiting: false,
        }
    }

    /// After the wrapped write: a result is progress (or an error of its
    /// own) and ends the wait; `Pending` starts or continues it.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.waiting = false;
            return poll;
        }
        if !self.waiting {
            let deadline = Instant::now() + self.timeout;
            match &mut self.stall {
                Some(stall) => stall.as_mut().reset(deadline),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.waiting = true;
        }
        let stall = self.stall.as_mut().expect("armed above");
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing of the response for {:?}",
                    self.timeout
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_secs(30);

    // The clock is paused: it jumps to the next timer whenever every task
    // waits, so these run in no time and whatever the machine's speed.

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_fails_the_write() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut ours = SendTimeout::new(ours, TIMEOUT);
        let start = Instant::now();
        let e = ours.write_all(&[0; 64 * 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("read nothing"), "{e}");
        assert_eq!(start.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_gets_everything() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut ours = SendTimeout::new(ours, TIMEOUT);
        // A KiB every 20 s: the whole takes far longer than the bound, but
        // no wait is as long as it.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0; 1024];
            loop {
                tokio::time::sleep(TIMEOUT * 2 / 3).await;
                match theirs.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let body: Vec<u8> = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
        let start = Instant::now();
        ours.write_all(&body)
            .await
            .expect("no stall as long as the bound");
        ours.shutdown().await.unwrap();
        drop(ours);
        assert!(start.elapsed() > TIMEOUT * 4);
        assert_eq!(reader.await.unwrap(), body);
    }
}
