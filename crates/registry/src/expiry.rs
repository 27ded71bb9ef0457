//! The background sweep that removes abandoned upload sessions and their data.

use std::sync::Arc;
use std::time::Duration;

use crate::background::Background;

use crate::Registry;

/// The lease that makes one replica at a time run the sweep.
pub const LEASE: &str = "upload-expiry";

/// An owned handle on the expiry worker: dropping it without `shutdown` aborts the worker.
pub struct UploadExpiry(Background);

impl UploadExpiry {
    /// Starts sweeping every `every`.
    pub fn start(registry: Arc<Registry>, every: Duration) -> UploadExpiry {
        let (mut bg, mut stopped) = Background::new();
        bg.spawn(async move {
            // One replica sweeps at a time. The lease outlives two intervals, so a holder that
            // keeps running keeps it, and one that died is replaced within that time.
            let holder = uuid::Uuid::new_v4().to_string();
            let ttl = every.saturating_mul(2).max(Duration::from_secs(10));
            loop {
                match registry.meta().try_lease(LEASE, &holder, ttl).await {
                    Ok(true) => match registry.expire_uploads().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "expired abandoned upload sessions"),
                        Err(e) => tracing::warn!(error = %e, "upload expiry sweep failed"),
                    },
                    Ok(false) => tracing::debug!("another replica holds the upload expiry lease"),
                    Err(e) => tracing::warn!(error = %e, "could not take the upload expiry lease"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => break,
                }
            }
            let _ = registry.meta().release_lease(LEASE, &holder).await;
        });
        UploadExpiry(bg)
    }

    /// Stops the worker and waits for a sweep in progress to finish.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
