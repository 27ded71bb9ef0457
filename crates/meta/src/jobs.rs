//! The job queue (migration `0005_jobs`): background work that must run once across replicas.
//!
//! A worker claims the oldest due job of a kind with a lease; on PostgreSQL the claim skips rows
//! other replicas are claiming (`FOR UPDATE SKIP LOCKED`), so workers never wait on each other
//! and never take the same job; on SQLite the write gate serialises claims. A job whose worker
//! dies is claimed again when its lease expires. Finishing or failing a job checks that the
//! caller still holds it, so a worker that lost its lease cannot overwrite the new holder's work.

use std::time::Duration;

use sqlx::Row;

use crate::{Dialect, MetaStore, Result, now_millis};

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub payload: Option<String>,
    /// Including this claim.
    pub attempts: i64,
}

/// Counts of a kind's jobs by state, for status pages and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

impl MetaStore {
    /// Queues a job unless one for the same `(kind, key)` is already pending. Returns whether
    /// a job was queued.
    pub async fn enqueue_job(&self, kind: &str, key: &str, payload: Option<&str>) -> Result<bool> {
        let _g = self.gate().await;
        let now = now_millis();
        let done = sqlx::query(
            "INSERT INTO jobs (kind, key, payload, state, attempts, run_after, created_at, updated_at) \
             VALUES ($1, $2, $3, 'queued', 0, $4, $4, $4) \
             ON CONFLICT (kind, key) WHERE state IN ('queued', 'running') DO NOTHING",
        )
        .bind(kind)
        .bind(key)
        .bind(payload)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims the oldest due job of `kind` for `holder` until `lease` from now: a queued job
    /// whose time has come, or a running one whose lease expired.
    pub async fn claim_job(
        &self,
        kind: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Job>> {
        let _g = self.gate().await;
        let now = now_millis();
        let skip_locked = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', holder = $2, lease_until = $3, \
             attempts = attempts + 1, updated_at = $4 \
             WHERE id = (SELECT id FROM jobs WHERE kind = $1 AND \
               ((state = 'queued' AND run_after <= $4) OR (state = 'running' AND lease_until < $4)) \
               ORDER BY id LIMIT 1{skip_locked}) \
             RETURNING id, kind, key, payload, attempts"
        );
        let row = self
            .retrying(|| async {
                Ok(sqlx::query(&sql)
                    .bind(kind)
                    .bind(holder)
                    .bind(now + lease.as_millis() as i64)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?)
            })
            .await?;
        row.map(|r| {
            Ok(Job {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                key: r.try_get(2)?,
                payload: r.try_get(3)?,
                attempts: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// Extends the lease on a job the holder is still working on. Returns false when the job
    /// is no longer the holder's (its lease expired and another worker took it).
    pub async fn renew_job(&self, id: i64, holder: &str, lease: Duration) -> Result<bool> {
        let _g = self.gate().await;
        let now = now_millis();
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $3, updated_at = $4 \
             WHERE id = $1 AND holder = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(holder)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks a job done. Returns false when the holder had lost it.
    pub async fn finish_job(&self, id: i64, holder: &str) -> Result<bool> {
        self.end_job(id, holder, "done", None, None).await
    }

    /// Records a failure: the job runs again after `retry_after`, or, with `None`, is given up
    /// (state `failed`). Returns false when the holder had lost it.
    pub async fn fail_job(
        &self,
        id: i64,
        holder: &str,
        error: &str,
        retry_after: Option<Duration>,
    ) -> Result<bool> {
        match retry_after {
            Some(d) => {
                self.end_job(id, holder, "queued", Some(error), Some(d))
                    .await
            }
            None => self.end_job(id, holder, "failed", Some(error), None).await,
        }
    }

    async fn end_job(
        &self,
        id: i64,
        holder: &str,
        state: &str,
        error: Option<&str>,
        retry_after: Option<Duration>,
    ) -> Result<bool> {
        let _g = self.gate().await;
        let now = now_millis();
        let run_after = now + retry_after.map_or(0, |d| d.as_millis() as i64);
        // Keep error messages bounded: they come from anywhere.
        let error = error.map(|e| e.chars().take(2000).collect::<String>());
        let done = sqlx::query(
            "UPDATE jobs SET state = $3, error = $4, run_after = $5, lease_until = NULL, \
             holder = NULL, updated_at = $6 WHERE id = $1 AND holder = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(holder)
        .bind(state)
        .bind(error)
        .bind(run_after)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many jobs of `kind` are in each state.
    pub async fn job_counts(&self, kind: &str) -> Result<JobCounts> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM jobs WHERE kind = $1 GROUP BY state")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        let mut c = JobCounts::default();
        for r in rows {
            let state: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            match state.as_str() {
                "queued" => c.queued = n,
                "running" => c.running = n,
                "done" => c.done = n,
                "failed" => c.failed = n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// The last state and error of the newest job for `(kind, key)`.
    pub async fn job_state(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        let row = sqlx::query(
            "SELECT state, error FROM jobs WHERE kind = $1 AND key = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(kind)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }
}
