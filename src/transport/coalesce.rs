//! Write coalescing for server connections. HTTP/2 answers each stream as soon as its handler
//! returns, and the connection task, woken by that stream, flushes at once: one `writev` per
//! response. On loopback and in-cluster TCP that syscall (and the peer's receive work it
//! triggers) is the largest single cost of a small request. Here a flush first yields once to
//! the scheduler, so the other streams that are ready add their frames to the same buffer,
//! and one write carries them all. An idle connection pays one extra task poll per flush.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Past this many buffered bytes a write goes out without waiting for a flush, so a large
/// response streams instead of piling up in memory.
const HIGH_WATER: usize = 64 * 1024;

pub(crate) struct Coalesce<I> {
    inner: I,
    buffer: Vec<u8>,
    /// This flush has already yielded once; the next poll writes.
    yielded: bool,
}

impl<I> Coalesce<I> {
    pub(crate) fn new(inner: I) -> Self {
        Self { inner, buffer: Vec::new(), yielded: false }
    }
}

impl<I: AsyncWrite + Unpin> Coalesce<I> {
    /// Writes the whole buffer to the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut written = 0;
        while written < self.buffer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.buffer[written..]) {
                Poll::Ready(Ok(0)) => {
                    self.buffer.drain(..written);
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => {
                    self.buffer.drain(..written);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    self.buffer.drain(..written);
                    return Poll::Pending;
                }
            }
        }
        self.buffer.clear();
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Coalesce<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Coalesce<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.buffer.len() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        self.buffer.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, slices: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if self.buffer.len() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        let mut total = 0;
        for slice in slices {
            self.buffer.extend_from_slice(slice);
            total += slice.len();
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.buffer.is_empty() {
            if !self.yielded {
                // Waking ourselves puts this task at the back of the run queue (tokio treats
                // a self-wake as a yield), behind the streams that are about to answer.
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(self.poll_drain(cx))?;
        }
        self.yielded = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_reach_the_peer_only_on_flush_and_in_order() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesce::new(client);
        writer.write_all(b"hello ").await.expect("write");
        let written = writer.write_vectored(&[IoSlice::new(b"wor"), IoSlice::new(b"ld")]).await.expect("write");
        assert_eq!(written, 5, "both slices are taken whole");
        let mut probe = [0u8; 16];
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), server.read(&mut probe)).await;
        assert!(early.is_err(), "nothing is sent before the flush");
        writer.flush().await.expect("flush");
        let mut got = vec![0u8; 11];
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello world");
    }

    #[tokio::test]
    async fn a_large_body_streams_past_the_high_water_mark() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesce::new(client);
        let body = vec![7u8; 3 * HIGH_WATER];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.expect("read");
            got
        });
        for chunk in body.chunks(1000) {
            writer.write_all(chunk).await.expect("write");
        }
        writer.shutdown().await.expect("shutdown");
        assert_eq!(reader.await.expect("reader"), body);
    }
}
