//! One storage suite, run against the local filesystem and a real S3 server (Garage): what the
//! services rely on, whichever backend holds the bytes.

use std::time::Duration;

use berth_oci::{Algorithm, ByteRange, Digest};
use berth_storage::{
    BlobStore, ByteStream, FsStore, S3Config, S3Store, StorageError, UploadCursor,
};
use berth_testkit::Garage;
use bytes::Bytes;
use futures::StreamExt;

const MIB: usize = 1 << 20;
const LIMIT: u64 = 1 << 40;

/// Bytes that differ everywhere, so a part in the wrong place cannot hash right.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A body delivered in chunks of the given sizes (the last takes the rest).
fn body_in(bytes: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

fn failing_body(prefix: &[u8]) -> ByteStream {
    Box::pin(futures::stream::iter(vec![
        Ok(Bytes::copy_from_slice(prefix)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]))
}

async fn read(
    store: &BlobStore,
    d: &Digest,
    location: Option<&str>,
    len: u64,
    range: Option<ByteRange>,
) -> Vec<u8> {
    let r = store
        .open_blob(d, location, len)
        .await
        .unwrap()
        .expect("blob exists");
    let mut out = Vec::new();
    let mut s = r.stream(range);
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// A backend for one test, and a way to open a second handle on the same storage (another
/// replica, or the same process after a restart).
struct Backend {
    store: BlobStore,
    reopen: Box<dyn Fn() -> BlobStore + Send + Sync>,
    _dir: Option<tempfile::TempDir>,
}

fn fs() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let open = move || BlobStore::from(FsStore::open(&path, false).unwrap());
    Backend {
        store: open(),
        reopen: Box::new(open),
        _dir: Some(dir),
    }
}

fn s3_config(g: &Garage, bucket: String) -> S3Config {
    S3Config {
        endpoint: Some(g.endpoint()),
        bucket,
        region: berth_testkit::garage::REGION.into(),
        prefix: "registry".into(),
        access_key_id: Some(g.access_key_id().into()),
        secret_access_key: Some(g.secret_access_key().into()),
        part_size: 5 * MIB,
        virtual_hosted_style: false,
    }
}

fn s3() -> Backend {
    let g = Garage::shared();
    let config = s3_config(g, g.create_bucket());
    let open = move || BlobStore::from(S3Store::open(&config).unwrap());
    Backend {
        store: open(),
        reopen: Box::new(open),
        _dir: None,
    }
}

async fn monolithic_puts_verify_before_publishing(b: Backend) {
    let s = &b.store;
    for (len, chunk) in [(0usize, 1usize), (1000, 7), (12 * MIB + 3, 64 << 10)] {
        let bytes = data(len, len as u64);
        let d = Digest::sha256_of(&bytes);
        assert_eq!(
            s.put_blob(&d, body_in(&bytes, chunk), LIMIT).await.unwrap(),
            len as u64
        );
        assert_eq!(s.blob_size(&d, None).await.unwrap(), Some(len as u64));
        assert_eq!(read(s, &d, None, len as u64, None).await, bytes);
        if len > 10 {
            let r = ByteRange { start: 3, end: 9 };
            assert_eq!(read(s, &d, None, len as u64, Some(r)).await, &bytes[3..10]);
        }
    }
    // A body that does not hash to its digest leaves nothing, whatever its size.
    for len in [10, 11 * MIB] {
        let bytes = data(len, 99);
        let wrong = Digest::sha256_of(b"something else");
        let e = s.put_blob(&wrong, body_in(&bytes, MIB), LIMIT).await;
        assert!(
            matches!(e, Err(StorageError::DigestMismatch { .. })),
            "{e:?}"
        );
        assert_eq!(s.blob_size(&wrong, None).await.unwrap(), None);
    }
    // So does a body that breaks off, or grows past the limit.
    let bytes = data(6 * MIB, 5);
    let d = Digest::sha256_of(&bytes);
    let e = s.put_blob(&d, failing_body(&bytes), LIMIT).await;
    assert!(matches!(e, Err(StorageError::Body(_))), "{e:?}");
    let e = s.put_blob(&d, body_in(&bytes, MIB), MIB as u64).await;
    assert!(matches!(e, Err(StorageError::TooLarge { .. })), "{e:?}");
    assert_eq!(s.blob_size(&d, None).await.unwrap(), None);
    assert!(s.delete_blob(&d, None).await.is_ok_and(|existed| !existed));
}

/// A chunked upload continued by different handles (replicas), chunk by chunk, in sizes that
/// straddle S3's part boundaries, is assembled byte-exact.
async fn chunked_uploads_continue_anywhere(b: Backend) {
    let bytes = data(17 * MIB + 12345, 1);
    let d = Digest::sha256_of(&bytes);
    let id = uuid::Uuid::new_v4().to_string();
    b.store.create_upload(&id).await.unwrap();
    let cuts = [0, 1, 3 * MIB, 3 * MIB + 10, 9 * MIB, 10 * MIB, 15 * MIB + 1];
    let mut cursor: Option<UploadCursor> = None;
    for w in cuts.windows(2) {
        let replica = (b.reopen)();
        let start = Some(w[0] as u64);
        let c = replica
            .append(
                &id,
                cursor.clone(),
                start,
                body_in(&bytes[w[0]..w[1]], 100_000),
                LIMIT,
            )
            .await
            .unwrap();
        assert_eq!(c.offset, w[1] as u64);
        assert_eq!(
            replica.upload_offset(&id, Some(&c)).await.unwrap(),
            w[1] as u64
        );
        cursor = Some(c);
    }
    // A chunk that does not start where the upload stands changes nothing.
    let e = b
        .store
        .append(&id, cursor.clone(), Some(5), body_in(b"x", 1), LIMIT)
        .await;
    assert!(
        matches!(e, Err(StorageError::OffsetMismatch { .. })),
        "{e:?}"
    );
    // Nor does a chunk that breaks off: the session resumes from the saved cursor.
    let _ = b
        .store
        .append(
            &id,
            cursor.clone(),
            None,
            failing_body(&bytes[15 * MIB + 1..]),
            LIMIT,
        )
        .await
        .unwrap_err();
    // The filesystem keeps what arrived of it (its file is the truth); S3 keeps whole requests.
    let last = b.store.upload_offset(&id, cursor.as_ref()).await.unwrap() as usize;
    assert!(last >= cuts[cuts.len() - 1]);
    let (size, location) = (b.reopen)()
        .finish_upload(
            &id,
            cursor,
            Some(last as u64),
            Some(body_in(&bytes[last..], 777_777)),
            &d,
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(
        b.store.blob_size(&d, location.as_deref()).await.unwrap(),
        Some(size)
    );
    assert_eq!(
        read(&b.store, &d, location.as_deref(), size, None).await,
        bytes
    );
    let r = ByteRange {
        start: 5 * MIB as u64 - 2,
        end: 5 * MIB as u64 + 2,
    };
    assert_eq!(
        read(&b.store, &d, location.as_deref(), size, Some(r)).await,
        &bytes[5 * MIB - 2..=5 * MIB + 2]
    );
    let leftovers: Vec<_> = b.store.list_uploads().await.unwrap();
    assert!(
        leftovers.iter().all(|(name, _)| name != &id),
        "upload data left behind: {leftovers:?}"
    );
}

/// Finishing with the wrong digest publishes nothing and removes the session's data; so does
/// cancelling. Small sessions (no full part) and large ones (a multipart upload) alike.
async fn failed_and_cancelled_uploads_leave_nothing(b: Backend) {
    for len in [100, 7 * MIB] {
        let bytes = data(len, 7);
        let wrong = Digest::sha256_of(b"not it");
        let id = uuid::Uuid::new_v4().to_string();
        b.store.create_upload(&id).await.unwrap();
        let c = b
            .store
            .append(&id, None, Some(0), body_in(&bytes, MIB), LIMIT)
            .await
            .unwrap();
        let e = b
            .store
            .finish_upload(&id, Some(c), None, None, &wrong, LIMIT)
            .await;
        assert!(
            matches!(e, Err(StorageError::DigestMismatch { .. })),
            "{e:?}"
        );
        assert_eq!(b.store.blob_size(&wrong, None).await.unwrap(), None);
        assert!(
            b.store
                .list_uploads()
                .await
                .unwrap()
                .iter()
                .all(|(n, _)| n != &id)
        );

        let id = uuid::Uuid::new_v4().to_string();
        b.store.create_upload(&id).await.unwrap();
        let c = b
            .store
            .append(&id, None, Some(0), body_in(&bytes, MIB), LIMIT)
            .await
            .unwrap();
        b.store.delete_upload(&id, Some(&c)).await.unwrap();
        b.store.delete_upload(&id, Some(&c)).await.unwrap();
        assert!(
            b.store
                .list_uploads()
                .await
                .unwrap()
                .iter()
                .all(|(n, _)| n != &id)
        );
    }
}

/// A session hashed as SHA-256 may still be finished with a SHA-512 digest: the data is read
/// back and hashed again before it counts.
async fn other_algorithm_digests_are_verified(b: Backend) {
    for len in [1000, 6 * MIB] {
        let bytes = data(len, 3);
        let d = Digest::of(Algorithm::Sha512, &bytes);
        let id = uuid::Uuid::new_v4().to_string();
        b.store.create_upload(&id).await.unwrap();
        let c = b
            .store
            .append(&id, None, None, body_in(&bytes, MIB), LIMIT)
            .await
            .unwrap();
        let (size, location) = b
            .store
            .finish_upload(&id, Some(c), None, None, &d, LIMIT)
            .await
            .unwrap();
        assert_eq!(
            read(&b.store, &d, location.as_deref(), size, None).await,
            bytes
        );
    }
}

/// A blob larger than one ranged GET (S3 reads 16 MiB from the start of the requested range at
/// a time, two GETs in flight) reads back byte-exact, whole and in ranges of one byte, exactly
/// one or two GETs, a GET and a byte, and several GETs; a reader dropped half-way leaves
/// nothing in the way of the next.
async fn large_blobs_read_back_in_any_range(b: Backend) {
    const SEG: usize = 16 * MIB;
    let len = 2 * SEG + 5 * MIB + 77;
    let bytes = data(len, 8);
    let d = Digest::sha256_of(&bytes);
    let s = &b.store;
    s.put_blob(&d, body_in(&bytes, 4 * MIB), LIMIT)
        .await
        .unwrap();
    let n = len as u64;
    assert_eq!(read(s, &d, None, n, None).await, bytes);
    for (start, end) in [
        (0, SEG - 1),
        (0, 2 * SEG - 1),
        (0, SEG),
        (SEG - 1, SEG),
        (SEG, 2 * SEG - 1),
        (SEG - 10, 2 * SEG + 10),
        (3, len - 1),
        (len - 1, len - 1),
    ] {
        let r = ByteRange {
            start: start as u64,
            end: end as u64,
        };
        let got = read(s, &d, None, n, Some(r)).await;
        assert!(got == bytes[start..=end], "range {start}-{end}");
    }
    let reader = s.open_blob(&d, None, n).await.unwrap().unwrap();
    let mut stream = reader.stream(None);
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first, bytes[..first.len()]);
    drop(stream);
    assert_eq!(read(s, &d, None, n, None).await, bytes);
}

macro_rules! suite {
    ($($backend:ident),*: $tests:tt) => {
        $( suite!(@backend $backend $tests); )*
    };
    (@backend $backend:ident [$($test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::$backend()).await;
                }
            )*
        }
    };
}

suite!(fs, s3: [
    monolithic_puts_verify_before_publishing,
    chunked_uploads_continue_anywhere,
    failed_and_cancelled_uploads_leave_nothing,
    other_algorithm_digests_are_verified,
    large_blobs_read_back_in_any_range,
]);

/// With redirects, a client fetches the blob itself from a presigned URL, ranges included.
#[tokio::test]
async fn s3_presigned_urls_serve_the_blob() {
    let b = s3();
    let bytes = data(3 * MIB, 11);
    let d = Digest::sha256_of(&bytes);
    b.store
        .put_blob(&d, body_in(&bytes, MIB), LIMIT)
        .await
        .unwrap();
    let url = b
        .store
        .presigned_get(&d, None, Duration::from_secs(60))
        .await
        .unwrap()
        .expect("S3 signs URLs");
    let client = reqwest::Client::new();
    let got = client.get(url.clone()).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), bytes);
    let got = client
        .get(url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 206);
    assert_eq!(got.bytes().await.unwrap(), &bytes[10..20]);
    // The filesystem has nothing to redirect to.
    assert!(
        fs().store
            .presigned_get(&d, None, Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
}

/// While the object store is down, operations fail quickly with `Unavailable`; when it is back
/// they work again without a restart, and a session started before continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_fails_fast_and_recovers() {
    let g = Garage::start();
    let store = BlobStore::from(S3Store::open(&s3_config(&g, g.create_bucket())).unwrap());
    store.ready().await.unwrap();
    let bytes = data(6 * MIB, 2);
    let d = Digest::sha256_of(&bytes);
    let id = uuid::Uuid::new_v4().to_string();
    let c = store
        .append(&id, None, None, body_in(&bytes[..5 * MIB + 1], MIB), LIMIT)
        .await
        .unwrap();

    g.stop();
    let started = std::time::Instant::now();
    let e = store.ready().await.unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    let e = store
        .put_blob(&d, body_in(&bytes, MIB), LIMIT)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failing took {:?}",
        started.elapsed()
    );

    g.start_again();
    store.ready().await.unwrap();
    let (size, location) = store
        .finish_upload(
            &id,
            Some(c),
            None,
            Some(body_in(&bytes[5 * MIB + 1..], MIB)),
            &d,
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(
        read(&store, &d, location.as_deref(), size, None).await,
        bytes
    );
}
