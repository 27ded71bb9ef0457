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
pub async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut s = body.into_data_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| ReadError::Body(e.to_string()))?;
        if out.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Body(String),
}
