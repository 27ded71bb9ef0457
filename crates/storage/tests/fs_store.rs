use berth_oci::{Algorithm, ByteRange, Digest};
use berth_storage::{ByteStream, FsStore, StorageError};
use bytes::Bytes;
use futures::StreamExt;

fn body(parts: &[&[u8]]) -> ByteStream {
    let v: Vec<Result<Bytes, std::io::Error>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    Box::pin(futures::stream::iter(v))
}

fn failing_body(prefix: &[u8]) -> ByteStream {
    let v = vec![
        Ok(Bytes::copy_from_slice(prefix)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    Box::pin(futures::stream::iter(v))
}

async fn read_all(store: &FsStore, d: &Digest, range: Option<ByteRange>) -> Vec<u8> {
    let r = store.open_blob(d).await.unwrap().expect("blob exists");
    let mut out = Vec::new();
    let mut s = Box::pin(r.stream(range));
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

fn uploads_dir_is_empty(store: &FsStore) -> bool {
    std::fs::read_dir(store.root().join("uploads"))
        .unwrap()
        .next()
        .is_none()
}

#[tokio::test]
async fn monolithic_put_verifies_and_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path(), true).unwrap();
    let d = Digest::sha256_of(b"hello world");
    assert_eq!(
        store
            .put_blob(&d, body(&[b"hello ", b"world"]), 1 << 20)
            .await
            .unwrap(),
        11
    );
    assert_eq!(store.blob_size(&d).await.unwrap(), Some(11));
    assert_eq!(read_all(&store, &d, None).await, b"hello world");
    assert_eq!(
        read_all(&store, &d, Some(ByteRange { start: 6, end: 10 })).await,
        b"world"
    );
    // Storing it again is idempotent.
    store
        .put_blob(&d, body(&[b"hello world"]), 1 << 20)
        .await
        .unwrap();
    assert!(uploads_dir_is_empty(&store));
}

#[tokio::test]
async fn mismatch_truncation_and_size_limit_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path(), false).unwrap();
    let d = Digest::sha256_of(b"expected");
    let e = store
        .put_blob(&d, body(&[b"something else"]), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::DigestMismatch { .. }), "{e}");
    let e = store
        .put_blob(&d, failing_body(b"expec"), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Body(_)), "{e}");
    let e = store
        .put_blob(&d, body(&[b"expected"]), 4)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::TooLarge { .. }), "{e}");
    assert_eq!(store.blob_size(&d).await.unwrap(), None);
    assert!(uploads_dir_is_empty(&store));
}

#[tokio::test]
async fn chunked_upload_resumes_with_and_without_saved_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path(), true).unwrap();
    store.create_upload("u1").await.unwrap();
    let c1 = store
        .append("u1", None, Some(0), body(&[b"abc"]), 100)
        .await
        .unwrap();
    assert_eq!(c1.offset, 3);
    // Wrong start offset: refused, nothing appended.
    let e = store
        .append("u1", Some(c1.clone()), Some(1), body(&[b"zzz"]), 100)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StorageError::OffsetMismatch {
                expected: 3,
                got: 1
            }
        ),
        "{e}"
    );
    // With the saved state.
    let c2 = store
        .append("u1", Some(c1.clone()), Some(3), body(&[b"def"]), 100)
        .await
        .unwrap();
    assert_eq!(c2.offset, 6);
    // A stale cursor (as after a crash) forces a rehash, which must give the same answer.
    let c3 = store
        .append("u1", Some(c1), None, body(&[b"ghi"]), 100)
        .await
        .unwrap();
    assert_eq!(store.upload_offset("u1").await.unwrap(), 9);
    let d = Digest::sha256_of(b"abcdefghijkl");
    let size = store
        .finish_upload("u1", Some(c3), Some(9), Some(body(&[b"jkl"])), &d, 100)
        .await
        .unwrap();
    assert_eq!(size, 12);
    assert_eq!(read_all(&store, &d, None).await, b"abcdefghijkl");
    assert!(matches!(
        store.upload_offset("u1").await,
        Err(StorageError::UploadUnknown(_))
    ));
}

#[tokio::test]
async fn sha512_uploads_and_digest_mismatch_on_finish() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path(), false).unwrap();
    store.create_upload("a").await.unwrap();
    let c = store
        .append("a", None, None, body(&[b"data"]), 100)
        .await
        .unwrap();
    let d = Digest::of(Algorithm::Sha512, b"data");
    assert_eq!(
        store
            .finish_upload("a", Some(c), None, None, &d, 100)
            .await
            .unwrap(),
        4
    );
    assert_eq!(read_all(&store, &d, None).await, b"data");

    store.create_upload("b").await.unwrap();
    store
        .append("b", None, None, body(&[b"data"]), 100)
        .await
        .unwrap();
    let wrong = Digest::sha256_of(b"other");
    let e = store
        .finish_upload("b", None, None, None, &wrong, 100)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::DigestMismatch { .. }));
    assert_eq!(store.blob_size(&wrong).await.unwrap(), None);
    assert!(uploads_dir_is_empty(&store));
}

#[tokio::test]
async fn hostile_upload_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path(), false).unwrap();
    for id in ["", "../x", "a/b", ".", "..", &"a".repeat(65)] {
        assert!(store.create_upload(id).await.is_err(), "{id}");
        assert!(
            matches!(
                store.upload_offset(id).await,
                Err(StorageError::UploadUnknown(_))
            ),
            "{id}"
        );
    }
}

#[tokio::test]
async fn empty_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path(), false).unwrap();
    let d = Digest::sha256_of(b"");
    store.put_blob(&d, body(&[]), 10).await.unwrap();
    assert_eq!(read_all(&store, &d, None).await, b"");
}

/// Bodies arrive in frames of any size: empty ones (HTTP/2 may end a body with an empty DATA
/// frame), thousands of tiny ones, and large ones, in any mix; the blob is the bytes in order.
#[tokio::test]
async fn frames_of_any_size_including_empty() {
    let dir = tempfile::tempdir().unwrap();
    for fsync in [false, true] {
        let store = FsStore::open(dir.path(), fsync).unwrap();
        let tiny: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| i.to_le_bytes()[..3].to_vec())
            .collect();
        let big = vec![7u8; 300 << 10];
        let mut frames: Vec<&[u8]> = vec![b"", b"abc", b"", b""];
        frames.extend(tiny.iter().map(|t| t.as_slice()));
        frames.extend([&big[..], b"", b"def", b""]);
        let bytes: Vec<u8> = frames.concat();
        let d = Digest::sha256_of(&bytes);
        assert_eq!(
            store.put_blob(&d, body(&frames), 1 << 30).await.unwrap(),
            bytes.len() as u64
        );
        assert_eq!(read_all(&store, &d, None).await, bytes);
        // A body of nothing but empty frames is the empty blob.
        let e = Digest::sha256_of(b"");
        store.put_blob(&e, body(&[b"", b""]), 10).await.unwrap();
        assert_eq!(read_all(&store, &e, None).await, b"");
    }
}
