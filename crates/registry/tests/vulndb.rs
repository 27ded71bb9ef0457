//! `VulnDbService` on a real metadata store and blob storage: writers on separate services (as
//! on separate replicas) racing to update different feeds all survive the compare-and-swap, and
//! a service that did not write sees the result after a refresh.

use std::path::PathBuf;
use std::sync::Arc;

use berth_registry::vulndb::{ImportFormat, VulnDbConfig, VulnDbError, VulnDbService};
use berth_registry::{BlobStore, FsStore, MetaStore};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../vulndb/tests/fixtures")
        .join(rel)
}

async fn open(dir: &std::path::Path, meta: &MetaStore) -> Arc<VulnDbService> {
    let blobs: BlobStore = FsStore::open(dir.join("storage"), false).unwrap().into();
    VulnDbService::open(meta.clone(), blobs, VulnDbConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_feed_updates_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::connect(&MetaStore::sqlite_url(&dir.path().join("meta.db")))
        .await
        .unwrap();
    let services: Vec<Arc<VulnDbService>> = vec![
        open(dir.path(), &meta).await,
        open(dir.path(), &meta).await,
        open(dir.path(), &meta).await,
    ];
    let observer = open(dir.path(), &meta).await;

    let mut tasks = Vec::new();
    for (i, s) in services.iter().enumerate() {
        for round in 0..3 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let (path, format) = if i % 2 == 0 {
                    (fixture("alpine/v3.19-main.json"), ImportFormat::AlpineSecdb)
                } else {
                    (fixture("debian/tracker.json"), ImportFormat::DebianTracker)
                };
                let feed = format!("feed-{i}-{round}");
                s.import_path(&path, format, Some(&feed)).await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(observer.refresh().await.unwrap());
    let db = observer.db();
    let mut feeds: Vec<String> = db.feeds().map(|f| f.feed.clone()).collect();
    feeds.sort();
    assert_eq!(feeds.len(), 9, "{feeds:?}");
    for s in &services {
        s.refresh().await.unwrap();
        assert_eq!(s.db().version(), db.version());
    }
    let status = observer.status().await.unwrap();
    assert_eq!(status.feeds.len(), 9);
    assert!(
        status
            .feeds
            .iter()
            .all(|f| f.records > 0 && f.last_success.is_some())
    );
    assert!(!status.stale);

    // A failed import changes nothing.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"id\": ").unwrap();
    let e = services[0]
        .import_path(&bad, ImportFormat::Osv, Some("feed-0-0"))
        .await
        .unwrap_err();
    assert!(matches!(e, VulnDbError::Invalid(_)), "{e}");
    assert!(!observer.refresh().await.unwrap());
    assert_eq!(observer.db().version(), db.version());
}
