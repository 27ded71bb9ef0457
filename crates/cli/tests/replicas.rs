//! Several `berth serve` replicas on one PostgreSQL database and one S3 bucket (a real Garage
//! node), as behind a load balancer: what one replica does, the others see at once; an upload
//! may move between replicas chunk by chunk, and survives the replica that started it being
//! killed; redirects hand out working presigned URLs; and an object store or database outage
//! gives fast 503s and `/readyz` failures, then heals by itself.

mod common;

use common::*;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

struct Cluster {
    replicas: Vec<TestServer>,
    _dirs: Vec<tempfile::TempDir>,
}

/// `n` replicas sharing `env` (database and bucket), each with its own data dir.
fn cluster(n: usize, env: &[(String, String)]) -> Cluster {
    let mut dirs = Vec::new();
    let mut replicas = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        replicas.push(TestServer::start_with_env(dir.path(), &[], &env_refs(env)));
        dirs.push(dir);
    }
    Cluster {
        replicas,
        _dirs: dirs,
    }
}

/// A bearer token for `scope` from `server`, as the admin. Tokens are signed with the key in
/// the shared database, so any replica accepts them.
fn token(server: &TestServer, scope: &str) -> String {
    let resp = http(
        "GET",
        &format!("{}/auth/token?service=berth&scope={scope}", server.url()),
        &[("Authorization", &admin_basic_auth())],
        None,
    );
    assert_eq!(resp.status, 200, "token: {}", resp.text());
    resp.json()["token"].as_str().unwrap().to_owned()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn location(base: &str, resp: &HttpResponse) -> String {
    let l = resp.header("location").expect("a Location header");
    if l.starts_with("http") {
        l.to_owned()
    } else {
        format!("{base}{l}")
    }
}

/// Moves an upload location from one replica to another, as a load balancer would.
fn on(server: &TestServer, url: &str) -> String {
    let path = &url[url.find("/v2/").expect("a /v2/ URL")..];
    format!("{}{path}", server.url())
}

/// Pushes the standard test image to `repo:v1` through `to` with skopeo and pulls it back
/// through `from`, checking that every file of the pulled image is the pushed one. Returns the
/// pushed and the pulled manifest digests.
fn skopeo_round_trip(
    to: &TestServer,
    from: &TestServer,
    repo: &str,
    salt: &str,
) -> (String, String) {
    let client = ClientEnv::new();
    client.log_in(&to.host(), "admin", ADMIN_PASSWORD);
    client.log_in(&from.host(), "admin", ADMIN_PASSWORD);
    let layout = build_test_layout(&client.subdir("src"), salt);
    client.skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &layout.oci_ref(TestLayout::IMAGE_REF),
        &format!("docker://{}/{repo}:v1", to.host()),
    ]);
    let out = client.subdir("pulled");
    client.skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{}/{repo}:v1", from.host()),
        &format!("oci:{}:v1", out.display()),
    ]);
    let digest = |dir: &std::path::Path, name: &str| {
        layout_ref(dir, name)["digest"].as_str().unwrap().to_owned()
    };
    let pushed = digest(&layout.path, TestLayout::IMAGE_REF);
    assert_same_files(
        &layout_files(&out, &pushed),
        &layout_files(&layout.path, &pushed),
    );
    (pushed, digest(&out, "v1"))
}

#[test]
fn a_push_through_one_replica_is_pulled_through_another() {
    let env = scale_out_env();
    let c = cluster(2, &env);
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    let (pushed, pulled) = skopeo_round_trip(a, b, "acme/app", "replicas");
    assert_eq!(pulled, pushed);
    let digest = pushed.as_str();
    for r in &c.replicas {
        assert!(
            !r.data_dir().join("storage").exists(),
            "blobs went to the object store, not the data dir"
        );
    }

    // Tag listings and deletes are shared state too.
    let t = token(b, "repository:acme/app:pull,delete");
    let tags = http(
        "GET",
        &format!("{}/v2/acme/app/tags/list", b.url()),
        &[("Authorization", &bearer(&t))],
        None,
    );
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));
    let del = http(
        "DELETE",
        &format!("{}/v2/acme/app/manifests/{digest}", b.url()),
        &[("Authorization", &bearer(&t))],
        None,
    );
    assert_eq!(del.status, 202, "{}", del.text());
    let t = token(a, "repository:acme/app:pull");
    let gone = http(
        "GET",
        &format!("{}/v2/acme/app/manifests/v1", a.url()),
        &[("Authorization", &bearer(&t)), ("Accept", MANIFEST_ACCEPT)],
        None,
    );
    assert_eq!(gone.status, 404, "deleted through B, still served by A");
}

#[test]
fn an_upload_moves_between_replicas_chunk_by_chunk() {
    let env = scale_out_env();
    let c = cluster(3, &env);
    let r = &c.replicas;
    let t = token(&r[0], "repository:acme/chunks:push,pull");
    let auth = bearer(&t);
    let data = pseudo_random_bytes(7, 13 * MIB + 4321);
    let digest = sha256_digest(&data);

    let start = http(
        "POST",
        &format!("{}/v2/acme/chunks/blobs/uploads/", r[0].url()),
        &[("Authorization", &auth), ("Content-Length", "0")],
        None,
    );
    assert_eq!(start.status, 202, "{}", start.text());
    let mut url = location(&r[0].url(), &start);
    // Chunks that straddle the 5 MiB part size, each on the next replica.
    let cuts = [0, 3 * MIB, 3 * MIB + 1, 8 * MIB, 11 * MIB];
    for (i, w) in cuts.windows(2).enumerate() {
        let replica = &r[(i + 1) % r.len()];
        let range = format!("{}-{}", w[0], w[1] - 1);
        let len = (w[1] - w[0]).to_string();
        let resp = http(
            "PATCH",
            &on(replica, &url),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
                ("Content-Length", &len),
            ],
            Some(&data[w[0]..w[1]]),
        );
        assert_eq!(
            resp.status,
            202,
            "PATCH {range} on replica {}: {}",
            (i + 1) % 3,
            resp.text()
        );
        assert_eq!(
            resp.header("range"),
            Some(format!("0-{}", w[1] - 1).as_str())
        );
        url = location(&replica.url(), &resp);
        // Every replica reports the same progress.
        for other in r {
            let status = http("GET", &on(other, &url), &[("Authorization", &auth)], None);
            assert_eq!(status.status, 204);
            assert_eq!(
                status.header("range"),
                Some(format!("0-{}", w[1] - 1).as_str())
            );
        }
    }
    // A chunk that does not continue the upload is refused by any replica.
    let stale = http(
        "PATCH",
        &on(&r[2], &url),
        &[
            ("Authorization", &auth),
            ("Content-Range", "0-0"),
            ("Content-Length", "1"),
        ],
        Some(b"x"),
    );
    assert_eq!(stale.status, 416);
    let last = cuts[cuts.len() - 1];
    let sep = if url.contains('?') { '&' } else { '?' };
    let put = format!("{}{sep}digest={digest}", on(&r[1], &url));
    let done = http(
        "PUT",
        &put,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", &(data.len() - last).to_string()),
        ],
        Some(&data[last..]),
    );
    assert_eq!(done.status, 201, "{}", done.text());
    for replica in r {
        let got = http(
            "GET",
            &format!("{}/v2/acme/chunks/blobs/{digest}", replica.url()),
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(got.status, 200);
        assert_same_bytes(&got.body, &data, "blob assembled across replicas");
    }
}

/// A replica killed in the middle of a chunk leaves the session as it was before that chunk;
/// another replica reports it and completes it.
#[test]
fn a_killed_replicas_upload_is_completed_by_another() {
    let env = scale_out_env();
    let mut c = cluster(2, &env);
    let t = token(&c.replicas[0], "repository:acme/killed:push,pull");
    let auth = bearer(&t);
    let data = pseudo_random_bytes(9, 12 * MIB);
    let digest = sha256_digest(&data);
    let a = &c.replicas[0];
    let start = http(
        "POST",
        &format!("{}/v2/acme/killed/blobs/uploads/", a.url()),
        &[("Authorization", &auth), ("Content-Length", "0")],
        None,
    );
    let url = location(&a.url(), &start);
    let first = 6 * MIB;
    let resp = http(
        "PATCH",
        &url,
        &[
            ("Authorization", &auth),
            ("Content-Range", &format!("0-{}", first - 1)),
            ("Content-Length", &first.to_string()),
        ],
        Some(&data[..first]),
    );
    assert_eq!(resp.status, 202, "{}", resp.text());
    let url = location(&a.url(), &resp);

    // Half of the next chunk, then the replica dies with the request open.
    use std::io::Write;
    let rest = &url["http://".len()..];
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut conn = std::net::TcpStream::connect(authority).unwrap();
    write!(
        conn,
        "PATCH {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: {auth}\r\n\
         Content-Range: {first}-{}\r\nContent-Length: {}\r\n\r\n",
        data.len() - 1,
        data.len() - first
    )
    .unwrap();
    // Enough that the replica writes a part to S3 before it dies; the replica that continues
    // writes that part again from the session's state.
    conn.write_all(&data[first..first + 9 * MIB / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.replicas[0].kill9();
    drop(conn);

    let b = &c.replicas[1];
    let status = http("GET", &on(b, &url), &[("Authorization", &auth)], None);
    assert_eq!(status.status, 204, "{}", status.text());
    assert_eq!(
        status.header("range"),
        Some(format!("0-{}", first - 1).as_str())
    );
    let sep = if url.contains('?') { '&' } else { '?' };
    let done = http(
        "PUT",
        &format!("{}{sep}digest={digest}", on(b, &url)),
        &[
            ("Authorization", &auth),
            ("Content-Range", &format!("{first}-{}", data.len() - 1)),
            ("Content-Length", &(data.len() - first).to_string()),
        ],
        Some(&data[first..]),
    );
    assert_eq!(done.status, 201, "{}", done.text());
    let got = http(
        "GET",
        &format!("{}/v2/acme/killed/blobs/{digest}", b.url()),
        &[("Authorization", &auth)],
        None,
    );
    assert_same_bytes(&got.body, &data, "blob completed after the kill");
}

/// With `storage.redirect`, blob GETs answer 307 to a presigned URL that serves the bytes
/// (ranges too), HEADs are still answered by the registry, and skopeo follows the redirect.
#[test]
fn redirects_point_at_working_presigned_urls() {
    let mut env = scale_out_env();
    env.push(("BERTH_STORAGE__REDIRECT".into(), "true".into()));
    env.push(("BERTH_STORAGE__REDIRECT_TTL_SECS".into(), "120".into()));
    let c = cluster(1, &env);
    let s = &c.replicas[0];
    let t = token(s, "repository:acme/redir:push,pull");
    let auth = bearer(&t);
    let data = pseudo_random_bytes(3, 2 * MIB + 5);
    let digest = sha256_digest(&data);
    let put = http(
        "POST",
        &format!("{}/v2/acme/redir/blobs/uploads/?digest={digest}", s.url()),
        &[
            ("Authorization", &auth),
            ("Content-Length", &data.len().to_string()),
        ],
        Some(&data),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let blob_url = format!("{}/v2/acme/redir/blobs/{digest}", s.url());
    let head = http("HEAD", &blob_url, &[("Authorization", &auth)], None);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    let get = http("GET", &blob_url, &[("Authorization", &auth)], None);
    assert_eq!(get.status, 307, "{}", get.text());
    assert_eq!(get.header("docker-content-digest"), Some(digest.as_str()));
    let presigned = get.header("location").unwrap().to_owned();
    assert!(presigned.contains("X-Amz-Signature="), "{presigned}");
    let direct = http("GET", &presigned, &[], None);
    assert_eq!(direct.status, 200);
    assert_same_bytes(&direct.body, &data, "bytes from the presigned URL");
    let ranged = http("GET", &presigned, &[("Range", "bytes=100-199")], None);
    assert_eq!(ranged.status, 206);
    assert_same_bytes(
        &ranged.body,
        &data[100..200],
        "range from the presigned URL",
    );
    // Unauthorised callers get no URL.
    let anon = http("GET", &blob_url, &[], None);
    assert_eq!(anon.status, 401);

    skopeo_round_trip(s, s, "acme/redir", "redirect");
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// While the object store is down, pushes and pulls fail fast with 503 `UNAVAILABLE`, and
/// `/readyz` says so (while `/healthz` stays up); when it returns, everything works again
/// without a restart. The same for the database.
#[test]
fn outages_fail_fast_and_heal() {
    let garage = berth_testkit::Garage::start();
    let pg = berth_testkit::PgServer::start();
    let env = s3_env(&garage, &garage.create_bucket(), pg.create_database());
    let c = cluster(1, &env);
    let s = &c.replicas[0];
    let t = token(s, "repository:acme/outage:push,pull");
    let auth = bearer(&t);
    let ready = || http("GET", &format!("{}/readyz", s.url()), &[], None);
    assert_eq!(ready().status, 200);
    let push = |seed: u64| {
        let data = pseudo_random_bytes(seed, 64 << 10);
        let digest = sha256_digest(&data);
        let started = Instant::now();
        let resp = http(
            "POST",
            &format!("{}/v2/acme/outage/blobs/uploads/?digest={digest}", s.url()),
            &[
                ("Authorization", &auth),
                ("Content-Length", &data.len().to_string()),
            ],
            Some(&data),
        );
        (resp, started.elapsed())
    };
    let (ok, _) = push(1);
    assert_eq!(ok.status, 201, "{}", ok.text());

    garage.stop();
    let (resp, took) = push(2);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.json()["errors"][0]["code"], "UNAVAILABLE");
    assert!(took < Duration::from_secs(15), "failing took {took:?}");
    let r = ready();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("storage"), "{}", r.text());
    assert_eq!(
        http("GET", &format!("{}/healthz", s.url()), &[], None).status,
        200
    );
    garage.start_again();
    wait_for(
        "readiness after the object store returns",
        Duration::from_secs(30),
        || ready().status == 200,
    );
    let (resp, _) = push(3);
    assert_eq!(resp.status, 201, "{}", resp.text());

    // Warm the connections that serve hot reads, so that the outage cuts them.
    let image = push_image(s, &auth, "acme/outage", "live", "outage");
    for _ in 0..3 {
        assert_eq!(get_manifest(s, &auth, "acme/outage", "live").status, 200);
    }
    pg.stop();
    let (resp, took) = push(4);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(took < Duration::from_secs(15), "failing took {took:?}");
    let r = ready();
    assert_eq!(r.status, 503);
    pg.start_again();
    wait_for(
        "readiness after the database returns",
        Duration::from_secs(30),
        || ready().status == 200,
    );
    let (resp, _) = push(5);
    assert_eq!(resp.status, 201, "{}", resp.text());
    // Connections cut by the outage are replaced without failing a request.
    for reference in ["live", image.as_str(), "live"] {
        let got = get_manifest(s, &auth, "acme/outage", reference);
        assert_eq!(got.status, 200, "{reference}: {}", got.text());
    }
}

/// Outages in the middle of traffic: clients pushing (monolithic and chunked) and pulling
/// through two replicas while the object store and then the database go down and come back.
/// Every answer is a success or a 503, never another error or a hang; afterwards every blob
/// that was acknowledged is served byte for byte, and nothing unacknowledged is visible.
#[test]
fn outages_during_traffic_lose_nothing_acknowledged() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let garage = berth_testkit::Garage::start();
    let pg = berth_testkit::PgServer::start();
    let env = s3_env(&garage, &garage.create_bucket(), pg.create_database());
    let c = cluster(2, &env);
    let t = token(&c.replicas[0], "repository:acme/traffic:push,pull");
    let urls: Vec<String> = c.replicas.iter().map(|r| r.url()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for w in 0..3u64 {
        let (stop, urls, auth) = (stop.clone(), urls.clone(), bearer(&t));
        clients.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut unacked = Vec::new();
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let base = &urls[(i % 2) as usize];
                let chunked = i.is_multiple_of(3);
                let data = pseudo_random_bytes(
                    w * 1_000_000 + i,
                    if chunked { 6 * MIB + 7 } else { 100_000 },
                );
                let digest = sha256_digest(&data);
                let status = if chunked {
                    let start = http_request(
                        "POST",
                        &format!("{base}/v2/acme/traffic/blobs/uploads/"),
                        &[("Authorization", &auth), ("Content-Length", "0")],
                        None,
                    );
                    match start {
                        Ok(s) if s.status == 202 => {
                            let url = location(base, &s);
                            let sep = if url.contains('?') { '&' } else { '?' };
                            // The chunk goes through the other replica.
                            let other = &urls[((i + 1) % 2) as usize];
                            let path = &url[url.find("/v2/").unwrap()..];
                            http_request(
                                "PUT",
                                &format!("{other}{path}{sep}digest={digest}"),
                                &[
                                    ("Authorization", &auth),
                                    ("Content-Length", &data.len().to_string()),
                                ],
                                Some(&data),
                            )
                            .map(|r| r.status)
                            .unwrap_or(0)
                        }
                        Ok(s) => s.status,
                        Err(_) => 0,
                    }
                } else {
                    http_request(
                        "POST",
                        &format!("{base}/v2/acme/traffic/blobs/uploads/?digest={digest}"),
                        &[
                            ("Authorization", &auth),
                            ("Content-Length", &data.len().to_string()),
                        ],
                        Some(&data),
                    )
                    .map(|r| r.status)
                    .unwrap_or(0)
                };
                *statuses.entry(status).or_default() += 1;
                if status == 201 {
                    acked.push((digest, data));
                } else if status == 503 {
                    // Refused: whatever happened inside, the blob must not be visible. (A
                    // transport error says nothing either way, so it is not checked.)
                    unacked.push(digest);
                }
            }
            (acked, unacked, statuses)
        }));
    }
    let pause = || std::thread::sleep(Duration::from_millis(1500));
    pause();
    garage.stop();
    pause();
    garage.start_again();
    pause();
    pg.stop();
    pause();
    pg.start_again();
    pause();
    stop.store(true, Ordering::Relaxed);

    let mut acked = Vec::new();
    let mut unacked = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for client in clients {
        let (a, u, s) = client.join().unwrap();
        acked.extend(a);
        unacked.extend(u);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    eprintln!("answers during the outages: {statuses:?}");
    let unexpected: Vec<_> = statuses
        .keys()
        .filter(|s| ![201, 202, 503].contains(*s))
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers other than 201/503: {statuses:?}"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "the outages were seen: {statuses:?}"
    );
    assert!(acked.len() > 5, "traffic went through: {statuses:?}");

    // Both replicas recover by themselves and serve every acknowledged blob exactly.
    for r in &c.replicas {
        wait_for(
            "readiness after the outages",
            Duration::from_secs(30),
            || http("GET", &format!("{}/readyz", r.url()), &[], None).status == 200,
        );
    }
    let auth = bearer(&token(&c.replicas[1], "repository:acme/traffic:pull"));
    for (i, (digest, data)) in acked.iter().enumerate() {
        let r = &c.replicas[i % 2];
        let got = http(
            "GET",
            &format!("{}/v2/acme/traffic/blobs/{digest}", r.url()),
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(got.status, 200, "acknowledged blob {digest}");
        assert_same_bytes(&got.body, data, "acknowledged blob after the outages");
    }
    for digest in unacked
        .iter()
        .filter(|d| !acked.iter().any(|(a, _)| a == *d))
    {
        let got = http(
            "HEAD",
            &format!("{}/v2/acme/traffic/blobs/{digest}", c.replicas[0].url()),
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(
            got.status, 404,
            "unacknowledged blob {digest} is not visible"
        );
    }
}

/// Pushes a small image (config blob + manifest) under `tag` through `server`; returns the
/// manifest's digest.
fn push_image(server: &TestServer, auth: &str, repo: &str, tag: &str, salt: &str) -> String {
    let config = Blob::new(
        MT_OCI_CONFIG,
        serde_json::to_vec(
            &serde_json::json!({"architecture": "amd64", "os": "linux", "salt": salt}),
        )
        .unwrap(),
    );
    let put = http(
        "POST",
        &format!(
            "{}/v2/{repo}/blobs/uploads/?digest={}",
            server.url(),
            config.digest
        ),
        &[
            ("Authorization", auth),
            ("Content-Length", &config.data.len().to_string()),
        ],
        Some(&config.data),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [],
    }))
    .unwrap();
    let resp = http(
        "PUT",
        &format!("{}/v2/{repo}/manifests/{tag}", server.url()),
        &[
            ("Authorization", auth),
            ("Content-Type", MT_OCI_MANIFEST),
            ("Content-Length", &manifest.len().to_string()),
        ],
        Some(&manifest),
    );
    assert_eq!(resp.status, 201, "{}", resp.text());
    sha256_digest(&manifest)
}

fn get_manifest(server: &TestServer, auth: &str, repo: &str, reference: &str) -> HttpResponse {
    http(
        "GET",
        &format!("{}/v2/{repo}/manifests/{reference}", server.url()),
        &[("Authorization", auth), ("Accept", MANIFEST_ACCEPT)],
        None,
    )
}

/// Each replica caches hot manifests; a tag moved, a tag created or a manifest deleted through
/// one replica is seen by the others on their very next request.
#[test]
fn replica_caches_follow_each_others_writes() {
    let env = scale_out_env();
    let c = cluster(2, &env);
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    let auth = bearer(&token(a, "repository:acme/cache:push,pull,delete"));
    let repo = "acme/cache";
    let check = |round: usize| {
        let first = push_image(a, &auth, repo, "latest", &format!("one-{round}"));
        // Warm B's cache: the tag, the manifest by digest, the tag list.
        for _ in 0..3 {
            let got = get_manifest(b, &auth, repo, "latest");
            assert_eq!(got.header("docker-content-digest"), Some(first.as_str()));
            assert_eq!(get_manifest(b, &auth, repo, &first).status, 200);
        }
        let list = |s: &TestServer| {
            http(
                "GET",
                &format!("{}/v2/{repo}/tags/list", s.url()),
                &[("Authorization", &auth)],
                None,
            )
            .json()["tags"]
                .clone()
        };
        let _ = list(b);
        // The tag moves through A: B serves the new manifest at once.
        let second = push_image(a, &auth, repo, "latest", &format!("two-{round}"));
        let got = get_manifest(b, &auth, repo, "latest");
        assert_eq!(
            got.header("docker-content-digest"),
            Some(second.as_str()),
            "round {round}"
        );
        // A new tag through A is in B's tag list at once.
        push_image(
            a,
            &auth,
            repo,
            &format!("new-{round}"),
            &format!("three-{round}"),
        );
        assert!(
            list(b)
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == format!("new-{round}").as_str())
        );
        // A manifest deleted through A is gone from B, by digest and by tag.
        let del = http(
            "DELETE",
            &format!("{}/v2/{repo}/manifests/{second}", a.url()),
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(del.status, 202);
        assert_eq!(
            get_manifest(b, &auth, repo, &second).status,
            404,
            "round {round}"
        );
        assert_eq!(
            get_manifest(b, &auth, repo, "latest").status,
            404,
            "round {round}"
        );
    };
    check(0);
    check(1);
}

/// Concurrent GETs of one tag share their database reads, yet none that starts after a move of
/// the tag through another replica was acknowledged sees the old manifest.
#[test]
fn shared_reads_under_load_see_every_acknowledged_tag_move() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let env = scale_out_env();
    let c = cluster(2, &env);
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    let auth = bearer(&token(a, "repository:acme/fresh:push,pull"));
    let repo = "acme/fresh";
    let mut digests = vec![push_image(a, &auth, repo, "hot", "0")];
    let moved_at: Arc<std::sync::Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (stop, auth, url) = (stop.clone(), auth.clone(), b.url().to_owned());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let got = http(
                        "GET",
                        &format!("{url}/v2/{repo}/manifests/hot"),
                        &[("Authorization", &auth), ("Accept", MANIFEST_ACCEPT)],
                        None,
                    );
                    assert_eq!(got.status, 200, "{}", got.text());
                    let digest = got.header("docker-content-digest").unwrap().to_owned();
                    seen.push((started, digest));
                }
                seen
            })
        })
        .collect();
    for i in 1..=20 {
        std::thread::sleep(Duration::from_millis(25));
        let d = push_image(a, &auth, repo, "hot", &i.to_string());
        moved_at.lock().unwrap().push((Instant::now(), d.clone()));
        digests.push(d);
    }
    std::thread::sleep(Duration::from_millis(25));
    stop.store(true, Ordering::Relaxed);
    let moves = moved_at.lock().unwrap().clone();
    let mut reads = 0;
    for r in readers {
        for (started, digest) in r.join().unwrap() {
            reads += 1;
            // The newest move acknowledged before this GET started: the GET may see it or a
            // later one, never an earlier one.
            let floor = moves
                .iter()
                .rposition(|(at, _)| *at <= started)
                .map_or(0, |i| i + 1);
            let got = digests.iter().position(|d| *d == digest).unwrap();
            assert!(
                got >= floor,
                "a GET started after move {floor} was acknowledged saw move {got}"
            );
        }
    }
    assert!(reads > 100, "only {reads} reads");
}
