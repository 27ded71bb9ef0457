//! The registry source against an HTTP server speaking the distribution API with the Docker
//! token flow: a 401 challenge naming a realm, a token fetched there with Basic credentials,
//! Bearer requests, and blobs behind a redirect.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_scan::{AnalyzeOptions, Credentials, RegistrySource, ScanError};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Served {
    /// Path -> (content type, bytes).
    files: HashMap<String, (String, Vec<u8>)>,
    /// Requests seen, as "METHOD path auth-scheme".
    log: Mutex<Vec<String>>,
}

const TOKEN: &str = "tok-123";
const BASIC: &str = "Basic dXNlcjpwYXNz"; // user:pass

async fn serve(listener: TcpListener, served: Arc<Served>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let served = served.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let mut lines = head.lines();
            let req: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
            let path = req.get(1).copied().unwrap_or("").to_owned();
            let auth = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default();
            served.log.lock().unwrap().push(format!(
                "{} {} {}",
                req[0],
                path.split('?').next().unwrap(),
                auth.split(' ').next().unwrap_or("")
            ));
            let port = sock.local_addr().unwrap().port();
            let (status, headers, body): (&str, Vec<(String, String)>, Vec<u8>) = if path
                .starts_with("/token")
            {
                if auth == BASIC && path.contains("scope=repository%3Aapp%3Apull") {
                    (
                        "200 OK",
                        vec![("Content-Type".into(), "application/json".into())],
                        format!(r#"{{"token":"{TOKEN}"}}"#).into_bytes(),
                    )
                } else {
                    ("401 Unauthorized", vec![], Vec::new())
                }
            } else if let Some(rest) = path.strip_prefix("/storage/") {
                // The redirect target: no auth (like a presigned URL).
                match served.files.get(&format!("/v2/app/blobs/{rest}")) {
                    Some((ct, b)) => (
                        "200 OK",
                        vec![("Content-Type".into(), ct.clone())],
                        b.clone(),
                    ),
                    None => ("404 Not Found", vec![], Vec::new()),
                }
            } else if auth != format!("Bearer {TOKEN}") {
                let challenge = format!(
                    r#"Bearer realm="http://127.0.0.1:{port}/token",service="test-registry",scope="repository:app:pull""#
                );
                (
                    "401 Unauthorized",
                    vec![("WWW-Authenticate".into(), challenge)],
                    Vec::new(),
                )
            } else if let Some(digest) = path.strip_prefix("/v2/app/blobs/") {
                (
                    "307 Temporary Redirect",
                    vec![(
                        "Location".into(),
                        format!("http://127.0.0.1:{port}/storage/{digest}"),
                    )],
                    Vec::new(),
                )
            } else {
                match served.files.get(&path) {
                    Some((ct, b)) => (
                        "200 OK",
                        vec![("Content-Type".into(), ct.clone())],
                        b.clone(),
                    ),
                    None => (
                        "404 Not Found",
                        vec![],
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#.to_vec(),
                    ),
                }
            };
            let mut resp = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("\r\n");
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Serves the images of an OCI layout as repository `app`: each tag, and every blob by digest.
fn served_from(l: &Layout) -> Served {
    let mut files = HashMap::new();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.path().join("index.json")).unwrap()).unwrap();
    for e in std::fs::read_dir(l.path().join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let digest = format!("sha256:{}", p.file_name().unwrap().to_str().unwrap());
        let bytes = std::fs::read(&p).unwrap();
        let mt = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "application/octet-stream".into());
        files.insert(
            format!("/v2/app/manifests/{digest}"),
            (mt.clone(), bytes.clone()),
        );
        files.insert(
            format!("/v2/app/blobs/{digest}"),
            ("application/octet-stream".into(), bytes),
        );
    }
    for m in index["manifests"].as_array().unwrap() {
        let tag = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        let digest = m["digest"].as_str().unwrap();
        let f = files[&format!("/v2/app/manifests/{digest}")].clone();
        files.insert(format!("/v2/app/manifests/{tag}"), f);
    }
    Served {
        files,
        log: Mutex::new(Vec::new()),
    }
}

#[test]
fn analyses_an_image_in_a_registry_with_token_auth() {
    let mut l = Layout::new();
    let base = compress(
        &layer_tar(&[
            file("etc/os-release", fixture("os-release-alpine319")),
            file("lib/apk/db/installed", fixture("apk-installed")),
        ]),
        Comp::Gzip,
    );
    let d = l.image(&[base], "amd64");
    l.tag(d, "3.19");
    l.write_index();
    let served = Arc::new(served_from(&l));
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(serve(listener, served.clone()));
        let creds = Credentials {
            username: "user".into(),
            password: "pass".into(),
        };
        let (src, reference) = RegistrySource::from_image_ref(
            &format!("127.0.0.1:{port}/app:3.19"),
            Some(creds),
            true,
        )
        .unwrap();
        assert_eq!(reference, "3.19");
        let r = berth_scan::analyze_image(
            &src,
            &reference,
            &AnalyzeOptions::default(),
            berth_scan::no_progress(),
        )
        .await
        .unwrap();
        assert_eq!(r.os.as_ref().unwrap().id, "alpine");
        assert_eq!(
            names(&r),
            [
                "busybox@1.36.1-r15",
                "libcrypto3@3.1.4-r5",
                "musl@1.2.4_git20230717-r4"
            ]
        );
        let log = served.log.lock().unwrap().clone();
        assert_eq!(
            &log[..3],
            [
                "GET /v2/app/manifests/3.19 ",
                "GET /token Basic",
                "GET /v2/app/manifests/3.19 Bearer"
            ],
            "{log:?}"
        );
        // The token is reused for the config and the layer, which come through the redirect.
        assert!(
            log[3..]
                .iter()
                .all(|l| l.ends_with("Bearer") || l.starts_with("GET /storage/")),
            "{log:?}"
        );

        // Wrong credentials: a clear error.
        let bad = Credentials {
            username: "user".into(),
            password: "nope".into(),
        };
        let (src, reference) =
            RegistrySource::from_image_ref(&format!("127.0.0.1:{port}/app:3.19"), Some(bad), true)
                .unwrap();
        let err = berth_scan::analyze_image(
            &src,
            &reference,
            &AnalyzeOptions::default(),
            berth_scan::no_progress(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ScanError::Registry(_)), "{err}");
        // An unknown tag.
        let creds = Credentials {
            username: "user".into(),
            password: "pass".into(),
        };
        let (src, _) =
            RegistrySource::from_image_ref(&format!("127.0.0.1:{port}/app"), Some(creds), true)
                .unwrap();
        let err = berth_scan::analyze_image(
            &src,
            "nope",
            &AnalyzeOptions::default(),
            berth_scan::no_progress(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ScanError::NotFound(_)), "{err}");
    });
}

#[test]
fn image_references_and_challenges() {
    let check = |image: &str, base: &str, reference: &str| {
        let (src, r) = RegistrySource::from_image_ref(image, None, false).unwrap();
        assert_eq!(
            (src.base_url().as_str(), r.as_str()),
            (base, reference),
            "{image}"
        );
    };
    check(
        "alpine",
        "https://registry-1.docker.io/library/alpine",
        "latest",
    );
    check(
        "docker.io/library/alpine:3.19",
        "https://registry-1.docker.io/library/alpine",
        "3.19",
    );
    check(
        "ghcr.io/o/r/x@sha256:abc",
        "https://ghcr.io/o/r/x",
        "sha256:abc",
    );
    check("localhost:5000/app:v1", "https://localhost:5000/app", "v1");
    let c = berth_scan::registry::parse_challenge(
        r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(
        c,
        [
            ("realm".to_owned(), "https://auth.example/token".to_owned()),
            ("service".to_owned(), "registry.example".to_owned()),
            ("scope".to_owned(), "repository:a/b:pull,push".to_owned())
        ]
    );
}
