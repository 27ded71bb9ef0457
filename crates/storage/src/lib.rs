//! Blob and upload storage, on the local filesystem (`fs`) or S3-compatible object storage (`s3`),
//! behind one `BlobStore`. Blobs are content-addressed and appear only after their digest has
//! been verified (on the filesystem: write, fsync, rename; on S3: a put or a multipart upload
//! completed only once the streamed bytes hashed right).
//!
//! This crate knows nothing about repositories: which repository may see which blob is metadata.

mod fs;
mod s3;
mod store;
mod stream;

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

pub use fs::{FsStore, MappedBlob};
pub use s3::{MIN_PART_SIZE, S3Config, S3Store};
pub use store::{BlobReader, BlobStore};
pub use stream::start_writeback;

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
    /// The object store could not be reached or refused to work; a retry later may succeed.
    #[error("object storage is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Config(String),
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
    /// What else the backend needs to continue (for S3: the multipart upload and its parts), as
    /// JSON; `None` for the filesystem, whose file is its own state.
    pub storage_state: Option<String>,
}
