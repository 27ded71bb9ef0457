//! Blob and upload storage. Blobs are content-addressed files that appear only after their digest
//! has been verified (write, fsync, rename); uploads are append-only files whose length is the
//! truth about how much of an upload has been received.
//!
//! This crate knows nothing about repositories: which repository may see which blob is metadata.

mod fs;
mod stream;

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

pub use fs::{BlobReader, FsStore};

/// A request body on its way to storage. Errors are the client's (disconnects, timeouts).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the content's digest is {actual}, not {expected}")]
    DigestMismatch {
        expected: berth_oci::Digest,
        actual: berth_oci::Digest,
    },
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload was expected to continue at offset {expected}, not {got}")]
    OffsetMismatch { expected: u64, got: u64 },
    #[error("upload {0} does not exist")]
    UploadUnknown(String),
    #[error("the request body ended early: {0}")]
    Body(std::io::Error),
    #[error("storage is full")]
    Full,
    #[error("storage I/O failed: {0}")]
    Io(#[source] std::io::Error),
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            StorageError::Full
        } else {
            StorageError::Io(e)
        }
    }
}

/// Where an upload stands after a write: the bytes received so far and the hash state over them.
/// The state is saved with the session so that the next chunk, on any process, continues hashing
/// where this one stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCursor {
    pub offset: u64,
    pub hash_state: Vec<u8>,
}
