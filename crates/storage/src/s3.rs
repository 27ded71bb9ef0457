//! S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Garage, R2...) through `object_store`.
//!
//! Keys under the bucket (and optional prefix):
//! - `blobs/<algorithm>/<first two hex>/<hex>`: blobs whose digest was known when their bytes were
//!   written (monolithic uploads, and chunked uploads small enough to finish in one request).
//! - `data/<session id>`: blobs assembled from a chunked upload's multipart upload. S3 cannot
//!   rename, and a server-side copy is limited to 5 GiB, so such a blob stays where it was
//!   assembled and the metadata store records its location.
//! - `uploads/<session id>/tail-<parts>`: the bytes of a chunked upload after its last full part.
//!
//! A chunked upload is an S3 multipart upload of fixed-size parts: part `k` holds bytes
//! `[k * part_size, (k + 1) * part_size)`, so the session state kept in the database is only the
//! multipart upload's id and the parts' ETags; the remainder shorter than a part (S3 refuses parts
//! under 5 MiB but the last) waits in a tail object until more bytes arrive. Every replica can
//! therefore continue any session: the database row says how far it got and with which hash
//! state, the object store holds the bytes. An object is completed (made readable) only after
//! the bytes streamed through the hasher matched the expected digest, except for the rare
//! session finished with a digest in an algorithm other than the one hashed while receiving,
//! which is completed and then read back; either way metadata links a blob only once verified.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_oci::digest::Hasher;
use berth_oci::{ByteRange, Digest};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use serde::{Deserialize, Serialize};

use crate::{ByteStream, StorageError, UploadCursor};

type Result<T> = std::result::Result<T, StorageError>;

/// S3's smallest part but the last.
pub const MIN_PART_SIZE: usize = 5 << 20;

/// How a deployment reaches its bucket.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `https://s3.example` or `http://127.0.0.1:3900`; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// A key prefix inside the bucket, so several registries can share one.
    pub prefix: String,
    /// Credentials; `None` takes them from the usual AWS environment variables.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Size of multipart parts. Larger parts mean fewer requests and more memory per upload
    /// (three parts at most: one being filled, two in flight).
    pub part_size: usize,
    /// Address buckets as `https://bucket.endpoint/` rather than `https://endpoint/bucket/`.
    pub virtual_hosted_style: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            bucket: String::new(),
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            part_size: 8 << 20,
            virtual_hosted_style: false,
        }
    }
}

/// A chunked upload's state as the database keeps it (JSON), beside the offset and hash state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct SessionState {
    /// The multipart upload, once the first full part was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
    /// ETags of the parts written so far, in order.
    #[serde(default)]
    parts: Vec<String>,
}

#[derive(Clone)]
pub struct S3Store {
    store: Arc<AmazonS3>,
    prefix: String,
    part_size: usize,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn unavailable(e: object_store::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

impl S3Store {
    pub fn open(config: &S3Config) -> Result<S3Store> {
        if config.bucket.is_empty() {
            return Err(StorageError::Config(
                "storage.bucket is required for S3".into(),
            ));
        }
        if config.part_size < MIN_PART_SIZE {
            return Err(StorageError::Config(format!(
                "storage.part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)"
            )));
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            // Fail fast: a request to an object store that is down must become a 503 in
            // seconds, not after minutes of retries. Transfers themselves have no overall
            // timeout (a large blob takes as long as it takes); connecting does.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: Duration::from_secs(5),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout_disabled()
                    .with_pool_idle_timeout(Duration::from_secs(30))
                    .with_allow_http(true),
            );
        if let Some(e) = &config.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &config.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let store = b
            .build()
            .map_err(|e| StorageError::Config(format!("S3 storage: {e}")))?;
        let prefix = config.prefix.trim_matches('/').to_owned();
        Ok(S3Store {
            store: Arc::new(store),
            prefix,
            part_size: config.part_size,
        })
    }

    fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn canonical(&self, d: &Digest) -> Path {
        self.key(&format!(
            "blobs/{}/{}/{}",
            d.algorithm().as_str(),
            &d.hex()[..2],
            d.hex()
        ))
    }

    /// Where a blob is: its recorded location, or its canonical key.
    fn blob_key(&self, d: &Digest, location: Option<&str>) -> Path {
        match location {
            Some(l) => self.key(l),
            None => self.canonical(d),
        }
    }

    fn check_id(id: &str) -> Result<()> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(StorageError::UploadUnknown(id.chars().take(64).collect()))
        }
    }

    fn data_location(id: &str) -> String {
        format!("data/{id}")
    }

    fn tail_key(&self, id: &str, parts: usize) -> Path {
        self.key(&format!("uploads/{id}/tail-{parts}"))
    }

    /// Checks that the bucket answers.
    pub async fn ready(&self) -> Result<()> {
        match self.store.head(&self.key("readyz-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub async fn blob_size(&self, d: &Digest, location: Option<&str>) -> Result<Option<u64>> {
        match self.store.head(&self.blob_key(d, location)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub async fn delete_blob(&self, d: &Digest, location: Option<&str>) -> Result<bool> {
        let key = self.blob_key(d, location);
        match self.store.head(&key).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(unavailable(e)),
        }
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A short-lived URL from which a client may read the blob directly.
    pub async fn presigned_get(
        &self,
        d: &Digest,
        location: Option<&str>,
        ttl: Duration,
    ) -> Result<url::Url> {
        self.store
            .signed_url(
                object_store::signer::Method::GET,
                &self.blob_key(d, location),
                ttl,
            )
            .await
            .map_err(unavailable)
    }

    /// The bytes of `range` (or all `len` bytes) of a blob, fetched when the stream is first
    /// polled, as ranged GETs of [`READ_SEGMENT`] bytes with the next one already in flight
    /// (see [`SegmentedRead`]).
    pub fn stream(
        &self,
        d: &Digest,
        location: Option<&str>,
        len: u64,
        range: Option<ByteRange>,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let range = match range {
            Some(r) => r.start..r.end + 1,
            None => 0..len,
        };
        SegmentedRead::new(self.store.clone(), self.blob_key(d, location), range).into_stream()
    }

    /// Stores a whole blob received in one request, making it readable only if it hashes to
    /// `expected`.
    pub async fn put_blob(&self, expected: &Digest, body: ByteStream, limit: u64) -> Result<u64> {
        let key = self.canonical(expected);
        let mut writer = PartWriter::new(self, key, SessionState::default());
        let hasher = expected.algorithm().hasher();
        let (hasher, size) = match writer.feed(hasher, body, 0, limit).await {
            Ok(r) => r,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        let actual = hasher.finish();
        if &actual != expected {
            writer.abort().await;
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        writer.complete().await?;
        Ok(size)
    }

    /// How many bytes an upload has received: the database's word, since the object store has
    /// no appendable object whose length could say it.
    pub fn upload_offset(&self, cursor: Option<&UploadCursor>) -> u64 {
        cursor.map_or(0, |c| c.offset)
    }

    fn session_state(cursor: Option<&UploadCursor>) -> Result<SessionState> {
        match cursor.and_then(|c| c.storage_state.as_deref()) {
            None => Ok(SessionState::default()),
            Some(s) => serde_json::from_str(s).map_err(|e| {
                StorageError::Io(std::io::Error::other(format!("session state: {e}")))
            }),
        }
    }

    /// Opens a session's writer positioned at its current end, with the hash state restored
    /// and the tail (if any) read back into the part buffer.
    async fn resume(
        &self,
        id: &str,
        cursor: Option<&UploadCursor>,
        start: Option<u64>,
    ) -> Result<(PartWriter, Hasher, u64)> {
        Self::check_id(id)?;
        let offset = self.upload_offset(cursor);
        if let Some(start) = start
            && start != offset
        {
            return Err(StorageError::OffsetMismatch {
                expected: offset,
                got: start,
            });
        }
        let state = Self::session_state(cursor)?;
        let part_size = self.part_size as u64;
        let full = state.parts.len() as u64 * part_size;
        if offset < full || offset - full >= part_size {
            return Err(StorageError::Io(std::io::Error::other(format!(
                "upload {id}: {offset} bytes do not fit {} parts",
                state.parts.len()
            ))));
        }
        let hasher = match cursor.and_then(|c| Hasher::restore(&c.hash_state)) {
            Some(h) => h,
            None if offset == 0 => berth_oci::Algorithm::Sha256.hasher(),
            None => {
                return Err(StorageError::Io(std::io::Error::other(format!(
                    "upload {id} has no saved hash state"
                ))));
            }
        };
        let nparts = state.parts.len();
        let mut writer = PartWriter::new(self, self.key(&Self::data_location(id)), state);
        let tail_len = offset - full;
        if tail_len > 0 {
            let key = self.tail_key(id, nparts);
            let bytes = self
                .store
                .get_range(&key, 0..tail_len)
                .await
                .map_err(|e| match e {
                    object_store::Error::NotFound { .. } => StorageError::Io(
                        std::io::Error::other(format!("upload {id} lost its tail object")),
                    ),
                    e => unavailable(e),
                })?;
            if bytes.len() as u64 != tail_len {
                return Err(StorageError::Io(std::io::Error::other(format!(
                    "upload {id}: tail object is shorter than the session says"
                ))));
            }
            writer.buf.extend_from_slice(&bytes);
        }
        Ok((writer, hasher, offset))
    }

    /// Appends `body` to an upload session and returns the new cursor to save.
    pub async fn append(
        &self,
        id: &str,
        cursor: Option<UploadCursor>,
        start: Option<u64>,
        body: ByteStream,
        limit: u64,
    ) -> Result<UploadCursor> {
        let (mut writer, hasher, offset) = self.resume(id, cursor.as_ref(), start).await?;
        let old_parts = writer.state.parts.len();
        // Whether the session had a tail object before this chunk (bytes past its last part).
        let had_tail = offset > old_parts as u64 * self.part_size as u64;
        let (hasher, written) = writer.feed(hasher, body, offset, limit).await?;
        writer.wait_in_flight().await?;
        let new_parts = writer.state.parts.len();
        // The remainder goes to the tail object named after the part count, so a crash between
        // this write and the database update leaves the old tail (and the old row) intact when
        // parts were added, and an overwritten tail whose extra bytes the row does not count
        // otherwise.
        if !writer.buf.is_empty() {
            let payload = PutPayload::from(writer.buf.split().freeze());
            self.store
                .put(&self.tail_key(id, new_parts), payload)
                .await
                .map_err(unavailable)?;
        }
        if had_tail && new_parts != old_parts {
            self.remove_quietly(&self.tail_key(id, old_parts)).await;
        }
        Ok(UploadCursor {
            offset: offset + written,
            hash_state: hasher.save(),
            storage_state: Some(
                serde_json::to_string(&writer.state).expect("session state serialises"),
            ),
        })
    }

    /// Completes an upload: appends the optional last chunk, verifies the digest, and assembles
    /// the blob. Returns its size and where it is stored (to be recorded with the blob).
    pub async fn finish_upload(
        &self,
        id: &str,
        cursor: Option<UploadCursor>,
        start: Option<u64>,
        body: Option<ByteStream>,
        expected: &Digest,
        limit: u64,
    ) -> Result<(u64, Option<String>)> {
        let (mut writer, mut hasher, offset) = self.resume(id, cursor.as_ref(), start).await?;
        let mut size = offset;
        if let Some(body) = body {
            let (h, written) = writer.feed(hasher, body, offset, limit).await?;
            hasher = h;
            size += written;
        }
        if writer.state.multipart.is_none() {
            // Everything is in the buffer: verify, then write it under its canonical key in
            // one atomic request.
            let bytes = writer.buf.split().freeze();
            let actual = if hasher.algorithm() == expected.algorithm() {
                hasher.finish()
            } else {
                Digest::of(expected.algorithm(), &bytes)
            };
            if &actual != expected {
                self.delete_upload(id, cursor.as_ref()).await?;
                return Err(StorageError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            self.store
                .put(&self.canonical(expected), PutPayload::from(bytes))
                .await
                .map_err(unavailable)?;
            self.remove_prefix(&format!("uploads/{id}/")).await;
            return Ok((size, None));
        }
        let same_algorithm = hasher.algorithm() == expected.algorithm();
        if same_algorithm {
            let actual = hasher.finish();
            if &actual != expected {
                writer.abort().await;
                self.remove_prefix(&format!("uploads/{id}/")).await;
                return Err(StorageError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        writer.complete().await?;
        let location = Self::data_location(id);
        if !same_algorithm {
            let actual = self.rehash(&self.key(&location), expected).await?;
            if &actual != expected {
                self.remove_quietly(&self.key(&location)).await;
                self.remove_prefix(&format!("uploads/{id}/")).await;
                return Err(StorageError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        self.remove_prefix(&format!("uploads/{id}/")).await;
        Ok((size, Some(location)))
    }

    async fn rehash(&self, key: &Path, expected: &Digest) -> Result<Digest> {
        let mut h = expected.algorithm().hasher();
        let mut s = self
            .store
            .get(key)
            .await
            .map_err(unavailable)?
            .into_stream();
        while let Some(chunk) = s.next().await {
            h.update(&chunk.map_err(unavailable)?);
        }
        Ok(h.finish())
    }

    /// Removes an upload's data: its multipart upload and tail objects. Removing one that is
    /// already gone is not an error.
    pub async fn delete_upload(&self, id: &str, cursor: Option<&UploadCursor>) -> Result<()> {
        Self::check_id(id)?;
        if let Ok(state) = Self::session_state(cursor)
            && let Some(mp) = &state.multipart
        {
            let key = self.key(&Self::data_location(id));
            if let Err(e) = self.store.abort_multipart(&key, mp).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                return Err(unavailable(e));
            }
        }
        self.remove_prefix(&format!("uploads/{id}/")).await;
        Ok(())
    }

    /// Every session that has tail objects, with the newest object's time, for expiry sweeps.
    pub async fn list_uploads(&self) -> Result<Vec<(String, SystemTime)>> {
        let prefix = self.key("uploads");
        let mut listing = self.store.list(Some(&prefix));
        let mut out: std::collections::HashMap<String, SystemTime> = Default::default();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(unavailable)?;
            let Some(id) = meta
                .location
                .prefix_match(&prefix)
                .and_then(|mut parts| parts.next())
            else {
                continue;
            };
            let t: SystemTime = meta.last_modified.into();
            let e = out.entry(id.as_ref().to_owned()).or_insert(t);
            *e = (*e).max(t);
        }
        Ok(out.into_iter().collect())
    }

    async fn remove_prefix(&self, rest: &str) {
        let prefix = self.key(rest.trim_end_matches('/'));
        let keys: Vec<_> = match self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
        {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(prefix = %prefix, error = %e, "could not list upload objects to remove");
                return;
            }
        };
        for k in keys {
            self.remove_quietly(&k).await;
        }
    }

    async fn remove_quietly(&self, key: &Path) {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(key = %key, error = %e, "could not remove an upload object"),
        }
    }
}

/// Parts being written while the next one fills. Two keep the object store busy while the
/// client's bytes arrive (one alone leaves it idle between parts); each costs a part of memory.
const PARTS_IN_FLIGHT: usize = 2;

/// Cuts a byte stream into parts of exactly `part_size` bytes and writes them as a multipart
/// upload, up to `PARTS_IN_FLIGHT` parts in flight while the next fills.
struct PartWriter {
    store: Arc<AmazonS3>,
    key: Path,
    part_size: usize,
    state: SessionState,
    buf: BytesMut,
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<(usize, PartId)>>>,
}

impl PartWriter {
    fn new(s3: &S3Store, key: Path, state: SessionState) -> PartWriter {
        PartWriter {
            store: s3.store.clone(),
            key,
            part_size: s3.part_size,
            state,
            buf: BytesMut::new(),
            in_flight: Default::default(),
        }
    }

    /// Hashes and buffers `body`, writing each full part. Returns the hasher and the number of
    /// bytes taken from `body`.
    async fn feed(
        &mut self,
        mut hasher: Hasher,
        mut body: ByteStream,
        already: u64,
        limit: u64,
    ) -> Result<(Hasher, u64)> {
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            if already + written + chunk.len() as u64 > limit {
                return Err(StorageError::TooLarge { limit });
            }
            hasher.update(&chunk);
            written += chunk.len() as u64;
            let mut rest = chunk;
            while !rest.is_empty() {
                if self.buf.capacity() == 0 {
                    self.buf.reserve(self.part_size);
                }
                let room = self.part_size - self.buf.len();
                let take = room.min(rest.len());
                self.buf.extend_from_slice(&rest.split_to(take));
                if self.buf.len() == self.part_size {
                    let part = self.buf.split().freeze();
                    self.send_part(part).await?;
                }
            }
        }
        Ok((hasher, written))
    }

    async fn send_part(&mut self, part: Bytes) -> Result<()> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.wait_oldest().await?;
        }
        let mp = match &self.state.multipart {
            Some(m) => m.clone(),
            None => {
                let m = self
                    .store
                    .create_multipart(&self.key)
                    .await
                    .map_err(unavailable)?;
                self.state.multipart = Some(m.clone());
                m
            }
        };
        let idx = self.state.parts.len();
        // A placeholder keeps the index taken; the real ETag replaces it when the part lands.
        self.state.parts.push(String::new());
        let store = self.store.clone();
        let key = self.key.clone();
        self.in_flight.push_back(tokio::spawn(async move {
            let id = store
                .put_part(&key, &mp, idx, PutPayload::from(part))
                .await
                .map_err(unavailable)?;
            Ok((idx, id))
        }));
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.pop_front() {
            let (idx, id) = task
                .await
                .map_err(|e| StorageError::Io(std::io::Error::other(e)))??;
            self.state.parts[idx] = id.content_id;
        }
        Ok(())
    }

    /// Waits for every part in flight.
    async fn wait_in_flight(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    /// Makes the object readable: the remainder becomes the last part (or, with no multipart
    /// upload at all, the whole object in one request).
    async fn complete(&mut self) -> Result<()> {
        self.wait_in_flight().await?;
        if self.state.multipart.is_none() {
            let bytes = self.buf.split().freeze();
            self.store
                .put(&self.key, PutPayload::from(bytes))
                .await
                .map_err(unavailable)?;
            return Ok(());
        }
        if !self.buf.is_empty() {
            let part = self.buf.split().freeze();
            self.send_part(part).await?;
            self.wait_in_flight().await?;
        }
        let mp = self.state.multipart.clone().expect("checked above");
        let parts = self
            .state
            .parts
            .iter()
            .map(|e| PartId {
                content_id: e.clone(),
            })
            .collect();
        self.store
            .complete_multipart(&self.key, &mp, parts)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn abort(&mut self) {
        while let Some(t) = self.in_flight.pop_front() {
            let _ = t.await;
        }
        if let Some(mp) = self.state.multipart.take()
            && let Err(e) = self.store.abort_multipart(&self.key, &mp).await
        {
            tracing::warn!(key = %self.key, error = %e, "could not abort a multipart upload");
        }
    }
}

/// Bytes per ranged GET when a blob is read.
const READ_SEGMENT: u64 = 16 << 20;

/// Ranged GETs of one read in flight at once: the one being streamed and the next.
const READ_AHEAD: usize = 2;

/// Body chunks a GET may hold before it waits for the reader. The rest of a segment that is
/// ahead waits in the socket, so memory stays at a few chunks per GET whatever the blob size.
const SEGMENT_CHUNKS: usize = 4;

/// A blob read as consecutive ranged GETs, each on a task of its own, the next one started
/// while the current one streams.
///
/// One GET at a time leaves the object store idle between its last byte and the first byte of
/// nothing else: its own work per request (metadata lookup, reading and checking its blocks)
/// is not overlapped with anything. With the next segment's request already answered and its
/// first bytes waiting, the store works on both. Dropping the stream (a client that hangs up)
/// aborts the GETs in flight.
struct SegmentedRead {
    store: Arc<AmazonS3>,
    key: Path,
    /// The bytes not yet requested.
    rest: std::ops::Range<u64>,
    in_flight: std::collections::VecDeque<Segment>,
}

struct Segment {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    /// The range's length, and how much of it has arrived: a channel that closes early (a body
    /// that ended short, a task that panicked) must not end the blob silently short.
    len: u64,
    got: u64,
    _task: AbortOnDrop,
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SegmentedRead {
    fn new(store: Arc<AmazonS3>, key: Path, range: std::ops::Range<u64>) -> Self {
        SegmentedRead {
            store,
            key,
            rest: range,
            in_flight: Default::default(),
        }
    }

    fn into_stream(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures::stream::unfold(self, |mut read| async move {
            loop {
                read.fill();
                let segment = read.in_flight.front_mut()?;
                let failure = match segment.chunks.recv().await {
                    Some(Ok(chunk)) => {
                        segment.got += chunk.len() as u64;
                        return Some((Ok(chunk), read));
                    }
                    Some(Err(e)) => e,
                    None if segment.got == segment.len => {
                        read.in_flight.pop_front();
                        continue;
                    }
                    None => std::io::Error::other(format!(
                        "reading {}: a {}-byte range ended after {} bytes",
                        read.key, segment.len, segment.got
                    )),
                };
                // Nothing after a failed segment may be sent: end here.
                read.in_flight.clear();
                read.rest = 0..0;
                return Some((Err(failure), read));
            }
        })
    }

    /// Starts GETs until [`READ_AHEAD`] are in flight or every byte is requested.
    fn fill(&mut self) {
        while self.in_flight.len() < READ_AHEAD && !self.rest.is_empty() {
            let end = self
                .rest
                .end
                .min(self.rest.start.saturating_add(READ_SEGMENT));
            let range = self.rest.start..end;
            let len = end - self.rest.start;
            self.rest.start = end;
            let (tx, rx) = tokio::sync::mpsc::channel(SEGMENT_CHUNKS);
            let task = tokio::spawn(fetch_segment(
                self.store.clone(),
                self.key.clone(),
                range,
                tx,
            ));
            self.in_flight.push_back(Segment {
                chunks: rx,
                len,
                got: 0,
                _task: AbortOnDrop(task),
            });
        }
    }
}

/// One ranged GET, its body sent chunk by chunk to `tx`. A body longer than the range ends with
/// an error before the extra bytes go out; one that ends short is caught by the reader, which
/// counts what each segment delivered.
async fn fetch_segment(
    store: Arc<AmazonS3>,
    key: Path,
    range: std::ops::Range<u64>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) {
    let want = range.end - range.start;
    let opts = GetOptions {
        range: Some(GetRange::Bounded(range)),
        ..Default::default()
    };
    let mut body = match store.get_opts(&key, opts).await {
        Ok(r) => r.into_stream(),
        Err(e) => {
            let _ = tx.send(Err(std::io::Error::other(e))).await;
            return;
        }
    };
    let mut got = 0u64;
    while let Some(item) = body.next().await {
        let item = match item {
            Ok(chunk) if got + chunk.len() as u64 > want => Err(std::io::Error::other(format!(
                "object store sent more than the {want}-byte range of {key}"
            ))),
            Ok(chunk) => {
                got += chunk.len() as u64;
                Ok(chunk)
            }
            Err(e) => Err(std::io::Error::other(e)),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}
