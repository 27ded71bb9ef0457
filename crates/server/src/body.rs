//! Request bodies as streams for storage, with an idle timeout between frames.

use std::time::Duration;

use axum::body::Body;
use berth_registry::ByteStream;
use futures::StreamExt;

/// Turns a request body into a stream of chunks that fails if no frame arrives for `idle`.
pub fn stream(body: Body, idle: Duration) -> ByteStream {
    let inner = body.into_data_stream();
    Box::pin(futures::stream::unfold(
        Some(inner),
        move |state| async move {
            let mut s = state?;
            match tokio::time::timeout(idle, s.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(s))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e.to_string())), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no data received for too long",
                    )),
                    None,
                )),
            }
        },
    ))
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
