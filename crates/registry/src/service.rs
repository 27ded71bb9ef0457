//! The `Registry` service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_meta::{MetaError, MetaStore, NewManifest, TagChange};
use berth_oci::{Digest, Manifest, Reference, RepoName, Tag};
use berth_storage::{BlobReader, BlobStore, ByteStream, StorageError, UploadCursor};
use bytes::Bytes;
use serde::Serialize;

use crate::cache::ManifestCache;
use crate::coalesce::Coalescer;
use crate::error::{RegistryError, Result};

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_size: usize,
    /// Largest blob accepted, in bytes.
    pub max_blob_size: u64,
    /// Upload sessions untouched for this long are removed with their data.
    pub upload_expiry: Duration,
    /// Memory given to hot manifests.
    pub manifest_cache_bytes: u64,
    /// When set, blob downloads are redirected to a URL of the object store valid this long
    /// (if the storage backend can sign one).
    pub redirect_ttl: Option<Duration>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_manifest_size: 4 << 20,
            max_blob_size: 1 << 40,
            upload_expiry: Duration::from_secs(24 * 3600),
            manifest_cache_bytes: 32 << 20,
            redirect_ttl: None,
        }
    }
}

/// A manifest as it is served: its exact bytes, shared without copying between the cache and
/// every response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedManifest {
    pub digest: String,
    pub media_type: String,
    pub content: Bytes,
}

/// What a manifest push stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedManifest {
    pub digest: Digest,
    /// The manifest's subject, when it refers to another (`OCI-Subject`).
    pub subject: Option<Digest>,
    /// Whether it is a container image (what image analysis looks at).
    pub is_image: bool,
}

/// The most entries one listing page holds, whatever `n` asks; more come through `Link`.
pub const MAX_PAGE: usize = 100_000;

/// Where an upload session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadProgress {
    pub id: String,
    pub offset: u64,
}

/// One page of a tag listing.
#[derive(Debug, Clone)]
pub struct TagPage {
    pub tags: Vec<String>,
    /// The last tag of the page when more may follow.
    pub next: Option<String>,
}

/// A referrer as the referrers API lists it: a descriptor of the referring manifest.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Value>,
}

/// Locks that serialise requests on one upload session: two PATCHes racing on one session
/// would each check the offset and then both append.
#[derive(Default)]
struct SessionLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

struct SessionGuard<'a> {
    locks: &'a SessionLocks,
    id: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl SessionLocks {
    async fn lock(&self, id: &str) -> SessionGuard<'_> {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(id.to_owned()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        SessionGuard {
            locks: self,
            id: id.to_owned(),
            _guard: guard,
        }
    }
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().unwrap_or_else(|e| e.into_inner());
        // Two references: the map's and our guard's. Then nobody else waits and the entry goes.
        if map.get(&self.id).is_some_and(|m| Arc::strong_count(m) <= 2) {
            map.remove(&self.id);
        }
    }
}

pub struct Registry {
    meta: MetaStore,
    blobs: BlobStore,
    config: RegistryConfig,
    sessions: SessionLocks,
    cache: ManifestCache,
    /// With a shared database: tag and digest lookups of concurrent GETs share one query.
    fresh: Coalescer<(String, String), Result<Option<String>>>,
}

impl Registry {
    pub fn new(meta: MetaStore, blobs: impl Into<BlobStore>, config: RegistryConfig) -> Registry {
        let blobs = blobs.into();
        // Tags may be cached only when no other process writes the same metadata.
        let cache_tags = meta.dialect() == berth_meta::Dialect::Sqlite;
        let cache = ManifestCache::new(config.manifest_cache_bytes, cache_tags);
        Registry {
            meta,
            blobs,
            config,
            sessions: SessionLocks::default(),
            cache,
            fresh: Coalescer::default(),
        }
    }

    /// The metadata store, for background workers that coordinate through it.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Blob storage, for services that keep their own content-addressed documents there
    /// (vulnerability database snapshots, layer indexes, SBOMs) outside any repository.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Checks that metadata and storage answer.
    pub async fn ready(&self) -> Result<()> {
        // Bounded, so that a backend that hangs reads as not ready rather than hanging the probe.
        const PROBE: Duration = Duration::from_secs(3);
        let timed_out = |what: &str| {
            RegistryError::Unavailable(format!("{what} did not answer within {PROBE:?}"))
        };
        tokio::time::timeout(PROBE, self.meta.ping())
            .await
            .map_err(|_| timed_out("the database"))??;
        tokio::time::timeout(PROBE, self.blobs.ready())
            .await
            .map_err(|_| timed_out("blob storage"))?
            .map_err(RegistryError::from)
    }

    pub async fn shutdown(&self) {
        self.meta.close().await;
    }

    // ---- blobs ----

    /// The size of a blob the repository can see.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        self.meta
            .blob_in_repo(repo.as_str(), &digest.to_string())
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.to_string()))
    }

    /// Opens a blob the repository can see.
    pub async fn open_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobReader> {
        let entry = self.blob_entry(repo, digest).await?;
        match self
            .blobs
            .open_blob(digest, entry.location.as_deref(), entry.size)
            .await?
        {
            Some(r) => Ok(r),
            None => {
                tracing::error!(%digest, "blob is linked in metadata but missing from storage");
                Err(RegistryError::BlobUnknown(digest.to_string()))
            }
        }
    }

    async fn blob_entry(&self, repo: &RepoName, digest: &Digest) -> Result<berth_meta::BlobEntry> {
        self.meta
            .blob_entry(repo.as_str(), &digest.to_string())
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.to_string()))
    }

    /// Where a client may download a blob the repository can see directly from the object
    /// store, when redirects are configured and the backend can sign URLs.
    pub async fn blob_redirect(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(u64, url::Url)>> {
        let Some(ttl) = self.config.redirect_ttl else {
            return Ok(None);
        };
        let entry = self.blob_entry(repo, digest).await?;
        Ok(self
            .blobs
            .presigned_get(digest, entry.location.as_deref(), ttl)
            .await?
            .map(|u| (entry.size, u)))
    }

    /// Removes the repository's link to a blob.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self
            .meta
            .unlink_blob(repo.as_str(), &digest.to_string())
            .await?
        {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.to_string()))
        }
    }

    /// Receives a whole blob in one request and links it, if it hashes to `digest`.
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        let size = self
            .blobs
            .put_blob(digest, body, self.config.max_blob_size)
            .await?;
        self.meta
            .link_blob(repo.as_str(), &digest.to_string(), size)
            .await?;
        Ok(size)
    }

    /// Links a blob that `from` can see into `repo`, without moving bytes. `None` when `from`
    /// cannot see it (the caller then opens an ordinary upload session instead).
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let d = digest.to_string();
        let Some(size) = self
            .meta
            .mount_blob(from.as_str(), repo.as_str(), &d)
            .await?
        else {
            return Ok(None);
        };
        // Metadata said the source has it; make sure the bytes are really there before the
        // target repository starts relying on them.
        let location = self
            .meta
            .blob_entry(repo.as_str(), &d)
            .await?
            .and_then(|e| e.location);
        if self
            .blobs
            .blob_size(digest, location.as_deref())
            .await?
            .is_none()
        {
            tracing::error!(%digest, "blob is linked in metadata but missing from storage");
            // The link goes unless a manifest still references the blob; either way the blob
            // is unknown to the caller.
            match self.meta.unlink_blob(repo.as_str(), &d).await {
                Ok(_) | Err(MetaError::Referenced { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(None);
        }
        Ok(Some(size))
    }

    // ---- upload sessions ----

    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadProgress> {
        let id = uuid::Uuid::new_v4().to_string();
        // Data file first: a crash in between leaves an orphan file for the sweep, never a
        // session without data.
        self.blobs.create_upload(&id).await?;
        self.meta.create_upload(&id, repo.as_str()).await?;
        Ok(UploadProgress { id, offset: 0 })
    }

    async fn session(&self, repo: &RepoName, id: &str) -> Result<berth_meta::UploadRow> {
        match self.meta.get_upload(id).await? {
            Some(row) if row.repo == repo.as_str() => Ok(row),
            _ => Err(RegistryError::UploadUnknown(id.to_owned())),
        }
    }

    fn cursor(row: &berth_meta::UploadRow) -> Option<UploadCursor> {
        row.hash_state.as_ref().map(|h| UploadCursor {
            offset: row.offset,
            hash_state: h.clone(),
            storage_state: row.storage_state.clone(),
        })
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadProgress> {
        let row = self.session(repo, id).await?;
        let offset = self
            .blobs
            .upload_offset(id, Self::cursor(&row).as_ref())
            .await?;
        Ok(UploadProgress {
            id: id.to_owned(),
            offset,
        })
    }

    /// Appends a chunk. `start` is where the client says the chunk begins, if it said.
    pub async fn append_upload(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadProgress> {
        let _lock = self.sessions.lock(id).await;
        let row = self.session(repo, id).await?;
        let cursor = self
            .blobs
            .append(
                id,
                Self::cursor(&row),
                start,
                body,
                self.config.max_blob_size,
            )
            .await?;
        self.meta
            .update_upload(
                id,
                cursor.offset,
                &cursor.hash_state,
                cursor.storage_state.as_deref(),
            )
            .await?;
        Ok(UploadProgress {
            id: id.to_owned(),
            offset: cursor.offset,
        })
    }

    /// Completes an upload with an optional last chunk and links the verified blob.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: Option<ByteStream>,
        digest: &Digest,
    ) -> Result<u64> {
        let _lock = self.sessions.lock(id).await;
        let row = self.session(repo, id).await?;
        let finished = self
            .blobs
            .finish_upload(
                id,
                Self::cursor(&row),
                start,
                body,
                digest,
                self.config.max_blob_size,
            )
            .await;
        match finished {
            Ok((size, location)) => {
                let recorded = self
                    .meta
                    .link_blob_at(
                        repo.as_str(),
                        &digest.to_string(),
                        size,
                        location.as_deref(),
                    )
                    .await?;
                self.meta.delete_upload(id).await?;
                if let Some(mine) = location
                    && recorded.as_deref() != Some(mine.as_str())
                {
                    // The same bytes were already stored by another upload; drop this copy.
                    if let Err(e) = self.blobs.delete_blob(digest, Some(&mine)).await {
                        tracing::warn!(%digest, error = %e, "could not remove a redundant copy of a blob");
                    }
                }
                Ok(size)
            }
            Err(e @ StorageError::DigestMismatch { .. }) => {
                // The data is gone; so is the session.
                self.meta.delete_upload(id).await?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        let _lock = self.sessions.lock(id).await;
        let row = self.session(repo, id).await?;
        self.meta.delete_upload(id).await?;
        self.blobs
            .delete_upload(id, Self::cursor(&row).as_ref())
            .await?;
        Ok(())
    }

    /// Removes sessions idle for longer than the expiry, and data files that belong to no
    /// session (left by a crash). Returns how many were removed.
    pub async fn expire_uploads(&self) -> Result<usize> {
        let expiry = self.config.upload_expiry;
        let cutoff = berth_meta::now_millis() - expiry.as_millis() as i64;
        let mut removed = 0;
        loop {
            let stale = self.meta.stale_uploads(cutoff, 500).await?;
            if stale.is_empty() {
                break;
            }
            for id in &stale {
                let _lock = self.sessions.lock(id).await;
                let cursor = self
                    .meta
                    .get_upload(id)
                    .await?
                    .and_then(|row| Self::cursor(&row));
                self.blobs.delete_upload(id, cursor.as_ref()).await?;
                self.meta.delete_upload(id).await?;
                removed += 1;
            }
        }
        let now = SystemTime::now();
        for (name, modified) in self.blobs.list_uploads().await? {
            let old = now.duration_since(modified).unwrap_or_default() > expiry;
            if old && !self.meta.upload_exists(&name).await? {
                self.blobs.delete_upload(&name, None).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    // ---- manifests ----

    /// Stores a manifest under `reference`.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<PushedManifest> {
        if bytes.len() > self.config.max_manifest_size {
            return Err(RegistryError::ManifestTooLarge {
                size: bytes.len(),
                limit: self.config.max_manifest_size,
            });
        }
        let manifest = Manifest::parse(&bytes, content_type)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => berth_oci::Algorithm::Sha256,
        };
        let digest = Digest::of(algorithm, &bytes);
        if let Reference::Digest(d) = reference
            && d != &digest
        {
            return Err(RegistryError::DigestInvalid(format!(
                "the manifest's digest is {digest}, not {d}"
            )));
        }
        let annotations = (!manifest.annotations.is_empty())
            .then(|| serde_json::to_string(&manifest.annotations).unwrap_or_default());
        let new = NewManifest {
            digest: digest.to_string(),
            media_type: manifest.kind.media_type().to_owned(),
            artifact_type: manifest.effective_artifact_type().map(str::to_owned),
            subject: manifest.subject.as_ref().map(|s| s.digest.to_string()),
            annotations,
            blobs: dedup(manifest.required_blobs().map(|d| d.digest.to_string())),
            children: dedup(manifest.manifests.iter().map(|d| d.digest.to_string())),
            content: bytes,
        };
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        let change = self.meta.put_manifest(repo.as_str(), &new, tag).await?;
        if matches!(change, TagChange::Moved { .. } | TagChange::Created) {
            self.cache
                .invalidate(repo.as_str(), &[], &[tag.unwrap_or_default()]);
        }
        Ok(PushedManifest {
            digest,
            is_image: manifest.is_container_image(),
            subject: manifest.subject.map(|s| s.digest),
        })
    }

    /// A manifest by tag or digest.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Arc<CachedManifest>> {
        let unknown = || RegistryError::ManifestUnknown(reference.to_string());
        let ticket = self.cache.ticket();
        let (digest, tag) = match reference {
            Reference::Digest(d) => (d.to_string(), None),
            Reference::Tag(t) => match self.cache.tag(repo.as_str(), t.as_str()) {
                Some(d) => (d, Some(t)),
                None if self.meta.is_shared() => (
                    self.fresh_lookup(repo, t.as_str(), false)
                        .await?
                        .ok_or_else(unknown)?,
                    Some(t),
                ),
                None => (
                    self.meta
                        .resolve_tag(repo.as_str(), t.as_str())
                        .await?
                        .ok_or_else(unknown)?,
                    Some(t),
                ),
            },
        };
        if let Some(m) = self.cache.manifest(repo.as_str(), &digest) {
            // With a shared database another replica may have deleted the manifest since it was
            // cached. A tag just resolved in the database proves it is there (the tag row
            // references it); a digest is checked with one small query, and only the bytes come
            // from memory. Strict: a delete through any replica is seen by the next request.
            if self.meta.is_shared()
                && tag.is_none()
                && self.fresh_lookup(repo, &digest, true).await?.is_none()
            {
                self.cache.invalidate(repo.as_str(), &[&digest], &[]);
                return Err(unknown());
            }
            if let Some(t) = tag {
                self.cache.fill(ticket, repo.as_str(), Some(t.as_str()), &m);
            }
            return Ok(m);
        }
        let stored = self
            .meta
            .get_manifest(repo.as_str(), &digest)
            .await?
            .ok_or_else(unknown)?;
        let m = Arc::new(CachedManifest {
            digest: stored.digest,
            media_type: stored.media_type,
            content: Bytes::from(stored.content),
        });
        self.cache
            .fill(ticket, repo.as_str(), tag.map(Tag::as_str), &m);
        Ok(m)
    }

    /// From the shared database, read fresh (by a query that started after this call): the
    /// digest `tag` points at, or, with `is_digest`, the digest itself if the repository holds
    /// that manifest. Concurrent calls for the same key share a query (see `coalesce`).
    async fn fresh_lookup(
        &self,
        repo: &RepoName,
        reference: &str,
        is_digest: bool,
    ) -> Result<Option<String>> {
        let meta = self.meta.clone();
        let key = (repo.as_str().to_owned(), reference.to_owned());
        self.fresh
            .read(key, move |(repo, reference)| {
                let meta = meta.clone();
                async move {
                    if is_digest {
                        let held = meta.manifest_exists(&repo, &reference).await?;
                        Ok(held.then_some(reference))
                    } else {
                        Ok(meta.resolve_tag(&repo, &reference).await?)
                    }
                }
            })
            .await
            .unwrap_or_else(|| Err(RegistryError::Internal("a metadata lookup failed".into())))
    }

    /// Deleting a tag removes only the tag; deleting a digest removes the manifest and every
    /// tag on it.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        match reference {
            Reference::Tag(t) => {
                if !self.meta.delete_tag(repo.as_str(), t.as_str()).await? {
                    return Err(RegistryError::ManifestUnknown(reference.to_string()));
                }
                self.cache.invalidate(repo.as_str(), &[], &[t.as_str()]);
            }
            Reference::Digest(d) => {
                let d = d.to_string();
                let Some(tags) = self.meta.delete_manifest(repo.as_str(), &d).await? else {
                    return Err(RegistryError::ManifestUnknown(d));
                };
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                self.cache.invalidate(repo.as_str(), &[&d], &tags);
            }
        }
        Ok(())
    }

    // ---- listings ----

    pub async fn list_tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<TagPage> {
        let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let unknown = || RegistryError::NameUnknown(repo.to_string());
        let tags = if self.cache.caches_tag_lists() {
            // The whole sorted list is kept in memory; pages are slices of it.
            let all = match self.cache.tag_list(repo.as_str()) {
                Some(all) => all,
                None => {
                    let ticket = self.cache.ticket();
                    let all = self
                        .meta
                        .list_tags(repo.as_str(), None, i64::MAX)
                        .await?
                        .ok_or_else(unknown)?;
                    let all = Arc::new(all);
                    self.cache.fill_tag_list(ticket, repo.as_str(), all.clone());
                    all
                }
            };
            let start = last
                .map(|l| all.partition_point(|t| t.as_str() <= l))
                .unwrap_or(0);
            all[start.min(all.len())..]
                .iter()
                .take(limit)
                .cloned()
                .collect()
        } else {
            self.meta
                .list_tags(repo.as_str(), last, limit as i64)
                .await?
                .ok_or_else(unknown)?
        };
        // A full page may have a successor, also when the client asked for everything and met
        // the cap: say so (the `Link` header) rather than cut the list off silently.
        let next = (tags.len() == limit)
            .then(|| tags.last().cloned())
            .flatten();
        Ok(TagPage { tags, next })
    }

    pub async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<TagPage> {
        let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE) as i64;
        let repos = self.meta.catalog(last, limit).await?;
        let next = (repos.len() as i64 == limit)
            .then(|| repos.last().cloned())
            .flatten();
        Ok(TagPage { tags: repos, next })
    }

    /// Manifests whose subject is `subject`, optionally only those of `artifact_type`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = self
            .meta
            .referrers(repo.as_str(), &subject.to_string())
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| artifact_type.is_none_or(|t| r.artifact_type.as_deref() == Some(t)))
            .map(|r| Referrer {
                media_type: r.media_type,
                digest: r.digest,
                size: r.size,
                artifact_type: r.artifact_type,
                annotations: r.annotations.and_then(|a| serde_json::from_str(&a).ok()),
            })
            .collect())
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.dedup();
    v
}
