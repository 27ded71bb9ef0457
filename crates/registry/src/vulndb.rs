//! The vulnerability database as the registry serves it: one current snapshot shared by every
//! replica, updated from configured feeds, from files an administrator imports, or from signed
//! bundles.
//!
//! ```text
//!  feed URL ──conditional GET──▶ temp file ──import──▶ ImportReport ─┐
//!  file / upload ───────────────▶ temp file ──import──▶ ImportReport ─┼─▶ VulnDb::with_feed
//!  signed bundle ──verify──▶ VulnDb ───────────────────────────────────┘          │
//!                                                          snapshot bytes ◀───────┘
//!                        put_blob(sha256) ──▶ swap_vulndb_snapshot(expected, new) (CAS)
//!  every replica: vulndb_snapshot() changed? ──▶ open_blob ──▶ validate ──▶ SharedVulnDb swap
//! ```
//!
//! The snapshot is a content-addressed blob in the registry's blob storage, so it is wherever the
//! replicas' blobs are (a shared bucket, or a shared filesystem); the metadata store records
//! which blob is current. Writers build on the recorded snapshot and move the record by
//! compare-and-swap: a writer that loses (another replica or an import changed the database
//! meanwhile) rebuilds on the new one, so two feeds updated together both survive. Every replica
//! checks the record every `check_interval` and loads a new snapshot completely (digest, format,
//! every record validated) before swapping it in; on any error it keeps the database it has.
//!
//! Feed downloads are the one place this crate makes HTTP requests (as a client: the HTTP edge
//! is still only `berth-server`). One replica at a time polls the feeds, under the
//! `vulndb-update` lease, and each feed's last attempt is recorded in the database, so a feed is
//! fetched once per interval whichever replica holds the lease.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_meta::vulndb::{VulnDbFeedRow, VulnDbSnapshot};
use berth_meta::{MetaError, MetaStore, now_millis};
use berth_oci::Digest;
use berth_storage::{BlobStore, ByteStream, StorageError};
use berth_vulndb::import::{self, AlpineSecdb, DebianTracker, ImportError, Importer, Osv};
use berth_vulndb::{Advisory, ImportReport, Limits, SharedVulnDb, SnapshotError, VulnDb};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

pub use berth_vulndb::signature::{parse_public_key, signature_path};
pub use ed25519_dalek::VerifyingKey;

/// The lease that makes one replica at a time poll the feeds.
pub const UPDATE_LEASE: &str = "vulndb-update";
/// How soon a feed whose last update failed is tried again (at most its interval).
const FAILED_FEED_RETRY: Duration = Duration::from_secs(15 * 60);
/// How many times a writer rebuilds on a database that changed under it before giving up.
/// Writers are rare (one feed updater, occasional imports), but a losing writer must not starve
/// when several race, so losers also back off a random while.
const MAX_COMMIT_ATTEMPTS: u32 = 20;

/// The format of a configured feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFormat {
    /// A zip archive of OSV records (as OSV publishes each ecosystem).
    OsvZip,
    /// One OSV record.
    OsvJson,
    /// The Debian security tracker's JSON.
    DebianTracker,
    /// One Alpine secdb JSON file.
    AlpineSecdb,
}

impl FeedFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedFormat::OsvZip => "osv-zip",
            FeedFormat::OsvJson => "osv-json",
            FeedFormat::DebianTracker => "debian-tracker",
            FeedFormat::AlpineSecdb => "alpine-secdb",
        }
    }

    fn import_format(self) -> ImportFormat {
        match self {
            FeedFormat::OsvZip | FeedFormat::OsvJson => ImportFormat::Osv,
            FeedFormat::DebianTracker => ImportFormat::DebianTracker,
            FeedFormat::AlpineSecdb => ImportFormat::AlpineSecdb,
        }
    }
}

/// The format of a file, directory or upload to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportFormat {
    /// OSV records: one JSON file, a directory tree of them, or a zip archive.
    Osv,
    DebianTracker,
    AlpineSecdb,
}

impl ImportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Osv => "osv",
            ImportFormat::DebianTracker => "debian-tracker",
            ImportFormat::AlpineSecdb => "alpine-secdb",
        }
    }

    fn importer(self) -> Box<dyn Importer + Send> {
        match self {
            ImportFormat::Osv => Box::new(Osv::default()),
            ImportFormat::DebianTracker => Box::new(DebianTracker),
            ImportFormat::AlpineSecdb => Box::new(AlpineSecdb),
        }
    }
}

impl std::str::FromStr for ImportFormat {
    type Err = VulnDbError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "osv" | "osv-zip" | "osv-json" => Ok(ImportFormat::Osv),
            "debian-tracker" => Ok(ImportFormat::DebianTracker),
            "alpine-secdb" => Ok(ImportFormat::AlpineSecdb),
            other => Err(VulnDbError::Invalid(format!(
                "unknown format {other:?} (use osv, debian-tracker or alpine-secdb)"
            ))),
        }
    }
}

/// A configured feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSource {
    /// The feed's name in the database and its status (unique).
    pub name: String,
    pub url: String,
    pub format: FeedFormat,
}

#[derive(Debug, Clone)]
pub struct VulnDbConfig {
    pub feeds: Vec<FeedSource>,
    /// How often each feed is polled.
    pub update_interval: Duration,
    /// How often a replica checks whether the shared database changed (and, when it holds the
    /// update lease, whether a feed is due).
    pub check_interval: Duration,
    /// A database older than this is reported stale (and logged as a warning).
    pub max_age: Duration,
    /// When set, bundles must carry a valid detached signature by this key.
    pub public_key: Option<VerifyingKey>,
    /// Largest feed download.
    pub max_download_bytes: u64,
    /// Largest file accepted through the API.
    pub max_upload_bytes: u64,
    /// Caps on the documents inside an import.
    pub limits: Limits,
    /// A bundle artifact in this registry to load whenever its tag moves (see `bundle.rs`).
    pub bundle_artifact: Option<(berth_oci::RepoName, berth_oci::Reference)>,
}

impl Default for VulnDbConfig {
    fn default() -> Self {
        VulnDbConfig {
            feeds: Vec::new(),
            update_interval: Duration::from_secs(6 * 3600),
            check_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(3 * 24 * 3600),
            public_key: None,
            max_download_bytes: 1 << 30,
            max_upload_bytes: 512 << 20,
            limits: Limits::default(),
            bundle_artifact: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VulnDbError {
    /// The input is not a valid feed of its format (or a request named an unknown format).
    #[error("{0}")]
    Invalid(String),
    #[error("the input is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A bundle's signature is missing, malformed or wrong.
    #[error("{0}")]
    Signature(String),
    #[error("no advisory has the id or alias {0}")]
    NotFound(String),
    /// Downloading a feed failed (connection, status, truncated body).
    #[error("download failed: {0}")]
    Fetch(String),
    /// Other writers kept changing the database while this one tried to record its change.
    #[error("the vulnerability database kept changing; try again")]
    Busy,
    #[error("a backing service is unavailable: {0}")]
    Unavailable(String),
    /// The disk under the metadata database or the blob storage is full.
    #[error("storage is full: {0}")]
    Full(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, VulnDbError>;

impl From<MetaError> for VulnDbError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Unavailable(e) => VulnDbError::Unavailable(e.to_string()),
            e @ MetaError::Full(_) => VulnDbError::Full(e.to_string()),
            e => VulnDbError::Internal(e.to_string()),
        }
    }
}

impl From<StorageError> for VulnDbError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(e) => VulnDbError::Unavailable(format!("storage: {e}")),
            StorageError::TooLarge { limit, .. } => VulnDbError::TooLarge { limit },
            StorageError::Full => VulnDbError::Full("blob storage".into()),
            e => VulnDbError::Internal(format!("storage: {e}")),
        }
    }
}

impl From<ImportError> for VulnDbError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::TooLarge { limit, .. } => VulnDbError::TooLarge { limit },
            e => VulnDbError::Invalid(e.to_string()),
        }
    }
}

impl From<SnapshotError> for VulnDbError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Signature(e) => VulnDbError::Signature(e.to_string()),
            SnapshotError::TooLarge(limit) => VulnDbError::TooLarge { limit },
            e => VulnDbError::Invalid(e.to_string()),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> VulnDbError {
    VulnDbError::Internal(e.to_string())
}

/// What an import or a feed update changed.
#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    pub feed: String,
    /// Records of the feed now in the database.
    pub records: usize,
    pub documents: usize,
    pub warnings: usize,
    /// The database's content version after the import.
    pub version: String,
    /// The snapshot blob now current.
    pub digest: String,
}

/// One feed as the status reports it.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    pub name: String,
    /// The configured URL and format (absent for a feed that was only imported by hand).
    pub url: Option<String>,
    pub format: Option<String>,
    /// Records of this feed in the database this replica serves.
    pub records: usize,
    /// When the feed's records were imported, in Unix seconds.
    pub imported_at: Option<u64>,
    /// Unix milliseconds of the last update attempt and the last success (a `304` counts).
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
}

/// The database this replica serves, and every feed's status.
#[derive(Debug, Clone, Serialize)]
pub struct VulnDbStatus {
    /// The content version (a hash of the records).
    pub version: String,
    /// The snapshot blob loaded, when one is.
    pub digest: Option<String>,
    /// When that snapshot was recorded, in Unix milliseconds.
    pub created_at: Option<i64>,
    pub advisories: usize,
    /// Seconds since the least recently confirmed feed was last imported or found unchanged;
    /// `None` for an empty database.
    pub age_secs: Option<u64>,
    /// Older than the configured limit, or empty.
    pub stale: bool,
    pub feeds: Vec<FeedStatus>,
}

/// Which snapshot `shared` holds.
#[derive(Debug, Clone)]
struct Loaded {
    digest: String,
    created_at: i64,
}

/// The registry's vulnerability database: the shared current snapshot, loaded here.
pub struct VulnDbService {
    meta: MetaStore,
    blobs: BlobStore,
    config: VulnDbConfig,
    shared: SharedVulnDb,
    /// The snapshot `shared` holds; `None` while it is the empty database.
    loaded: Mutex<Option<Loaded>>,
    /// Serialises this process's loads and commits, so a slow load cannot swap in a snapshot
    /// older than one a commit has just installed.
    write: tokio::sync::Mutex<()>,
    /// Built when a feed is first downloaded: an air-gapped registry never pays for a TLS
    /// client (its code and root certificates stay out of memory).
    http: std::sync::OnceLock<reqwest::Client>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl VulnDbService {
    /// Builds the service and loads the current snapshot, if there is one. A snapshot that
    /// cannot be loaded is logged, and the service starts with an empty database (the next
    /// check tries again).
    pub async fn open(
        meta: MetaStore,
        blobs: BlobStore,
        config: VulnDbConfig,
    ) -> Result<Arc<VulnDbService>> {
        let service = Arc::new(VulnDbService {
            meta,
            blobs,
            config,
            shared: SharedVulnDb::default(),
            loaded: Mutex::new(None),
            write: tokio::sync::Mutex::new(()),
            http: std::sync::OnceLock::new(),
        });
        if let Err(e) = service.refresh().await {
            tracing::error!(error = %e, "could not load the vulnerability database; serving an empty one");
        }
        Ok(service)
    }

    pub fn config(&self) -> &VulnDbConfig {
        &self.config
    }

    /// The database in use (matchers keep the `Arc` they took for as long as they need it).
    pub fn db(&self) -> Arc<VulnDb> {
        self.shared.get()
    }

    fn loaded(&self) -> Option<Loaded> {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_loaded(&self, db: VulnDb, snap: &VulnDbSnapshot) {
        self.shared.replace(db);
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(Loaded {
            digest: snap.digest.clone(),
            created_at: snap.created_at,
        });
    }

    /// Loads the recorded snapshot if it is not the one in use. Returns whether the database
    /// changed. On any error the database in use stays.
    pub async fn refresh(&self) -> Result<bool> {
        let _w = self.write.lock().await;
        self.refresh_locked().await.map(|(changed, _)| changed)
    }

    /// [`Self::refresh`] under the write lock; also returns the record it is now on.
    async fn refresh_locked(&self) -> Result<(bool, Option<VulnDbSnapshot>)> {
        let Some(snap) = self.meta.vulndb_snapshot().await? else {
            return Ok((false, None));
        };
        if self.loaded().is_some_and(|l| l.digest == snap.digest) {
            return Ok((false, Some(snap)));
        }
        let db = self.load_blob(&snap).await?;
        tracing::info!(
            version = db.version(),
            digest = snap.digest,
            advisories = db.advisories().len(),
            "loaded the vulnerability database"
        );
        self.set_loaded(db, &snap);
        Ok((true, Some(snap)))
    }

    /// Reads a snapshot blob whole, checked against its digest.
    async fn read_blob(&self, snap: &VulnDbSnapshot) -> Result<Vec<u8>> {
        let digest: Digest = snap
            .digest
            .parse()
            .map_err(|e| internal(format!("recorded snapshot digest: {e}")))?;
        let size = u64::try_from(snap.size).map_err(internal)?;
        let limit = berth_vulndb::db::DEFAULT_MAX_SNAPSHOT_BYTES;
        if size > limit {
            return Err(VulnDbError::TooLarge { limit });
        }
        let reader = self
            .blobs
            .open_blob(&digest, None, size)
            .await?
            .ok_or_else(|| internal(format!("snapshot blob {digest} is missing from storage")))?;
        let mut stream = reader.stream(None);
        let mut bytes = Vec::with_capacity(size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| VulnDbError::Unavailable(format!("storage: {e}")))?;
            if (bytes.len() + chunk.len()) as u64 > size {
                return Err(internal(format!(
                    "snapshot blob {digest} is longer than recorded"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        tokio::task::spawn_blocking(move || {
            if Digest::of(digest.algorithm(), &bytes) != digest {
                return Err(internal(format!(
                    "snapshot blob {digest} does not match its digest"
                )));
            }
            Ok(bytes)
        })
        .await
        .map_err(internal)?
    }

    /// Reads a snapshot blob and validates it completely.
    async fn load_blob(&self, snap: &VulnDbSnapshot) -> Result<VulnDb> {
        let bytes = self.read_blob(snap).await?;
        tokio::task::spawn_blocking(move || Ok(VulnDb::from_snapshot_bytes(&bytes)?))
            .await
            .map_err(internal)?
    }

    /// The recorded database, loaded: `None` when none was ever recorded. Unlike
    /// [`Self::db`], which serves an empty database while the recorded snapshot cannot be
    /// loaded, this is then an error: a one-off reader (`berth scan`) must not take "no
    /// advisories" for "no vulnerabilities".
    pub async fn current(&self) -> Result<Option<Arc<VulnDb>>> {
        let _w = self.write.lock().await;
        match self.refresh_locked().await? {
            (_, Some(_)) => Ok(Some(self.shared.get())),
            (_, None) => Ok(None),
        }
    }

    /// The recorded snapshot's bytes exactly as stored (checked against their digest and
    /// loaded once to validate them), with its record; `None` when none was ever recorded.
    /// `berth vulndb export` writes them to a file for runners without access to the
    /// registry's storage.
    pub async fn export(&self) -> Result<Option<(VulnDbSnapshot, Vec<u8>)>> {
        let Some(snap) = self.meta.vulndb_snapshot().await? else {
            return Ok(None);
        };
        let bytes = self.read_blob(&snap).await?;
        let bytes = tokio::task::spawn_blocking(move || {
            VulnDb::from_snapshot_bytes(&bytes)?;
            Ok::<_, VulnDbError>(bytes)
        })
        .await
        .map_err(internal)??;
        Ok(Some((snap, bytes)))
    }

    /// Builds a new database from the recorded one with `change`, stores it, and records it,
    /// building again on the newer database while other writers win the race. A change that
    /// replaces everything (`needs_base` false: a bundle) does not load the recorded snapshot
    /// first, so a bundle can also repair a database whose recorded snapshot cannot be loaded.
    async fn commit<F>(&self, needs_base: bool, change: F) -> Result<(Arc<VulnDb>, String)>
    where
        F: Fn(&VulnDb) -> std::result::Result<VulnDb, SnapshotError> + Send + Sync + 'static,
    {
        let change = Arc::new(change);
        let _w = self.write.lock().await;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let current = if needs_base {
                self.refresh_locked().await?.1
            } else {
                self.meta.vulndb_snapshot().await?
            };
            let base = self.shared.get();
            let change = change.clone();
            let (new, bytes) = tokio::task::spawn_blocking(move || {
                let new = change(&base)?;
                let bytes = new.to_snapshot_bytes()?;
                Ok::<_, VulnDbError>((new, bytes))
            })
            .await
            .map_err(internal)??;
            let digest = Digest::sha256_of(&bytes);
            let size = bytes.len() as u64;
            let body: ByteStream = Box::pin(futures::stream::once(async move {
                Ok::<_, std::io::Error>(Bytes::from(bytes))
            }));
            self.blobs.put_blob(&digest, body, size).await?;
            let record = VulnDbSnapshot {
                digest: digest.to_string(),
                size: size as i64,
                version: new.version().to_string(),
                created_at: now_millis(),
            };
            let expected = current.as_ref().map(|c| c.digest.as_str());
            if self.meta.swap_vulndb_snapshot(expected, &record).await? {
                let version = new.version().to_string();
                tracing::info!(
                    version,
                    digest = record.digest,
                    advisories = new.advisories().len(),
                    "recorded a new vulnerability database"
                );
                self.set_loaded(new, &record);
                return Ok((self.shared.get(), record.digest));
            }
            tracing::debug!("the vulnerability database changed meanwhile; building again");
            let jitter = (uuid::Uuid::new_v4().as_u128() % 40) as u64;
            tokio::time::sleep(Duration::from_millis(5 + jitter)).await;
        }
        Err(VulnDbError::Busy)
    }

    /// Replaces one feed's records with an import's, in the shared database.
    async fn commit_feed(&self, report: ImportReport) -> Result<ImportOutcome> {
        let feed = report.feed.clone();
        let documents = report.documents;
        let warnings = report.warnings.len() + report.warnings_dropped;
        let (db, digest) = self
            .commit(true, move |base| base.with_feed(report.clone()))
            .await?;
        Ok(ImportOutcome {
            records: db.feed(&feed).map_or(0, |f| f.records),
            feed,
            documents,
            warnings,
            version: db.version().to_string(),
            digest,
        })
    }

    /// Imports a file (a JSON document or a zip archive) or a directory tree of JSON documents
    /// as feed `feed` (default: the format's name), replacing that feed's records.
    pub async fn import_path(
        &self,
        path: &Path,
        format: ImportFormat,
        feed: Option<&str>,
    ) -> Result<ImportOutcome> {
        let path = path.to_path_buf();
        let limits = self.config.limits;
        let report = tokio::task::spawn_blocking(move || {
            let importer = format.importer();
            if path.is_dir() {
                import::import_dir(importer.as_ref(), &path, &limits)
            } else {
                import::import_file(importer.as_ref(), &path, &limits)
            }
        })
        .await
        .map_err(internal)??;
        self.record_import(report, format, feed).await
    }

    async fn record_import(
        &self,
        mut report: ImportReport,
        format: ImportFormat,
        feed: Option<&str>,
    ) -> Result<ImportOutcome> {
        report.feed = feed.unwrap_or(format.as_str()).to_string();
        validate_feed_name(&report.feed)?;
        let outcome = self.commit_feed(report).await?;
        self.meta
            .vulndb_feed_succeeded(
                &outcome.feed,
                now_millis(),
                None,
                Some(outcome.records as i64),
            )
            .await?;
        Ok(outcome)
    }

    /// Imports an uploaded file (a JSON document or a zip archive), spooled to a temporary file
    /// of at most `max_upload_bytes`. Nothing changes unless all of it imports.
    pub async fn import_upload(
        &self,
        body: ByteStream,
        format: ImportFormat,
        feed: Option<&str>,
    ) -> Result<ImportOutcome> {
        if let Some(feed) = feed {
            validate_feed_name(feed)?;
        }
        let tmp = spool(body, self.config.max_upload_bytes, None).await?;
        let limits = self.config.limits;
        let report = tokio::task::spawn_blocking(move || {
            import::import_file(format.importer().as_ref(), tmp.path(), &limits)
        })
        .await
        .map_err(internal)??;
        self.record_import(report, format, feed).await
    }

    /// Replaces the whole database with a bundle (snapshot bytes), after checking its detached
    /// signature when a public key is configured.
    pub async fn import_bundle(
        &self,
        bundle: Vec<u8>,
        signature: Option<Vec<u8>>,
    ) -> Result<ImportOutcome> {
        let key = self.config.public_key;
        let db = tokio::task::spawn_blocking(move || {
            VulnDb::from_bundle(&bundle, signature.as_deref(), key.as_ref())
        })
        .await
        .map_err(internal)??;
        let db = Arc::new(db);
        let (db, digest) = self.commit(false, move |_| Ok((*db).clone())).await?;
        Ok(ImportOutcome {
            feed: "bundle".into(),
            records: db.advisories().len(),
            documents: 1,
            warnings: 0,
            version: db.version().to_string(),
            digest,
        })
    }

    /// [`Self::import_bundle`] for a bundle received as a request body (at most
    /// `max_upload_bytes`).
    pub async fn import_bundle_upload(
        &self,
        mut body: ByteStream,
        signature: Option<Vec<u8>>,
    ) -> Result<ImportOutcome> {
        let limit = self.config.max_upload_bytes;
        let mut bundle = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| VulnDbError::Invalid(format!("the body broke off: {e}")))?;
            if (bundle.len() + chunk.len()) as u64 > limit {
                return Err(VulnDbError::TooLarge { limit });
            }
            bundle.extend_from_slice(&chunk);
        }
        self.import_bundle(bundle, signature).await
    }

    /// The records whose id or one of whose aliases is `id`.
    pub fn advisories(&self, id: &str) -> Result<Vec<Advisory>> {
        let db = self.shared.get();
        let found: Vec<Advisory> = db.about(id).cloned().collect();
        if found.is_empty() {
            return Err(VulnDbError::NotFound(id.to_string()));
        }
        Ok(found)
    }

    /// The database this replica serves and every feed's status.
    pub async fn status(&self) -> Result<VulnDbStatus> {
        let db = self.shared.get();
        let loaded = self.loaded();
        let rows = self.meta.vulndb_feeds().await?;
        let now_ms = now_millis();
        let mut names: Vec<String> = db.feeds().map(|f| f.feed.clone()).collect();
        names.extend(self.config.feeds.iter().map(|f| f.name.clone()));
        names.extend(rows.iter().map(|r| r.name.clone()));
        names.sort();
        names.dedup();
        let mut feeds = Vec::new();
        // The database is as fresh as its least recently confirmed feed.
        let mut confirmed: Option<i64> = None;
        for name in names {
            let stats = db.feed(&name);
            let row = rows.iter().find(|r| r.name == name);
            let source = self.config.feeds.iter().find(|f| f.name == name);
            if let Some(stats) = stats {
                let imported = stats.imported_at as i64 * 1000;
                let last = row.and_then(|r| r.last_success).unwrap_or(0).max(imported);
                confirmed = Some(confirmed.map_or(last, |c| c.min(last)));
            }
            feeds.push(FeedStatus {
                records: stats.map_or(0, |s| s.records),
                imported_at: stats.map(|s| s.imported_at),
                url: source.map(|s| redact_url(&s.url)),
                format: source.map(|s| s.format.as_str().to_string()),
                last_attempt: row.and_then(|r| r.last_attempt),
                last_success: row.and_then(|r| r.last_success),
                error: row.and_then(|r| r.error.clone()),
                name,
            });
        }
        let age_secs = confirmed.map(|c| ((now_ms - c).max(0) / 1000) as u64);
        Ok(VulnDbStatus {
            version: db.version().to_string(),
            digest: loaded.as_ref().map(|l| l.digest.clone()),
            created_at: loaded.as_ref().map(|l| l.created_at),
            advisories: db.advisories().len(),
            stale: age_secs.is_none_or(|a| a > self.config.max_age.as_secs()),
            age_secs,
            feeds,
        })
    }

    /// Polls every configured feed that is due (or every feed, with `force`), recording each
    /// attempt. Call it only while holding [`UPDATE_LEASE`]. Returns how many feeds were polled.
    pub async fn update_feeds(&self, force: bool) -> Result<usize> {
        let mut polled = 0;
        for feed in &self.config.feeds {
            let row = self.meta.vulndb_feed(&feed.name).await?;
            // A feed whose last attempt failed is tried again sooner than a healthy one, so a
            // passing outage does not leave the database a whole interval behind.
            let failed = row.as_ref().is_some_and(|r| r.error.is_some());
            let wait = if failed {
                self.config.update_interval.min(FAILED_FEED_RETRY)
            } else {
                self.config.update_interval
            };
            let due = force
                || row
                    .as_ref()
                    .and_then(|r| r.last_attempt)
                    .is_none_or(|at| at + wait.as_millis() as i64 <= now_millis());
            if !due {
                continue;
            }
            polled += 1;
            let at = now_millis();
            match self.update_feed(feed, row.as_ref()).await {
                Ok(None) => {
                    tracing::info!(feed = feed.name, "vulnerability feed unchanged");
                    self.meta
                        .vulndb_feed_succeeded(&feed.name, at, None, None)
                        .await?;
                }
                Ok(Some((outcome, etag, last_modified))) => {
                    tracing::info!(
                        feed = feed.name,
                        records = outcome.records,
                        version = outcome.version,
                        "vulnerability feed updated"
                    );
                    self.meta
                        .vulndb_feed_succeeded(
                            &feed.name,
                            at,
                            Some((etag.as_deref(), last_modified.as_deref())),
                            Some(outcome.records as i64),
                        )
                        .await?;
                }
                Err(e) => {
                    tracing::warn!(feed = feed.name, error = %e, "vulnerability feed update failed; keeping the previous database");
                    self.meta
                        .vulndb_feed_failed(&feed.name, at, &e.to_string())
                        .await?;
                }
            }
        }
        Ok(polled)
    }

    fn http(&self) -> Result<&reqwest::Client> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(internal)?;
        // A concurrent first download may have set it meanwhile; either client will do.
        Ok(self.http.get_or_init(|| client))
    }

    /// Downloads one feed (conditionally) and imports it. `None`: unchanged (`304`).
    async fn update_feed(
        &self,
        feed: &FeedSource,
        row: Option<&VulnDbFeedRow>,
    ) -> Result<Option<(ImportOutcome, Option<String>, Option<String>)>> {
        // Feed URLs may carry credentials (a private mirror's token); errors and status show
        // them without.
        let shown = redact_url(&feed.url);
        let mut request = self.http()?.get(&feed.url);
        // Validators only count when the feed's records are in the database: after a restore
        // or a failed import the feed must be downloaded whole.
        if self.shared.get().feed(&feed.name).is_some() {
            if let Some(etag) = row.and_then(|r| r.etag.as_deref()) {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = row.and_then(|r| r.last_modified.as_deref()) {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| VulnDbError::Fetch(format!("{shown}: {}", e.without_url())))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(VulnDbError::Fetch(format!("{} answered {status}", shown)));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let expected_len = response.content_length();
        let body: ByteStream = Box::pin(
            response
                .bytes_stream()
                .map(|r| r.map_err(std::io::Error::other)),
        );
        let tmp = spool(body, self.config.max_download_bytes, expected_len)
            .await
            .map_err(|e| match e {
                VulnDbError::Invalid(m) | VulnDbError::Internal(m) => {
                    VulnDbError::Fetch(format!("{shown}: {m}"))
                }
                e => e,
            })?;
        let limits = self.config.limits;
        let format = feed.format;
        let name = feed.name.clone();
        let report = tokio::task::spawn_blocking(move || {
            if format == FeedFormat::OsvZip && !is_zip(tmp.path())? {
                return Err(VulnDbError::Invalid("the feed is not a zip archive".into()));
            }
            let mut report = import::import_file(
                format.import_format().importer().as_ref(),
                tmp.path(),
                &limits,
            )?;
            report.feed = name;
            Ok(report)
        })
        .await
        .map_err(internal)??;
        let outcome = self.commit_feed(report).await?;
        Ok(Some((outcome, etag, last_modified)))
    }
}

/// A URL without its user name, password and query, which may hold secrets.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_string(),
    }
}

fn is_zip(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(internal)?;
    let n = f.read(&mut magic).map_err(internal)?;
    Ok(n == 4 && magic == *b"PK\x03\x04")
}

/// Feed names are labels in the database and in status output; keep them short and plain.
fn validate_feed_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(VulnDbError::Invalid(format!(
            "invalid feed name {name:?} (1 to 64 letters, digits, '-', '_' or '.')"
        )))
    }
}

/// Writes a body to a temporary file, refusing more than `limit` bytes and, when `expected`
/// is given, a body of another length (a download cut short).
async fn spool(
    mut body: ByteStream,
    limit: u64,
    expected: Option<u64>,
) -> Result<tempfile::NamedTempFile> {
    if expected.is_some_and(|n| n > limit) {
        return Err(VulnDbError::TooLarge { limit });
    }
    let tmp = tokio::task::spawn_blocking(tempfile::NamedTempFile::new)
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(internal)?);
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| VulnDbError::Invalid(format!("the body broke off: {e}")))?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(VulnDbError::TooLarge { limit });
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    if let Some(n) = expected
        && n != total
    {
        return Err(VulnDbError::Invalid(format!(
            "the body is truncated: {total} of {n} bytes"
        )));
    }
    Ok(tmp)
}

/// An owned handle on the worker that keeps this replica's database current and, on one replica
/// at a time, polls the feeds. Dropping it without `shutdown` aborts the worker.
pub struct VulnDbWorker(crate::background::Background);

impl VulnDbWorker {
    pub fn start(service: Arc<VulnDbService>) -> VulnDbWorker {
        let (mut bg, mut stopped) = crate::background::Background::new();
        bg.spawn(async move {
            let every = service.config.check_interval;
            let holder = uuid::Uuid::new_v4().to_string();
            // Long enough for a slow download and import, so the lease is not taken over while
            // its holder is still working; a holder that died is replaced after it.
            let ttl = every.saturating_mul(2).max(Duration::from_secs(15 * 60));
            let mut warned_stale_at: Option<u64> = None;
            loop {
                if let Err(e) = service.refresh().await {
                    tracing::warn!(error = %e, "could not load the current vulnerability database; keeping the one in use");
                }
                if !service.config.feeds.is_empty() {
                    // A shutdown does not wait for a download: stopping anywhere in an update
                    // is safe (the snapshot record only moves by compare-and-swap after the new
                    // blob is stored; an interrupted update leaves at most an unreferenced blob).
                    let update = async {
                        match service.meta.try_lease(UPDATE_LEASE, &holder, ttl).await {
                            Ok(true) => {
                                if let Err(e) = service.update_feeds(false).await {
                                    tracing::warn!(error = %e, "vulnerability feed update failed");
                                }
                            }
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "could not take the vulnerability feed lease")
                            }
                        }
                    };
                    tokio::select! {
                        _ = update => {}
                        _ = stopped.changed() => break,
                    }
                }
                if let Ok(status) = service.status().await {
                    let now = now_secs();
                    let again = service.config.update_interval.as_secs().max(3600);
                    let in_use = status.advisories > 0 || !service.config.feeds.is_empty();
                    if in_use && status.stale && warned_stale_at.is_none_or(|at| at + again <= now)
                    {
                        tracing::warn!(
                            age_secs = status.age_secs,
                            max_age_secs = service.config.max_age.as_secs(),
                            "the vulnerability database is stale"
                        );
                        warned_stale_at = Some(now);
                    } else if !status.stale {
                        warned_stale_at = None;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => break,
                }
            }
            let _ = service.meta.release_lease(UPDATE_LEASE, &holder).await;
        });
        VulnDbWorker(bg)
    }

    /// Stops the worker: a feed update in progress is abandoned (safely), a load finishes.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_secrets() {
        let check = |raw: &str, want: &str| assert_eq!(redact_url(raw), want, "{raw}");
        check(
            "https://user:pw@mirror.example/osv/all.zip?token=s3cret#x",
            "https://mirror.example/osv/all.zip",
        );
        check(
            "http://127.0.0.1:8080/a.json",
            "http://127.0.0.1:8080/a.json",
        );
        check("not a url", "<invalid URL>");
    }

    #[test]
    fn formats_parse_and_name_themselves() {
        for f in ["osv", "debian-tracker", "alpine-secdb"] {
            assert_eq!(f.parse::<ImportFormat>().unwrap().as_str(), f);
        }
        assert!(matches!(
            "rss".parse::<ImportFormat>(),
            Err(VulnDbError::Invalid(_))
        ));
        assert!(validate_feed_name("osv-pypi_2.x").is_ok());
        for bad in ["", "../x", "a b", &"x".repeat(65)] {
            assert!(validate_feed_name(bad).is_err(), "{bad:?}");
        }
    }
}
