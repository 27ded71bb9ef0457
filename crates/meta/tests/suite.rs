//! The metadata suite. Every test takes a fresh store; each backend gets the same tests. The
//! PostgreSQL backend runs on a real server (`berth_testkit::PgServer`), a fresh database per
//! test.

use std::collections::BTreeSet;

use berth_meta::{Dialect, MetaError, MetaStore, NewManifest, TagChange};
use berth_testkit::PgServer;

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

async fn postgres() -> ((), MetaStore) {
    let url = tokio::task::spawn_blocking(|| PgServer::shared().create_database())
        .await
        .unwrap();
    let store = MetaStore::connect(&url).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Postgres);
    ((), store)
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
    assert_eq!(
        store.blob_entry("new/repo", B1).await.unwrap(),
        Some(berth_meta::BlobEntry {
            size: 1,
            location: None
        })
    );
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
    store
        .update_upload("u1", 42, &[1, 2, 3], Some("{}"))
        .await
        .unwrap();
    let row = store.get_upload("u1").await.unwrap().unwrap();
    assert_eq!(
        (row.offset, row.hash_state, row.storage_state.as_deref()),
        (42, Some(vec![1, 2, 3]), Some("{}"))
    );
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

/// Listings are in byte order (`-` < `.` < `/` < digits < upper case < `_` < lower case), not in
/// a language's collation order, whatever the database's default collation.
async fn listings_are_bytewise(store: MetaStore) {
    let repos = ["a-b", "a.b", "a/b", "a0", "a__b", "ab", "a/b/c", "a-b/c"];
    for r in repos {
        store.link_blob(r, B1, 1).await.unwrap();
    }
    let mut sorted: Vec<&str> = repos.to_vec();
    sorted.sort_unstable();
    assert_eq!(store.catalog(None, 100).await.unwrap(), sorted);
    assert_eq!(store.catalog(Some("a.b"), 2).await.unwrap(), &sorted[3..5]);
    store
        .put_manifest("a0", &manifest(M1, &[B1], &[], None), None)
        .await
        .unwrap();
    let tags = [
        "b", "B", "_x", "a", "Z9", "0", "9.9", "a-1", "a.1", "a_1", "A",
    ];
    for t in tags {
        store
            .put_manifest("a0", &manifest(M1, &[B1], &[], None), Some(t))
            .await
            .unwrap();
    }
    let mut sorted: Vec<&str> = tags.to_vec();
    sorted.sort_unstable();
    assert_eq!(
        store.list_tags("a0", None, 100).await.unwrap().unwrap(),
        sorted
    );
    assert_eq!(
        store.list_tags("a0", Some("Z9"), 3).await.unwrap().unwrap(),
        &sorted[5..8]
    );
}

/// Many tasks pushing the same blob into the same new repository, and blobs into new
/// repositories through mounts, all at once: every call succeeds and the result is one
/// repository with one link per blob.
async fn concurrent_links_and_mounts(store: MetaStore) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let s = store.clone();
        tasks.spawn(async move {
            s.link_blob("race/new", B1, 10).await.unwrap();
            let (digest, size) = if i % 2 == 0 { (B2, 20) } else { (B1, 10) };
            s.link_blob("race/new", digest, size).await.unwrap();
            // Mounts from the repository that is being created, into another new one.
            assert_eq!(
                s.mount_blob("race/new", "race/mounted", B1).await.unwrap(),
                Some(10)
            );
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(
        store.catalog(None, 100).await.unwrap(),
        ["race/mounted", "race/new"]
    );
    assert_eq!(store.blob_in_repo("race/new", B1).await.unwrap(), Some(10));
    assert_eq!(store.blob_in_repo("race/new", B2).await.unwrap(), Some(20));
    assert_eq!(
        store.blob_in_repo("race/mounted", B1).await.unwrap(),
        Some(10)
    );
    assert_eq!(store.blob_in_repo("race/mounted", B2).await.unwrap(), None);
}

/// Many tasks putting manifests under the same tags at once. Each call succeeds and reports what
/// it did truthfully: exactly one creation per tag, and the moves form one chain from the first
/// digest to the final one.
async fn concurrent_tag_pushes(store: MetaStore) {
    store.link_blob("r", B1, 1).await.unwrap();
    let digests = [M1, M2, IDX];
    // The same manifest under one new tag from every task: one creates it, the rest see it.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.spawn(async move {
            s.put_manifest("r", &manifest(M1, &[B1], &[], None), Some("same"))
                .await
                .unwrap()
        });
    }
    let mut changes = Vec::new();
    while let Some(r) = tasks.join_next().await {
        changes.push(r.unwrap());
    }
    let created = changes.iter().filter(|c| **c == TagChange::Created).count();
    assert_eq!(created, 1, "{changes:?}");
    assert!(
        changes
            .iter()
            .all(|c| matches!(c, TagChange::Created | TagChange::Unchanged)),
        "{changes:?}"
    );

    // Different manifests under one tag: the tag ends on one of them, and the reported moves
    // replay to that end.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let s = store.clone();
        let d = digests[i % digests.len()];
        tasks.spawn(async move {
            let c = s
                .put_manifest("r", &manifest(d, &[B1], &[], None), Some("moving"))
                .await
                .unwrap();
            (d, c)
        });
    }
    let mut changes = Vec::new();
    while let Some(r) = tasks.join_next().await {
        changes.push(r.unwrap());
    }
    let end = store.resolve_tag("r", "moving").await.unwrap().unwrap();
    assert!(digests.contains(&end.as_str()));
    assert_eq!(
        changes
            .iter()
            .filter(|(_, c)| *c == TagChange::Created)
            .count(),
        1,
        "{changes:?}"
    );
    // Each move names a digest the tag really pointed at, other than its own.
    let seen: BTreeSet<&str> = changes.iter().map(|(d, _)| *d).collect();
    for (d, c) in &changes {
        if let TagChange::Moved { from } = c {
            assert_ne!(from, d, "{changes:?}");
            assert!(seen.contains(from.as_str()), "{changes:?}");
        }
    }
    let mut tags = store.list_tags("r", None, 10).await.unwrap().unwrap();
    tags.sort();
    assert_eq!(tags, ["moving", "same"]);
}

/// Pushes of a tagged manifest racing with deletes of that manifest, and unlinks of its blob:
/// every call succeeds or fails with the error the registry expects, never a database error, and
/// what remains is consistent.
async fn concurrent_pushes_and_deletes(store: MetaStore) {
    store.link_blob("r", B1, 1).await.unwrap();
    store.link_blob("r", B2, 2).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let s = store.clone();
        tasks.spawn(async move {
            for round in 0..10 {
                match i % 4 {
                    0 | 1 => {
                        let tag = if i % 4 == 0 { "t0" } else { "t1" };
                        s.put_manifest("r", &manifest(M1, &[B1], &[], None), Some(tag))
                            .await
                            .unwrap();
                    }
                    2 => {
                        s.delete_manifest("r", M1).await.unwrap();
                    }
                    _ => {
                        // Needs B2, which another round of this task keeps unlinking.
                        match s
                            .put_manifest("r", &manifest(M2, &[B2], &[], None), Some("t2"))
                            .await
                        {
                            Ok(_) => {}
                            Err(MetaError::BlobUnknown(d)) => assert_eq!(d, B2),
                            Err(e) => panic!("{e:?}"),
                        }
                        // Refused while M2 references B2; then M2 goes first.
                        match s.unlink_blob("r", B2).await {
                            Ok(_) => {}
                            Err(MetaError::Referenced { digest, by }) => {
                                assert_eq!((digest.as_str(), by.as_str()), (B2, M2));
                                s.delete_manifest("r", M2).await.unwrap();
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                        // Linked again for the next round; after the last, left as it is, so
                        // that the check below can see an unlink that should have been refused.
                        if round < 9 {
                            s.link_blob("r", B2, 2).await.unwrap();
                        }
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // Every remaining tag resolves to a stored manifest, and a stored M2 still has its blob.
    for tag in store.list_tags("r", None, 10).await.unwrap().unwrap() {
        let d = store.resolve_tag("r", &tag).await.unwrap().unwrap();
        assert!(store.get_manifest("r", &d).await.unwrap().is_some());
    }
    if store.get_manifest("r", M2).await.unwrap().is_some() {
        assert!(store.blob_entry("r", B2).await.unwrap().is_some());
    }
}

/// A write that fails, or whose caller goes away mid-transaction, leaves the database writable
/// for the next writer (on SQLite its rollback lands a moment after the call returned, and a
/// transaction that reads before it writes cannot wait for the lock).
async fn failed_and_cancelled_writes_release_the_database(store: MetaStore) {
    store.link_blob("r", B1, 1).await.unwrap();
    for i in 0..40 {
        // Creates the repository, then fails: B1 is not in it. All of it is rolled back.
        let repo = format!("failed/{i}");
        let e = store
            .put_manifest(&repo, &manifest(M1, &[B1], &[], None), Some("t"))
            .await
            .unwrap_err();
        assert!(matches!(e, MetaError::BlobUnknown(ref d) if d == B1), "{e}");
        store.link_blob(&repo, B1, 1).await.unwrap();
        // Cancelled somewhere in the middle.
        let repo = format!("cancelled/{i}");
        let s = store.clone();
        let mount = tokio::spawn(async move { s.mount_blob("r", &repo, B1).await });
        for _ in 0..i % 4 {
            tokio::task::yield_now().await;
        }
        mount.abort();
        let _ = mount.await;
        store
            .link_blob(&format!("cancelled/{i}"), B1, 1)
            .await
            .unwrap();
    }
    assert_eq!(store.catalog(None, 1000).await.unwrap().len(), 81);
}

/// A blob stored away from its canonical key keeps its location; the first upload of a digest
/// to be recorded wins, and later ones learn where the blob is so they can drop their copy.
async fn blob_locations(store: MetaStore) {
    assert_eq!(
        store
            .link_blob_at("r", B1, 7, Some("data/first"))
            .await
            .unwrap()
            .as_deref(),
        Some("data/first")
    );
    assert_eq!(
        store
            .link_blob_at("s", B1, 7, Some("data/second"))
            .await
            .unwrap()
            .as_deref(),
        Some("data/first")
    );
    for repo in ["r", "s"] {
        assert_eq!(
            store.blob_entry(repo, B1).await.unwrap(),
            Some(berth_meta::BlobEntry {
                size: 7,
                location: Some("data/first".into())
            })
        );
    }
    assert_eq!(store.link_blob_at("r", B2, 3, None).await.unwrap(), None);
    assert_eq!(store.blob_entry("t", B1).await.unwrap(), None);
}

/// A lease is held by one holder at a time, renewable by it, and free for others once expired
/// or released; racing takers get it exactly once.
async fn leases(store: MetaStore) {
    use std::time::Duration;
    let long = Duration::from_secs(60);
    assert!(store.try_lease("job", "a", long).await.unwrap());
    assert!(!store.try_lease("job", "b", long).await.unwrap());
    assert!(store.try_lease("job", "a", long).await.unwrap(), "renewal");
    assert!(store.try_lease("other", "b", long).await.unwrap());
    store.release_lease("job", "b").await.unwrap();
    assert!(
        !store.try_lease("job", "b", long).await.unwrap(),
        "b never held it"
    );
    store.release_lease("job", "a").await.unwrap();
    assert!(
        store
            .try_lease("job", "b", Duration::from_millis(1))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(store.try_lease("job", "c", long).await.unwrap(), "expired");

    let mut racers = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        racers.push(tokio::spawn(async move {
            s.try_lease("race", &format!("r{i}"), long).await.unwrap()
        }));
    }
    let mut won = 0;
    for r in racers {
        won += r.await.unwrap() as usize;
    }
    assert_eq!(won, 1);
}

/// Jobs: one pending job per key; claims never hand one job to two workers; a lost lease is
/// taken over, and the old holder can no longer finish; failures retry later or give up.
async fn job_queue(store: MetaStore) {
    use std::time::Duration;
    let lease = Duration::from_secs(60);
    assert!(
        store
            .enqueue_job("scan", "r@sha256:1", Some("{}"))
            .await
            .unwrap()
    );
    assert!(
        !store.enqueue_job("scan", "r@sha256:1", None).await.unwrap(),
        "already pending"
    );
    assert!(store.enqueue_job("scan", "r@sha256:2", None).await.unwrap());
    assert!(
        store
            .enqueue_job("other", "r@sha256:1", None)
            .await
            .unwrap()
    );

    let j1 = store.claim_job("scan", "w1", lease).await.unwrap().unwrap();
    assert_eq!(
        (j1.key.as_str(), j1.payload.as_deref(), j1.attempts),
        ("r@sha256:1", Some("{}"), 1)
    );
    assert!(
        !store.enqueue_job("scan", "r@sha256:1", None).await.unwrap(),
        "running counts as pending"
    );
    let j2 = store.claim_job("scan", "w2", lease).await.unwrap().unwrap();
    assert_eq!(j2.key, "r@sha256:2");
    assert_eq!(store.claim_job("scan", "w3", lease).await.unwrap(), None);

    assert!(store.finish_job(j1.id, "w1").await.unwrap());
    assert!(
        !store.finish_job(j1.id, "w1").await.unwrap(),
        "finished once"
    );
    assert!(
        store.enqueue_job("scan", "r@sha256:1", None).await.unwrap(),
        "done jobs may be queued again"
    );

    // A failure with a retry comes back later; without one it is given up.
    assert!(
        store
            .fail_job(j2.id, "w2", "boom", Some(Duration::from_secs(3600)))
            .await
            .unwrap()
    );
    assert_eq!(
        store.job_state("scan", "r@sha256:2").await.unwrap(),
        Some(("queued".into(), Some("boom".into())))
    );
    let j3 = store.claim_job("scan", "w1", lease).await.unwrap().unwrap();
    assert_eq!(j3.key, "r@sha256:1", "the delayed retry is not due yet");
    assert!(store.fail_job(j3.id, "w1", "fatal", None).await.unwrap());
    let counts = store.job_counts("scan").await.unwrap();
    assert_eq!((counts.queued, counts.done, counts.failed), (1, 1, 1));

    // An expired lease is taken over; the old holder can neither renew nor finish.
    store.enqueue_job("lease", "k", None).await.unwrap();
    let old = store
        .claim_job("lease", "dead", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let new = store
        .claim_job("lease", "alive", lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((new.id, new.attempts), (old.id, 2));
    assert!(!store.renew_job(old.id, "dead", lease).await.unwrap());
    assert!(!store.finish_job(old.id, "dead").await.unwrap());
    assert!(store.renew_job(new.id, "alive", lease).await.unwrap());
    assert!(store.finish_job(new.id, "alive").await.unwrap());

    // Many workers racing over many jobs: each job is claimed exactly once.
    for i in 0..40 {
        store
            .enqueue_job("race", &format!("k{i}"), None)
            .await
            .unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..6 {
        let s = store.clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = s
                .claim_job("race", &format!("w{w}"), Duration::from_secs(60))
                .await
                .unwrap()
            {
                got.push(j.key.clone());
                assert!(s.finish_job(j.id, &format!("w{w}")).await.unwrap());
            }
            got
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 40);
    assert_eq!(store.job_counts("race").await.unwrap().done, 40);
}

/// The vulnerability database pointer moves by compare-and-swap only; feed status keeps the last
/// success and validators across failures, and a `304` keeps the validators.
async fn vulndb_records(store: MetaStore) {
    use berth_meta::vulndb::VulnDbSnapshot;
    assert_eq!(store.vulndb_snapshot().await.unwrap(), None);
    let snap = |d: &str| VulnDbSnapshot {
        digest: d.into(),
        size: 10,
        version: format!("v-{d}"),
        created_at: 1000,
    };
    assert!(
        !store
            .swap_vulndb_snapshot(Some(B1), &snap(B1))
            .await
            .unwrap()
    );
    assert!(store.swap_vulndb_snapshot(None, &snap(B1)).await.unwrap());
    assert!(
        !store.swap_vulndb_snapshot(None, &snap(B2)).await.unwrap(),
        "already set"
    );
    assert!(
        !store
            .swap_vulndb_snapshot(Some(M1), &snap(B2))
            .await
            .unwrap(),
        "stale base"
    );
    assert!(
        store
            .swap_vulndb_snapshot(Some(B1), &snap(B2))
            .await
            .unwrap()
    );
    assert_eq!(store.vulndb_snapshot().await.unwrap(), Some(snap(B2)));

    let mut racers = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        racers.push(tokio::spawn(async move {
            s.swap_vulndb_snapshot(Some(B2), &snap(&format!("d{i}")))
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for r in racers {
        won += r.await.unwrap() as usize;
    }
    assert_eq!(won, 1);

    assert_eq!(store.vulndb_feed("osv").await.unwrap(), None);
    store
        .vulndb_feed_failed("osv", 5, "connection refused")
        .await
        .unwrap();
    let f = store.vulndb_feed("osv").await.unwrap().unwrap();
    assert_eq!((f.last_attempt, f.last_success), (Some(5), None));
    assert_eq!(f.error.as_deref(), Some("connection refused"));
    store
        .vulndb_feed_succeeded("osv", 6, Some((Some("\"e1\""), Some("Mon"))), Some(42))
        .await
        .unwrap();
    store
        .vulndb_feed_failed("osv", 7, "truncated")
        .await
        .unwrap();
    let f = store.vulndb_feed("osv").await.unwrap().unwrap();
    assert_eq!(
        (f.last_attempt, f.last_success, f.records),
        (Some(7), Some(6), Some(42))
    );
    assert_eq!(f.etag.as_deref(), Some("\"e1\""));
    store
        .vulndb_feed_succeeded("osv", 8, None, None)
        .await
        .unwrap();
    let f = store.vulndb_feed("osv").await.unwrap().unwrap();
    assert_eq!(
        (f.last_success, f.error, f.records),
        (Some(8), None, Some(42))
    );
    assert_eq!(f.last_modified.as_deref(), Some("Mon"));
    store
        .vulndb_feed_failed("alpine", 9, &"x".repeat(10_000))
        .await
        .unwrap();
    let all = store.vulndb_feeds().await.unwrap();
    assert_eq!(
        all.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["alpine", "osv"]
    );
    assert_eq!(all[0].error.as_ref().unwrap().len(), 2000);
}

async fn scan_records(store: MetaStore) {
    use berth_meta::scans::{AllowedVuln, ImageScan, NewScanEvent, Rematch, ScanPolicy};
    assert_eq!(store.layer_index(B1, 1).await.unwrap(), None);
    store.put_layer_index(B1, 1, B2, 77).await.unwrap();
    // The first writer wins; the same layer and version is the same content.
    store.put_layer_index(B1, 1, M1, 5).await.unwrap();
    assert_eq!(
        store.layer_index(B1, 1).await.unwrap(),
        Some((B2.to_string(), 77))
    );
    assert_eq!(store.layer_index(B1, 2).await.unwrap(), None);

    let scan = |digest: &str, db: &str| ImageScan {
        digest: digest.into(),
        analyzer_version: 1,
        sbom_digest: B2.into(),
        sbom_size: 10,
        inventory: "{\"packages\":[]}".into(),
        packages: 0,
        db_version: db.into(),
        findings: "[]".into(),
        summary: "{}".into(),
        max_level: 0,
        scanned_at: 1,
        matched_at: 1,
    };
    for d in [M1, M2, IDX] {
        store.put_image_scan(&scan(d, "v1")).await.unwrap();
    }
    // Replacing keeps one row.
    store.put_image_scan(&scan(IDX, "v2")).await.unwrap();
    assert_eq!(
        store.image_scan(IDX).await.unwrap().unwrap().db_version,
        "v2"
    );
    assert_eq!(store.image_scan_counts("v2").await.unwrap(), (3, 2));
    let stale = store.stale_image_scans("v2", "", 10).await.unwrap();
    assert_eq!(
        stale.iter().map(|s| s.digest.as_str()).collect::<Vec<_>>(),
        [M1, M2]
    );
    let page = store.stale_image_scans("v2", M1, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].digest, M2);

    let rematch = |digest: &str| Rematch {
        digest: digest.into(),
        from_version: "v1".into(),
        db_version: "v2".into(),
        findings: "[[\"k\",\"CVE-1\",4]]".into(),
        summary: "{\"high\":1}".into(),
        max_level: 4,
        events: vec![NewScanEvent {
            kind: "appeared",
            vuln_id: "CVE-1".into(),
            package: "PyPI/urllib3@1.24.1".into(),
            level: "high".into(),
        }],
    };
    let batch = [rematch(M1), rematch(M2)];
    assert_eq!(store.apply_rematches(&batch).await.unwrap(), 2);
    // A second replica that matched the same images against the same versions applies nothing
    // and records no event twice.
    assert_eq!(store.apply_rematches(&batch).await.unwrap(), 0);
    let m1 = store.image_scan(M1).await.unwrap().unwrap();
    assert_eq!((m1.db_version.as_str(), m1.max_level), ("v2", 4));
    assert!(
        store
            .stale_image_scans("v2", "", 10)
            .await
            .unwrap()
            .is_empty()
    );
    let events = store.scan_events(0, None, 100).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].digest, M1);
    assert_eq!(events[0].kind, "appeared");
    assert_eq!(events[0].db_version, "v2");
    assert!(events[0].id < events[1].id);
    assert_eq!(
        store
            .scan_events(events[0].id, None, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    let only_m2 = store
        .scan_events(0, Some(&[M2.to_string()]), 100)
        .await
        .unwrap();
    assert_eq!(only_m2.len(), 1);
    assert_eq!(only_m2[0].digest, M2);
    assert!(
        store
            .scan_events(0, Some(&[]), 100)
            .await
            .unwrap()
            .is_empty()
    );

    store.link_blob("acme/app", B1, 1).await.unwrap();
    store.link_blob("acme/other", B1, 1).await.unwrap();
    store
        .put_manifest("acme/app", &manifest(M1, &[B1], &[], None), None)
        .await
        .unwrap();
    store
        .put_manifest("acme/other", &manifest(M1, &[B1], &[], None), None)
        .await
        .unwrap();
    assert_eq!(
        store.repositories_with_manifest(M1).await.unwrap(),
        ["acme/app", "acme/other"]
    );
    assert_eq!(
        store
            .repository_manifest_digests("acme/app", 10)
            .await
            .unwrap(),
        [M1]
    );

    assert_eq!(store.scan_policy("org:acme").await.unwrap(), None);
    let p = ScanPolicy {
        scan_on_push: Some(false),
        block_level: Some("high".into()),
        updated_at: 5,
        updated_by: "admin".into(),
    };
    store.put_scan_policy("org:acme", &p).await.unwrap();
    assert_eq!(
        store.scan_policy("org:acme").await.unwrap(),
        Some(p.clone())
    );
    let inherit = ScanPolicy {
        scan_on_push: None,
        block_level: None,
        ..p
    };
    store.put_scan_policy("org:acme", &inherit).await.unwrap();
    assert_eq!(store.scan_policy("org:acme").await.unwrap(), Some(inherit));

    let a = AllowedVuln {
        vuln_id: "CVE-2019-11236".into(),
        reason: "not reachable".into(),
        expires_at: Some(10),
        created_by: "admin".into(),
        created_at: 1,
    };
    store.put_allowed_vuln("repo:acme/app", &a).await.unwrap();
    store
        .put_allowed_vuln(
            "repo:acme/app",
            &AllowedVuln {
                expires_at: None,
                ..a.clone()
            },
        )
        .await
        .unwrap();
    let list = store.scan_allowlist("repo:acme/app").await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].expires_at, None);
    assert!(store.scan_allowlist("org:acme").await.unwrap().is_empty());
    assert!(
        store
            .delete_allowed_vuln("repo:acme/app", &a.vuln_id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_allowed_vuln("repo:acme/app", &a.vuln_id)
            .await
            .unwrap()
    );
}

/// A blob or manifest that a manifest of the repository references cannot be deleted until that
/// manifest is; a manifest's references in another repository do not count.
async fn referenced_content_is_not_deleted(store: MetaStore) {
    for repo in ["r", "other"] {
        store.link_blob(repo, B1, 1).await.unwrap();
        store
            .put_manifest(repo, &manifest(M1, &[B1], &[], None), Some("v1"))
            .await
            .unwrap();
    }
    store
        .put_manifest("r", &manifest(IDX, &[], &[M1], None), Some("multi"))
        .await
        .unwrap();
    let referenced = |e: MetaError, digest: &str, by: &str| match e {
        MetaError::Referenced { digest: d, by: b } => {
            assert_eq!((d.as_str(), b.as_str()), (digest, by))
        }
        e => panic!("{e:?}"),
    };
    referenced(store.unlink_blob("r", B1).await.unwrap_err(), B1, M1);
    referenced(store.delete_manifest("r", M1).await.unwrap_err(), M1, IDX);
    // Nothing was changed by the refusals.
    assert!(store.blob_entry("r", B1).await.unwrap().is_some());
    assert_eq!(
        store.resolve_tag("r", "v1").await.unwrap().as_deref(),
        Some(M1)
    );
    // In the other repository nothing references M1: it goes, and then its blob may go.
    assert_eq!(
        store.delete_manifest("other", M1).await.unwrap().unwrap(),
        ["v1"]
    );
    assert!(store.unlink_blob("other", B1).await.unwrap());
    // Top down in "r": the index, then the manifest, then the blob.
    assert_eq!(
        store.delete_manifest("r", IDX).await.unwrap().unwrap(),
        ["multi"]
    );
    assert_eq!(
        store.delete_manifest("r", M1).await.unwrap().unwrap(),
        ["v1"]
    );
    assert!(store.unlink_blob("r", B1).await.unwrap());
    assert!(!store.unlink_blob("r", B1).await.unwrap());
}

macro_rules! suite {
    ($($backend:ident),*: $tests:tt) => {
        $( suite!(@backend $backend $tests); )*
    };
    (@backend $backend:ident [$($test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (_guard, store) = super::$backend().await;
                    super::$test(store).await;
                }
            )*
        }
    };
}

suite!(sqlite, postgres: [
    manifests_need_their_blobs_and_children,
    tags_move_list_and_delete,
    catalog_referrers_and_mounts,
    upload_sessions,
    listings_are_bytewise,
    concurrent_links_and_mounts,
    concurrent_tag_pushes,
    concurrent_pushes_and_deletes,
    referenced_content_is_not_deleted,
    failed_and_cancelled_writes_release_the_database,
    blob_locations,
    leases,
    job_queue,
    vulndb_records,
    scan_records,
]);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_reopens_and_migrates_once() {
    let url = tokio::task::spawn_blocking(|| PgServer::shared().create_database())
        .await
        .unwrap();
    // Replicas starting together: the migration runs once, under sqlx's advisory lock.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.spawn(async move { MetaStore::connect(&url).await.unwrap() });
    }
    let mut stores = Vec::new();
    while let Some(s) = tasks.join_next().await {
        stores.push(s.unwrap());
    }
    stores[0].link_blob("x", B1, 5).await.unwrap();
    for s in &stores {
        assert_eq!(s.blob_in_repo("x", B1).await.unwrap(), Some(5));
        s.close().await;
    }
    let s = MetaStore::connect(&url).await.unwrap();
    assert_eq!(s.blob_in_repo("x", B1).await.unwrap(), Some(5));
}

/// Manifest and upload bytes survive BYTEA exactly, including NUL and non-UTF-8 bytes, and NULLs
/// come back as `None`.
#[tokio::test]
async fn postgres_keeps_bytes_exact() {
    let (_g, store) = postgres().await;
    let all: Vec<u8> = (0..=255u8).chain([0, 0, 0xff]).collect();
    store.link_blob("r", B1, 1).await.unwrap();
    let mut m = manifest(M1, &[B1], &[], None);
    m.content = all.clone();
    m.annotations = Some("{\"k\":\"v\"}".into());
    store.put_manifest("r", &m, Some("t")).await.unwrap();
    assert_eq!(
        store.get_manifest("r", M1).await.unwrap().unwrap().content,
        all
    );
    store.create_upload("u", "r").await.unwrap();
    assert_eq!(
        store.get_upload("u").await.unwrap().unwrap().hash_state,
        None
    );
    store
        .update_upload("u", u64::MAX >> 1, &all, None)
        .await
        .unwrap();
    let row = store.get_upload("u").await.unwrap().unwrap();
    assert_eq!((row.offset, row.hash_state), (u64::MAX >> 1, Some(all)));
}

/// The server going away makes calls fail with `Unavailable` (which the HTTP edge answers with
/// 503) once the pool's acquire timeout (5 s) has passed, and the same store works again once the
/// server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unavailable_then_back() {
    let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let url = pg.create_database();
    let store = MetaStore::connect(&url).await.unwrap();
    store.link_blob("r", B1, 1).await.unwrap();
    store.ping().await.unwrap();

    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let unavailable = |what: &str, r: Result<(), MetaError>| match r {
        Err(MetaError::Unavailable(_)) => {}
        other => panic!("{what} with the server stopped: {other:?}"),
    };
    unavailable("ping", store.ping().await);
    unavailable("link_blob", store.link_blob("r", B2, 2).await);
    unavailable("connect", MetaStore::connect(&url).await.map(|_| ()));

    let pg = tokio::task::spawn_blocking(move || {
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.blob_in_repo("r", B1).await.unwrap(), Some(1));
    store.link_blob("r", B2, 2).await.unwrap();
    store
        .put_manifest("r", &manifest(M1, &[B1, B2], &[], None), Some("t"))
        .await
        .unwrap();
    assert_eq!(
        store.resolve_tag("r", "t").await.unwrap().as_deref(),
        Some(M1)
    );
    store.close().await;
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
