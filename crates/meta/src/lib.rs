//! The metadata store: repositories, blob links, manifests, tags, referrers and upload sessions.
//!
//! One implementation over `sqlx`'s `Any` driver serves SQLite (the embedded default) and, with
//! its own migrations, PostgreSQL: the SQL here is the portable subset both understand
//! (`$N` parameters, `ON CONFLICT`, `RETURNING`). Each dialect has its own migration directory
//! because DDL is where they differ. Only `i64`, text and bytes cross the driver: the `Any`
//! driver maps them to `BIGINT`, `TEXT` and `BYTEA`/`BLOB` on both.
//!
//! Invariants kept by foreign keys and transactions: a tag always points at a manifest of the
//! same repository; a manifest is inserted only in the transaction that checked its blobs and
//! child manifests are present in the repository.
//!
//! Concurrency: SQLite has one writer, and writers queue on an in-process gate. PostgreSQL runs
//! writers concurrently at READ COMMITTED: inserts race through `ON CONFLICT`, a tag moves by
//! compare-and-swap, the rows a manifest depends on are locked (`FOR KEY SHARE`) so they cannot
//! be removed before it commits, and a transaction that loses a race anyway (deadlock, or a row
//! it needs deleted by a concurrent commit) is run again.

pub mod auth;
mod hot;
pub mod jobs;
pub mod scans;
pub mod vulndb;

use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("blob {0} is not in the repository")]
    BlobUnknown(String),
    #[error("manifest {0} is not in the repository")]
    ManifestUnknown(String),
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("{0}")]
    Conflict(String),
    /// A blob or manifest that a manifest of the repository still references.
    #[error("{digest} is referenced by manifest {by}")]
    Referenced { digest: String, by: String },
    /// The disk under the database is full (SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full`).
    #[error("the metadata database's disk is full: {0}")]
    Full(#[source] sqlx::Error),
    #[error("metadata database error: {0}")]
    Db(#[source] sqlx::Error),
    #[error("metadata migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?} (use sqlite:PATH or postgres://...)")]
    BadUrl(String),
}

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => MetaError::Unavailable(e),
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| is_unavailable_code(&c)) => {
                MetaError::Unavailable(e)
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| is_disk_full_code(&c)) => {
                MetaError::Full(e)
            }
            e => MetaError::Db(e),
        }
    }
}

/// PostgreSQL SQLSTATEs that mean the server cannot serve us now, rather than that the request
/// was wrong: connection exceptions (class 08), the server shutting down, starting up or crashed
/// (57P01-57P03), too many connections (53300). SQLite's codes are decimal numbers and never
/// match.
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// The disk is full: PostgreSQL's SQLSTATE 53100 (`disk_full`), or SQLite's result code 13
/// (`SQLITE_FULL`, which SQLite returns when a write fails with `ENOSPC`; it has no extended
/// forms). The two cannot be confused: SQLSTATEs are five characters long.
fn is_disk_full_code(code: &str) -> bool {
    matches!(code, "53100" | "13")
}

/// PostgreSQL SQLSTATEs for a transaction that lost a race with a concurrent one and is worth
/// running again: serialization failure, deadlock, and a unique or foreign key violation (a row
/// this transaction depends on was inserted or deleted by a transaction that committed first).
fn is_conflict_code(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "23505" | "23503")
}

/// SQLite's SQLITE_BUSY, with its extended codes: the database is locked by another connection.
fn is_busy_code(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|c| c & 0xff == 5)
}

/// How many times a transaction that lost a race on PostgreSQL is tried in all.
const MAX_ATTEMPTS: u32 = 8;
/// How many times a transaction that found SQLite locked at once is tried in all. (One that
/// waited out the busy timeout is not tried again.)
const MAX_BUSY_ATTEMPTS: u32 = 6;

pub type Result<T> = std::result::Result<T, MetaError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A manifest about to be stored, with what it references.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    /// The manifest's annotations as a JSON object, for referrers listings.
    pub annotations: Option<String>,
    pub content: Vec<u8>,
    /// Blobs that must be linked to the repository (config, layers).
    pub blobs: Vec<String>,
    /// Manifests that must exist in the repository (an index's children).
    pub children: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: String,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// A manifest whose `subject` is a given digest, as a referrers listing describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
    pub size: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub id: String,
    pub repo: String,
    pub offset: u64,
    pub hash_state: Option<Vec<u8>>,
    /// The storage backend's own session state (JSON), if it keeps any.
    pub storage_state: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A blob as a repository sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub size: u64,
    /// Where storage keeps it, when not at its canonical key.
    pub location: Option<String>,
}

/// What happened to a tag when a manifest was stored under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    None,
    Created,
    Moved { from: String },
    Unchanged,
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

static DRIVERS: Once = Once::new();

#[derive(Clone)]
pub struct MetaStore {
    pool: AnyPool,
    dialect: Dialect,
    /// SQLite admits one writer at a time and answers a second one with SQLITE_BUSY rather than
    /// queueing it fairly, so writers queue here first. PostgreSQL needs no such gate.
    write_gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    /// PostgreSQL: connections of their own for the hottest one-row reads (see `hot`).
    hot: Option<std::sync::Arc<hot::HotConnections>>,
}

impl MetaStore {
    /// Connects to `url` (`sqlite:PATH` or `postgres://...`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<MetaStore> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(MetaError::BadUrl(url.to_owned()));
        };
        let options: AnyConnectOptions = url.parse()?;
        let hot = (dialect == Dialect::Postgres)
            .then(|| std::sync::Arc::new(hot::HotConnections::new(options.clone(), 4)));
        let pool = match dialect {
            Dialect::Sqlite => {
                // WAL lets readers proceed during a write; `synchronous = NORMAL` in WAL mode
                // keeps the database consistent across power loss (a commit may be lost, never
                // half-applied), and blobs are always written before the rows that name them.
                // A local file cannot hang up: no ping before each use (see below).
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA foreign_keys = ON")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA busy_timeout = 10000")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA synchronous = NORMAL")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?;
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&pool)
                    .await?;
                pool
            }
            Dialect::Postgres => {
                // One connection on its own first: an unreachable server, a wrong password or a
                // missing database is then reported as itself, at once, where the pool would
                // retry until its timeout and say only that it timed out.
                use sqlx::Connection;
                sqlx::AnyConnection::connect_with(&options)
                    .await?
                    .close()
                    .await?;
                // The pool pings each connection before use (sqlx's default): after a server
                // restart a connection released a moment earlier is dead, and only the ping
                // keeps it from failing a request. The hottest reads avoid that round trip on
                // connections of their own that retry instead (`hot.rs`).
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(std::time::Duration::from_secs(5))
                    .connect_with(options)
                    .await?
            }
        };
        let store = MetaStore {
            pool,
            dialect,
            write_gate: (dialect == Dialect::Sqlite)
                .then(|| std::sync::Arc::new(tokio::sync::Mutex::new(()))),
            hot,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The URL for an SQLite database file, created if missing.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Applies pending migrations. On PostgreSQL, sqlx holds an advisory lock meanwhile, so
    /// replicas starting together migrate once.
    async fn migrate(&self) -> Result<()> {
        match self.dialect {
            Dialect::Sqlite => {
                sqlx::migrate!("./migrations/sqlite")
                    .run(&self.pool)
                    .await?
            }
            Dialect::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    /// Runs the transaction `op` again while it loses a race with another transaction, a few
    /// times at most. `op` must be a whole transaction, so that running it again is safe.
    ///
    /// On PostgreSQL the race is with a concurrent writer (see [`is_conflict_code`]). On SQLite
    /// the gate serialises writers, but a transaction that failed or was cancelled is rolled back
    /// on its connection's worker a moment after its method returned; until then it holds the
    /// write lock, and a transaction that has read and now wants to write gets `SQLITE_BUSY` at
    /// once (SQLite does not wait there, to avoid deadlocks). (`BEGIN IMMEDIATE` would wait
    /// instead, but sqlx 0.8 leaves a custom `BEGIN` open on its pooled connection if the caller
    /// is cancelled at the wrong moment.)
    async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let retryable = |code: &str, attempt: u32, took: std::time::Duration| match self.dialect {
            Dialect::Postgres => attempt < MAX_ATTEMPTS && is_conflict_code(code),
            Dialect::Sqlite => {
                attempt < MAX_BUSY_ATTEMPTS
                    && took < std::time::Duration::from_secs(1)
                    && is_busy_code(code)
            }
        };
        let mut attempt = 1;
        loop {
            let start = std::time::Instant::now();
            match op().await {
                Err(MetaError::Db(sqlx::Error::Database(db)))
                    if db
                        .code()
                        .is_some_and(|c| retryable(&c, attempt, start.elapsed())) =>
                {
                    tracing::debug!(attempt, error = %db, "transaction lost a race, running it again");
                    // Back off a little, differently per attempt, so the racers spread out.
                    let jitter = (now_millis() % 5).unsigned_abs();
                    tokio::time::sleep(std::time::Duration::from_millis((1 << attempt) + jitter))
                        .await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// The row lock that keeps the rows a transaction checked from being deleted before it
    /// commits. SQLite needs none: its writers are serialised.
    fn key_share(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR KEY SHARE",
        }
    }

    async fn gate(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_gate {
            Some(g) => Some(g.lock().await),
            None => None,
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn repo_exists(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM repositories WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Records that a verified blob is stored, and links it to a repository (created if new).
    pub async fn link_blob(&self, repo: &str, digest: &str, size: u64) -> Result<()> {
        self.link_blob_at(repo, digest, size, None)
            .await
            .map(|_| ())
    }

    /// Like `link_blob`, for a blob stored at `location` rather than its canonical key. Returns
    /// the location now recorded for the blob: another upload of the same digest may have been
    /// recorded first, and then the caller's copy is redundant.
    pub async fn link_blob_at(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        location: Option<&str>,
    ) -> Result<Option<String>> {
        let _g = self.gate().await;
        self.retrying(|| self.link_blob_once(repo, digest, size, location))
            .await
    }

    async fn link_blob_once(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        location: Option<&str>,
    ) -> Result<Option<String>> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        let repo_id = ensure_repo(&mut tx, repo, now).await?;
        sqlx::query("INSERT INTO blobs (digest, size, created_at, location) VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING")
            .bind(digest)
            .bind(size as i64)
            .bind(now)
            .bind(location)
            .execute(&mut *tx)
            .await?;
        let recorded: Option<String> = sqlx::query("SELECT location FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        sqlx::query("INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(repo_id)
            .bind(digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// Links a blob that `from` can see into `to`. Returns its size, or `None` (and changes
    /// nothing) when `from` cannot see it.
    pub async fn mount_blob(&self, from: &str, to: &str, digest: &str) -> Result<Option<u64>> {
        let _g = self.gate().await;
        self.retrying(|| self.mount_blob_once(from, to, digest))
            .await
    }

    async fn mount_blob_once(&self, from: &str, to: &str, digest: &str) -> Result<Option<u64>> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR KEY SHARE OF rb",
        };
        let row = sqlx::query(&format!(
            "SELECT b.size FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id \
             JOIN blobs b ON b.digest = rb.digest WHERE r.name = $1 AND rb.digest = $2{lock}"
        ))
        .bind(from)
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let size: i64 = row.try_get(0)?;
        let repo_id = ensure_repo(&mut tx, to, now).await?;
        sqlx::query("INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(repo_id)
            .bind(digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(size as u64))
    }

    /// The size of a blob if the repository can see it.
    pub async fn blob_in_repo(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT b.size FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id \
             JOIN blobs b ON b.digest = rb.digest WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<i64, _>(0)? as u64),
            None => None,
        })
    }

    /// The size and location of a blob if the repository can see it.
    pub async fn blob_entry(&self, repo: &str, digest: &str) -> Result<Option<BlobEntry>> {
        let row = sqlx::query(
            "SELECT b.size, b.location FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id \
             JOIN blobs b ON b.digest = rb.digest WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(BlobEntry {
                size: r.try_get::<i64, _>(0)? as u64,
                location: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// Removes a repository's link to a blob. The bytes stay until garbage collection finds no
    /// link and no manifest referencing them. Refused with [`MetaError::Referenced`] while a
    /// manifest of the repository references the blob: the manifest would point at nothing.
    pub async fn unlink_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        let _g = self.gate().await;
        self.retrying(|| self.unlink_blob_once(repo, digest)).await
    }

    async fn unlink_blob_once(&self, repo: &str, digest: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some(repo_id) = repo_id(&mut tx, repo).await? else {
            return Ok(false);
        };
        // The link goes first, the check after it. On PostgreSQL a push that is storing a
        // manifest holds a share lock on this link until it commits, so the delete waits for it
        // and the check then sees its references; a push that starts later finds the link
        // locked, then gone. (SQLite's writers are serialised by the gate.)
        let done = sqlx::query("DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Refused: the transaction is dropped, which rolls it back.
        ensure_unreferenced(&mut tx, repo_id, digest).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores a manifest (and optionally tags it) after checking, in the same transaction, that
    /// everything it references is present in the repository.
    pub async fn put_manifest(
        &self,
        repo: &str,
        m: &NewManifest,
        tag: Option<&str>,
    ) -> Result<TagChange> {
        let _g = self.gate().await;
        self.retrying(|| self.put_manifest_once(repo, m, tag)).await
    }

    async fn put_manifest_once(
        &self,
        repo: &str,
        m: &NewManifest,
        tag: Option<&str>,
    ) -> Result<TagChange> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        let manifest_query = format!(
            "SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2{}",
            self.key_share()
        );
        // Tagging a manifest the repository already holds (the common case of a retag) needs
        // none of the checks: they were made when it was first stored.
        let (repo_id, exists) = match self.dialect {
            // One statement for both questions: SQLite's writers are serialised by the gate,
            // so nothing can delete the manifest between this read and the commit.
            Dialect::Sqlite => {
                let row = sqlx::query(
                    "SELECT r.id, EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id AND m.digest = $2) \
                     FROM repositories r WHERE r.name = $1",
                )
                .bind(repo)
                .bind(&m.digest)
                .fetch_optional(&mut *tx)
                .await?;
                match row {
                    Some(r) => (r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)? != 0),
                    None => (ensure_repo(&mut tx, repo, now).await?, false),
                }
            }
            // PostgreSQL writers run concurrently: the manifest row is locked against deletion
            // until this transaction commits.
            Dialect::Postgres => {
                let repo_id = ensure_repo(&mut tx, repo, now).await?;
                let exists = sqlx::query(&manifest_query)
                    .bind(repo_id)
                    .bind(&m.digest)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                (repo_id, exists)
            }
        };
        if !exists {
            let blob_query = format!(
                "SELECT 1 FROM repo_blobs WHERE repo_id = $1 AND digest = $2{}",
                self.key_share()
            );
            for b in &m.blobs {
                let found = sqlx::query(&blob_query)
                    .bind(repo_id)
                    .bind(b)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(MetaError::BlobUnknown(b.clone()));
                }
            }
            for c in &m.children {
                let found = sqlx::query(&manifest_query)
                    .bind(repo_id)
                    .bind(c)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(MetaError::ManifestUnknown(c.clone()));
                }
            }
            sqlx::query(
                "INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo_id, digest) DO NOTHING",
            )
            .bind(repo_id)
            .bind(&m.digest)
            .bind(&m.media_type)
            .bind(m.artifact_type.as_deref())
            .bind(m.subject.as_deref())
            .bind(m.annotations.as_deref())
            .bind(m.content.len() as i64)
            .bind(&m.content[..])
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let refs = m
                .blobs
                .iter()
                .map(|d| (d, "blob"))
                .chain(m.children.iter().map(|d| (d, "manifest")));
            for (child, kind) in refs {
                sqlx::query(
                    "INSERT INTO manifest_refs (repo_id, manifest_digest, child_digest, kind) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(repo_id)
                .bind(&m.digest)
                .bind(child)
                .bind(kind)
                .execute(&mut *tx)
                .await?;
            }
        }
        let change = match tag {
            None => TagChange::None,
            Some(tag) => set_tag(&mut tx, repo_id, tag, &m.digest, now).await?,
        };
        tx.commit().await?;
        Ok(change)
    }

    /// Whether other processes may write this metadata, so that nothing read from it may be
    /// cached without checking (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// Whether the repository holds the manifest.
    pub async fn manifest_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        const SQL: &str = "SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repo_id \
                           WHERE r.name = $1 AND m.digest = $2";
        let row = self.hot_row(SQL, repo, digest).await?;
        Ok(row.is_some())
    }

    /// The digest a tag points at.
    pub async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        const SQL: &str = "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repo_id \
                           WHERE r.name = $1 AND t.name = $2";
        Ok(match self.hot_row(SQL, repo, tag).await? {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// One row of a two-parameter read, on a hot connection when one is free.
    async fn hot_row(&self, sql: &'static str, a: &str, b: &str) -> Result<Option<AnyRow>> {
        if let Some(hot) = &self.hot
            && let Some(result) = hot.row(sql, a, b).await
        {
            return result;
        }
        Ok(sqlx::query(sql)
            .bind(a)
            .bind(b)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A manifest by digest.
    pub async fn get_manifest(&self, repo: &str, digest: &str) -> Result<Option<StoredManifest>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content FROM manifests m JOIN repositories r ON r.id = m.repo_id \
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredManifest {
                digest: r.try_get(0)?,
                media_type: r.try_get(1)?,
                content: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Deletes one tag. Returns whether it existed.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        let _g = self.gate().await;
        let done = sqlx::query("DELETE FROM tags WHERE name = $2 AND repo_id = (SELECT id FROM repositories WHERE name = $1)")
            .bind(repo)
            .bind(tag)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a manifest and every tag on it. Returns the tags that were removed, or `None`
    /// when the manifest did not exist.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<Option<Vec<String>>> {
        let _g = self.gate().await;
        self.retrying(|| self.delete_manifest_once(repo, digest))
            .await
    }

    async fn delete_manifest_once(&self, repo: &str, digest: &str) -> Result<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await?;
        let Some(repo_id) = repo_id(&mut tx, repo).await? else {
            return Ok(None);
        };
        // On PostgreSQL, lock the manifest before its tags, the order in which `put_manifest`
        // takes them (manifest, then tag): deleting the tags first would deadlock with a push
        // that holds the manifest and waits for a tag row this transaction deleted. (SQLite's
        // writers are serialised by the gate.) A manifest that is not there is unknown, whatever
        // references to it an older version may have left behind.
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let found = sqlx::query(&format!(
            "SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2{lock}"
        ))
        .bind(repo_id)
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Ok(None);
        }
        // An index of the repository that lists this manifest keeps it. (On PostgreSQL the lock
        // above waits for a push of such an index, which holds a share lock on this row.)
        // Refused: the transaction is dropped, which rolls it back.
        ensure_unreferenced(&mut tx, repo_id, digest).await?;
        let tags: Vec<String> =
            sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND digest = $2 RETURNING name")
                .bind(repo_id)
                .bind(digest)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
        let done = sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(tags))
    }

    /// Up to `n` tags after `last`, in lexical order; `None` if the repository does not exist.
    pub async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: i64,
    ) -> Result<Option<Vec<String>>> {
        let mut conn = self.pool.acquire().await?;
        let Some(repo_id) = repo_id(&mut conn, repo).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(repo_id)
        .bind(last.unwrap_or(""))
        .bind(n)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(
            rows.iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?,
        ))
    }

    /// Up to `n` repository names after `last`, in lexical order.
    pub async fn catalog(&self, last: Option<&str>, n: i64) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
                .bind(last.unwrap_or(""))
                .bind(n)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Manifests in the repository whose subject is `subject`, ordered by digest.
    pub async fn referrers(&self, repo: &str, subject: &str) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.artifact_type, m.annotations, m.size FROM manifests m \
             JOIN repositories r ON r.id = m.repo_id WHERE r.name = $1 AND m.subject = $2 ORDER BY m.digest",
        )
        .bind(repo)
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Referrer {
                    digest: r.try_get(0)?,
                    media_type: r.try_get(1)?,
                    artifact_type: r.try_get(2)?,
                    annotations: r.try_get(3)?,
                    size: r.try_get(4)?,
                })
            })
            .collect()
    }

    pub async fn create_upload(&self, id: &str, repo: &str) -> Result<()> {
        let _g = self.gate().await;
        let now = now_millis();
        sqlx::query(
            "INSERT INTO uploads (id, repo, offset_bytes, hash_state, created_at, updated_at) VALUES ($1, $2, 0, NULL, $3, $3)",
        )
        .bind(id)
        .bind(repo)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_upload(&self, id: &str) -> Result<Option<UploadRow>> {
        let row = sqlx::query(
            "SELECT id, repo, offset_bytes, hash_state, created_at, updated_at, storage_state FROM uploads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(UploadRow {
                id: r.try_get(0)?,
                repo: r.try_get(1)?,
                offset: r.try_get::<i64, _>(2)? as u64,
                hash_state: r.try_get(3)?,
                created_at: r.try_get(4)?,
                updated_at: r.try_get(5)?,
                storage_state: r.try_get(6)?,
            })
        })
        .transpose()
    }

    /// Saves an upload's progress and hash state after a chunk.
    pub async fn update_upload(
        &self,
        id: &str,
        offset: u64,
        hash_state: &[u8],
        storage_state: Option<&str>,
    ) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query(
            "UPDATE uploads SET offset_bytes = $2, hash_state = $3, updated_at = $4, storage_state = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(offset as i64)
        .bind(hash_state)
        .bind(now_millis())
        .bind(storage_state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_upload(&self, id: &str) -> Result<bool> {
        let _g = self.gate().await;
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sessions not touched since `before` (milliseconds), oldest first, at most `limit`.
    pub async fn stale_uploads(&self, before: i64, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Takes or renews the lease `name` for `holder` until `ttl` from now. Returns whether
    /// `holder` holds it: true when it was free, expired, or already `holder`'s.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let _g = self.gate().await;
        let now = now_millis();
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Gives a lease up, if `holder` holds it, so another replica need not wait for it to expire.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether an upload session with this id exists.
    pub async fn upload_exists(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn repo_id(conn: &mut sqlx::AnyConnection, name: &str) -> Result<Option<i64>> {
    Ok(
        match sqlx::query("SELECT id FROM repositories WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
        {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        },
    )
}

/// [`MetaError::Referenced`] if a manifest of the repository, other than `digest` itself,
/// references `digest` (as its config, a layer, or a child of an index).
async fn ensure_unreferenced(
    conn: &mut sqlx::AnyConnection,
    repo_id: i64,
    digest: &str,
) -> Result<()> {
    let row = sqlx::query(
        "SELECT manifest_digest FROM manifest_refs WHERE repo_id = $1 AND child_digest = $2 \
         AND manifest_digest <> $2 LIMIT 1",
    )
    .bind(repo_id)
    .bind(digest)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Err(MetaError::Referenced {
            digest: digest.to_owned(),
            by: r.try_get(0)?,
        }),
        None => Ok(()),
    }
}

/// Points `tag` at `digest` and says what changed. A compare-and-swap, so that what it reports is
/// true when writers race on PostgreSQL: the tag is inserted if absent (`ON CONFLICT DO NOTHING`
/// waits for a concurrent inserter and then does nothing), or moved only if it still points where
/// it was read to point. Losing either race means another writer committed; read again. (On
/// SQLite there is one writer and no race.)
async fn set_tag(
    conn: &mut sqlx::AnyConnection,
    repo_id: i64,
    tag: &str,
    digest: &str,
    now: i64,
) -> Result<TagChange> {
    // A new tag is the common case (a CI pipeline tagging each build): try it first, so it costs
    // one statement; an existing tag falls through to the compare-and-swap below.
    let inserted = sqlx::query(
        "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (repo_id, name) DO NOTHING",
    )
    .bind(repo_id)
    .bind(tag)
    .bind(digest)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() > 0 {
        return Ok(TagChange::Created);
    }
    loop {
        let old: Option<String> =
            sqlx::query("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(repo_id)
                .bind(tag)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        match old {
            Some(old) if old == digest => return Ok(TagChange::Unchanged),
            Some(from) => {
                let done = sqlx::query(
                    "UPDATE tags SET digest = $3, updated_at = $4 \
                     WHERE repo_id = $1 AND name = $2 AND digest = $5",
                )
                .bind(repo_id)
                .bind(tag)
                .bind(digest)
                .bind(now)
                .bind(&from)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() > 0 {
                    return Ok(TagChange::Moved { from });
                }
            }
            None => {
                let done = sqlx::query(
                    "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (repo_id, name) DO NOTHING",
                )
                .bind(repo_id)
                .bind(tag)
                .bind(digest)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() > 0 {
                    return Ok(TagChange::Created);
                }
            }
        }
    }
}

/// The id of repository `name`, created if missing. Concurrent creators on PostgreSQL meet in
/// `ON CONFLICT`: the second waits for the first to commit and then reads its row.
async fn ensure_repo(conn: &mut sqlx::AnyConnection, name: &str, now: i64) -> Result<i64> {
    if let Some(id) = repo_id(conn, name).await? {
        return Ok(id);
    }
    let row = sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
    )
    .bind(name)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get(0)?)
}
