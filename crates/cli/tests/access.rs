//! Access control against the real binary: the authorisation matrix (every /v2/ route x every
//! kind of principal, from one table), the token protocol, and hostile credentials.

mod common;

use common::{ADMIN_PASSWORD, TestServer, admin, field};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// How a principal presents itself.
#[derive(Clone, Debug)]
enum Who {
    Anonymous,
    Basic(String, String),
}

/// The principals of the matrix and what each may do on `acme/app`.
struct Principal {
    label: &'static str,
    who: Who,
    pull: bool,
    push: bool,
    delete: bool,
    authenticated: bool,
    /// Administers the organisation `acme` (manages teams, grants, robots).
    manages_acme: bool,
    site_admin: bool,
    /// The user name, for routes about one's own account.
    user: Option<&'static str>,
}

struct World {
    server: TestServer,
    c: Client,
    principals: Vec<Principal>,
    manifest: Vec<u8>,
    blob: String,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap().keep();
    let server = tokio::task::spawn_blocking(move || TestServer::start_with(&dir, &[]))
        .await
        .unwrap();
    let c = Client::new();
    let admin_who = Who::Basic("admin".into(), ADMIN_PASSWORD.into());
    // Content, pushed as the site admin.
    let config = br#"{"os":"linux"}"#.to_vec();
    let layer = b"layer bytes".to_vec();
    for (repo, data) in [
        ("acme/app", &config),
        ("acme/app", &layer),
        ("acme/other", &layer),
    ] {
        let r = send(
            &c,
            &server,
            &admin_who,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(data)),
            Some(data.clone()),
        )
        .await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    for tag in ["v1", "keep"] {
        let r = send(
            &c,
            &server,
            &admin_who,
            Method::PUT,
            &format!("/v2/acme/app/manifests/{tag}"),
            Some(manifest.clone()),
        )
        .await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
    }
    // People and machines.
    let s = &server;
    let pw = "a-long-password\n";
    for u in ["reader", "writer", "orgadmin", "outsider", "tokenuser"] {
        admin(s, &["user-add", u], pw);
    }
    admin(s, &["org-add", "acme"], "");
    admin(s, &["org-add", "other", "--owner", "outsider"], "");
    admin(s, &["grant", "reader", "read", "acme"], "");
    let r = send(
        &c,
        &server,
        &admin_who,
        Method::POST,
        "/api/v1/orgs/acme/teams",
        Some(br#"{"name":"devs"}"#.to_vec()),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
    admin(s, &["grant", "writer", "write", "acme"], "");
    admin(s, &["grant", "orgadmin", "admin", "acme"], "");
    admin(s, &["grant", "tokenuser", "write", "acme"], "");
    let robot = admin(
        s,
        &[
            "robot-add",
            "acme",
            "ci",
            "--role",
            "write",
            "--repo",
            "acme/app",
        ],
        "",
    );
    let robot_elsewhere = admin(
        s,
        &[
            "robot-add",
            "acme",
            "narrow",
            "--role",
            "write",
            "--repo",
            "acme/other",
        ],
        "",
    );
    let read_token = admin(s, &["token-add", "tokenuser", "ro", "--role", "read"], "");
    let expired = admin(
        s,
        &[
            "token-add",
            "tokenuser",
            "old",
            "--role",
            "write",
            "--expires-days",
            "0",
        ],
        "",
    );
    let p = |label, who, pull, push, delete| Principal {
        label,
        who,
        pull,
        push,
        delete,
        authenticated: true,
        manages_acme: false,
        site_admin: false,
        user: None,
    };
    let basic = |u: &str, p: &str| Who::Basic(u.into(), p.trim_end().into());
    let principals = vec![
        Principal {
            authenticated: false,
            ..p("anonymous", Who::Anonymous, false, false, false)
        },
        Principal {
            user: Some("reader"),
            ..p("reader", basic("reader", pw), true, false, false)
        },
        p("writer", basic("writer", pw), true, true, false),
        Principal {
            manages_acme: true,
            ..p("org admin", basic("orgadmin", pw), true, true, true)
        },
        p(
            "member of another organisation",
            basic("outsider", pw),
            false,
            false,
            false,
        ),
        p(
            "robot with write on acme/app",
            basic(&field(&robot, "robot"), &field(&robot, "secret")),
            true,
            true,
            false,
        ),
        p(
            "robot with write on acme/other only",
            basic(
                &field(&robot_elsewhere, "robot"),
                &field(&robot_elsewhere, "secret"),
            ),
            false,
            false,
            false,
        ),
        p(
            "read-only access token of a writer",
            basic("tokenuser", &field(&read_token, "token")),
            true,
            false,
            false,
        ),
        Principal {
            authenticated: false,
            ..p(
                "expired access token",
                basic("tokenuser", &field(&expired, "token")),
                false,
                false,
                false,
            )
        },
        Principal {
            manages_acme: true,
            site_admin: true,
            ..p(
                "site admin",
                Who::Basic("admin".into(), ADMIN_PASSWORD.into()),
                true,
                true,
                true,
            )
        },
    ];
    World {
        server,
        c,
        principals,
        manifest,
        blob: sha256(&layer),
    }
}

async fn send(
    c: &Client,
    s: &TestServer,
    who: &Who,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut r = c.request(method, format!("{}{path}", s.url()));
    if let Who::Basic(u, p) = who {
        r = r.basic_auth(u, Some(p));
    }
    if path.contains("/manifests/") {
        r = r.header("content-type", "application/vnd.oci.image.manifest.v1+json");
    } else if path.starts_with("/api/") {
        r = r.header("content-type", "application/json");
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    Authenticated,
    Pull,
    Push,
    Delete,
    ManagesAcme,
    SiteAdmin,
    /// The user `reader` themself (or a site admin).
    Reader,
}

/// Every /v2/ route, with what it needs. A new route belongs here.
fn routes(w: &World) -> Vec<(Method, String, Need, Option<Vec<u8>>)> {
    let r = "acme/app";
    let b = &w.blob;
    let unknown_upload = "00000000-0000-4000-8000-000000000000";
    vec![
        (Method::GET, "/v2/".into(), Need::Authenticated, None),
        (
            Method::GET,
            "/v2/_catalog".into(),
            Need::Authenticated,
            None,
        ),
        (Method::GET, format!("/v2/{r}/tags/list"), Need::Pull, None),
        (
            Method::GET,
            format!("/v2/{r}/manifests/v1"),
            Need::Pull,
            None,
        ),
        (
            Method::HEAD,
            format!("/v2/{r}/manifests/v1"),
            Need::Pull,
            None,
        ),
        (Method::GET, format!("/v2/{r}/blobs/{b}"), Need::Pull, None),
        (Method::HEAD, format!("/v2/{r}/blobs/{b}"), Need::Pull, None),
        (
            Method::GET,
            format!("/v2/{r}/referrers/{}", sha256(&w.manifest)),
            Need::Pull,
            None,
        ),
        (
            Method::POST,
            format!("/v2/{r}/blobs/uploads/"),
            Need::Push,
            None,
        ),
        (
            Method::POST,
            format!("/v2/{r}/blobs/uploads/?digest={}", sha256(b"x")),
            Need::Push,
            Some(b"x".to_vec()),
        ),
        (
            Method::GET,
            format!("/v2/{r}/blobs/uploads/{unknown_upload}"),
            Need::Push,
            None,
        ),
        (
            Method::PATCH,
            format!("/v2/{r}/blobs/uploads/{unknown_upload}"),
            Need::Push,
            Some(b"data".to_vec()),
        ),
        (
            Method::PUT,
            format!("/v2/{r}/blobs/uploads/{unknown_upload}?digest={b}"),
            Need::Push,
            None,
        ),
        (
            Method::DELETE,
            format!("/v2/{r}/blobs/uploads/{unknown_upload}"),
            Need::Push,
            None,
        ),
        (
            Method::PUT,
            format!("/v2/{r}/manifests/matrix"),
            Need::Push,
            Some(w.manifest.clone()),
        ),
        (
            Method::DELETE,
            format!("/v2/{r}/manifests/no-such-tag"),
            Need::Delete,
            None,
        ),
        (
            Method::DELETE,
            format!("/v2/{r}/blobs/{}", sha256(b"not linked")),
            Need::Delete,
            None,
        ),
        // The management API.
        (Method::GET, "/api/v1/me".into(), Need::Authenticated, None),
        (
            Method::GET,
            "/api/v1/orgs".into(),
            Need::Authenticated,
            None,
        ),
        (
            Method::POST,
            "/api/v1/orgs".into(),
            Need::SiteAdmin,
            Some(br#"{"name":"matrix-org"}"#.to_vec()),
        ),
        (Method::GET, "/api/v1/users".into(), Need::SiteAdmin, None),
        (
            Method::POST,
            "/api/v1/users".into(),
            Need::SiteAdmin,
            Some(br#"{"name":"created","password":"another-password"}"#.to_vec()),
        ),
        (
            Method::PATCH,
            "/api/v1/users/writer".into(),
            Need::SiteAdmin,
            Some(br#"{"disabled":false}"#.to_vec()),
        ),
        (Method::GET, "/api/v1/audit".into(), Need::SiteAdmin, None),
        (
            Method::GET,
            "/api/v1/orgs/acme/teams".into(),
            Need::ManagesAcme,
            None,
        ),
        (
            Method::POST,
            "/api/v1/orgs/acme/teams".into(),
            Need::ManagesAcme,
            Some(br#"{"name":"matrix-team"}"#.to_vec()),
        ),
        (
            Method::PUT,
            "/api/v1/orgs/acme/teams/devs/members/reader".into(),
            Need::ManagesAcme,
            None,
        ),
        (
            Method::DELETE,
            "/api/v1/orgs/acme/teams/devs/members/reader".into(),
            Need::ManagesAcme,
            None,
        ),
        (
            Method::GET,
            "/api/v1/orgs/acme/grants".into(),
            Need::ManagesAcme,
            None,
        ),
        (
            Method::PUT,
            "/api/v1/orgs/acme/grants".into(),
            Need::ManagesAcme,
            Some(br#"{"subject_kind":"user","subject":"reader","role":"read"}"#.to_vec()),
        ),
        (
            Method::DELETE,
            "/api/v1/orgs/acme/grants?subject_kind=user&subject=nobody-granted".into(),
            Need::ManagesAcme,
            None,
        ),
        (
            Method::GET,
            "/api/v1/orgs/acme/robots".into(),
            Need::ManagesAcme,
            None,
        ),
        (
            Method::POST,
            "/api/v1/orgs/acme/robots".into(),
            Need::ManagesAcme,
            Some(br#"{"name":"matrix","role":"read"}"#.to_vec()),
        ),
        (
            Method::DELETE,
            "/api/v1/orgs/acme/robots/no-such-robot".into(),
            Need::ManagesAcme,
            None,
        ),
        (
            Method::GET,
            "/api/v1/repositories/acme/app".into(),
            Need::Pull,
            None,
        ),
        (
            Method::PATCH,
            "/api/v1/repositories/acme/app".into(),
            Need::Delete,
            Some(br#"{"description":"matrix"}"#.to_vec()),
        ),
        (
            Method::GET,
            "/api/v1/users/reader/tokens".into(),
            Need::Reader,
            None,
        ),
        (
            Method::POST,
            "/api/v1/users/reader/tokens".into(),
            Need::Reader,
            Some(br#"{"name":"t","role":"read"}"#.to_vec()),
        ),
        (
            Method::DELETE,
            "/api/v1/users/reader/tokens/999999".into(),
            Need::Reader,
            None,
        ),
    ]
}

/// Whether a response is a refusal. Every resource the matrix touches exists or is addressed
/// in a way that yields a non-auth error when allowed, so a 404 is a refusal only with
/// NAME_UNKNOWN (or on HEAD, which has no body to say so). Throttling (429) refuses too.
fn refused(method: &Method, status: StatusCode, body: &str) -> bool {
    // A registry API refusal carries the code the spec pairs with its status.
    if let Some(code) = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
    {
        let expected = match status.as_u16() {
            401 => Some("UNAUTHORIZED"),
            403 => Some("DENIED"),
            429 => Some("TOOMANYREQUESTS"),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(code, expected, "{method} answered {status}: {body}");
        }
    }
    // The management API says `forbidden`, or `not_found` for repositories the caller may not see.
    if body.contains("\"code\":\"forbidden\"") || body.contains("\"code\":\"unauthorized\"") {
        return true;
    }
    if status == StatusCode::NOT_FOUND && body.contains("repository acme/app does not exist") {
        return true;
    }
    status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::NOT_FOUND
            && (body.contains("NAME_UNKNOWN") || *method == Method::HEAD))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorisation_matrix() {
    let w = world().await;
    let mut failures = Vec::new();
    for (method, path, need, body) in routes(&w) {
        for p in &w.principals {
            let allowed = match need {
                Need::Authenticated => p.authenticated,
                Need::Pull => p.pull,
                Need::Push => p.push,
                Need::Delete => p.delete,
                Need::ManagesAcme => p.manages_acme,
                Need::SiteAdmin => p.site_admin,
                Need::Reader => p.site_admin || p.user == Some("reader"),
            };
            let (status, headers, text) =
                send(&w.c, &w.server, &p.who, method.clone(), &path, body.clone()).await;
            if refused(&method, status, &text) == allowed {
                failures.push(format!(
                    "{method} {path} as {}: expected {}, got {status} {text}",
                    p.label,
                    if allowed { "allowed" } else { "refused" }
                ));
            }
            if status == StatusCode::UNAUTHORIZED && path.starts_with("/v2/") {
                let challenge = headers
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                if !challenge.starts_with("Bearer realm=") {
                    failures.push(format!(
                        "{method} {path} as {}: 401 without a Bearer challenge",
                        p.label
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong decisions:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn token(
    c: &Client,
    s: &TestServer,
    who: &Who,
    query: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut r = c.get(format!("{}/auth/token", s.url())).query(query);
    if let Who::Basic(u, p) = who {
        r = r.basic_auth(u, Some(p));
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_protocol() {
    let w = world().await;
    let (c, s) = (&w.c, &w.server);
    let reader = w
        .principals
        .iter()
        .find(|p| p.label == "reader")
        .unwrap()
        .who
        .clone();
    // Access is the request narrowed to what the caller may do; escalation attempts get nothing extra.
    let (st, v) = token(
        c,
        s,
        &reader,
        &[
            ("service", "berth"),
            ("scope", "repository:acme/app:push,delete,*,pull"),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let cl = claims(v["token"].as_str().unwrap());
    assert_eq!(
        cl["access"],
        json!([{"type": "repository", "name": "acme/app", "actions": ["pull"]}])
    );
    assert_eq!(cl["aud"], "berth");
    assert!(v["expires_in"].as_u64().unwrap() > 0 && v["issued_at"].is_string());
    // Anonymous: a token with nothing in it for a private repository.
    let (st, v) = token(
        c,
        s,
        &Who::Anonymous,
        &[("scope", "repository:acme/app:pull")],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        claims(v["token"].as_str().unwrap())["access"][0]["actions"],
        json!([])
    );
    // The token works on /v2/ for what it grants, and not beyond.
    let (_, v) = token(c, s, &reader, &[("scope", "repository:acme/app:pull")]).await;
    let t = v["token"].as_str().unwrap().to_owned();
    let get = |path: String, t: String| async move {
        c.get(format!("{}{path}", s.url()))
            .bearer_auth(t)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(
        get("/v2/acme/app/manifests/v1".into(), t.clone())
            .await
            .status(),
        StatusCode::OK
    );
    let r = get("/v2/acme/other/tags/list".into(), t.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    // Tampered, truncated and foreign tokens.
    let mut parts: Vec<String> = t.split('.').map(String::from).collect();
    let mut payload = claims(&t);
    payload["access"][0]["actions"] = json!(["pull", "push", "delete"]);
    use base64::Engine as _;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&payload).unwrap());
    for bad in [
        parts.join("."),
        t[..t.len() - 5].to_owned(),
        "e30.e30.e30".into(),
        "not-a-jwt".into(),
    ] {
        assert_eq!(
            get("/v2/acme/app/manifests/v1".into(), bad).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Wrong service.
    let (st, _) = token(c, s, &reader, &[("service", "elsewhere")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Malformed Authorization headers.
    for h in [
        "Basic",
        "Basic !!!",
        "Bearer",
        "Digest abc",
        "Basic bm9jb2xvbg==",
    ] {
        let r = c
            .get(format!("{}/v2/acme/app/tags/list", s.url()))
            .header("authorization", h)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{h}");
    }
    // OAuth2 as docker login does it: password grant with a refresh token, then a refresh.
    let form = [
        ("grant_type", "password"),
        ("username", "writer"),
        ("password", "a-long-password"),
        ("service", "berth"),
        ("scope", "repository:acme/app:pull,push"),
        ("client_id", "test"),
        ("access_type", "offline"),
    ];
    let r = c
        .post(format!("{}/auth/token", s.url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        claims(v["access_token"].as_str().unwrap())["access"][0]["actions"],
        json!(["pull", "push"])
    );
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", "berth"),
        ("scope", "repository:acme/app:pull"),
    ];
    let r = c
        .post(format!("{}/auth/token", s.url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // An access token is not a refresh token.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", t.as_str()),
    ];
    let r = c
        .post(format!("{}/auth/token", s.url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The catalog shows only what the caller may see.
    let r = c
        .get(format!("{}/v2/_catalog", s.url()))
        .basic_auth("outsider", Some("a-long-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["repositories"], json!([]));
    let r = c
        .get(format!("{}/v2/_catalog", s.url()))
        .basic_auth("reader", Some("a-long-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["acme/app", "acme/other"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_and_alike() {
    let w = world().await;
    let (c, s) = (&w.c, &w.server);
    // Unknown user and wrong password answer the same.
    let (a, va) = token(c, s, &Who::Basic("nobody".into(), "guess".into()), &[]).await;
    let (b, vb) = token(c, s, &Who::Basic("reader".into(), "guess".into()), &[]).await;
    assert_eq!((a, b), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(va, vb);
    let mut throttled = None;
    for _ in 0..12 {
        let r = c
            .get(format!("{}/auth/token", s.url()))
            .basic_auth("reader", Some("wrong"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(
                r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
            break;
        }
    }
    assert!(
        throttled.is_some_and(|s| s > 0),
        "no 429 after repeated failures"
    );
    // The same user from another address is not locked out by someone else's failures.
    let elsewhere = Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = elsewhere
        .get(format!("{}/auth/token", s.url()))
        .basic_auth("reader", Some("a-long-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the real user at another address gets in"
    );
    let r = c
        .get(format!("{}/auth/token", s.url()))
        .basic_auth("reader", Some("another guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the throttled address stays throttled"
    );
    // And so do its Basic credentials on the registry API itself, with the spec's code.
    let r = c
        .get(format!("{}/v2/acme/app/tags/list", s.url()))
        .basic_auth("reader", Some("a-long-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "TOOMANYREQUESTS", "{v}");
    // The logs never carry the passwords tried.
    let logs = s.stderr();
    assert!(!logs.contains("a-long-password") && !logs.contains(ADMIN_PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_need_read_on_the_source_and_reveal_nothing() {
    let w = world().await;
    let (c, s) = (&w.c, &w.server);
    let admin_who = Who::Basic("admin".into(), ADMIN_PASSWORD.into());
    let secret = b"only outsiders' org has this".to_vec();
    let d = sha256(&secret);
    let r = send(
        c,
        s,
        &admin_who,
        Method::POST,
        &format!("/v2/other/vault/blobs/uploads/?digest={d}"),
        Some(secret),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let writer = w
        .principals
        .iter()
        .find(|p| p.label == "writer")
        .unwrap()
        .who
        .clone();
    // From a repository the writer cannot read: an ordinary upload session, as if absent.
    let r = send(
        c,
        s,
        &writer,
        Method::POST,
        &format!("/v2/acme/new/blobs/uploads/?mount={d}&from=other/vault"),
        None,
    )
    .await;
    assert_eq!(r.0, StatusCode::ACCEPTED, "{}", r.2);
    let absent = sha256(b"nowhere");
    let r2 = send(
        c,
        s,
        &writer,
        Method::POST,
        &format!("/v2/acme/new/blobs/uploads/?mount={absent}&from=other/vault"),
        None,
    )
    .await;
    assert_eq!(r2.0, r.0, "a refused mount looks like a missing blob");
    let r = send(
        c,
        s,
        &writer,
        Method::HEAD,
        &format!("/v2/acme/new/blobs/{d}"),
        None,
    )
    .await;
    assert_eq!(r.0, StatusCode::NOT_FOUND);
    // From a repository the writer can read: mounted.
    let r = send(
        c,
        s,
        &writer,
        Method::POST,
        &format!("/v2/acme/new/blobs/uploads/?mount={}&from=acme/app", w.blob),
        None,
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
}
