//! Request bodies as streams for storage, with an idle timeout between frames.

use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, BodyDataStream};
use berth_registry::ByteStream;
use bytes::Bytes;
use futures::{Stream, StreamExt};

/// At most this much of a refused request's body is read and discarded (see [`BodyStream`]).
const DRAIN_LIMIT: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Turns a request body into a stream of chunks that fails if no frame arrives for `idle`.
pub fn stream(body: Body, idle: Duration) -> ByteStream {
    Box::pin(BodyStream {
        inner: Some(body.into_data_stream()),
        idle,
        deadline: Box::pin(tokio::time::sleep(idle)),
    })
}

/// The same body, read and discarded in the background if it is dropped unread (a request
/// refused before its handler consumed it), so that the connection stays usable and the client
/// reads the refusal.
pub fn draining(body: Body, idle: Duration) -> Body {
    Body::from_stream(BodyStream {
        inner: Some(body.into_data_stream()),
        idle,
        deadline: Box::pin(tokio::time::sleep(idle)),
    })
}

/// A request body with an idle timeout. When it is dropped before its end (the request was
/// refused part-way: a wrong offset, a full disk, a size limit) the rest is read and discarded in
/// the background, up to a bound, so that the client, still sending, reads the error response
/// instead of a reset connection.
struct BodyStream {
    inner: Option<BodyDataStream>,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for BodyStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.inner = None;
                Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))))
            }
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.inner = None;
                    Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no data received for too long",
                    ))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        if let Some(rest) = self.inner.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(drain(rest));
        }
    }
}

async fn drain(mut rest: BodyDataStream) {
    let _ = tokio::time::timeout(DRAIN_TIME, async move {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = rest.next().await {
            seen += chunk.len();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// Reads a small body (a manifest) into memory, refusing more than `limit` bytes.
///
/// An oversized body is read to its end (up to a bound) and discarded before the refusal, so
/// that the client, still sending, receives the 413 instead of a reset connection.
pub async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ReadError> {
    let drain_limit = limit.saturating_mul(4).max(16 << 20);
    let mut out = Vec::new();
    let mut seen = 0usize;
    let mut s = body.into_data_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| ReadError::Body(e.to_string()))?;
        seen = seen.saturating_add(chunk.len());
        if seen > drain_limit {
            return Err(ReadError::TooLarge);
        }
        if seen <= limit {
            out.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        Err(ReadError::TooLarge)
    } else {
        Ok(out)
    }
}

#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Body(String),
}
