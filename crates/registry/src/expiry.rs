//! The background sweep that removes abandoned upload sessions and their data.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Registry;

/// An owned handle on the expiry worker: dropping it without `shutdown` aborts the worker.
pub struct UploadExpiry {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl UploadExpiry {
    /// Starts sweeping every `every`.
    pub fn start(registry: Arc<Registry>, every: Duration) -> UploadExpiry {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                match registry.expire_uploads().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired abandoned upload sessions"),
                    Err(e) => tracing::warn!(error = %e, "upload expiry sweep failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        UploadExpiry {
            stop,
            task: Some(task),
        }
    }

    /// Stops the worker and waits for a sweep in progress to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for UploadExpiry {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
