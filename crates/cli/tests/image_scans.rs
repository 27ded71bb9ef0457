//! Image analysis inside the registry, end to end through the `berth` binary and real clients:
//! a push queues the analysis, the SBOM is served by the API and attached as a referrer, the
//! vulnerability report matches the real shared advisories, a database update re-matches the
//! stored inventory and records the findings that appeared and went away, scan-on-push follows
//! the organisation's policy, and the pull policy refuses vulnerable images to a real client
//! (skopeo) except for administrators and allow-listed vulnerabilities.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

const USER_PASSWORD: &str = "correct-horse-battery-staple";

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn api_as(
    server: &TestServer,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let mut headers = vec![("Authorization", auth)];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = http_request(method, &format!("{}{path}", server.url()), &headers, body).unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::String(r.text())),
    )
}

fn api(server: &TestServer, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
    api_as(server, &admin_basic_auth(), method, path, body)
}

fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An image holding real package metadata: urllib3 1.24.1 (PYSEC-2019-132) installed by pip,
/// and a Cargo.lock locking smallvec 1.6.0 (RUSTSEC-2021-0003).
fn vulnerable_layout(dir: &Path, salt: &str) -> BuiltImage {
    let mut w = LayoutWriter::new(dir);
    let metadata = "Metadata-Version: 2.1\nName: urllib3\nVersion: 1.24.1\nSummary: HTTP library\n";
    let lock = "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"smallvec\"]\n\n\
                [[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\n\
                source = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
    let image = w.add_image(
        Platform::linux_amd64(),
        &[
            vec![FileEntry::new(
                "usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/METADATA",
                metadata,
            )],
            vec![
                FileEntry::new("srv/app/Cargo.lock", lock),
                FileEntry::new("srv/app/salt", salt),
            ],
        ],
    );
    w.tag("v1", &image.manifest);
    w.write();
    image
}

/// Copies the layout's `v1` into `repo:v1` with skopeo, as the site admin.
fn push_as_admin(env: &ClientEnv, server: &TestServer, layout: &Path, repo: &str) {
    let out = env.try_skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("admin:{ADMIN_PASSWORD}"),
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/{repo}:v1", server.host()),
    ]);
    assert!(out.success(), "{out}");
}

fn scan_path(repo: &str, digest: &str, what: &str) -> String {
    format!("/api/v1/repositories/{repo}/-/images/{digest}/{what}")
}

fn wait_scanned(server: &TestServer, repo: &str, digest: &str) -> Value {
    wait_for(90, "the analysis", || {
        let (status, body) = api(server, "GET", &scan_path(repo, digest, "scan"), None);
        assert_eq!(status, 200, "{body}");
        assert_ne!(body["state"], "failed", "{body}");
        (body["state"] == "done" && body["packages"].as_i64().is_some()).then_some(body)
    })
}

fn finding_ids(report: &Value) -> Vec<String> {
    let mut ids: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["ids"].as_array().unwrap().iter())
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn skopeo_pull(
    env: &ClientEnv,
    server: &TestServer,
    repo: &str,
    creds: &str,
    dir: &str,
) -> CmdOutput {
    let dest = format!("oci:{}:pulled", env.subdir(dir).display());
    env.try_skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--src-creds",
        creds,
        &format!("docker://{}/{repo}:v1", server.host()),
        &dest,
    ])
}

#[test]
fn push_analyse_report_rematch_and_gate_pulls() {
    let data = tempfile::tempdir().unwrap();
    let advisories = berth_testkit::shared_advisories();
    // The database starts with the crates.io advisories only.
    let mut cmd = berth_command();
    cmd.arg("vulndb")
        .arg("--data-dir")
        .arg(data.path())
        .args(["import", "--feed", "osv-crates"])
        .arg(advisories.join("osv-crates"));
    let out = run_command(cmd, Duration::from_secs(120));
    assert!(out.success(), "{out}");

    let server = TestServer::start_with(data.path(), &[]);
    let env = ClientEnv::new();
    admin(&server, &["org-add", "acme"], "");
    admin(&server, &["user-add", "dev"], &format!("{USER_PASSWORD}\n"));
    admin(&server, &["grant", "dev", "read", "acme"], "");
    let dev = basic("dev", USER_PASSWORD);
    let image = vulnerable_layout(&env.subdir("src"), "scan-e2e");
    let digest = image.manifest.digest.clone();
    push_as_admin(&env, &server, &env.subdir("src"), "acme/app");

    // Analysed in the background after the push.
    let status = wait_scanned(&server, "acme/app", &digest);
    assert!(status["packages"].as_i64().unwrap() >= 2, "{status}");

    // The SBOM, in each format; readers may see it.
    let (s, bom) = api_as(
        &server,
        &dev,
        "GET",
        &scan_path("acme/app", &digest, "sbom"),
        None,
    );
    assert_eq!(s, 200, "{bom}");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    let purls: Vec<&str> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert!(purls.contains(&"pkg:pypi/urllib3@1.24.1"), "{purls:?}");
    assert!(purls.contains(&"pkg:cargo/smallvec@1.6.0"), "{purls:?}");
    let (s, spdx) = api(
        &server,
        "GET",
        &format!("{}?format=spdx", scan_path("acme/app", &digest, "sbom")),
        None,
    );
    assert_eq!(s, 200, "{spdx}");
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let (s, e) = api(
        &server,
        "GET",
        &format!("{}?format=xml", scan_path("acme/app", &digest, "sbom")),
        None,
    );
    assert_eq!(s, 400, "{e}");
    // Someone without access to the repository learns nothing about it.
    admin(
        &server,
        &["user-add", "outsider"],
        &format!("{USER_PASSWORD}\n"),
    );
    let outsider = basic("outsider", USER_PASSWORD);
    let (s, _) = api_as(
        &server,
        &outsider,
        "GET",
        &scan_path("acme/app", &digest, "sbom"),
        None,
    );
    assert_eq!(s, 404);
    // Readers may not ask for scans; an unknown digest is not found.
    let (s, _) = api_as(
        &server,
        &dev,
        "POST",
        &scan_path("acme/app", &digest, "scan"),
        None,
    );
    assert_eq!(s, 403);
    let unknown = format!("sha256:{}", "0".repeat(64));
    let (s, _) = api(
        &server,
        "GET",
        &scan_path("acme/app", &unknown, "scan"),
        None,
    );
    assert_eq!(s, 404);

    // The SBOM is attached to the image: the referrers API finds it, and its layer is the BOM.
    let r = http_request(
        "GET",
        &format!("{}/v2/acme/app/referrers/{digest}", server.url()),
        &[("Authorization", &admin_basic_auth())],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let index = r.json();
    let sboms: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["artifactType"] == "application/vnd.cyclonedx+json")
        .collect();
    assert_eq!(sboms.len(), 1, "{index}");
    let m = http_request(
        "GET",
        &format!(
            "{}/v2/acme/app/manifests/{}",
            server.url(),
            sboms[0]["digest"].as_str().unwrap()
        ),
        &[
            ("Authorization", &admin_basic_auth()),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
        None,
    )
    .unwrap()
    .json();
    assert_eq!(m["subject"]["digest"], digest.as_str());
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let blob = http_request(
        "GET",
        &format!("{}/v2/acme/app/blobs/{layer}", server.url()),
        &[("Authorization", &admin_basic_auth())],
        None,
    )
    .unwrap();
    assert_eq!(blob.status, 200);
    assert_eq!(blob.json()["bomFormat"], "CycloneDX");
    // Asking again does not attach a second SBOM.
    let (s, q) = api(
        &server,
        "POST",
        &scan_path("acme/app", &digest, "scan"),
        None,
    );
    assert_eq!(s, 202, "{q}");
    wait_for(60, "the second analysis", || {
        let (_, b) = api(
            &server,
            "GET",
            &scan_path("acme/app", &digest, "scan"),
            None,
        );
        (b["state"] == "done").then_some(())
    });
    let again = http_request(
        "GET",
        &format!(
            "{}/v2/acme/app/referrers/{digest}?artifactType=application/vnd.cyclonedx%2Bjson",
            server.url()
        ),
        &[("Authorization", &admin_basic_auth())],
        None,
    )
    .unwrap()
    .json();
    assert_eq!(again["manifests"].as_array().unwrap().len(), 1, "{again}");

    // Vulnerabilities: the crates.io advisory is there, the PyPI one is not imported yet.
    let (s, report) = api_as(
        &server,
        &dev,
        "GET",
        &scan_path("acme/app", &digest, "vulnerabilities"),
        None,
    );
    assert_eq!(s, 200, "{report}");
    let ids = finding_ids(&report);
    assert!(ids.contains(&"RUSTSEC-2021-0003".to_string()), "{ids:?}");
    assert!(!ids.contains(&"PYSEC-2019-132".to_string()), "{ids:?}");
    let smallvec = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["package"]["name"] == "smallvec")
        .unwrap();
    assert_eq!(smallvec["fixed_version"], "1.6.1");
    assert_eq!(
        smallvec["package"]["evidence"]["locations"][0]["path"],
        "srv/app/Cargo.lock"
    );

    // A database update: the PyPI record arrives. The stored inventory is matched again and the
    // new finding is recorded as an event.
    let pysec = std::fs::read(advisories.join("osv-pypi/PYSEC-2019-132.json")).unwrap();
    let (s, b) = api(
        &server,
        "POST",
        "/api/v1/vulndb/import?format=osv&feed=osv-pypi",
        Some(&pysec),
    );
    assert_eq!(s, 201, "{b}");
    let events = wait_for(60, "the appeared event", || {
        let (s, page) = api_as(
            &server,
            &dev,
            "GET",
            "/api/v1/repositories/acme/app/-/events",
            None,
        );
        assert_eq!(s, 200, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        items
            .iter()
            .any(|e| {
                e["vulnerability"] == "CVE-2019-11236" || e["vulnerability"] == "PYSEC-2019-132"
            })
            .then_some(items)
    });
    let e = events.iter().find(|e| e["kind"] == "appeared").unwrap();
    assert_eq!(e["digest"], digest.as_str());
    assert_eq!(e["package"], "PyPI/urllib3@1.24.1");
    assert_eq!(e["repositories"], json!(["acme/app"]));
    // Nothing else changed, so nothing else was recorded.
    assert_eq!(events.len(), 1, "{events:?}");
    let (s, report) = api(
        &server,
        "GET",
        &scan_path("acme/app", &digest, "vulnerabilities"),
        None,
    );
    assert_eq!(s, 200);
    assert!(finding_ids(&report).contains(&"PYSEC-2019-132".to_string()));
    // The same report in SARIF, valid against the official schema, for code-scanning tools.
    let (s, sarif) = api(
        &server,
        "GET",
        &format!(
            "{}?format=sarif",
            scan_path("acme/app", &digest, "vulnerabilities")
        ),
        None,
    );
    assert_eq!(s, 200, "{sarif}");
    let errors =
        berth_testkit::schemas::schema_errors(&berth_testkit::schemas::sarif_validator(), &sarif);
    assert!(errors.is_empty(), "{errors:?}");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), report["findings"].as_array().unwrap().len());
    assert!(sarif.to_string().contains("srv/app/Cargo.lock"));
    // Site administrators see every event; others may not list them all.
    let (s, all) = api(&server, "GET", "/api/v1/scan-events", None);
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    let (s, _) = api_as(&server, &dev, "GET", "/api/v1/scan-events", None);
    assert_eq!(s, 403);
    // Metrics: the database's freshness per feed and the analysis queue, for site admins.
    let (s, m) = api(&server, "GET", "/metrics", None);
    assert_eq!(s, 200, "{m}");
    let m = m.as_str().unwrap().to_string();
    for line in [
        "berth_images_analysed 1",
        "berth_images_rematch_pending 0",
        "berth_scan_jobs{state=\"done\"} 2",
        "berth_vulndb_feed_failing{feed=\"osv-pypi\"} 0",
        "berth_vulndb_stale 0",
    ] {
        assert!(m.lines().any(|l| l == line), "{line:?} missing from\n{m}");
    }
    assert!(
        m.lines().any(
            |l| l.starts_with("berth_vulndb_feed_records{feed=\"osv-crates\"} ")
                && !l.ends_with(" 0")
        ),
        "{m}"
    );
    let (s, _) = api_as(&server, &dev, "GET", "/metrics", None);
    assert_eq!(s, 403);

    // The pull policy: findings at or above medium are refused to everyone but administrators.
    let (s, p) = api(
        &server,
        "PUT",
        "/api/v1/orgs/acme/scan-policy",
        Some(br#"{"block_severity":"medium"}"#),
    );
    assert_eq!(s, 200, "{p}");
    let (s, _) = api_as(
        &server,
        &dev,
        "PUT",
        "/api/v1/orgs/acme/scan-policy",
        Some(br#"{"block_severity":null}"#),
    );
    assert_eq!(s, 403, "readers may not change the policy");
    let (s, e) = api(
        &server,
        "PUT",
        "/api/v1/orgs/acme/scan-policy",
        Some(br#"{"block_severity":"severe"}"#),
    );
    assert_eq!(s, 400, "{e}");
    let dev_creds = format!("dev:{USER_PASSWORD}");
    let out = skopeo_pull(&env, &server, "acme/app", &dev_creds, "refused");
    assert!(!out.success(), "{out}");
    let text = out.to_string();
    assert!(text.contains("vulnerability policy of org acme"), "{text}");
    assert!(
        text.contains("RUSTSEC-2021-0003") || text.contains("CVE-2021-25900"),
        "{text}"
    );
    let out = skopeo_pull(
        &env,
        &server,
        "acme/app",
        &format!("admin:{ADMIN_PASSWORD}"),
        "admin",
    );
    assert!(out.success(), "administrators are never blocked: {out}");
    // HEAD (no content) still answers, so clients can resolve digests.
    let head = http_request(
        "HEAD",
        &format!("{}/v2/acme/app/manifests/v1", server.url()),
        &[
            ("Authorization", &dev),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(head.status, 200);
    let get = http_request(
        "GET",
        &format!("{}/v2/acme/app/manifests/v1", server.url()),
        &[
            ("Authorization", &dev),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(get.status, 403);
    assert_eq!(get.json()["errors"][0]["code"], "DENIED");

    // Allow-listing: an expired entry does not count; current ones for every blocking finding
    // (any alias will do) let the pull through.
    let blocking: Vec<Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            matches!(
                f["severity"]["level"].as_str(),
                Some("medium" | "high" | "critical")
            )
        })
        .cloned()
        .collect();
    assert!(!blocking.is_empty(), "{report}");
    for (i, f) in blocking.iter().enumerate() {
        let id = f["ids"][0].as_str().unwrap();
        let expired = json!({"id": id, "reason": "old exception", "expires_at": 1});
        let (s, b) = api(
            &server,
            "POST",
            "/api/v1/orgs/acme/scan-policy/allowlist",
            Some(expired.to_string().as_bytes()),
        );
        assert_eq!(s, 201, "{b}");
        if i == 0 {
            let out = skopeo_pull(&env, &server, "acme/app", &dev_creds, "expired");
            assert!(!out.success(), "an expired exception does not apply: {out}");
        }
        let alias = f["ids"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap();
        let current = json!({"id": alias, "reason": "not reachable from our code"});
        let (s, b) = api(
            &server,
            "POST",
            "/api/v1/repositories/acme/app/-/scan-policy/allowlist",
            Some(current.to_string().as_bytes()),
        );
        assert_eq!(s, 201, "{b}");
    }
    let (s, b) = api(
        &server,
        "POST",
        "/api/v1/orgs/acme/scan-policy/allowlist",
        Some(br#"{"id":"CVE-1","reason":""}"#),
    );
    assert_eq!(s, 400, "a reason is required: {b}");
    let out = skopeo_pull(&env, &server, "acme/app", &dev_creds, "allowed");
    assert!(out.success(), "allow-listed: {out}");

    // The PyPI feed is replaced by one without that record: the finding goes away, as an event.
    let other = std::fs::read(advisories.join("osv-pypi/PYSEC-2021-108.json"))
        .or_else(|_| {
            let first = std::fs::read_dir(advisories.join("osv-pypi"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| !p.ends_with("PYSEC-2019-132.json"))
                .unwrap();
            std::fs::read(first)
        })
        .unwrap();
    let (s, b) = api(
        &server,
        "POST",
        "/api/v1/vulndb/import?format=osv&feed=osv-pypi",
        Some(&other),
    );
    assert_eq!(s, 201, "{b}");
    wait_for(60, "the resolved event", || {
        let (_, page) = api(
            &server,
            "GET",
            "/api/v1/repositories/acme/app/-/events",
            None,
        );
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "resolved" && e["package"] == "PyPI/urllib3@1.24.1")
            .then_some(())
    });
}

#[test]
fn scan_on_push_follows_the_policy_and_on_demand_scans_work() {
    let server = TestServer::start();
    let env = ClientEnv::new();
    admin(&server, &["org-add", "quiet"], "");
    let (s, p) = api(
        &server,
        "PUT",
        "/api/v1/orgs/quiet/scan-policy",
        Some(br#"{"scan_on_push":false}"#),
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["scan_on_push"], false);
    let image = vulnerable_layout(&env.subdir("src"), "quiet");
    let digest = image.manifest.digest.clone();
    push_as_admin(&env, &server, &env.subdir("src"), "quiet/app");
    std::thread::sleep(Duration::from_secs(3));
    let (s, st) = api(
        &server,
        "GET",
        &scan_path("quiet/app", &digest, "scan"),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(st["state"], "none", "not analysed on push: {st}");
    let (s, _) = api(
        &server,
        "GET",
        &scan_path("quiet/app", &digest, "sbom"),
        None,
    );
    assert_eq!(s, 404);
    // A repository setting wins over its organisation's.
    let (s, _) = api(
        &server,
        "PUT",
        "/api/v1/repositories/quiet/app/-/scan-policy",
        Some(br#"{"scan_on_push":true}"#),
    );
    assert_eq!(s, 200);
    let (s, p) = api(
        &server,
        "GET",
        "/api/v1/repositories/quiet/app/-/scan-policy",
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(p["scan_on_push"], true);
    assert_eq!(p["updated_by"], "admin");
    // On demand.
    let (s, q) = api(
        &server,
        "POST",
        &scan_path("quiet/app", &digest, "scan"),
        None,
    );
    assert_eq!(s, 202, "{q}");
    let status = wait_scanned(&server, "quiet/app", &digest);
    assert!(status["packages"].as_i64().unwrap() >= 2, "{status}");
    // The database is empty here: an inventory, no findings.
    let (s, r) = api(
        &server,
        "GET",
        &scan_path("quiet/app", &digest, "vulnerabilities"),
        None,
    );
    assert_eq!(s, 200, "{r}");
    assert!(r["findings"].as_array().unwrap().is_empty(), "{r}");
    // Malformed requests get clear errors.
    let (s, _) = api(
        &server,
        "GET",
        "/api/v1/repositories/quiet/app/-/images/not-a-digest/scan",
        None,
    );
    assert_eq!(s, 400);
    let (s, _) = api(
        &server,
        "PUT",
        "/api/v1/repositories/quiet/app/-/scan-policy",
        Some(b"{not json"),
    );
    assert_eq!(s, 400);
    let (s, _) = api(
        &server,
        "GET",
        "/api/v1/repositories/quiet/app/-/nothing-here",
        None,
    );
    assert_eq!(s, 404);
}

/// Two replicas on one PostgreSQL database and one S3 bucket: a push through one is analysed
/// once (one SBOM referrer, one job), and every replica serves the result.
#[test]
fn replicas_analyse_each_image_once() {
    let env_vars = scale_out_env();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let replicas: Vec<TestServer> = dirs
        .iter()
        .map(|d| TestServer::start_with_env(d.path(), &[], &env_refs(&env_vars)))
        .collect();
    let env = ClientEnv::new();
    let mut digests = Vec::new();
    // Several images, so both replicas' workers have something to claim.
    for i in 0..4 {
        let dir = env.subdir(&format!("src{i}"));
        let image = vulnerable_layout(&dir, &format!("replicas-{i}"));
        push_as_admin(&env, &replicas[i % 2], &dir, &format!("acme/app{i}"));
        digests.push(image.manifest.digest.clone());
    }
    for (i, d) in digests.iter().enumerate() {
        let repo = format!("acme/app{i}");
        // Asked of the replica the image was not pushed through.
        let other = &replicas[(i + 1) % 2];
        let st = wait_for(90, "the analysis", || {
            let (s, b) = api(other, "GET", &scan_path(&repo, d, "scan"), None);
            assert_eq!(s, 200, "{b}");
            (b["state"] == "done").then_some(b)
        });
        assert!(st["packages"].as_i64().unwrap() >= 2, "{st}");
        let (s, bom) = api(other, "GET", &scan_path(&repo, d, "sbom"), None);
        assert_eq!(s, 200, "{bom}");
        assert_eq!(bom["bomFormat"], "CycloneDX");
        let index = http_request(
            "GET",
            &format!("{}/v2/{repo}/referrers/{d}", other.url()),
            &[("Authorization", &admin_basic_auth())],
            None,
        )
        .unwrap()
        .json();
        assert_eq!(
            index["manifests"].as_array().unwrap().len(),
            1,
            "one SBOM, however many replicas: {index}"
        );
    }
    // Each image was analysed by exactly one replica.
    let analysed: usize = replicas
        .iter()
        .map(|r| r.stderr().matches("image analysed").count())
        .sum();
    assert_eq!(analysed, digests.len(), "{}", replicas[0].stderr());
}

/// Pushes `data` as a blob of `repo` (monolithic upload) as the admin.
fn push_blob(server: &TestServer, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let r = http_request(
        "POST",
        &format!("{}/v2/{repo}/blobs/uploads/?digest={digest}", server.url()),
        &[
            ("Authorization", &admin_basic_auth()),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(data),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    digest
}

/// Pushes a vulnerability database bundle artifact (snapshot, and a signature if given).
fn push_bundle(
    server: &TestServer,
    repo: &str,
    tag: &str,
    snapshot: &[u8],
    signature: Option<&[u8]>,
) {
    let mut layers = vec![json!({
        "mediaType": "application/vnd.berth.vulndb.snapshot.v1",
        "digest": push_blob(server, repo, snapshot),
        "size": snapshot.len(),
    })];
    if let Some(sig) = signature {
        layers.push(json!({
            "mediaType": "application/vnd.berth.vulndb.signature.v1",
            "digest": push_blob(server, repo, sig),
            "size": sig.len(),
        }));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.berth.vulndb.bundle.v1",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": push_blob(server, repo, b"{}"),
            "size": 2,
        },
        "layers": layers,
    });
    let r = http_request(
        "PUT",
        &format!("{}/v2/{repo}/manifests/{tag}", server.url()),
        &[
            ("Authorization", &admin_basic_auth()),
            ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
        ],
        Some(manifest.to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
}

/// An air-gapped site pushes its database into the registry as an OCI artifact; the server
/// loads it when the tag moves, and refuses unsigned bundles when a key is configured.
#[test]
fn bundle_artifacts_are_loaded_from_the_registry() {
    use berth_vulndb::import::{Osv, import_file};
    use ed25519_dalek::SigningKey;

    let advisories = berth_testkit::shared_advisories();
    let snapshot = |files: &[&str]| {
        let reports = files
            .iter()
            .map(|f| {
                import_file(&Osv::default(), &advisories.join(f), &Default::default()).unwrap()
            })
            .collect::<Vec<_>>();
        // One feed of several files: merge them by importing each as its own feed.
        let reports = reports
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.feed = format!("osv-{i}");
                r
            })
            .collect();
        berth_vulndb::VulnDb::from_imports(reports)
            .unwrap()
            .to_snapshot_bytes()
            .unwrap()
    };
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let public_hex = hex::encode(key.verifying_key().to_bytes());
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        data.path(),
        &[],
        &[
            ("BERTH_VULNDB__PUBLIC_KEY", public_hex.as_str()),
            ("BERTH_VULNDB__BUNDLE_ARTIFACT", "ops/vulndb:latest"),
            ("BERTH_VULNDB__CHECK_INTERVAL_SECS", "1"),
        ],
    );
    admin(&server, &["org-add", "ops"], "");

    let first = snapshot(&["osv-crates/RUSTSEC-2021-0003.json"]);
    let sig = berth_vulndb::signature::sign_hex(&key, &first);
    push_bundle(
        &server,
        "ops/vulndb",
        "latest",
        &first,
        Some(sig.as_bytes()),
    );
    // The database is swapped first and the load recorded right after: wait for both (a
    // status read in between sees the advisories without the feed's row).
    let status = wait_for(60, "the bundle artifact to load", || {
        let (_, st) = api(&server, "GET", "/api/v1/vulndb", None);
        let recorded = st["feeds"].as_array().is_some_and(|fs| {
            fs.iter()
                .any(|f| f["name"] == "bundle-artifact" && f["last_success"].is_i64())
        });
        (recorded && st["advisories"].as_u64() == Some(1)).then_some(st)
    });
    let artifact = status["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "bundle-artifact")
        .unwrap_or_else(|| panic!("{status:#}"));
    assert!(artifact["error"].is_null(), "{artifact}");
    let (s, adv) = api(
        &server,
        "GET",
        "/api/v1/vulndb/advisories/CVE-2021-25900",
        None,
    );
    assert_eq!(s, 200, "{adv}");

    // An unsigned bundle moves the tag but changes nothing; the failure is shown.
    let second = snapshot(&[
        "osv-crates/RUSTSEC-2021-0003.json",
        "osv-pypi/PYSEC-2019-132.json",
    ]);
    push_bundle(&server, "ops/vulndb", "latest", &second, None);
    let status = wait_for(60, "the refusal", || {
        let (_, st) = api(&server, "GET", "/api/v1/vulndb", None);
        let f = st["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "bundle-artifact")
            .cloned()?;
        f["error"].is_string().then_some(st)
    });
    assert_eq!(status["advisories"], 1, "{status:#}");
    // Signed: loaded, also through the API by digest-less reference.
    let sig = berth_vulndb::signature::sign_hex(&key, &second);
    push_bundle(&server, "ops/vulndb", "v2", &second, Some(sig.as_bytes()));
    let (s, b) = api(
        &server,
        "POST",
        "/api/v1/vulndb/bundle/artifact",
        Some(br#"{"repository":"ops/vulndb","reference":"v2"}"#),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["records"], 2);
    // What is not a bundle is refused clearly; only site admins may load bundles.
    let (s, b) = api(
        &server,
        "POST",
        "/api/v1/vulndb/bundle/artifact",
        Some(br#"{"repository":"ops/nothing","reference":"v1"}"#),
    );
    assert_eq!(s, 404, "{b}");
    admin(&server, &["user-add", "dev"], &format!("{USER_PASSWORD}\n"));
    let (s, _) = api_as(
        &server,
        &basic("dev", USER_PASSWORD),
        "POST",
        "/api/v1/vulndb/bundle/artifact",
        Some(br#"{"repository":"ops/vulndb","reference":"v2"}"#),
    );
    assert_eq!(s, 403);
}
