//! `BlobStore`: the one face the services see, whichever backend holds the bytes.
//!
//! An enum rather than a trait object: there are two backends, every call is async, and the
//! dispatch costs a match instead of a boxed future per call. A third backend (GCS, Azure through
//! the same `object_store` crate) adds an arm.
//!
//! `location` parameters carry where the metadata store says a blob lives when that is not its
//! canonical content-addressed key (S3 blobs assembled from chunked uploads); the filesystem
//! always uses the canonical path and ignores it.

use std::time::{Duration, SystemTime};

use berth_oci::{ByteRange, Digest};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::fs::{FsStore, MappedBlob};
use crate::s3::S3Store;
use crate::{ByteStream, StorageError, UploadCursor};

type Result<T> = std::result::Result<T, StorageError>;

#[derive(Debug, Clone)]
pub enum BlobStore {
    Fs(FsStore),
    S3(S3Store),
}

/// A readable blob.
pub enum BlobReader {
    /// A local file, mapped into memory.
    Mapped(MappedBlob),
    /// An object, fetched when the body is first polled.
    Remote {
        store: S3Store,
        digest: Digest,
        location: Option<String>,
        len: u64,
    },
}

impl BlobReader {
    pub fn len(&self) -> u64 {
        match self {
            BlobReader::Mapped(m) => m.len(),
            BlobReader::Remote { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of `range` (or of the whole blob) as a stream of chunks.
    pub fn stream(&self, range: Option<ByteRange>) -> BoxStream<'static, std::io::Result<Bytes>> {
        match self {
            BlobReader::Mapped(m) => m.stream(range).boxed(),
            BlobReader::Remote {
                store,
                digest,
                location,
                len,
            } => store
                .stream(digest, location.as_deref(), *len, range)
                .boxed(),
        }
    }
}

impl From<FsStore> for BlobStore {
    fn from(s: FsStore) -> Self {
        BlobStore::Fs(s)
    }
}

impl From<S3Store> for BlobStore {
    fn from(s: S3Store) -> Self {
        BlobStore::S3(s)
    }
}

impl BlobStore {
    /// Whether several processes may share this store (and so each other's upload sessions).
    pub fn is_shared(&self) -> bool {
        matches!(self, BlobStore::S3(_))
    }

    /// Checks that the store answers.
    pub async fn ready(&self) -> Result<()> {
        match self {
            BlobStore::Fs(s) => s.list_uploads().await.map(|_| ()),
            BlobStore::S3(s) => s.ready().await,
        }
    }

    /// The size of a stored blob, or `None` if it is not stored.
    pub async fn blob_size(&self, d: &Digest, location: Option<&str>) -> Result<Option<u64>> {
        match self {
            BlobStore::Fs(s) => s.blob_size(d).await,
            BlobStore::S3(s) => s.blob_size(d, location).await,
        }
    }

    /// Opens a blob of (metadata-recorded) size `len` for reading; `None` if it is not stored.
    /// On S3 the object is not asked for until the body is read: a missing object then ends the
    /// response early, and costs no extra request in the usual case.
    pub async fn open_blob(
        &self,
        d: &Digest,
        location: Option<&str>,
        len: u64,
    ) -> Result<Option<BlobReader>> {
        match self {
            BlobStore::Fs(s) => Ok(s.open_blob(d).await?.map(BlobReader::Mapped)),
            BlobStore::S3(s) => Ok(Some(BlobReader::Remote {
                store: s.clone(),
                digest: d.clone(),
                location: location.map(str::to_owned),
                len,
            })),
        }
    }

    /// A URL from which a client may fetch the blob itself for `ttl`, when the backend can
    /// give one.
    pub async fn presigned_get(
        &self,
        d: &Digest,
        location: Option<&str>,
        ttl: Duration,
    ) -> Result<Option<url::Url>> {
        match self {
            BlobStore::Fs(_) => Ok(None),
            BlobStore::S3(s) => s.presigned_get(d, location, ttl).await.map(Some),
        }
    }

    pub async fn delete_blob(&self, d: &Digest, location: Option<&str>) -> Result<bool> {
        match self {
            BlobStore::Fs(s) => s.delete_blob(d).await,
            BlobStore::S3(s) => s.delete_blob(d, location).await,
        }
    }

    /// Stores a whole blob received in one request under its canonical key, only if it hashes
    /// to `expected`. Returns its size.
    pub async fn put_blob(&self, expected: &Digest, body: ByteStream, limit: u64) -> Result<u64> {
        match self {
            BlobStore::Fs(s) => s.put_blob(expected, body, limit).await,
            BlobStore::S3(s) => s.put_blob(expected, body, limit).await,
        }
    }

    /// Prepares the storage side of a new upload session.
    pub async fn create_upload(&self, id: &str) -> Result<()> {
        match self {
            BlobStore::Fs(s) => s.create_upload(id).await,
            // Nothing to create: the multipart upload starts with the first full part.
            BlobStore::S3(_) => Ok(()),
        }
    }

    /// How many bytes an upload has received. On the filesystem the file's length is the
    /// truth; on S3 the saved cursor is.
    pub async fn upload_offset(&self, id: &str, cursor: Option<&UploadCursor>) -> Result<u64> {
        match self {
            BlobStore::Fs(s) => s.upload_offset(id).await,
            BlobStore::S3(s) => Ok(s.upload_offset(cursor)),
        }
    }

    pub async fn append(
        &self,
        id: &str,
        cursor: Option<UploadCursor>,
        start: Option<u64>,
        body: ByteStream,
        limit: u64,
    ) -> Result<UploadCursor> {
        match self {
            BlobStore::Fs(s) => s.append(id, cursor, start, body, limit).await,
            BlobStore::S3(s) => s.append(id, cursor, start, body, limit).await,
        }
    }

    /// Completes an upload. Returns the blob's size and, when it is not at its canonical key,
    /// where it is (to be recorded with the blob).
    pub async fn finish_upload(
        &self,
        id: &str,
        cursor: Option<UploadCursor>,
        start: Option<u64>,
        body: Option<ByteStream>,
        expected: &Digest,
        limit: u64,
    ) -> Result<(u64, Option<String>)> {
        match self {
            BlobStore::Fs(s) => s
                .finish_upload(id, cursor, start, body, expected, limit)
                .await
                .map(|size| (size, None)),
            BlobStore::S3(s) => {
                s.finish_upload(id, cursor, start, body, expected, limit)
                    .await
            }
        }
    }

    pub async fn delete_upload(&self, id: &str, cursor: Option<&UploadCursor>) -> Result<()> {
        match self {
            BlobStore::Fs(s) => s.delete_upload(id).await,
            BlobStore::S3(s) => s.delete_upload(id, cursor).await,
        }
    }

    /// Upload data present in storage, by session id, with its last modification time.
    pub async fn list_uploads(&self) -> Result<Vec<(String, SystemTime)>> {
        match self {
            BlobStore::Fs(s) => s.list_uploads().await,
            BlobStore::S3(s) => s.list_uploads().await,
        }
    }
}
