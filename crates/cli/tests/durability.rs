//! Restarts, crashes and expiry, against the real binary: upload sessions survive a restart, and
//! a `kill -9` at any moment leaves a consistent registry.

mod common;

use std::path::Path;
use std::time::Duration;

use common::TestServer;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn data(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn client_auth() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("admin:{}", common::ADMIN_PASSWORD))
    )
}

/// A client that sends the test admin's credentials with every request (Basic, which the
/// registry accepts beside bearer tokens).
fn client() -> Client {
    let value = client_auth();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value.parse().unwrap());
    Client::builder().default_headers(headers).build().unwrap()
}

fn abs(base: &str, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_owned()
    } else {
        format!("{base}{loc}")
    }
}

async fn push_blob(
    c: &Client,
    base: &str,
    repo: &str,
    bytes: &[u8],
) -> reqwest::Result<StatusCode> {
    let d = sha256(bytes);
    Ok(
        c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
            .body(bytes.to_vec())
            .send()
            .await?
            .status(),
    )
}

/// Checks every promise a crash must not break, through the API and on disk:
/// every tag resolves to a manifest, every manifest reached from a tag (and every child of an
/// index, and every referrer of each) is stored with bytes that hash to its digest, every blob
/// they reference is readable and hashes to its digest, and every stored blob file holds exactly
/// the bytes its name says. Returns how many tags were checked.
async fn check_invariants(c: &Client, server: &TestServer) -> usize {
    const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
                          application/vnd.oci.image.index.v1+json";
    let base = server.url();
    let get_json = |url: String| async move {
        let r = c.get(url).header("accept", ACCEPT).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()
    };
    let repos = get_json(format!("{base}/v2/_catalog")).await;
    let mut tagged = 0;
    for repo in repos["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags = get_json(format!("{base}/v2/{repo}/tags/list")).await;
        // References still to check, and the digests already checked.
        let mut todo: Vec<String> = tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        tagged += todo.len();
        let mut seen = std::collections::HashSet::new();
        while let Some(reference) = todo.pop() {
            let r = c
                .get(format!("{base}/v2/{repo}/manifests/{reference}"))
                .header("accept", ACCEPT)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::OK,
                "{repo}:{reference} points at a missing manifest"
            );
            let digest = r.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = r.bytes().await.unwrap();
            assert_eq!(
                sha256(&body),
                digest,
                "manifest bytes do not match their digest"
            );
            if !seen.insert(digest.clone()) {
                continue;
            }
            let m: Value = serde_json::from_slice(&body).unwrap();
            // An index: its children must be there too.
            for child in m["manifests"].as_array().into_iter().flatten() {
                todo.push(child["digest"].as_str().unwrap().to_owned());
            }
            let blobs = m["config"]
                .is_object()
                .then(|| m["config"].clone())
                .into_iter()
                .chain(m["layers"].as_array().into_iter().flatten().cloned());
            for d in blobs {
                let d = d["digest"].as_str().unwrap();
                let r = c
                    .get(format!("{base}/v2/{repo}/blobs/{d}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    StatusCode::OK,
                    "manifest {digest} references missing blob {d}"
                );
                assert_eq!(
                    sha256(&r.bytes().await.unwrap()),
                    d,
                    "blob {d} holds the wrong bytes"
                );
            }
            // Every referrer listed for it is stored.
            let referrers = get_json(format!("{base}/v2/{repo}/referrers/{digest}")).await;
            for r in referrers["manifests"].as_array().unwrap() {
                todo.push(r["digest"].as_str().unwrap().to_owned());
            }
        }
    }
    check_blob_files(
        &server
            .data_dir()
            .join("storage")
            .join("blobs")
            .join("sha256"),
    );
    tagged
}

fn check_blob_files(dir: &Path) {
    let Ok(prefixes) = std::fs::read_dir(dir) else {
        return;
    };
    for prefix in prefixes {
        for f in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().into_string().unwrap();
            let bytes = std::fs::read(f.path()).unwrap();
            assert_eq!(
                sha256(&bytes),
                format!("sha256:{name}"),
                "blob file {name} holds the wrong bytes"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_session_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(dir.path(), &[]);
    let c = client();
    let blob = data(1, 3_000_000);
    let d = sha256(&blob);
    let r = c
        .post(format!("{}/v2/acme/app/blobs/uploads/", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .patch(abs(&server.url(), &loc))
        .header("content-range", "0-999999")
        .body(blob[..1_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    server.restart();
    let r = c.get(abs(&server.url(), &loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-999999");
    let r = c
        .patch(abs(&server.url(), &loc))
        .header("content-range", "1000000-1999999")
        .body(blob[1_000_000..2_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // A crash rather than a clean stop: the saved hash state still matches the data.
    server.restart_after_kill9();
    let r = c
        .put(format!("{}{loc}?digest={d}", server.url()))
        .header("content-range", "2000000-2999999")
        .body(blob[2_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = c
        .get(format!("{}/v2/acme/app/blobs/{d}", server.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&got), d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_uploads_leaves_no_partial_blob() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(dir.path(), &[]);
    let c = client();
    let blob = data(2, 8 << 20);
    let d = sha256(&blob);
    // A chunked session with some data, and a monolithic upload cut off by the kill.
    let r = c
        .post(format!("{}/v2/acme/k/blobs/uploads/", server.url()))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    c.patch(abs(&server.url(), &loc))
        .body(blob[..2_000_000].to_vec())
        .send()
        .await
        .unwrap();
    let addr = server.host();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v2/acme/k/blobs/uploads/?digest={d} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {}\r\ncontent-length: {}\r\n\r\n",
        client_auth(),
        blob.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&blob[..4_000_000]).await.unwrap();
    // And a PATCH of the session cut off half-way.
    let mut p = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {}\r\ncontent-length: 3000000\r\n\r\n",
        client_auth(),
    );
    p.write_all(head.as_bytes()).await.unwrap();
    p.write_all(&blob[2_000_000..3_500_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart_after_kill9();
    drop((s, p));

    let r = c
        .get(format!("{}/v2/acme/k/blobs/{d}", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "a cut-off upload must not be visible"
    );
    // The session resumes from what it recorded: the first PATCH, and at most what of the cut
    // one reached the disk; finishing from there gives the right blob.
    let r = c.get(abs(&server.url(), &loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let range = r.headers()["range"].to_str().unwrap();
    let end: usize = range.strip_prefix("0-").unwrap().parse().unwrap();
    assert!((1_999_999..3_500_000).contains(&end), "range {range}");
    let r = c
        .put(format!("{}{loc}?digest={d}", server.url()))
        .body(blob[end + 1..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    check_invariants(&c, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_pushes_keeps_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(dir.path(), &[]);
    let c = client();
    for round in 0..3u32 {
        let base = server.url();
        let mut tasks = Vec::new();
        for worker in 0..4u32 {
            let (c, base) = (c.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..1000u32 {
                    let repo = format!("crash/w{worker}");
                    let config = format!(r#"{{"round":{round},"worker":{worker},"i":{i}}}"#).into_bytes();
                    let layer = data(round * 100_000 + worker * 1000 + i, 200_000);
                    let ok = async {
                        push_blob(&c, &base, &repo, &config).await?;
                        push_blob(&c, &base, &repo, &layer).await?;
                        let m = serde_json::to_vec(&json!({
                            "schemaVersion": 2,
                            "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
                            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer), "size": layer.len()}],
                        }))
                        .unwrap();
                        let (md, size) = (sha256(&m), m.len());
                        c.put(format!("{base}/v2/{repo}/manifests/r{round}-{i}"))
                            .header("content-type", OCI_MANIFEST)
                            .body(m)
                            .send()
                            .await?;
                        // Every third image also gets an index over it and a signature-like
                        // referrer, so that kills land in those writes too.
                        if i % 3 == 0 {
                            push_blob(&c, &base, &repo, b"{}").await?;
                            let index = serde_json::to_vec(&json!({
                                "schemaVersion": 2, "mediaType": OCI_INDEX,
                                "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": size}],
                            }))
                            .unwrap();
                            c.put(format!("{base}/v2/{repo}/manifests/idx{round}-{i}"))
                                .header("content-type", OCI_INDEX)
                                .body(index)
                                .send()
                                .await?;
                            let empty = json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2});
                            let sig = serde_json::to_vec(&json!({
                                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                "artifactType": "application/vnd.example.signature",
                                "config": empty, "layers": [empty],
                                "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": size},
                            }))
                            .unwrap();
                            c.put(format!("{base}/v2/{repo}/manifests/{}", sha256(&sig)))
                                .header("content-type", OCI_MANIFEST)
                                .body(sig)
                                .send()
                                .await?;
                        }
                        reqwest::Result::Ok(())
                    }
                    .await;
                    if ok.is_err() {
                        break; // The server is gone.
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(400 + 300 * round as u64)).await;
        server.restart_after_kill9();
        for t in tasks {
            t.await.unwrap();
        }
        let n = check_invariants(&c, &server).await;
        assert!(n > 0, "round {round}: nothing was pushed before the kill");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "[uploads]\nexpiry_secs = 1\nsweep_interval_secs = 1\n",
    )
    .unwrap();
    let data_dir = dir.path().join("data");
    let server = TestServer::start_with(&data_dir, &["--config", config.to_str().unwrap()]);
    let c = client();
    let r = c
        .post(format!("{}/v2/acme/e/blobs/uploads/", server.url()))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    c.patch(abs(&server.url(), &loc))
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    // An orphan data file, as a crash between creating the file and recording the session leaves.
    let uploads = data_dir.join("storage").join("uploads");
    std::fs::write(uploads.join("mono-orphan"), b"junk").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = c
            .get(abs(&server.url(), &loc))
            .send()
            .await
            .unwrap()
            .status();
        let files = std::fs::read_dir(&uploads).unwrap().count();
        if status == StatusCode::NOT_FOUND && files == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "upload not expired: status {status}, {files} files left"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[storage]\nfsink = true\n").unwrap();
    let out = std::process::Command::new(TestServer::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fsink"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An environment variable overrides a key; a bad value is named too.
    let out = std::process::Command::new(TestServer::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("BERTH_UPLOADS__EXPIRY_SECS", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expiry_secs") || err.contains("EXPIRY_SECS"),
        "{err}"
    );
    // Two servers on one data dir: the second refuses to start.
    let first = TestServer::start_with(dir.path(), &[]);
    let out = std::process::Command::new(TestServer::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another berth process"));
    drop(first);
}

/// A small tmpfs mounted for the test and unmounted when dropped. Needs root, which the test
/// machines and CI have; without it the test fails and says so.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs for the full-disk test failed (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_reported_and_loses_nothing() {
    let disk = SmallDisk::mount("4m");
    let dir = tempfile::tempdir().unwrap();
    let storage = disk.dir.path().join("blobs");
    let server = TestServer::start_with_env(
        dir.path(),
        &[],
        &[("BERTH_STORAGE__PATH", storage.to_str().unwrap())],
    );
    let c = client();
    let base = server.url();
    let small = data(7, 100_000);
    assert_eq!(
        push_blob(&c, &base, "acme/full", &small).await.unwrap(),
        StatusCode::CREATED
    );

    // Too big for the disk, monolithic: 507, and nothing left behind.
    let big = data(8, 6 << 20);
    let d = sha256(&big);
    let r = c
        .post(format!("{base}/v2/acme/full/blobs/uploads/?digest={d}"))
        .body(big.clone())
        .send()
        .await;
    // The refused body is drained, so the client reads the answer rather than a reset.
    let r = r.expect("the client receives the error response");
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "BLOB_UPLOAD_INVALID");
    let leftovers = std::fs::read_dir(storage.join("uploads")).unwrap().count();
    assert_eq!(leftovers, 0, "a failed upload left data behind");

    // Chunked: the chunk that does not fit fails, the session keeps what it had.
    let r = c
        .post(format!("{base}/v2/acme/full/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .patch(abs(&base, &loc))
        .body(big[..1_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .patch(abs(&base, &loc))
        .body(big[1_000_000..].to_vec())
        .send()
        .await;
    assert_eq!(
        r.expect("the client receives the error response").status(),
        StatusCode::INSUFFICIENT_STORAGE
    );
    let r = c.get(abs(&base, &loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Cancelling frees the space; the registry still works and the earlier blob is intact.
    assert_eq!(
        c.delete(abs(&base, &loc)).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        push_blob(&c, &base, "acme/full", &data(9, 1_000_000))
            .await
            .unwrap(),
        StatusCode::CREATED
    );
    let got = c
        .get(format!("{base}/v2/acme/full/blobs/{}", sha256(&small)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), small.as_slice());
    check_invariants(&c, &server).await;
}

/// The default layout, metadata and blobs on one disk, filled up: writes to the metadata
/// database are refused with 507 (not a 500), nothing already stored is lost, and the registry
/// works again once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_metadata_disk_is_reported_and_loses_nothing() {
    use std::io::Write;
    let disk = SmallDisk::mount("16m");
    let server = TestServer::start_with(disk.dir.path(), &[]);
    let c = client();
    let base = server.url();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = data(11, 200_000);
    for blob in [&config, &layer] {
        assert_eq!(
            push_blob(&c, &base, "acme/meta", blob).await.unwrap(),
            StatusCode::CREATED
        );
    }
    // A manifest big enough (1 MiB of annotations) that storing it needs new pages in the
    // database's write-ahead log, not only ones it already has.
    let manifest = |pad: char| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer), "size": layer.len()}],
            "annotations": {"pad": pad.to_string().repeat(1 << 20)},
        }))
        .unwrap()
    };
    let put = |tag: &'static str, body: Vec<u8>| {
        let c = c.clone();
        let url = format!("{base}/v2/acme/meta/manifests/{tag}");
        async move {
            c.put(url)
                .header("content-type", OCI_MANIFEST)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let first = manifest('a');
    assert_eq!(put("v1", first.clone()).await.status(), StatusCode::CREATED);

    // Fill the disk to the last block.
    let filler = disk.dir.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("{e}"),
        }
    }
    drop(f);
    let r = put("v2", manifest('b')).await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let v: Value = r.json().await.unwrap();
    assert!(v["errors"][0]["code"].is_string(), "{v}");
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("full"),
        "{v}"
    );
    // What was stored is intact and served; the refused manifest is nowhere.
    let r = c
        .get(format!("{base}/v2/acme/meta/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), first);
    let r = c
        .get(format!("{base}/v2/acme/meta/manifests/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Room again: the same push succeeds.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(put("v2", manifest('b')).await.status(), StatusCode::CREATED);
    assert_eq!(check_invariants(&c, &server).await, 2);
}

/// `limits.max_manifest_bytes` and `limits.max_blob_bytes` are what the server enforces, to the
/// byte, with SIZE_INVALID; nothing of a refused blob is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        dir.path(),
        &[],
        &[
            ("BERTH_LIMITS__MAX_MANIFEST_BYTES", "2000"),
            ("BERTH_LIMITS__MAX_BLOB_BYTES", "100000"),
            // No image analysis: it stores SBOMs of the pushed manifests in the background,
            // whose uploads would be in the directory checked below.
            ("BERTH_SCAN__ENABLED", "false"),
        ],
    );
    let c = client();
    let base = server.url();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    assert_eq!(
        push_blob(&c, &base, "acme/lim", &config).await.unwrap(),
        StatusCode::CREATED
    );
    // A manifest padded to exactly `len` bytes.
    let manifest = |len: usize| {
        let mut v = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [],
            "annotations": {"pad": ""},
        });
        let short = serde_json::to_vec(&v).unwrap().len();
        v["annotations"]["pad"] = json!("x".repeat(len - short));
        let m = serde_json::to_vec(&v).unwrap();
        assert_eq!(m.len(), len);
        m
    };
    let put = |tag: &str, body: Vec<u8>| {
        c.put(format!("{base}/v2/acme/lim/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(body)
            .send()
    };
    assert_eq!(
        put("at", manifest(2000)).await.unwrap().status(),
        StatusCode::CREATED
    );
    let r = put("over", manifest(2001)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "SIZE_INVALID", "{v}");

    assert_eq!(
        push_blob(&c, &base, "acme/lim", &data(12, 100_000))
            .await
            .unwrap(),
        StatusCode::CREATED
    );
    let big = data(13, 100_001);
    let r = c
        .post(format!(
            "{base}/v2/acme/lim/blobs/uploads/?digest={}",
            sha256(&big)
        ))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (status.is_client_error(), v["errors"][0]["code"].as_str()),
        (true, Some("SIZE_INVALID")),
        "{status} {v}"
    );
    let r = c
        .head(format!("{base}/v2/acme/lim/blobs/{}", sha256(&big)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let uploads = server.data_dir().join("storage").join("uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "a refused blob left data behind: {left:?}");
}

/// A blob pushed to several repositories (directly and by mount) is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), &[]);
    let c = client();
    let base = server.url();
    let blob = data(14, 300_000);
    let d = sha256(&blob);
    for repo in ["a/one", "b/two", "c/three"] {
        assert_eq!(
            push_blob(&c, &base, repo, &blob).await.unwrap(),
            StatusCode::CREATED
        );
    }
    let r = c
        .post(format!(
            "{base}/v2/d/four/blobs/uploads/?mount={d}&from=a/one"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let blobs = server
        .data_dir()
        .join("storage")
        .join("blobs")
        .join("sha256");
    let files: Vec<_> = walk(&blobs);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(d.strip_prefix("sha256:").unwrap()));
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 300_000);
    // Every repository sees it.
    for repo in ["a/one", "b/two", "c/three", "d/four"] {
        let r = c
            .head(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{repo}");
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The server's resident memory at its peak, since the last reset (root: `clear_refs`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM (needs root)");
}

/// A body of `mib` MiB made of 1 MiB chunks, generated as it is sent, and its digest.
fn generated(mib: u32) -> (reqwest::Body, String) {
    let base = data(1000, 1 << 20);
    // Distinct chunks without generating each one: a copy of one with its index in front.
    let chunk = move |i: u32| {
        let mut c = base.clone();
        c[..4].copy_from_slice(&i.to_le_bytes());
        bytes::Bytes::from(c)
    };
    let mut h = sha2::Sha256::new();
    for i in 0..mib {
        h.update(chunk(i));
    }
    let d = format!("sha256:{}", hex::encode(h.finalize()));
    let body = futures::stream::iter((0..mib).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    (reqwest::Body::wrap_stream(body), d)
}

/// A body flows from the socket to the disk: the server's peak memory while receiving a 256 MiB
/// blob is no higher than while receiving a 16 MiB one (give or take a few MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_does_not_grow_with_blob_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(dir.path(), &[], &[("BERTH_SCAN__ENABLED", "false")]);
    let pid = server.pid().unwrap();
    let c = client();
    let base = server.url();
    let mut peaks = Vec::new();
    // The first push warms up (buffers, the database's pages); it is not compared.
    for mib in [16, 16, 256, 16, 256] {
        let (body, d) = generated(mib);
        reset_peak_rss(pid);
        let r = c
            .post(format!("{base}/v2/acme/mem/blobs/uploads/?digest={d}"))
            .header("content-length", (u64::from(mib) << 20).to_string())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{mib} MiB");
        peaks.push((mib, peak_rss_kib(pid)));
    }
    let measured = &peaks[1..];
    let peak = |size: u32| measured.iter().filter(|p| p.0 == size).map(|p| p.1).max();
    let (small, large) = (peak(16).unwrap(), peak(256).unwrap());
    assert!(
        large < small + 8 * 1024,
        "peak RSS (KiB) per push: {peaks:?}"
    );
}

/// A client that stops sending mid-body is cut off after `uploads.body_idle_timeout_secs`, and
/// what it sent is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_time_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        dir.path(),
        &[],
        &[
            ("BERTH_UPLOADS__BODY_IDLE_TIMEOUT_SECS", "1"),
            ("BERTH_SCAN__ENABLED", "false"),
        ],
    );
    let blob = data(15, 1_000_000);
    let d = sha256(&blob);
    let addr = server.host();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v2/acme/stall/blobs/uploads/?digest={d} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {}\r\ncontent-length: {}\r\n\r\n",
        client_auth(),
        blob.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&blob[..300_000]).await.unwrap();
    let started = std::time::Instant::now();
    // The server answers (or closes) on its own, well before this test's own limit.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let waited = started.elapsed();
    assert!(read.is_ok(), "the server kept waiting for the body");
    assert!(
        waited >= Duration::from_millis(900),
        "cut off after {waited:?}, before the idle timeout"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    let c = client();
    let r = c
        .head(format!("{}/v2/acme/stall/blobs/{d}", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let uploads = server.data_dir().join("storage").join("uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
}
