//! The shared vulnerability database's records (migration `0006_vulndb`): which snapshot blob is
//! current, and each feed's update status.
//!
//! The snapshot bytes live in blob storage under their digest; only the pointer is here, so every
//! replica, whatever its storage, finds the same database. The pointer moves by compare-and-swap
//! ([`MetaStore::swap_vulndb_snapshot`]): a writer that built its snapshot on a database that
//! has changed meanwhile loses, reloads and builds again, so concurrent updates of two feeds both
//! survive.

use sqlx::Row;

use crate::{MetaStore, Result};

/// The snapshot every replica should serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnDbSnapshot {
    /// The blob's digest (`sha256:<hex>`).
    pub digest: String,
    pub size: i64,
    /// The database's content version (`berth_vulndb::VulnDb::version`).
    pub version: String,
    /// When it was recorded, in Unix milliseconds.
    pub created_at: i64,
}

/// One feed's update status. Times are Unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VulnDbFeedRow {
    pub name: String,
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    /// Why the last attempt failed; `None` after a success.
    pub error: Option<String>,
    /// Validators of the last successful download, for conditional requests.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Records the feed had after its last successful import.
    pub records: Option<i64>,
}

/// Error messages come from anywhere (a remote server's answer); keep them bounded.
const MAX_ERROR_CHARS: usize = 2000;

impl MetaStore {
    /// The current snapshot, if one was ever recorded.
    pub async fn vulndb_snapshot(&self) -> Result<Option<VulnDbSnapshot>> {
        let row = sqlx::query(
            "SELECT digest, size, version, created_at FROM vulndb_current WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(VulnDbSnapshot {
                digest: r.try_get(0)?,
                size: r.try_get(1)?,
                version: r.try_get(2)?,
                created_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Makes `new` the current snapshot if the current one is still `expected` (by digest;
    /// `None`: no snapshot yet). Returns whether it did.
    pub async fn swap_vulndb_snapshot(
        &self,
        expected: Option<&str>,
        new: &VulnDbSnapshot,
    ) -> Result<bool> {
        let _g = self.gate().await;
        let done = match expected {
            None => {
                sqlx::query(
                    "INSERT INTO vulndb_current (id, digest, size, version, created_at) \
                     VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&new.digest)
                .bind(new.size)
                .bind(&new.version)
                .bind(new.created_at)
                .execute(&self.pool)
                .await?
            }
            Some(expected) => {
                sqlx::query(
                    "UPDATE vulndb_current SET digest = $1, size = $2, version = $3, \
                     created_at = $4 WHERE id = 1 AND digest = $5",
                )
                .bind(&new.digest)
                .bind(new.size)
                .bind(&new.version)
                .bind(new.created_at)
                .bind(expected)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected() > 0)
    }

    /// Every feed's status, by name.
    pub async fn vulndb_feeds(&self) -> Result<Vec<VulnDbFeedRow>> {
        let rows = sqlx::query(
            "SELECT name, last_attempt, last_success, error, etag, last_modified, records \
             FROM vulndb_feeds ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| feed_row(&r)).collect()
    }

    /// One feed's status.
    pub async fn vulndb_feed(&self, name: &str) -> Result<Option<VulnDbFeedRow>> {
        let row = sqlx::query(
            "SELECT name, last_attempt, last_success, error, etag, last_modified, records \
             FROM vulndb_feeds WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| feed_row(&r)).transpose()
    }

    /// Records a failed attempt: the error and the time, keeping the last success, its
    /// validators and its record count.
    pub async fn vulndb_feed_failed(&self, name: &str, at: i64, error: &str) -> Result<()> {
        let _g = self.gate().await;
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        sqlx::query(
            "INSERT INTO vulndb_feeds (name, last_attempt, error) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET last_attempt = excluded.last_attempt, \
             error = excluded.error",
        )
        .bind(name)
        .bind(at)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a successful attempt. `validators` are the new download's (`ETag`,
    /// `Last-Modified`), or `None` to keep the previous ones (the feed answered `304`);
    /// `records` likewise.
    pub async fn vulndb_feed_succeeded(
        &self,
        name: &str,
        at: i64,
        validators: Option<(Option<&str>, Option<&str>)>,
        records: Option<i64>,
    ) -> Result<()> {
        let _g = self.gate().await;
        let (replace, etag, last_modified) = match validators {
            Some((e, l)) => (1i64, e, l),
            None => (0, None, None),
        };
        sqlx::query(
            "INSERT INTO vulndb_feeds (name, last_attempt, last_success, error, etag, \
             last_modified, records) VALUES ($1, $2, $2, NULL, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET last_attempt = excluded.last_attempt, \
             last_success = excluded.last_success, error = NULL, \
             etag = CASE WHEN $6 = 1 THEN excluded.etag ELSE vulndb_feeds.etag END, \
             last_modified = CASE WHEN $6 = 1 THEN excluded.last_modified \
                                  ELSE vulndb_feeds.last_modified END, \
             records = COALESCE(excluded.records, vulndb_feeds.records)",
        )
        .bind(name)
        .bind(at)
        .bind(etag)
        .bind(last_modified)
        .bind(records)
        .bind(replace)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn feed_row(r: &sqlx::any::AnyRow) -> Result<VulnDbFeedRow> {
    Ok(VulnDbFeedRow {
        name: r.try_get(0)?,
        last_attempt: r.try_get(1)?,
        last_success: r.try_get(2)?,
        error: r.try_get(3)?,
        etag: r.try_get(4)?,
        last_modified: r.try_get(5)?,
        records: r.try_get(6)?,
    })
}
