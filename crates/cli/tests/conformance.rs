//! Conformance tests written from the OCI Distribution Spec v1.1: every endpoint, status and
//! error code. Each test runs three times: against the server in-process, against the real
//! binary, and against the binary on PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A running registry and a client for it.
struct Ctx {
    c: Client,
    base: String,
    /// Credentials the client logs in with when challenged (the binary runs with
    /// authentication on; the in-process server runs open).
    creds: Option<(String, String)>,
    /// Keeps the server (in-process runtime task or child process) alive for the test.
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

async fn in_process() -> Ctx {
    let dir = tempfile::tempdir().unwrap();
    let meta = berth_meta::MetaStore::connect(&berth_meta::MetaStore::sqlite_url(
        &dir.path().join("meta.db"),
    ))
    .await
    .unwrap();
    let blobs = berth_storage::FsStore::open(dir.path().join("storage"), false).unwrap();
    let config = berth_registry::RegistryConfig {
        max_manifest_size: 64 * 1024,
        ..Default::default()
    };
    let registry = Arc::new(berth_registry::Registry::new(meta, blobs, config));
    let state = berth_server::AppState {
        registry,
        authorizer: Arc::new(berth_server::AllowAll),
        auth: None,
        vulndb: None,
        scans: None,
        body_idle_timeout: Duration::from_secs(5),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(berth_server::serve(
        listener,
        berth_server::app(state),
        std::future::pending(),
    ));
    Ctx {
        c: Client::new(),
        base,
        creds: None,
        _guard: Box::new(dir),
    }
}

async fn binary() -> Ctx {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let server = tokio::task::spawn_blocking(move || common::TestServer::start_with(&data, &[]))
        .await
        .unwrap();
    Ctx {
        c: Client::new(),
        base: server.url(),
        creds: Some(("admin".into(), common::ADMIN_PASSWORD.into())),
        _guard: Box::new((server, dir)),
    }
}

/// The binary on PostgreSQL: a fresh database on this process's throwaway server.
async fn binary_postgres() -> Ctx {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let server = tokio::task::spawn_blocking(move || {
        let url = berth_testkit::PgServer::shared().create_database();
        common::TestServer::start_with_env(&data, &[], &[("BERTH_DATABASE__URL", &url)])
    })
    .await
    .unwrap();
    Ctx {
        c: Client::new(),
        base: server.url(),
        creds: Some(("admin".into(), common::ADMIN_PASSWORD.into())),
        _guard: Box::new((server, dir)),
    }
}

/// The scale-out configuration: PostgreSQL and S3 (Garage), with token auth.
async fn binary_postgres_s3() -> Ctx {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let server = tokio::task::spawn_blocking(move || {
        let env = common::scale_out_env();
        common::TestServer::start_with_env(&data, &[], &common::env_refs(&env))
    })
    .await
    .unwrap();
    Ctx {
        c: Client::new(),
        base: server.url(),
        creds: Some(("admin".into(), common::ADMIN_PASSWORD.into())),
        _guard: Box::new((server, dir)),
    }
}

struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an OCI error response with this status and code.
    fn oci_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["errors"][0]["code"], code, "{v}");
        assert!(v["errors"][0]["message"].is_string(), "{v}");
    }
}

impl Ctx {
    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    async fn req(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let send = |bearer: Option<String>| {
            let mut r = self.c.request(method.clone(), self.url(path));
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            if let Some(b) = &body {
                r = r.body(b.clone());
            }
            if let Some(t) = bearer {
                r = r.bearer_auth(t);
            }
            r.send()
        };
        let mut resp = send(None).await.expect("request failed");
        // Like a registry client: on a Bearer challenge, get a token for the scope and retry.
        if resp.status() == StatusCode::UNAUTHORIZED
            && let Some((user, password)) = &self.creds
        {
            let challenge = resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            // A mount also needs pull on the source, which clients ask for up front.
            let extra: Vec<String> = path
                .split(['?', '&'])
                .filter_map(|p| p.strip_prefix("from="))
                .map(|from| format!("repository:{}:pull", from.replace("%2F", "/")))
                .collect();
            let token = self.token(&challenge, user, password, &extra).await;
            resp = send(Some(token)).await.expect("request failed");
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap().to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Answers a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge.
    async fn token(&self, challenge: &str, user: &str, password: &str, extra: &[String]) -> String {
        let params = challenge
            .strip_prefix("Bearer ")
            .expect("a Bearer challenge");
        let mut realm = String::new();
        let mut query = Vec::new();
        for part in params.split("\",") {
            let (k, v) = part.split_once('=').unwrap();
            let v = v.trim_matches('"');
            match k {
                "realm" => realm = v.to_owned(),
                "service" | "scope" => query.push((k.to_owned(), v.to_owned())),
                _ => {}
            }
        }
        query.extend(extra.iter().map(|s| ("scope".to_owned(), s.clone())));
        let r = self
            .c
            .get(realm)
            .query(&query)
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "token request refused");
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// The `Authorization` header for raw requests, when the server wants one.
    fn basic_header(&self) -> String {
        use base64::Engine as _;
        match &self.creds {
            Some((u, p)) => format!(
                "authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            ),
            None => String::new(),
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, &[], None).await
    }

    /// Pushes a blob monolithically and returns its digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                Some(data.to_vec()),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        d
    }

    /// Pushes a config and a layer and returns an image manifest (bytes) referencing them.
    async fn image(&self, repo: &str, seed: &str) -> Vec<u8> {
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#).into_bytes();
        let layer = format!("layer-{seed}").into_bytes();
        let cd = self.push_blob(repo, &config).await;
        let ld = self.push_blob(repo, &layer).await;
        serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG, "digest": cd, "size": config.len()},
            "layers": [{"mediaType": LAYER, "digest": ld, "size": layer.len()}],
        }))
        .unwrap()
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            Some(body.to_vec()),
        )
        .await
    }

    async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        assert!(r.header("docker-upload-uuid").is_some());
        r.header("location").expect("Location").to_owned()
    }
}

fn with_query(location: &str, q: &str) -> String {
    if location.contains('?') {
        format!("{location}&{q}")
    } else {
        format!("{location}?{q}")
    }
}

// ---------------------------------------------------------------------------------------------

async fn base_endpoint(t: Ctx) {
    let r = t.get("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let r = t.get("/v2").await;
    assert_eq!(r.status, StatusCode::OK);
    t.get("/v2/no/such/endpoint")
        .await
        .oci_error(404, "UNSUPPORTED");
}

async fn monolithic_blob_push_and_pull(t: Ctx) {
    let data = b"0123456789".to_vec();
    let d = t.push_blob("acme/app", &data).await;
    let r = t
        .req(Method::HEAD, &format!("/v2/acme/app/blobs/{d}"), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert!(r.body.is_empty());
    let r = t.get(&format!("/v2/acme/app/blobs/{d}")).await;
    assert_eq!((r.status, r.body.as_slice()), (StatusCode::OK, &data[..]));
    // Ranges.
    let r = t
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{d}"),
            &[("range", "bytes=2-4")],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"234"[..])
    );
    assert_eq!(r.header("content-range"), Some("bytes 2-4/10"));
    let r = t
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{d}"),
            &[("range", "bytes=-3")],
            None,
        )
        .await;
    assert_eq!(r.body, b"789");
    let r = t
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{d}"),
            &[("range", "bytes=10-")],
            None,
        )
        .await;
    r.oci_error(416, "SIZE_INVALID");
    assert_eq!(r.header("content-range"), Some("bytes */10"));
    // A malformed Range is ignored (RFC 9110): the whole blob, 200.
    for bad in [
        "bytes=abc",
        "bytes=4-2",
        "lines=0-1",
        "bytes=0-1,3-4x",
        "bytes",
    ] {
        let r = t
            .req(
                Method::GET,
                &format!("/v2/acme/app/blobs/{d}"),
                &[("range", bad)],
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.body.as_slice()),
            (StatusCode::OK, &data[..]),
            "{bad}"
        );
        assert_eq!(r.header("content-range"), None, "{bad}");
    }
    // Another repository cannot see it.
    t.get(&format!("/v2/other/app/blobs/{d}"))
        .await
        .oci_error(404, "BLOB_UNKNOWN");
    // POST ?digest= with the wrong content leaves nothing.
    let wrong = sha256(b"something else");
    let r = t
        .req(
            Method::POST,
            &format!("/v2/acme/app/blobs/uploads/?digest={wrong}"),
            &[],
            Some(data.clone()),
        )
        .await;
    r.oci_error(400, "DIGEST_INVALID");
    t.get(&format!("/v2/acme/app/blobs/{wrong}"))
        .await
        .oci_error(404, "BLOB_UNKNOWN");
    // Session then a single PUT with the whole body.
    let loc = t.start_upload("acme/app").await;
    let body = b"via put".to_vec();
    let d2 = sha256(&body);
    let r = t
        .req(
            Method::PUT,
            &with_query(&loc, &format!("digest={d2}")),
            &[],
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/acme/app/blobs/{d2}").as_str())
    );
    assert_eq!(t.get(&format!("/v2/acme/app/blobs/{d2}")).await.body, body);
}

async fn blob_errors(t: Ctx) {
    let unknown = sha256(b"nothing");
    t.get(&format!("/v2/acme/app/blobs/{unknown}"))
        .await
        .oci_error(404, "BLOB_UNKNOWN");
    let r = t
        .req(
            Method::HEAD,
            &format!("/v2/acme/app/blobs/{unknown}"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    t.get("/v2/acme/app/blobs/sha256:abc")
        .await
        .oci_error(400, "DIGEST_INVALID");
    t.get("/v2/acme/app/blobs/md5:abc")
        .await
        .oci_error(400, "DIGEST_INVALID");
    let r = t
        .req(
            Method::POST,
            "/v2/acme/app/blobs/uploads/?digest=sha256:zz",
            &[],
            Some(b"x".to_vec()),
        )
        .await;
    r.oci_error(400, "DIGEST_INVALID");
    t.req(
        Method::DELETE,
        &format!("/v2/acme/app/blobs/{unknown}"),
        &[],
        None,
    )
    .await
    .oci_error(404, "BLOB_UNKNOWN");
    // sha512 is supported.
    let data = b"sha512 content";
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)));
    let r = t
        .req(
            Method::POST,
            &format!("/v2/acme/app/blobs/uploads/?digest={d}"),
            &[],
            Some(data.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(t.get(&format!("/v2/acme/app/blobs/{d}")).await.body, data);
    // Delete unlinks.
    let r = t
        .req(
            Method::DELETE,
            &format!("/v2/acme/app/blobs/{d}"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    t.get(&format!("/v2/acme/app/blobs/{d}"))
        .await
        .oci_error(404, "BLOB_UNKNOWN");
}

async fn chunked_upload(t: Ctx) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d = sha256(&data);
    let mut loc = t.start_upload("acme/chunked").await;
    let status = t.get(&loc).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), Some("0-0"));
    let (a, rest) = data.split_at(100_000);
    let (b, c) = rest.split_at(100_000);
    let r = t
        .req(
            Method::PATCH,
            &loc,
            &[
                ("content-range", "0-99999"),
                ("content-type", "application/octet-stream"),
            ],
            Some(a.to_vec()),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("range"), Some("0-99999"));
    loc = r.header("location").unwrap().to_owned();
    // Out of order: refused with the current range, nothing appended.
    let r = t
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "150000-249999")],
            Some(b.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), Some("0-99999"));
    // Overlapping: refused as well.
    let r = t
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "50000-149999")],
            Some(b.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // Malformed Content-Range.
    let r = t
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "bogus")],
            Some(b.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // Content-Length disagreeing with Content-Range.
    let r = t
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "100000-100009")],
            Some(b.to_vec()),
        )
        .await;
    r.oci_error(416, "SIZE_INVALID");
    // Streamed chunk without Content-Range.
    let r = t.req(Method::PATCH, &loc, &[], Some(b.to_vec())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), Some("0-199999"));
    let status = t.get(&loc).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), Some("0-199999"));
    assert!(status.header("location").is_some());
    // Finish with the last chunk in the PUT.
    let r = t
        .req(
            Method::PUT,
            &with_query(&loc, &format!("digest={d}")),
            &[("content-range", "200000-299999")],
            Some(c.to_vec()),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        t.get(&format!("/v2/acme/chunked/blobs/{d}")).await.body,
        data
    );
    // The session is gone.
    t.get(&loc).await.oci_error(404, "BLOB_UPLOAD_UNKNOWN");
}

async fn upload_finish_without_body_and_errors(t: Ctx) {
    let loc = t.start_upload("acme/x").await;
    let r = t.req(Method::PATCH, &loc, &[], Some(b"abc".to_vec())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Missing digest.
    t.req(Method::PUT, &loc, &[], None)
        .await
        .oci_error(400, "DIGEST_INVALID");
    // Wrong digest: refused, session and data gone.
    let r = t
        .req(
            Method::PUT,
            &with_query(&loc, &format!("digest={}", sha256(b"abd"))),
            &[],
            None,
        )
        .await;
    r.oci_error(400, "DIGEST_INVALID");
    t.get(&loc).await.oci_error(404, "BLOB_UPLOAD_UNKNOWN");
    t.get(&format!("/v2/acme/x/blobs/{}", sha256(b"abd")))
        .await
        .oci_error(404, "BLOB_UNKNOWN");
    // A fresh session finished with an empty PUT.
    let loc = t.start_upload("acme/x").await;
    t.req(Method::PATCH, &loc, &[], Some(b"abc".to_vec())).await;
    let r = t
        .req(
            Method::PUT,
            &with_query(&loc, &format!("digest={}", sha256(b"abc"))),
            &[("content-length", "0")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Cancel.
    let loc = t.start_upload("acme/x").await;
    let r = t.req(Method::DELETE, &loc, &[], None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    t.get(&loc).await.oci_error(404, "BLOB_UPLOAD_UNKNOWN");
    t.req(Method::PATCH, &loc, &[], Some(b"x".to_vec()))
        .await
        .oci_error(404, "BLOB_UPLOAD_UNKNOWN");
    // Unknown and hostile session ids; a session used through another repository.
    t.get("/v2/acme/x/blobs/uploads/00000000-0000-0000-0000-000000000000")
        .await
        .oci_error(404, "BLOB_UPLOAD_UNKNOWN");
    t.get("/v2/acme/x/blobs/uploads/..%2f..%2fmeta.db")
        .await
        .oci_error(404, "BLOB_UPLOAD_UNKNOWN");
    let loc = t.start_upload("acme/x").await;
    let id = loc.rsplit('/').next().unwrap();
    t.get(&format!("/v2/acme/y/blobs/uploads/{id}"))
        .await
        .oci_error(404, "BLOB_UPLOAD_UNKNOWN");
}

async fn cross_repository_mount(t: Ctx) {
    let d = t.push_blob("src/repo", b"mount me").await;
    let r = t
        .req(
            Method::POST,
            &format!("/v2/dst/repo/blobs/uploads/?mount={d}&from=src/repo"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/dst/repo/blobs/{d}").as_str())
    );
    assert_eq!(
        t.get(&format!("/v2/dst/repo/blobs/{d}")).await.body,
        b"mount me"
    );
    // Not available to mount: falls back to an upload session.
    let other = sha256(b"not there");
    let r = t
        .req(
            Method::POST,
            &format!("/v2/dst/repo/blobs/uploads/?mount={other}&from=src/repo"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.header("location").unwrap().contains("/blobs/uploads/"));
    let r = t
        .req(
            Method::POST,
            &format!("/v2/dst/repo/blobs/uploads/?mount={d}&from=NOT..VALID"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = t
        .req(
            Method::POST,
            &format!("/v2/dst/repo/blobs/uploads/?mount={d}"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

async fn manifests(t: Ctx) {
    let m = t.image("acme/app", "1").await;
    let d = sha256(&m);
    let r = t.put_manifest("acme/app", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/acme/app/manifests/{d}").as_str())
    );
    for reference in ["v1", d.as_str()] {
        let r = t
            .req(
                Method::GET,
                &format!("/v2/acme/app/manifests/{reference}"),
                &[("accept", OCI_MANIFEST)],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, m, "bytes are served exactly as received");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        let r = t
            .req(
                Method::HEAD,
                &format!("/v2/acme/app/manifests/{reference}"),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.header("content-length"),
            Some(m.len().to_string().as_str())
        );
        assert!(r.body.is_empty());
    }
    // An Accept header that admits only Docker types does not get an OCI manifest by tag.
    let r = t
        .req(
            Method::GET,
            "/v2/acme/app/manifests/v1",
            &[("accept", DOCKER_MANIFEST)],
            None,
        )
        .await;
    r.oci_error(404, "MANIFEST_UNKNOWN");
    let r = t
        .req(
            Method::GET,
            "/v2/acme/app/manifests/v1",
            &[(
                "accept",
                &format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5"),
            )],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Pushing by digest.
    let m2 = t.image("acme/app", "2").await;
    let d2 = sha256(&m2);
    assert_eq!(
        t.put_manifest("acme/app", &d2, OCI_MANIFEST, &m2)
            .await
            .status,
        StatusCode::CREATED
    );
    t.put_manifest("acme/app", &d, OCI_MANIFEST, &m2)
        .await
        .oci_error(400, "DIGEST_INVALID");
    // Unknown manifests.
    t.get("/v2/acme/app/manifests/nope")
        .await
        .oci_error(404, "MANIFEST_UNKNOWN");
    t.get(&format!("/v2/acme/app/manifests/{}", sha256(b"x")))
        .await
        .oci_error(404, "MANIFEST_UNKNOWN");
    t.get("/v2/never/pushed/manifests/latest")
        .await
        .oci_error(404, "MANIFEST_UNKNOWN");
    t.get("/v2/acme/app/manifests/sha256:123")
        .await
        .oci_error(400, "DIGEST_INVALID");
    t.put_manifest("acme/app", "bad:tag!", OCI_MANIFEST, &m)
        .await
        .oci_error(400, "DIGEST_INVALID");
    t.put_manifest("acme/app", ".badtag", OCI_MANIFEST, &m)
        .await
        .oci_error(400, "MANIFEST_INVALID");
}

async fn manifest_validation(t: Ctx) {
    let m = t.image("acme/v", "1").await;
    let v: Value = serde_json::from_slice(&m).unwrap();
    // References a blob the repository does not have (it exists elsewhere).
    let foreign = t.push_blob("elsewhere/repo", b"foreign layer").await;
    let mut bad = v.clone();
    bad["layers"][0]["digest"] = json!(foreign);
    let r = t
        .put_manifest(
            "acme/v",
            "t",
            OCI_MANIFEST,
            &serde_json::to_vec(&bad).unwrap(),
        )
        .await;
    r.oci_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], json!(foreign));
    t.get("/v2/acme/v/manifests/t")
        .await
        .oci_error(404, "MANIFEST_UNKNOWN");
    for (doc, ct) in [
        (b"not json".to_vec(), OCI_MANIFEST),
        (b"{}".to_vec(), OCI_MANIFEST),
        (b"[1,2]".to_vec(), OCI_MANIFEST),
        (m[..m.len() / 2].to_vec(), OCI_MANIFEST),
        (m.clone(), OCI_INDEX),
        (
            br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.to_vec(),
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
    ] {
        t.put_manifest("acme/v", "t", ct, &doc)
            .await
            .oci_error(400, "MANIFEST_INVALID");
    }
    // Oversized (the in-process server's limit is 64 KiB; the binary's the default 4 MiB).
    let mut big = v.clone();
    big["annotations"] = json!({"pad": "x".repeat(5 << 20)});
    let r = t
        .put_manifest(
            "acme/v",
            "t",
            OCI_MANIFEST,
            &serde_json::to_vec(&big).unwrap(),
        )
        .await;
    r.oci_error(413, "SIZE_INVALID");
    // Index referencing an unknown manifest; then a valid two-platform index.
    let d1 = sha256(&m);
    assert_eq!(
        t.put_manifest("acme/v", &d1, OCI_MANIFEST, &m).await.status,
        StatusCode::CREATED
    );
    let m2 = t.image("acme/v", "arm").await;
    let d2 = sha256(&m2);
    let idx = |second: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d1, "size": m.len(), "platform": {"os":"linux","architecture":"amd64"}},
                {"mediaType": OCI_MANIFEST, "digest": second, "size": m2.len(), "platform": {"os":"linux","architecture":"arm64"}},
            ]
        }))
        .unwrap()
    };
    t.put_manifest("acme/v", "multi", OCI_INDEX, &idx(&d2))
        .await
        .oci_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        t.put_manifest("acme/v", &d2, OCI_MANIFEST, &m2)
            .await
            .status,
        StatusCode::CREATED
    );
    let index = idx(&d2);
    assert_eq!(
        t.put_manifest("acme/v", "multi", OCI_INDEX, &index)
            .await
            .status,
        StatusCode::CREATED
    );
    let r = t.get("/v2/acme/v/manifests/multi").await;
    assert_eq!(
        (r.body.as_slice(), r.header("content-type")),
        (index.as_slice(), Some(OCI_INDEX))
    );
}

async fn docker_media_types(t: Ctx) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = t.push_blob("lib/dock", config).await;
    let ld = t.push_blob("lib/dock", b"docker layer").await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld, "size": 12}],
    }))
    .unwrap();
    assert_eq!(
        t.put_manifest("lib/dock", "v2", DOCKER_MANIFEST, &m)
            .await
            .status,
        StatusCode::CREATED
    );
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha256(&m), "size": m.len(), "platform": {"os":"linux","architecture":"amd64"}}],
    }))
    .unwrap();
    assert_eq!(
        t.put_manifest("lib/dock", "list", DOCKER_LIST, &list)
            .await
            .status,
        StatusCode::CREATED
    );
    let accept = format!("{DOCKER_MANIFEST}, {DOCKER_LIST}");
    let r = t
        .req(
            Method::GET,
            "/v2/lib/dock/manifests/v2",
            &[("accept", &accept)],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (StatusCode::OK, Some(DOCKER_MANIFEST))
    );
    let r = t
        .req(
            Method::GET,
            "/v2/lib/dock/manifests/list",
            &[("accept", &accept)],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (StatusCode::OK, Some(DOCKER_LIST))
    );
    // A mediaType that contradicts the Content-Type.
    t.put_manifest("lib/dock", "x", OCI_MANIFEST, &m)
        .await
        .oci_error(400, "MANIFEST_INVALID");
}

async fn tags_and_pagination(t: Ctx) {
    let m = t.image("acme/tags", "1").await;
    let mut names: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
    names.extend(["A", "_z", "latest"].map(String::from));
    for n in &names {
        assert_eq!(
            t.put_manifest("acme/tags", n, OCI_MANIFEST, &m)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    names.sort();
    let r = t.get("/v2/acme/tags/tags/list").await;
    assert_eq!(r.json(), json!({"name": "acme/tags", "tags": names}));
    assert!(r.header("link").is_none());
    // Pages of 10 via Link headers.
    let mut seen = Vec::new();
    let mut next = Some("/v2/acme/tags/tags/list?n=10".to_owned());
    while let Some(path) = next {
        let r = t.get(&path).await;
        assert_eq!(r.status, StatusCode::OK);
        let page: Vec<String> = serde_json::from_value(r.json()["tags"].clone()).unwrap();
        assert!(page.len() <= 10);
        seen.extend(page);
        next = r.header("link").map(|l| {
            l.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap()
                .to_owned()
        });
        assert!(seen.len() <= names.len());
    }
    assert_eq!(seen, names);
    let r = t.get("/v2/acme/tags/tags/list?n=2&last=t05").await;
    assert_eq!(r.json()["tags"], json!(["t06", "t07"]));
    let r = t.get("/v2/acme/tags/tags/list?n=0").await;
    assert_eq!(r.json()["tags"], json!([]));
    t.get("/v2/acme/tags/tags/list?n=abc")
        .await
        .oci_error(400, "UNSUPPORTED");
    t.get("/v2/acme/nothing/tags/list")
        .await
        .oci_error(404, "NAME_UNKNOWN");
    // Listings follow every change at once (they are served from memory when hot).

    assert_eq!(
        t.get("/v2/acme/tags/tags/list").await.json()["tags"],
        json!(names)
    );
    assert_eq!(
        t.put_manifest("acme/tags", "zz-new", OCI_MANIFEST, &m)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        t.get("/v2/acme/tags/tags/list").await.json()["tags"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        "zz-new"
    );
    let r = t
        .req(Method::DELETE, "/v2/acme/tags/manifests/zz-new", &[], None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        t.get("/v2/acme/tags/tags/list").await.json()["tags"],
        json!(names)
    );
    let r = t
        .req(
            Method::DELETE,
            &format!("/v2/acme/tags/manifests/{}", sha256(&m)),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        t.get("/v2/acme/tags/tags/list").await.json()["tags"],
        json!([])
    );
}

async fn catalog(t: Ctx) {
    let repos = ["b/one", "a", "a/b", "c/d/e/f/g/h/i/j", "z9"];
    for r in repos {
        t.push_blob(r, r.as_bytes()).await;
    }
    let mut sorted = repos.to_vec();
    sorted.sort();
    assert_eq!(
        t.get("/v2/_catalog").await.json(),
        json!({"repositories": sorted})
    );
    let r = t.get("/v2/_catalog?n=2").await;
    assert_eq!(r.json()["repositories"], json!(["a", "a/b"]));
    assert_eq!(
        r.header("link"),
        Some("</v2/_catalog?n=2&last=a%2Fb>; rel=\"next\"")
    );
    let r = t.get("/v2/_catalog?n=2&last=a%2Fb").await;
    assert_eq!(
        r.json()["repositories"],
        json!(["b/one", "c/d/e/f/g/h/i/j"])
    );
}

async fn deletes(t: Ctx) {
    let m = t.image("acme/del", "1").await;
    let d = sha256(&m);
    for tag in ["a", "b", "c"] {
        t.put_manifest("acme/del", tag, OCI_MANIFEST, &m).await;
    }
    // Deleting a tag removes only that tag.
    let r = t
        .req(Method::DELETE, "/v2/acme/del/manifests/a", &[], None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    t.get("/v2/acme/del/manifests/a")
        .await
        .oci_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(
        t.get("/v2/acme/del/manifests/b").await.status,
        StatusCode::OK
    );
    assert_eq!(
        t.get(&format!("/v2/acme/del/manifests/{d}")).await.status,
        StatusCode::OK
    );
    t.req(Method::DELETE, "/v2/acme/del/manifests/a", &[], None)
        .await
        .oci_error(404, "MANIFEST_UNKNOWN");
    // Deleting by digest removes the manifest and every tag on it.
    let r = t
        .req(
            Method::DELETE,
            &format!("/v2/acme/del/manifests/{d}"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    for reference in ["b", "c", d.as_str()] {
        t.get(&format!("/v2/acme/del/manifests/{reference}"))
            .await
            .oci_error(404, "MANIFEST_UNKNOWN");
    }
    assert_eq!(
        t.get("/v2/acme/del/tags/list").await.json()["tags"],
        json!([])
    );
    t.req(
        Method::DELETE,
        &format!("/v2/acme/del/manifests/{d}"),
        &[],
        None,
    )
    .await
    .oci_error(404, "MANIFEST_UNKNOWN");
    // Re-pushing works, and the cache serves the new state.
    assert_eq!(
        t.put_manifest("acme/del", "b", OCI_MANIFEST, &m)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(t.get("/v2/acme/del/manifests/b").await.body, m);
}

/// What a manifest of the repository references cannot be deleted from under it (as Zot
/// answers: 405 DENIED): not a blob, and not a manifest that an index lists. Top down works.
async fn referenced_content_is_not_deleted(t: Ctx) {
    let repo = "acme/keep";
    let m = t.image(repo, "1").await;
    let md = sha256(&m);
    t.put_manifest(repo, "v1", OCI_MANIFEST, &m).await;
    let v: Value = serde_json::from_slice(&m).unwrap();
    let layer = v["layers"][0]["digest"].as_str().unwrap().to_owned();
    let config = v["config"]["digest"].as_str().unwrap().to_owned();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()}],
    }))
    .unwrap();
    let id = sha256(&index);
    t.put_manifest(repo, "multi", OCI_INDEX, &index).await;
    let ctx = &t;
    let delete = move |path: String| async move { ctx.req(Method::DELETE, &path, &[], None).await };
    for blob in [&layer, &config] {
        let r = delete(format!("/v2/{repo}/blobs/{blob}")).await;
        r.oci_error(405, "DENIED");
        assert_eq!(r.json()["errors"][0]["detail"]["digest"], blob.as_str());
        assert_eq!(r.json()["errors"][0]["detail"]["referencedBy"], md);
    }
    let r = delete(format!("/v2/{repo}/manifests/{md}")).await;
    r.oci_error(405, "DENIED");
    assert_eq!(r.json()["errors"][0]["detail"]["referencedBy"], id);
    // Nothing was lost; deleting a tag of the child is still allowed.
    assert_eq!(
        t.get(&format!("/v2/{repo}/blobs/{layer}")).await.status,
        StatusCode::OK
    );
    assert_eq!(t.get(&format!("/v2/{repo}/manifests/{md}")).await.body, m);
    assert_eq!(
        delete(format!("/v2/{repo}/manifests/v1")).await.status,
        StatusCode::ACCEPTED
    );
    for path in [
        format!("/v2/{repo}/manifests/{id}"),
        format!("/v2/{repo}/manifests/{md}"),
        format!("/v2/{repo}/blobs/{layer}"),
        format!("/v2/{repo}/blobs/{config}"),
    ] {
        assert_eq!(
            delete(path.clone()).await.status,
            StatusCode::ACCEPTED,
            "{path}"
        );
    }
    t.get(&format!("/v2/{repo}/blobs/{layer}"))
        .await
        .oci_error(404, "BLOB_UNKNOWN");
}

/// A manifest pushed under a sha512 digest is stored, served and deleted under that digest.
async fn sha512_manifests(t: Ctx) {
    let repo = "acme/s512";
    let m = t.image(repo, "1").await;
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&m)));
    let r = t.put_manifest(repo, &d, OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    let r = t.get(&format!("/v2/{repo}/manifests/{d}")).await;
    assert_eq!((r.status, r.body.as_slice()), (StatusCode::OK, &m[..]));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    // The bytes must hash to the digest in the reference, whatever the algorithm.
    let wrong = format!("sha512:{}", hex::encode(sha2::Sha512::digest(b"other")));
    t.put_manifest(repo, &wrong, OCI_MANIFEST, &m)
        .await
        .oci_error(400, "DIGEST_INVALID");
    let r = t
        .req(
            Method::DELETE,
            &format!("/v2/{repo}/manifests/{d}"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    t.get(&format!("/v2/{repo}/manifests/{d}"))
        .await
        .oci_error(404, "MANIFEST_UNKNOWN");
}

async fn referrers(t: Ctx) {
    let m = t.image("acme/ref", "1").await;
    let subject = sha256(&m);
    t.put_manifest("acme/ref", "v1", OCI_MANIFEST, &m).await;
    let empty = t.push_blob("acme/ref", b"{}").await;
    let mut artifacts = Vec::new();
    for (kind, note) in [
        ("application/vnd.example.sbom", "sbom"),
        ("application/vnd.example.sig", "sig"),
    ] {
        let a = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": m.len()},
            "annotations": {"note": note},
        }))
        .unwrap();
        let r = t
            .put_manifest("acme/ref", &sha256(&a), OCI_MANIFEST, &a)
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.header("oci-subject"), Some(subject.as_str()));
        artifacts.push((sha256(&a), a.len(), kind, note));
    }
    let r = t.get(&format!("/v2/acme/ref/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let listed = v["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for (d, size, kind, note) in &artifacts {
        let e = listed
            .iter()
            .find(|e| e["digest"] == json!(d))
            .expect("listed");
        assert_eq!(e["mediaType"], OCI_MANIFEST);
        assert_eq!(e["size"], json!(size));
        assert_eq!(e["artifactType"], json!(kind));
        assert_eq!(e["annotations"]["note"], json!(note));
    }
    let r = t
        .get(&format!(
            "/v2/acme/ref/referrers/{subject}?artifactType=application/vnd.example.sig"
        ))
        .await;
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
    // Unknown subject: an empty index, not 404.
    let r = t
        .get(&format!("/v2/acme/ref/referrers/{}", sha256(b"unknown")))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["manifests"], json!([]));
    t.get("/v2/acme/ref/referrers/sha256:bad")
        .await
        .oci_error(400, "DIGEST_INVALID");
    // A subject that does not exist is still accepted (the spec allows pushing referrers first).
    let orphan = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(b"later"), "size": 5},
    }))
    .unwrap();
    assert_eq!(
        t.put_manifest("acme/ref", &sha256(&orphan), OCI_MANIFEST, &orphan)
            .await
            .status,
        StatusCode::CREATED
    );
}

async fn repository_names(t: Ctx) {
    let deep = "a/b/c/d/e/f/g/h";
    let d = t.push_blob(deep, b"deep").await;
    assert_eq!(t.get(&format!("/v2/{deep}/blobs/{d}")).await.body, b"deep");
    let m = t.image(deep, "1").await;
    assert_eq!(
        t.put_manifest(deep, "latest", OCI_MANIFEST, &m)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        t.get(&format!("/v2/{deep}/tags/list")).await.json()["tags"],
        json!(["latest"])
    );
    for bad in [
        "Acme/app",
        "acme//app",
        "acme/-app",
        "acme/app-",
        "acme/a..b",
        "acme/a%2Fb",
        "acme/a___b",
    ] {
        t.get(&format!("/v2/{bad}/tags/list"))
            .await
            .oci_error(400, "NAME_INVALID");
        let r = t
            .req(
                Method::POST,
                &format!("/v2/{bad}/blobs/uploads/"),
                &[],
                None,
            )
            .await;
        r.oci_error(400, "NAME_INVALID");
    }
    // Dot segments, sent raw because HTTP clients normalise them away.
    for bad in ["acme/%2e%2e/x", "acme/../x", "../x", "acme/./x"] {
        let (status, body) = raw_get(&t, &format!("/v2/{bad}/tags/list")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("NAME_INVALID"), "{bad}: {body}");
    }
    let long = "a".repeat(256);
    t.get(&format!("/v2/{long}/tags/list"))
        .await
        .oci_error(400, "NAME_INVALID");
}

async fn unsupported_methods(t: Ctx) {
    let r = t
        .req(Method::POST, "/v2/acme/app/manifests/latest", &[], None)
        .await;
    r.oci_error(405, "UNSUPPORTED");
    let r = t.req(Method::PUT, "/v2/_catalog", &[], None).await;
    r.oci_error(405, "UNSUPPORTED");
}

async fn concurrent_uploads_of_one_blob(t: Ctx) {
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let d = sha256(&data);
    let t = Arc::new(t);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (t, data, d) = (t.clone(), data.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let repo = format!("conc/r{}", i % 3);
            let r = t
                .req(
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                    &[],
                    Some(data),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED);
            repo
        }));
    }
    for task in tasks {
        let repo = task.await.unwrap();
        assert_eq!(
            sha256(&t.get(&format!("/v2/{repo}/blobs/{d}")).await.body),
            d
        );
    }
}

/// A GET sent byte for byte as written, for paths that HTTP clients would normalise.
async fn raw_get(t: &Ctx, path: &str) -> (u16, String) {
    let base = &t.base;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{}\r\n",
        t.basic_header()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Sends a request whose body stops short of its Content-Length and then hangs up.
async fn truncated_request(t: &Ctx, method: &str, path: &str, declared: usize, sent: &[u8]) {
    let base = &t.base;
    use tokio::io::AsyncWriteExt;
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {declared}\r\n{}\r\n",
        t.basic_header()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(sent).await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn truncated_bodies_lose_nothing(t: Ctx) {
    let full = vec![7u8; 100_000];
    let d = sha256(&full);
    truncated_request(
        &t,
        "POST",
        &format!("/v2/acme/trunc/blobs/uploads/?digest={d}"),
        full.len(),
        &full[..50_000],
    )
    .await;
    t.get(&format!("/v2/acme/trunc/blobs/{d}"))
        .await
        .oci_error(404, "BLOB_UNKNOWN");
    // A chunk cut short keeps what arrived, and the client resumes from the reported offset.
    let loc = t.start_upload("acme/trunc").await;
    truncated_request(&t, "PATCH", &loc, full.len(), &full[..30_000]).await;
    let status = t.get(&loc).await;
    let end: u64 = status
        .header("range")
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let offset = if end == 0 { 0 } else { end as usize + 1 };
    assert!(offset <= 30_000, "offset {offset}");
    let range = format!("{offset}-{}", full.len() - 1);
    let r = t
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", &range)],
            Some(full[offset..].to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = t
        .req(
            Method::PUT,
            &with_query(&loc, &format!("digest={d}")),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(t.get(&format!("/v2/acme/trunc/blobs/{d}")).await.body, full);
    // Oversized or malformed manifest bodies.
    truncated_request(&t, "PUT", "/v2/acme/trunc/manifests/x", 1000, b"{\"schema").await;
    t.get("/v2/acme/trunc/manifests/x")
        .await
        .oci_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(t.get("/v2/").await.status, StatusCode::OK);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::in_process().await).await;
                }
            )*
        }
        mod binary {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::binary().await).await;
                }
            )*
        }
        mod binary_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::binary_postgres().await).await;
                }
            )*
        }
        mod binary_postgres_s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::binary_postgres_s3().await).await;
                }
            )*
        }
    };
}

conformance!(
    base_endpoint,
    monolithic_blob_push_and_pull,
    blob_errors,
    chunked_upload,
    upload_finish_without_body_and_errors,
    cross_repository_mount,
    manifests,
    manifest_validation,
    docker_media_types,
    tags_and_pagination,
    catalog,
    deletes,
    referenced_content_is_not_deleted,
    sha512_manifests,
    referrers,
    repository_names,
    unsupported_methods,
    concurrent_uploads_of_one_blob,
    truncated_bodies_lose_nothing,
);
