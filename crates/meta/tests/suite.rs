//! The metadata suite. Every test takes a fresh store; each backend gets the same tests.

use berth_meta::{MetaError, MetaStore, NewManifest, TagChange};

const B1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const B2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const M1: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const M2: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const IDX: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

async fn sqlite() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::connect(&MetaStore::sqlite_url(&dir.path().join("meta.db")))
        .await
        .unwrap();
    (dir, store)
}

fn manifest(digest: &str, blobs: &[&str], children: &[&str], subject: Option<&str>) -> NewManifest {
    NewManifest {
        digest: digest.into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: subject.map(|_| "application/x-test".into()),
        subject: subject.map(Into::into),
        annotations: None,
        content: format!("{{\"d\":\"{digest}\"}}").into_bytes(),
        blobs: blobs.iter().map(|s| s.to_string()).collect(),
        children: children.iter().map(|s| s.to_string()).collect(),
    }
}

async fn manifests_need_their_blobs_and_children(store: MetaStore) {
    let e = store
        .put_manifest("acme/app", &manifest(M1, &[B1], &[], None), Some("v1"))
        .await
        .unwrap_err();
    assert!(matches!(e, MetaError::BlobUnknown(ref d) if d == B1), "{e}");
    assert_eq!(store.resolve_tag("acme/app", "v1").await.unwrap(), None);
    store.link_blob("acme/app", B1, 10).await.unwrap();
    // Linked in another repository only: still unknown here.
    store.link_blob("other/repo", B2, 20).await.unwrap();
    let e = store
        .put_manifest("acme/app", &manifest(M1, &[B1, B2], &[], None), None)
        .await
        .unwrap_err();
    assert!(matches!(e, MetaError::BlobUnknown(ref d) if d == B2), "{e}");
    assert_eq!(
        store
            .put_manifest("acme/app", &manifest(M1, &[B1], &[], None), Some("v1"))
            .await
            .unwrap(),
        TagChange::Created
    );
    let e = store
        .put_manifest("acme/app", &manifest(IDX, &[], &[M1, M2], None), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MetaError::ManifestUnknown(ref d) if d == M2),
        "{e}"
    );
    store
        .put_manifest("acme/app", &manifest(IDX, &[], &[M1], None), Some("multi"))
        .await
        .unwrap();
    let got = store.get_manifest("acme/app", M1).await.unwrap().unwrap();
    assert_eq!(got.content, format!("{{\"d\":\"{M1}\"}}").into_bytes());
    assert_eq!(store.get_manifest("other/repo", M1).await.unwrap(), None);
}

async fn tags_move_list_and_delete(store: MetaStore) {
    store.link_blob("r", B1, 1).await.unwrap();
    store
        .put_manifest("r", &manifest(M1, &[B1], &[], None), Some("b"))
        .await
        .unwrap();
    store
        .put_manifest("r", &manifest(M2, &[B1], &[], None), Some("a"))
        .await
        .unwrap();
    assert_eq!(
        store
            .put_manifest("r", &manifest(M2, &[B1], &[], None), Some("a"))
            .await
            .unwrap(),
        TagChange::Unchanged
    );
    assert_eq!(
        store
            .put_manifest("r", &manifest(M2, &[B1], &[], None), Some("b"))
            .await
            .unwrap(),
        TagChange::Moved { from: M1.into() }
    );
    store
        .put_manifest("r", &manifest(M1, &[B1], &[], None), Some("C"))
        .await
        .unwrap();
    assert_eq!(
        store.list_tags("r", None, 100).await.unwrap().unwrap(),
        ["C", "a", "b"]
    );
    assert_eq!(
        store.list_tags("r", Some("C"), 1).await.unwrap().unwrap(),
        ["a"]
    );
    assert_eq!(store.list_tags("nope", None, 100).await.unwrap(), None);
    assert!(store.delete_tag("r", "a").await.unwrap());
    assert!(!store.delete_tag("r", "a").await.unwrap());
    assert_eq!(
        store.get_manifest("r", M2).await.unwrap().map(|m| m.digest),
        Some(M2.into())
    );
    let removed = store.delete_manifest("r", M2).await.unwrap().unwrap();
    assert_eq!(removed, ["b"]);
    assert_eq!(store.delete_manifest("r", M2).await.unwrap(), None);
    assert_eq!(
        store.list_tags("r", None, 100).await.unwrap().unwrap(),
        ["C"]
    );
}

async fn catalog_referrers_and_mounts(store: MetaStore) {
    for r in ["b", "a/x", "a", "c/d/e/f/g/h/i/j"] {
        store.link_blob(r, B1, 1).await.unwrap();
    }
    assert_eq!(
        store.catalog(None, 10).await.unwrap(),
        ["a", "a/x", "b", "c/d/e/f/g/h/i/j"]
    );
    assert_eq!(store.catalog(Some("a/x"), 1).await.unwrap(), ["b"]);
    assert_eq!(
        store.mount_blob("a", "new/repo", B1).await.unwrap(),
        Some(1)
    );
    assert_eq!(store.blob_in_repo("new/repo", B1).await.unwrap(), Some(1));
    assert_eq!(store.mount_blob("a", "other", B2).await.unwrap(), None);
    assert!(!store.repo_exists("other").await.unwrap());
    store
        .put_manifest("a", &manifest(M1, &[B1], &[], None), None)
        .await
        .unwrap();
    store
        .put_manifest("a", &manifest(M2, &[B1], &[], Some(M1)), None)
        .await
        .unwrap();
    let refs = store.referrers("a", M1).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, M2);
    assert_eq!(refs[0].artifact_type.as_deref(), Some("application/x-test"));
    assert!(store.referrers("b", M1).await.unwrap().is_empty());
    assert!(store.unlink_blob("new/repo", B1).await.unwrap());
    assert_eq!(store.blob_in_repo("new/repo", B1).await.unwrap(), None);
}

async fn upload_sessions(store: MetaStore) {
    store.create_upload("u1", "acme/app").await.unwrap();
    let row = store.get_upload("u1").await.unwrap().unwrap();
    assert_eq!(
        (row.repo.as_str(), row.offset, row.hash_state),
        ("acme/app", 0, None)
    );
    store.update_upload("u1", 42, &[1, 2, 3]).await.unwrap();
    let row = store.get_upload("u1").await.unwrap().unwrap();
    assert_eq!((row.offset, row.hash_state), (42, Some(vec![1, 2, 3])));
    assert_eq!(
        store
            .stale_uploads(berth_meta::now_millis() + 1000, 10)
            .await
            .unwrap(),
        ["u1"]
    );
    assert!(store.stale_uploads(0, 10).await.unwrap().is_empty());
    assert!(store.delete_upload("u1").await.unwrap());
    assert_eq!(store.get_upload("u1").await.unwrap(), None);
    assert!(
        !store.repo_exists("acme/app").await.unwrap(),
        "a session alone does not create a repository"
    );
}

macro_rules! suite {
    ($backend:ident: $($test:ident),*) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $test() {
                    let (_guard, store) = super::$backend().await;
                    super::$test(store).await;
                }
            )*
        }
    };
}

suite!(sqlite: manifests_need_their_blobs_and_children, tags_move_list_and_delete, catalog_referrers_and_mounts, upload_sessions);

#[tokio::test]
async fn reopening_keeps_data_and_rejects_bad_urls() {
    let dir = tempfile::tempdir().unwrap();
    let url = MetaStore::sqlite_url(&dir.path().join("m.db"));
    let s = MetaStore::connect(&url).await.unwrap();
    s.link_blob("x", B1, 5).await.unwrap();
    s.close().await;
    let s = MetaStore::connect(&url).await.unwrap();
    assert_eq!(s.blob_in_repo("x", B1).await.unwrap(), Some(5));
    assert!(matches!(
        MetaStore::connect("mysql://x").await,
        Err(MetaError::BadUrl(_))
    ));
}
