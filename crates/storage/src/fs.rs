//! The local filesystem store.
//!
//! Layout under the root:
//! - `blobs/<algorithm>/<first two hex>/<hex>`: published blobs, immutable once renamed in place.
//! - `uploads/<id>`: the bytes received so far for an upload session (append-only).
//! - `uploads/mono-<uuid>`: a monolithic upload in flight; removed when it ends either way.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use berth_oci::digest::Hasher;
use berth_oci::{Algorithm, ByteRange, Digest};
use bytes::Bytes;
use futures::Stream;

use crate::stream::pump;
use crate::{ByteStream, StorageError, UploadCursor};

type Result<T> = std::result::Result<T, StorageError>;

/// Read size when a hash has to be recomputed from a file.
const REHASH_BUFFER: usize = 1 << 20;

/// Size of the `Bytes` chunks a blob is served in.
const SERVE_CHUNK: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    /// Whether blobs are fsynced (file and directory) before they are published. Off trades
    /// durability across power loss for speed; a process crash loses nothing either way, because
    /// the page cache outlives the process.
    fsync: bool,
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>, fsync: bool) -> Result<FsStore> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(FsStore { root, fsync })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        // The hex part is validated lowercase hex of fixed length, so it cannot traverse.
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(StorageError::UploadUnknown(id.chars().take(64).collect()));
        }
        Ok(self.root.join("uploads").join(id))
    }

    /// The size of a published blob, or `None` if it is not stored.
    pub async fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(d)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a published blob for reading.
    pub async fn open_blob(&self, d: &Digest) -> Result<Option<MappedBlob>> {
        let path = self.blob_path(d);
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<Option<MappedBlob>> {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let len = file.metadata()?.len();
            if len == 0 {
                return Ok(Some(MappedBlob { map: None, len }));
            }
            // SAFETY: published blob files are never modified or truncated: they are written
            // under another name and renamed into place, and removal only unlinks them, which
            // leaves an existing mapping valid.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            let _ = map.advise(memmap2::Advice::Sequential);
            Ok(Some(MappedBlob {
                map: Some(Arc::new(map)),
                len,
            }))
        })
        .await
        .map_err(join_error)??;
        Ok(opened)
    }

    /// Removes a published blob. Returns whether it existed.
    pub async fn delete_blob(&self, d: &Digest) -> Result<bool> {
        match tokio::fs::remove_file(self.blob_path(d)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a whole blob received in one request, publishing it only if it hashes to
    /// `expected`. Returns its size.
    pub async fn put_blob(&self, expected: &Digest, body: ByteStream, limit: u64) -> Result<u64> {
        let path = self
            .root
            .join("uploads")
            .join(format!("mono-{}", uuid::Uuid::new_v4()));
        let file = create_new(&path).await?;
        let result = pump(
            file,
            expected.algorithm().hasher(),
            body,
            0,
            limit,
            self.fsync,
        )
        .await;
        let (file, hasher, written) = match result {
            Ok(r) => r,
            Err((_, e)) => {
                remove_quietly(&path).await;
                return Err(e);
            }
        };
        let actual = hasher.finish();
        if &actual != expected {
            remove_quietly(&path).await;
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        if let Err(e) = self.publish(file, &path, expected).await {
            remove_quietly(&path).await;
            return Err(e);
        }
        Ok(written)
    }

    /// Creates the (empty) data file of a new upload session.
    pub async fn create_upload(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        create_new(&path).await?;
        Ok(())
    }

    /// How many bytes an upload has received. The file's length is the truth: it survives a crash
    /// between a write and the session's bookkeeping.
    pub async fn upload_offset(&self, id: &str) -> Result<u64> {
        let path = self.upload_path(id)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::UploadUnknown(id.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Appends `body` to an upload. `start`, when the client said where its chunk begins, must be
    /// the current length. `cursor` is the state saved after the previous write; when it does not
    /// describe the file as it is (a crash in between), the hash is recomputed from the file.
    pub async fn append(
        &self,
        id: &str,
        cursor: Option<UploadCursor>,
        start: Option<u64>,
        body: ByteStream,
        limit: u64,
    ) -> Result<UploadCursor> {
        let (file, hasher, len) = self.open_for_append(id, cursor, start).await?;
        let (_, hasher, written) = pump(file, hasher, body, len, limit, self.fsync)
            .await
            .map_err(|(_, e)| e)?;
        Ok(UploadCursor {
            offset: len + written,
            hash_state: hasher.save(),
            storage_state: None,
        })
    }

    /// Completes an upload: appends the optional last chunk, verifies the digest, and publishes
    /// the blob. On a digest mismatch the upload's data is removed. Returns the blob's size.
    pub async fn finish_upload(
        &self,
        id: &str,
        cursor: Option<UploadCursor>,
        start: Option<u64>,
        body: Option<ByteStream>,
        expected: &Digest,
        limit: u64,
    ) -> Result<u64> {
        let path = self.upload_path(id)?;
        let (mut file, mut hasher, len) = self.open_for_append(id, cursor, start).await?;
        let mut size = len;
        if let Some(body) = body {
            let (f, h, written) = pump(file, hasher, body, len, limit, self.fsync)
                .await
                .map_err(|(_, e)| e)?;
            file = f;
            hasher = h;
            size += written;
        }
        let actual = if hasher.algorithm() == expected.algorithm() {
            hasher.finish()
        } else {
            let (f, h) = rehash(file, expected.algorithm()).await?;
            file = f;
            h.finish()
        };
        if &actual != expected {
            remove_quietly(&path).await;
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.publish(file, &path, expected).await?;
        Ok(size)
    }

    /// Removes an upload's data. Removing one that is already gone is not an error.
    pub async fn delete_upload(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every upload data file with its last modification time, for expiry sweeps.
    pub async fn list_uploads(&self) -> Result<Vec<(String, SystemTime)>> {
        let dir = self.root.join("uploads");
        tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(String, SystemTime)>> {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let modified = entry.metadata()?.modified()?;
                out.push((name, modified));
            }
            Ok(out)
        })
        .await
        .map_err(join_error)?
        .map_err(StorageError::from)
    }

    async fn open_for_append(
        &self,
        id: &str,
        cursor: Option<UploadCursor>,
        start: Option<u64>,
    ) -> Result<(std::fs::File, Hasher, u64)> {
        let path = self.upload_path(id)?;
        let id = id.to_owned();
        let (file, len) = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64)> {
            let file = match std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StorageError::UploadUnknown(id));
                }
                Err(e) => return Err(e.into()),
            };
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await
        .map_err(join_error)??;
        if let Some(start) = start
            && start != len
        {
            return Err(StorageError::OffsetMismatch {
                expected: len,
                got: start,
            });
        }
        let saved = cursor
            .filter(|c| c.offset == len)
            .and_then(|c| Hasher::restore(&c.hash_state));
        match saved {
            Some(h) => Ok((file, h, len)),
            None => {
                let (file, h) = rehash(file, Algorithm::Sha256).await?;
                Ok((file, h, len))
            }
        }
    }

    /// Moves a verified file into its content-addressed place. The file is fsynced before the
    /// rename and the directory after it, so that after power loss a blob is either absent or
    /// complete; if the blob already exists the new copy is dropped (the bytes are identical).
    async fn publish(&self, file: std::fs::File, from: &Path, digest: &Digest) -> Result<()> {
        let to = self.blob_path(digest);
        let from = from.to_owned();
        let fsync = self.fsync;
        tokio::task::spawn_blocking(move || -> Result<()> {
            if fsync {
                file.sync_all()?;
            }
            drop(file);
            let dir = to.parent().expect("blob paths have a parent");
            std::fs::create_dir_all(dir)?;
            if to.exists() {
                let _ = std::fs::remove_file(&from);
                return Ok(());
            }
            std::fs::rename(&from, &to)?;
            if fsync {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(join_error)?
    }
}

/// A published blob, mapped into memory. Serving hands out slices of the mapping as `Bytes`
/// without copying, so the only copy is the kernel's into the socket.
#[derive(Clone)]
pub struct MappedBlob {
    map: Option<Arc<memmap2::Mmap>>,
    len: u64,
}

struct MapSlice {
    map: Arc<memmap2::Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

impl MappedBlob {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of `range` (or of the whole blob) as a stream of chunks.
    pub fn stream(
        &self,
        range: Option<ByteRange>,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let (start, end) = match range {
            Some(r) => (r.start as usize, r.end as usize + 1),
            None => (0, self.len as usize),
        };
        let map = self.map.clone();
        let mut pos = start;
        futures::stream::iter(std::iter::from_fn(move || {
            let map = map.as_ref()?;
            if pos >= end {
                return None;
            }
            let next = (pos + SERVE_CHUNK).min(end);
            let slice = MapSlice {
                map: map.clone(),
                start: pos,
                end: next,
            };
            let _ = map.advise_range(memmap2::Advice::WillNeed, pos, next - pos);
            pos = next;
            Some(Ok(Bytes::from_owner(slice)))
        }))
    }
}

async fn create_new(path: &Path) -> Result<std::fs::File> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(path)
    })
    .await
    .map_err(join_error)?
    .map_err(StorageError::from)
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a temporary upload file");
    }
}

/// Recomputes the hash of a whole file. Used after a restart, when the saved hash state does
/// not match the data, and for digests in an algorithm other than the one hashed while receiving.
async fn rehash(mut file: std::fs::File, algorithm: Algorithm) -> Result<(std::fs::File, Hasher)> {
    tokio::task::spawn_blocking(move || -> Result<(std::fs::File, Hasher)> {
        let mut h = algorithm.hasher();
        file.seek(std::io::SeekFrom::Start(0))?;
        let mut buf = vec![0u8; REHASH_BUFFER];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok((file, h))
    })
    .await
    .map_err(join_error)?
}

fn join_error(e: tokio::task::JoinError) -> StorageError {
    if e.is_panic() {
        std::panic::resume_unwind(e.into_panic());
    }
    StorageError::Io(std::io::Error::other("blocking task cancelled"))
}
