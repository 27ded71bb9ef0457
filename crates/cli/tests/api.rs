//! The management API end to end: what an administrator does through it takes effect on the
//! registry, the audit log records it without secrets, and the OpenAPI document describes it.

mod common;

use common::{ADMIN_PASSWORD, TestServer};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

struct Api {
    c: Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: (&str, &str),
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .c
            .request(method, format!("{}{path}", self.base))
            .basic_auth(auth.0, Some(auth.1));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administration_through_the_api() {
    let server = tokio::task::spawn_blocking(TestServer::start)
        .await
        .unwrap();
    let api = Api {
        c: Client::new(),
        base: server.url(),
    };
    use reqwest::Method as M;
    // A user, an organisation they own, a grant for a second user.
    let (st, v) = api
        .call(
            M::POST,
            "/api/v1/users",
            ADMIN,
            Some(json!({"name": "alice", "password": "alice-password"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], "alice");
    let (st, _) = api
        .call(
            M::POST,
            "/api/v1/users",
            ADMIN,
            Some(json!({"name": "alice", "password": "alice-password"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    for bad in [
        json!({"name": "Bad Name", "password": "long-enough"}),
        json!({"name": "bob", "password": "short"}),
        json!({"nam": 1}),
    ] {
        let (st, v) = api.call(M::POST, "/api/v1/users", ADMIN, Some(bad)).await;
        assert!(st.is_client_error(), "{st} {v}");
    }
    api.call(
        M::POST,
        "/api/v1/users",
        ADMIN,
        Some(json!({"name": "bob", "password": "bob-password"})),
    )
    .await;
    let (st, _) = api
        .call(
            M::POST,
            "/api/v1/orgs",
            ADMIN,
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = api
        .call(
            M::PUT,
            "/api/v1/orgs/acme/grants",
            ADMIN,
            Some(json!({"subject_kind": "user", "subject": "alice", "role": "owner"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // Alice, an owner now, manages her organisation: a team with bob, granted write.
    let alice = ("alice", "alice-password");
    assert_eq!(
        api.call(
            M::POST,
            "/api/v1/orgs/acme/teams",
            alice,
            Some(json!({"name": "devs"}))
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        api.call(
            M::PUT,
            "/api/v1/orgs/acme/teams/devs/members/bob",
            alice,
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let (st, _) = api
        .call(M::PUT, "/api/v1/orgs/acme/grants", alice, Some(json!({"subject_kind": "team", "subject": "devs", "role": "write", "repo": "acme/app"})))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, grants) = api
        .call(M::GET, "/api/v1/orgs/acme/grants", alice, None)
        .await;
    assert!(
        grants
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["subject"] == "devs" && g["repo"] == "acme/app" && g["role"] == "write"),
        "{grants}"
    );
    let (_, teams) = api
        .call(M::GET, "/api/v1/orgs/acme/teams", alice, None)
        .await;
    assert_eq!(teams, json!([{"name": "devs", "members": ["bob"]}]));
    // Bob pushes through the team grant; not elsewhere in acme.
    let c = Client::new();
    let push = |user: &'static str, pass: &'static str, repo: &'static str| {
        let (c, base) = (c.clone(), server.url());
        async move {
            let d = sha256(repo.as_bytes());
            c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                .basic_auth(user, Some(pass))
                .body(repo.as_bytes().to_vec())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        push("bob", "bob-password", "acme/app").await,
        StatusCode::CREATED
    );
    assert_ne!(
        push("bob", "bob-password", "acme/other").await,
        StatusCode::CREATED
    );
    // A robot made through the API pushes with its secret, shown once.
    let (st, robot) = api
        .call(
            M::POST,
            "/api/v1/orgs/acme/robots",
            alice,
            Some(json!({"name": "ci", "role": "write", "repos": ["acme/app"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{robot}");
    let (rname, rsecret) = (
        robot["name"].as_str().unwrap().to_owned(),
        robot["secret"].as_str().unwrap().to_owned(),
    );
    assert_eq!(rname, "acme+ci");
    let (_, robots) = api
        .call(M::GET, "/api/v1/orgs/acme/robots", alice, None)
        .await;
    assert!(
        !robots.to_string().contains(&rsecret),
        "listings never show secrets"
    );
    let status = c
        .post(format!(
            "{}/v2/acme/app/blobs/uploads/?digest={}",
            server.url(),
            sha256(b"robot")
        ))
        .basic_auth(&rname, Some(&rsecret))
        .body(b"robot".to_vec())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        api.call(M::DELETE, "/api/v1/orgs/acme/robots/ci", alice, None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (st, _) = api
        .call(M::GET, "/api/v1/me", (&rname, &rsecret), None)
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a revoked robot is refused at once"
    );
    // A personal access token limited to read.
    let (st, t) = api
        .call(
            M::POST,
            "/api/v1/users/bob/tokens",
            ("bob", "bob-password"),
            Some(json!({"name": "laptop", "role": "read"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let pat = t["secret"].as_str().unwrap().to_owned();
    assert!(pat.starts_with("berth_pat_"));
    let r = c
        .get(format!("{}/v2/acme/app/tags/list", server.url()))
        .basic_auth("bob", Some(&pat))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .post(format!("{}/v2/acme/app/blobs/uploads/", server.url()))
        .basic_auth("bob", Some(&pat))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a read token cannot push"
    );
    let (st, me) = api
        .c
        .get(format!("{}/api/v1/me", server.url()))
        .bearer_auth(&pat)
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["name"], "bob");
    let (_, tokens) = api
        .call(
            M::GET,
            "/api/v1/users/bob/tokens",
            ("bob", "bob-password"),
            None,
        )
        .await;
    let id = tokens[0]["id"].as_i64().unwrap();
    assert!(!tokens.to_string().contains(&pat));
    assert_eq!(
        api.call(
            M::DELETE,
            &format!("/api/v1/users/bob/tokens/{id}"),
            ("bob", "bob-password"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let r = c
        .get(format!("{}/auth/token", server.url()))
        .basic_auth("bob", Some(&pat))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused"
    );
    // Public repositories: anonymous pulls.
    let d = sha256(b"acme/app");
    let anon = || async {
        c.get(format!("{}/v2/acme/app/blobs/{d}", server.url()))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(anon().await, StatusCode::UNAUTHORIZED);
    let (st, repo) = api
        .call(
            M::PATCH,
            "/api/v1/repositories/acme/app",
            alice,
            Some(json!({"public": true, "description": "the app"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{repo}");
    assert_eq!(
        repo,
        json!({"name": "acme/app", "public": true, "description": "the app"})
    );
    assert_eq!(anon().await, StatusCode::OK);
    let r = c
        .post(format!("{}/v2/acme/app/blobs/uploads/", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "public means pull, not push"
    );
    // A password change takes effect.
    let (st, _) = api
        .call(
            M::PATCH,
            "/api/v1/users/bob",
            ("bob", "bob-password"),
            Some(json!({"password": "bob-new-password"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = api
        .call(
            M::PATCH,
            "/api/v1/users/bob",
            ("bob", "bob-new-password"),
            Some(json!({"site_admin": true})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "nobody makes themself a site admin"
    );
    // The audit log has it all, filterable, and no secret anywhere.
    let (st, log) = api
        .call(M::GET, "/api/v1/audit?limit=1000", ADMIN, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "user.create",
        "organisation.create",
        "grant.set",
        "team.create",
        "team.member.add",
        "robot.create",
        "robot.revoke",
        "token.create",
        "token.revoke",
        "repository.public",
        "user.password",
    ] {
        assert!(actions.contains(&a), "no {a} in {actions:?}");
    }
    // Every entry names the real source address of the request.
    for e in log["items"].as_array().unwrap() {
        assert_eq!(e["source"], "127.0.0.1", "{e}");
    }
    let text = log.to_string();
    for secret in [
        rsecret.as_str(),
        pat.as_str(),
        "alice-password",
        "bob-password",
        ADMIN_PASSWORD,
    ] {
        assert!(!text.contains(secret), "the audit log holds a secret");
        assert!(
            !server.stderr().contains(secret),
            "the server log holds a secret"
        );
    }
    let (_, by_alice) = api
        .call(M::GET, "/api/v1/audit?actor=alice", ADMIN, None)
        .await;
    assert!(
        by_alice["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "alice")
    );
    assert!(!by_alice["items"].as_array().unwrap().is_empty());
    // By target, and by time: everything is after the start of the test and nothing after now.
    let (_, on_robot) = api
        .call(M::GET, "/api/v1/audit?target=acme%2Bci", ADMIN, None)
        .await;
    let on_robot: Vec<&str> = on_robot["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(on_robot, ["robot.revoke", "robot.create"], "newest first");
    let first_at = log["items"].as_array().unwrap().last().unwrap()["at"]
        .as_i64()
        .unwrap();
    let last_at = log["items"][0]["at"].as_i64().unwrap();
    let (_, since) = api
        .call(
            M::GET,
            &format!("/api/v1/audit?since={first_at}&limit=1000"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(
        since["items"].as_array().unwrap().len(),
        log["items"].as_array().unwrap().len()
    );
    let (_, future) = api
        .call(
            M::GET,
            &format!("/api/v1/audit?since={}", last_at + 1),
            ADMIN,
            None,
        )
        .await;
    assert!(
        future["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["at"].as_i64().unwrap() > last_at)
    );
    let (_, before) = api
        .call(
            M::GET,
            &format!("/api/v1/audit?until={}", first_at - 1),
            ADMIN,
            None,
        )
        .await;
    assert!(before["items"].as_array().unwrap().is_empty());
    let (_, paged) = api.call(M::GET, "/api/v1/audit?limit=2", ADMIN, None).await;
    assert_eq!(paged["items"].as_array().unwrap().len(), 2);
    let before = paged["next"].as_i64().unwrap();
    let (_, older) = api
        .call(
            M::GET,
            &format!("/api/v1/audit?limit=2&before={before}"),
            ADMIN,
            None,
        )
        .await;
    assert!(older["items"][0]["id"].as_i64().unwrap() < before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_and_page() {
    let server = tokio::task::spawn_blocking(TestServer::start)
        .await
        .unwrap();
    let c = Client::new();
    let doc: Value = c
        .get(format!("{}/api/v1/openapi.json", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/users",
        "/api/v1/orgs/{org}/grants",
        "/api/v1/orgs/{org}/robots",
        "/api/v1/users/{name}/tokens",
        "/api/v1/repositories/{name}",
        "/api/v1/audit",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    // The endpoints reached through dispatchers, with the methods they answer.
    for (p, methods) in [
        (
            "/api/v1/repositories/{name}/-/images/{digest}/scan",
            &["get", "post"][..],
        ),
        (
            "/api/v1/repositories/{name}/-/images/{digest}/sbom",
            &["get"],
        ),
        (
            "/api/v1/repositories/{name}/-/images/{digest}/vulnerabilities",
            &["get"],
        ),
        ("/api/v1/repositories/{name}/-/events", &["get"]),
        ("/api/v1/repositories/{name}/-/scan-policy", &["get", "put"]),
        (
            "/api/v1/repositories/{name}/-/scan-policy/allowlist",
            &["get", "post"],
        ),
        (
            "/api/v1/repositories/{name}/-/scan-policy/allowlist/{id}",
            &["delete"],
        ),
        ("/api/v1/orgs/{org}/scan-policy", &["get", "put"]),
        ("/api/v1/orgs/{org}/scan-policy/allowlist", &["get", "post"]),
        ("/api/v1/orgs/{org}/scan-policy/allowlist/{id}", &["delete"]),
        ("/api/v1/scan-events", &["get"]),
        ("/metrics", &["get"]),
    ] {
        let item = paths
            .get(p)
            .unwrap_or_else(|| panic!("{p} missing from the OpenAPI document"));
        for m in methods {
            assert!(item.get(*m).is_some(), "{m} {p} is not described");
        }
        // Every path parameter in the template is declared.
        for op in item.as_object().unwrap().values() {
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            for seg in p.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                assert!(declared.contains(&name), "{p}: {name} is not declared");
            }
        }
    }
    // Content types and parameter types as the handlers send and parse them.
    let op = |p: &str, m: &str| paths[p][m].clone();
    let sbom = op("/api/v1/repositories/{name}/-/images/{digest}/sbom", "get");
    for ty in [
        "application/vnd.cyclonedx+json",
        "application/spdx+json",
        "application/json",
    ] {
        assert!(
            sbom["responses"]["200"]["content"].get(ty).is_some(),
            "{ty}"
        );
    }
    let vulns = op(
        "/api/v1/repositories/{name}/-/images/{digest}/vulnerabilities",
        "get",
    );
    assert!(
        vulns["responses"]["200"]["content"]
            .get("application/sarif+json")
            .is_some()
    );
    let events = op("/api/v1/scan-events", "get");
    for p in events["parameters"].as_array().unwrap() {
        assert_eq!(p["schema"]["type"], "integer", "{p}");
    }
    assert!(
        op("/metrics", "get")["responses"]["200"]["content"]
            .get("text/plain; version=0.0.4; charset=utf-8")
            .is_some()
    );
    for (schema, field) in [
        ("PolicyBody", "updated_by"),
        ("PolicyBody", "updated_at"),
        ("AllowBody", "created_by"),
        ("AllowBody", "created_at"),
    ] {
        assert_eq!(
            doc["components"]["schemas"][schema]["properties"][field]["readOnly"], true,
            "{schema}.{field}"
        );
    }
    // Every reference points at a schema the document defines.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(schemas.contains_key(name), "{r} is not defined");
    }
    let page = c
        .get(format!("{}/api/v1/docs/", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("swagger") && !html.contains("cdn"),
        "the page is served from the binary"
    );
    // Errors are JSON with a code, also for unknown endpoints and bad credentials.
    let r = c
        .get(format!("{}/api/v1/nope", server.url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let r = c
        .get(format!("{}/api/v1/me", server.url()))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_sessions() {
    let server = tokio::task::spawn_blocking(TestServer::start)
        .await
        .unwrap();
    let c = Client::new();
    let url = |p: &str| format!("{}{p}", server.url());
    // Wrong password: no session.
    let r = c
        .post(url("/api/v1/session"))
        .json(&json!({"username": "admin", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    let r = c
        .post(url("/api/v1/session"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(
        !server
            .stderr()
            .contains(cookie.trim_start_matches("berth_session=")),
        "the session secret is never logged"
    );
    // Reads work with the cookie alone.
    let r = c
        .get(url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "admin");
    // Changes need the CSRF header as well.
    let body = json!({"name": "websession-org"});
    let r = c
        .post(url("/api/v1/orgs"))
        .header("cookie", &cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(url("/api/v1/orgs"))
        .header("cookie", &cookie)
        .header("x-berth-csrf", "1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A forged or foreign cookie is refused; logging out ends the session.
    let r = c
        .get(url("/api/v1/me"))
        .header("cookie", "berth_session=berth_sess_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .delete(url("/api/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .get(url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Robots and access tokens cannot open sessions.
    let r = c
        .post(url("/api/v1/session"))
        .json(&json!({"username": "admin", "password": "berth_pat_nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
