//! Image analysis and vulnerability matching records (migration `0007_scans`): cached layer
//! indexes, one analysis per image manifest with its last match, the events re-matching
//! records, and scanning/pull policies with their allow-lists.
//!
//! Large documents (layer indexes, SBOMs) are blobs in blob storage; only their digests are
//! here. A re-match moves an image from one database version to the next by compare-and-swap on
//! `db_version`, in one transaction with its events, so two replicas re-matching the same image
//! record its events once.

use sqlx::Row;

use crate::{MetaStore, Result, now_millis};

/// A stored analysis of one image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageScan {
    pub digest: String,
    pub analyzer_version: i64,
    /// The SBOM blob (berth-scan's report, JSON).
    pub sbom_digest: String,
    pub sbom_size: i64,
    /// What re-matching reads (JSON).
    pub inventory: String,
    pub packages: i64,
    /// The database version `findings` was matched against.
    pub db_version: String,
    /// JSON array of `[key, id, level]`.
    pub findings: String,
    /// JSON object of counts per severity.
    pub summary: String,
    /// The highest severity level among the findings, as a number (0 = none or unknown).
    pub max_level: i64,
    pub scanned_at: i64,
    pub matched_at: i64,
}

/// A finding that appeared or went away when an image was matched again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEvent {
    pub id: i64,
    pub digest: String,
    /// `appeared` or `resolved`.
    pub kind: String,
    pub vuln_id: String,
    /// `ecosystem/name@version`.
    pub package: String,
    pub level: String,
    pub db_version: String,
    pub at: i64,
}

/// An event to record with a re-match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScanEvent {
    pub kind: &'static str,
    pub vuln_id: String,
    pub package: String,
    pub level: String,
}

/// The outcome of matching an image again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rematch {
    pub digest: String,
    /// The version the caller matched against before (the compare-and-swap's expectation).
    pub from_version: String,
    pub db_version: String,
    pub findings: String,
    pub summary: String,
    pub max_level: i64,
    pub events: Vec<NewScanEvent>,
}

/// An image whose last match is against another database version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleScan {
    pub digest: String,
    pub inventory: String,
    pub db_version: String,
    pub findings: String,
}

/// A scope's policy (`org:<namespace>` or `repo:<name>`). `None` inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPolicy {
    pub scan_on_push: Option<bool>,
    /// The severity (`critical`, `high`, ...) at or above which pulls are refused.
    pub block_level: Option<String>,
    pub updated_at: i64,
    pub updated_by: String,
}

/// A vulnerability a scope's pull policy lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedVuln {
    pub vuln_id: String,
    pub reason: String,
    /// Unix milliseconds; `None` never expires.
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

const SCAN_COLUMNS: &str = "digest, analyzer_version, sbom_digest, sbom_size, inventory, packages, \
     db_version, findings, summary, max_level, scanned_at, matched_at";

fn scan_from_row(r: &sqlx::any::AnyRow) -> Result<ImageScan> {
    Ok(ImageScan {
        digest: r.try_get(0)?,
        analyzer_version: r.try_get(1)?,
        sbom_digest: r.try_get(2)?,
        sbom_size: r.try_get(3)?,
        inventory: r.try_get(4)?,
        packages: r.try_get(5)?,
        db_version: r.try_get(6)?,
        findings: r.try_get(7)?,
        summary: r.try_get(8)?,
        max_level: r.try_get(9)?,
        scanned_at: r.try_get(10)?,
        matched_at: r.try_get(11)?,
    })
}

impl MetaStore {
    /// The cached index of a layer by an analyser version: (index blob digest, size).
    pub async fn layer_index(
        &self,
        digest: &str,
        analyzer_version: i64,
    ) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT index_digest, index_size FROM layer_indexes \
             WHERE digest = $1 AND analyzer_version = $2",
        )
        .bind(digest)
        .bind(analyzer_version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Records a layer's index blob (the first writer wins; a second is the same content).
    pub async fn put_layer_index(
        &self,
        digest: &str,
        analyzer_version: i64,
        index_digest: &str,
        index_size: i64,
    ) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query(
            "INSERT INTO layer_indexes (digest, analyzer_version, index_digest, index_size, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest, analyzer_version) DO NOTHING",
        )
        .bind(digest)
        .bind(analyzer_version)
        .bind(index_digest)
        .bind(index_size)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The stored analysis of an image manifest.
    pub async fn image_scan(&self, digest: &str) -> Result<Option<ImageScan>> {
        let row = sqlx::query(&format!(
            "SELECT {SCAN_COLUMNS} FROM image_scans WHERE digest = $1"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(scan_from_row).transpose()
    }

    /// Stores (or replaces) the analysis of an image manifest.
    pub async fn put_image_scan(&self, s: &ImageScan) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query(&format!(
            "INSERT INTO image_scans ({SCAN_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (digest) DO UPDATE SET analyzer_version = excluded.analyzer_version, \
             sbom_digest = excluded.sbom_digest, sbom_size = excluded.sbom_size, \
             inventory = excluded.inventory, packages = excluded.packages, \
             db_version = excluded.db_version, findings = excluded.findings, \
             summary = excluded.summary, max_level = excluded.max_level, \
             scanned_at = excluded.scanned_at, matched_at = excluded.matched_at"
        ))
        .bind(&s.digest)
        .bind(s.analyzer_version)
        .bind(&s.sbom_digest)
        .bind(s.sbom_size)
        .bind(&s.inventory)
        .bind(s.packages)
        .bind(&s.db_version)
        .bind(&s.findings)
        .bind(&s.summary)
        .bind(s.max_level)
        .bind(s.scanned_at)
        .bind(s.matched_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many images are analysed, and how many of them were last matched against a
    /// version other than `db_version` (waiting to be matched again).
    pub async fn image_scan_counts(&self, db_version: &str) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN db_version <> $1 THEN 1 ELSE 0 END), 0) \
             FROM image_scans",
        )
        .bind(db_version)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Up to `limit` images last matched against a version other than `db_version`, after
    /// `after` (a digest; pages through them in digest order).
    pub async fn stale_image_scans(
        &self,
        db_version: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<StaleScan>> {
        let rows = sqlx::query(
            "SELECT digest, inventory, db_version, findings FROM image_scans \
             WHERE db_version <> $1 AND digest > $2 ORDER BY digest LIMIT $3",
        )
        .bind(db_version)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StaleScan {
                    digest: r.try_get(0)?,
                    inventory: r.try_get(1)?,
                    db_version: r.try_get(2)?,
                    findings: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Applies re-matches, each only if its image is still at `from_version` (another replica
    /// may have got there first), recording their events in the same transaction. Returns how
    /// many were applied.
    pub async fn apply_rematches(&self, batch: &[Rematch]) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let _g = self.gate().await;
        self.retrying(|| self.apply_rematches_once(batch)).await
    }

    async fn apply_rematches_once(&self, batch: &[Rematch]) -> Result<usize> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        let mut applied = 0;
        for m in batch {
            let done = sqlx::query(
                "UPDATE image_scans SET db_version = $3, findings = $4, summary = $5, \
                 max_level = $6, matched_at = $7 WHERE digest = $1 AND db_version = $2",
            )
            .bind(&m.digest)
            .bind(&m.from_version)
            .bind(&m.db_version)
            .bind(&m.findings)
            .bind(&m.summary)
            .bind(m.max_level)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            applied += 1;
            for e in &m.events {
                sqlx::query(
                    "INSERT INTO scan_events (digest, kind, vuln_id, package, level, db_version, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&m.digest)
                .bind(e.kind)
                .bind(&e.vuln_id)
                .bind(&e.package)
                .bind(&e.level)
                .bind(&m.db_version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Events after id `after`, oldest first; only those of `digests` when given.
    pub async fn scan_events(
        &self,
        after: i64,
        digests: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<ScanEvent>> {
        let base = "SELECT id, digest, kind, vuln_id, package, level, db_version, at FROM scan_events \
                    WHERE id > $1";
        let rows = match digests {
            None => {
                sqlx::query(&format!("{base} ORDER BY id LIMIT $2"))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some([]) => Vec::new(),
            Some(ds) => {
                // Few digests per repository page; bound them as parameters.
                let list = (0..ds.len())
                    .map(|i| format!("${}", i + 3))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!("{base} AND digest IN ({list}) ORDER BY id LIMIT $2");
                let mut q = sqlx::query(&sql).bind(after).bind(limit);
                for d in ds {
                    q = q.bind(d);
                }
                q.fetch_all(&self.pool).await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(ScanEvent {
                    id: r.try_get(0)?,
                    digest: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    vuln_id: r.try_get(3)?,
                    package: r.try_get(4)?,
                    level: r.try_get(5)?,
                    db_version: r.try_get(6)?,
                    at: r.try_get(7)?,
                })
            })
            .collect()
    }

    /// Digests of the manifests a repository holds, for event queries (at most `limit`).
    pub async fn repository_manifest_digests(&self, repo: &str, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id \
             WHERE r.name = $1 ORDER BY m.digest LIMIT $2",
        )
        .bind(repo)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Repositories that hold a manifest, in byte order.
    pub async fn repositories_with_manifest(&self, digest: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT r.name FROM manifests m JOIN repositories r ON r.id = m.repo_id \
             WHERE m.digest = $1 ORDER BY r.name",
        )
        .bind(digest)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// A scope's policy.
    pub async fn scan_policy(&self, scope: &str) -> Result<Option<ScanPolicy>> {
        let row = sqlx::query(
            "SELECT scan_on_push, block_level, updated_at, updated_by FROM scan_policies WHERE scope = $1",
        )
        .bind(scope)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ScanPolicy {
                scan_on_push: r.try_get::<Option<i64>, _>(0)?.map(|v| v != 0),
                block_level: r.try_get(1)?,
                updated_at: r.try_get(2)?,
                updated_by: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Sets a scope's policy.
    pub async fn put_scan_policy(&self, scope: &str, p: &ScanPolicy) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query(
            "INSERT INTO scan_policies (scope, scan_on_push, block_level, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope) DO UPDATE SET \
             scan_on_push = excluded.scan_on_push, block_level = excluded.block_level, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(scope)
        .bind(p.scan_on_push.map(i64::from))
        .bind(p.block_level.as_deref())
        .bind(p.updated_at)
        .bind(&p.updated_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A scope's allow-list, by id.
    pub async fn scan_allowlist(&self, scope: &str) -> Result<Vec<AllowedVuln>> {
        let rows = sqlx::query(
            "SELECT vuln_id, reason, expires_at, created_by, created_at FROM scan_allowlist \
             WHERE scope = $1 ORDER BY vuln_id",
        )
        .bind(scope)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AllowedVuln {
                    vuln_id: r.try_get(0)?,
                    reason: r.try_get(1)?,
                    expires_at: r.try_get(2)?,
                    created_by: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Adds or replaces an allow-list entry.
    pub async fn put_allowed_vuln(&self, scope: &str, a: &AllowedVuln) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query(
            "INSERT INTO scan_allowlist (scope, vuln_id, reason, expires_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, vuln_id) DO UPDATE SET \
             reason = excluded.reason, expires_at = excluded.expires_at, \
             created_by = excluded.created_by, created_at = excluded.created_at",
        )
        .bind(scope)
        .bind(&a.vuln_id)
        .bind(&a.reason)
        .bind(a.expires_at)
        .bind(&a.created_by)
        .bind(a.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes an allow-list entry. Returns whether it existed.
    pub async fn delete_allowed_vuln(&self, scope: &str, vuln_id: &str) -> Result<bool> {
        let _g = self.gate().await;
        let done = sqlx::query("DELETE FROM scan_allowlist WHERE scope = $1 AND vuln_id = $2")
            .bind(scope)
            .bind(vuln_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
