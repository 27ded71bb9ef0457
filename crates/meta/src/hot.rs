//! A few connections of their own for the hottest reads (a tag's digest, whether a manifest is
//! in a repository), outside the pool.
//!
//! sqlx's pool pings every connection it takes back (a `Sync` round trip, to be safe against a
//! query cancelled half-way), which doubles the messages, and the wake-ups of both processes,
//! for a one-row read. Here a connection is instead taken out of its slot for the read and put
//! back only when the read has finished well: a read that fails, or is dropped half-way, drops
//! its connection with it, and the next read opens a new one. When all of them are busy, the
//! read goes through the pool as any other.

use sqlx::any::{AnyConnectOptions, AnyRow};
use sqlx::{AnyConnection, Connection};
use tokio::sync::Mutex;

use crate::{MetaError, Result};

pub(crate) struct HotConnections {
    options: AnyConnectOptions,
    slots: Vec<Mutex<Option<AnyConnection>>>,
}

impl HotConnections {
    pub(crate) fn new(options: AnyConnectOptions, count: usize) -> HotConnections {
        HotConnections {
            options,
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// At most one row of `sql` with two text parameters, read on a free connection of this
    /// set; `None` when every one is busy.
    ///
    /// A connection that was fine when last used may have been cut since (the server
    /// restarted): when a kept connection fails to be reached, the read is tried once more on a
    /// new one, so that an outage that has ended costs no request an error.
    pub(crate) async fn row(&self, sql: &str, a: &str, b: &str) -> Option<Result<Option<AnyRow>>> {
        let mut slot = self.slots.iter().find_map(|s| s.try_lock().ok())?;
        let kept = slot.take();
        let retry = kept.is_some();
        let mut conn = match kept {
            Some(conn) => conn,
            None => match self.connect().await {
                Ok(conn) => conn,
                Err(e) => return Some(Err(e)),
            },
        };
        let mut result = read(&mut conn, sql, a, b).await;
        if retry && matches!(result, Err(MetaError::Unavailable(_))) {
            conn = match self.connect().await {
                Ok(conn) => conn,
                Err(e) => return Some(Err(e)),
            };
            result = read(&mut conn, sql, a, b).await;
        }
        if result.is_ok() {
            *slot = Some(conn);
        }
        Some(result)
    }

    async fn connect(&self) -> Result<AnyConnection> {
        let connect = AnyConnection::connect_with(&self.options);
        match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(MetaError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }
}

async fn read(conn: &mut AnyConnection, sql: &str, a: &str, b: &str) -> Result<Option<AnyRow>> {
    Ok(sqlx::query(sql)
        .bind(a)
        .bind(b)
        .fetch_optional(conn)
        .await?)
}
