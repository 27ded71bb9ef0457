//! The vulnerability database in the product: `berth vulndb import` of the 8,158 real shared
//! advisories, then the API of a real server over them; hostile uploads; signed bundles; and
//! feed updates from a real HTTP server to two replicas sharing one PostgreSQL database and one
//! storage directory.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    ADMIN_PASSWORD, CmdOutput, TestServer, berth_command, field, http_request, run_command,
};
use serde_json::Value;

/// The shared real advisories, wherever this checkout is.
fn advisories() -> String {
    berth_testkit::shared_advisories().display().to_string()
}

/// Runs `berth vulndb ARGS --data-dir DIR` with `envs` (and no inherited `BERTH_*`).
fn vulndb_cmd(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = berth_command();
    cmd.arg("vulndb").arg("--data-dir").arg(data_dir).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run_command(cmd, Duration::from_secs(120))
}

fn api(server: &TestServer, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
    api_as(server, ("admin", ADMIN_PASSWORD), method, path, body)
}

fn api_as(
    server: &TestServer,
    user: (&str, &str),
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    use base64::Engine as _;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user.0, user.1))
    );
    let r = http_request(
        method,
        &format!("{}{path}", server.url()),
        &[("Authorization", &auth)],
        body.as_deref(),
    )
    .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::String(r.text())),
    )
}

fn feed<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feed {name} in {status:#}"))
}

#[test]
fn import_all_shared_advisories_then_serve_them() {
    let data = tempfile::tempdir().unwrap();
    let out = vulndb_cmd(
        data.path(),
        &["import", "--format", "osv", &advisories()],
        &[],
    );
    assert!(out.success(), "{out}");
    assert_eq!(field(&out.stdout, "records"), "8158", "{out}");
    assert_eq!(field(&out.stdout, "feed"), "osv");
    let version = field(&out.stdout, "version");

    let out = vulndb_cmd(data.path(), &["status"], &[]);
    assert!(out.success(), "{out}");
    let st = out.json();
    assert_eq!(st["version"], version.as_str());
    assert_eq!(st["advisories"], 8158);
    assert_eq!(st["stale"], false);

    // A small limit, for the hostile uploads below.
    let server = TestServer::start_with_env(
        data.path(),
        &[],
        &[
            ("BERTH_VULNDB__MAX_UPLOAD_BYTES", "200000"),
            ("BERTH_VULNDB__CHECK_INTERVAL_SECS", "1"),
        ],
    );
    let (code, st) = api(&server, "GET", "/api/v1/vulndb", None);
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["version"], version.as_str());
    assert_eq!(st["advisories"], 8158);
    assert_eq!(st["stale"], false);
    assert!(st["age_secs"].as_u64().unwrap() < 600, "{st}");
    let osv = feed(&st, "osv");
    assert_eq!(osv["records"], 8158);
    assert!(osv["last_success"].as_i64().is_some(), "{st}");

    // By id, and by an alias (the CVE of RUSTSEC-2021-0003, smallvec's buffer overflow).
    let (code, a) = api(
        &server,
        "GET",
        "/api/v1/vulndb/advisories/RUSTSEC-2021-0003",
        None,
    );
    assert_eq!(code, 200, "{a}");
    let (code, a) = api(
        &server,
        "GET",
        "/api/v1/vulndb/advisories/CVE-2021-25900",
        None,
    );
    assert_eq!(code, 200, "{a}");
    let ids: Vec<&str> = a["advisories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"RUSTSEC-2021-0003"), "{a}");
    assert_eq!(a["advisories"][0]["affected"][0]["name"], "smallvec", "{a}");
    let (code, e) = api(
        &server,
        "GET",
        "/api/v1/vulndb/advisories/CVE-1999-0000",
        None,
    );
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Hostile uploads: each refused with a clear 4xx, and nothing changes.
    let osv_record = std::fs::read(format!(
        "{}/osv-crates/RUSTSEC-2021-0003.json",
        advisories()
    ))
    .unwrap();
    let alpine = std::fs::read(fixture("alpine/v3.19-main.json")).unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/api/v1/vulndb/import?format=osv",
            vec![b' '; 300_000],
            413,
            "too_large",
        ),
        (
            "/api/v1/vulndb/import?format=osv",
            b"{\"id\": \"X\", ".to_vec(),
            400,
            "invalid",
        ),
        (
            "/api/v1/vulndb/import?format=osv",
            b"PK\x03\x04garbage".to_vec(),
            400,
            "invalid",
        ),
        (
            "/api/v1/vulndb/import?format=alpine-secdb",
            osv_record.clone(),
            400,
            "invalid",
        ),
        (
            "/api/v1/vulndb/import?format=osv",
            alpine.clone(),
            400,
            "invalid",
        ),
        (
            "/api/v1/vulndb/import?format=rss",
            osv_record.clone(),
            400,
            "invalid",
        ),
        (
            "/api/v1/vulndb/import?format=osv&feed=../x",
            osv_record.clone(),
            400,
            "invalid",
        ),
        ("/api/v1/vulndb/import", osv_record.clone(), 400, ""),
    ];
    for (path, body, want, code_name) in cases {
        let (code, e) = api(&server, "POST", path, Some(body));
        assert_eq!(code, want, "{path}: {e}");
        if !code_name.is_empty() {
            assert_eq!(e["error"]["code"], code_name, "{path}: {e}");
            assert!(!e["error"]["message"].as_str().unwrap().is_empty());
        }
    }
    // Only site admins may change the database.
    let created = http_request(
        "POST",
        &format!("{}/api/v1/users", server.url()),
        &[
            ("Authorization", &common::admin_basic_auth()),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"name": "alice", "password": "alice-password"}"#),
    )
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let (code, _) = api_as(
        &server,
        ("alice", "alice-password"),
        "POST",
        "/api/v1/vulndb/import?format=alpine-secdb",
        Some(alpine.clone()),
    );
    assert_eq!(code, 403);
    let (code, st) = api_as(
        &server,
        ("alice", "alice-password"),
        "GET",
        "/api/v1/vulndb",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(st["version"], version.as_str(), "nothing changed");
    assert_eq!(st["advisories"], 8158);
    let (code, _) = api_as(&server, ("nobody", "wrong"), "GET", "/api/v1/vulndb", None);
    assert_eq!(code, 401);

    // A good upload adds its feed and keeps the others.
    let (code, o) = api(
        &server,
        "POST",
        "/api/v1/vulndb/import?format=alpine-secdb&feed=alpine-3.19",
        Some(alpine),
    );
    assert_eq!(code, 201, "{o}");
    assert_eq!(o["feed"], "alpine-3.19");
    let (_, st) = api(&server, "GET", "/api/v1/vulndb", None);
    assert_ne!(st["version"], version.as_str());
    assert_eq!(feed(&st, "osv")["records"], 8158);
    assert_eq!(feed(&st, "alpine-3.19")["records"], o["records"]);

    // The CLI works while the server runs (on the same SQLite database), and the server loads
    // the new database at its next check.
    let debian = fixture("debian/tracker.json");
    let out = vulndb_cmd(
        data.path(),
        &[
            "import",
            "--format",
            "debian-tracker",
            debian.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.success(), "{out}");
    let records: u64 = field(&out.stdout, "records").parse().unwrap();
    assert!(records > 0);
    let new_version = field(&out.stdout, "version");
    let st = wait_for(15, "the server to load the CLI's import", || {
        let (_, st) = api(&server, "GET", "/api/v1/vulndb", None);
        (st["version"] == new_version.as_str()).then_some(st)
    });
    assert_eq!(feed(&st, "debian-tracker")["records"], records);
    assert_eq!(feed(&st, "alpine-3.19")["records"], o["records"], "kept");
    assert_eq!(feed(&st, "osv")["records"], 8158, "kept");

    // The OpenAPI document describes the endpoints.
    let (_, doc) = api(&server, "GET", "/api/v1/openapi.json", None);
    for p in [
        "/api/v1/vulndb",
        "/api/v1/vulndb/import",
        "/api/v1/vulndb/advisories/{id}",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vulndb/tests/fixtures")
        .join(rel)
}

#[test]
fn signed_bundles() {
    use berth_vulndb::import::{Osv, import_dir};
    use ed25519_dalek::SigningKey;

    let src = tempfile::tempdir().unwrap();
    let records = src.path().join("records");
    std::fs::create_dir(&records).unwrap();
    for name in ["RUSTSEC-2021-0003", "RUSTSEC-2021-0001"] {
        let from = format!("{}/osv-crates/{name}.json", advisories());
        if Path::new(&from).exists() {
            std::fs::copy(&from, records.join(format!("{name}.json"))).unwrap();
        }
    }
    let report = import_dir(&Osv::default(), &records, &Default::default()).unwrap();
    let db = berth_vulndb::VulnDb::from_imports(vec![report]).unwrap();
    let bundle = src.path().join("db.bundle");
    std::fs::write(&bundle, db.to_snapshot_bytes().unwrap()).unwrap();

    let key = SigningKey::from_bytes(&[7u8; 32]);
    let other = SigningKey::from_bytes(&[9u8; 32]);
    let public_hex = hex::encode(key.verifying_key().to_bytes());
    let key_file = src.path().join("vulndb.pub");
    std::fs::write(&key_file, format!("{public_hex}\n")).unwrap();
    let bytes = std::fs::read(&bundle).unwrap();
    let good_sig = src.path().join("good.sig");
    std::fs::write(&good_sig, berth_vulndb::signature::sign_hex(&key, &bytes)).unwrap();
    let wrong_sig = src.path().join("wrong.sig");
    std::fs::write(
        &wrong_sig,
        berth_vulndb::signature::sign_hex(&other, &bytes),
    )
    .unwrap();
    let tampered = src.path().join("tampered.bundle");
    let mut t = bytes.clone();
    let last = t.len() - 2;
    t[last] ^= 1;
    std::fs::write(&tampered, t).unwrap();

    let data = tempfile::tempdir().unwrap();
    let key_path = key_file.to_str().unwrap();
    let with_key = [("BERTH_VULNDB__PUBLIC_KEY", key_path)];
    let b = bundle.to_str().unwrap();
    let refused = |args: &[&str], why: &str| {
        let out = vulndb_cmd(data.path(), args, &with_key);
        assert!(!out.success(), "{args:?} was accepted: {out}");
        assert!(out.stderr.contains(why), "{args:?}: {out}");
        let st = vulndb_cmd(data.path(), &["status"], &with_key).json();
        assert_eq!(st["advisories"], 0, "nothing changed after {args:?}");
    };
    refused(&["import-bundle", b], "not signed");
    refused(
        &[
            "import-bundle",
            b,
            "--signature",
            wrong_sig.to_str().unwrap(),
        ],
        "does not match",
    );
    refused(
        &[
            "import-bundle",
            tampered.to_str().unwrap(),
            "--signature",
            good_sig.to_str().unwrap(),
        ],
        "does not match",
    );
    std::fs::write(src.path().join("junk.sig"), "not a signature").unwrap();
    refused(
        &[
            "import-bundle",
            b,
            "--signature",
            src.path().join("junk.sig").to_str().unwrap(),
        ],
        "malformed",
    );

    let out = vulndb_cmd(
        data.path(),
        &[
            "import-bundle",
            b,
            "--signature",
            good_sig.to_str().unwrap(),
        ],
        &with_key,
    );
    assert!(out.success(), "{out}");
    assert_eq!(field(&out.stdout, "version"), db.version());
    // The key also given inline, as hex; the signature found next to the bundle.
    std::fs::copy(&good_sig, berth_vulndb::signature::signature_path(&bundle)).unwrap();
    let out = vulndb_cmd(
        data.path(),
        &["import-bundle", b],
        &[("BERTH_VULNDB__PUBLIC_KEY", public_hex.as_str())],
    );
    assert!(out.success(), "{out}");
    let st = vulndb_cmd(data.path(), &["status"], &[]).json();
    assert_eq!(st["version"], db.version());
    assert_eq!(st["advisories"], db.advisories().len());
    assert_eq!(st["stale"], false);
    // Older than the configured limit: stale.
    std::thread::sleep(Duration::from_millis(2100));
    let st = vulndb_cmd(
        data.path(),
        &["status"],
        &[("BERTH_VULNDB__MAX_AGE_SECS", "1")],
    )
    .json();
    assert_eq!(st["stale"], true, "{st:#}");
    assert!(st["age_secs"].as_u64().unwrap() >= 2);
    // A server says so too, in its status and in a warning.
    let server = TestServer::start_with_env(
        data.path(),
        &[],
        &[
            ("BERTH_VULNDB__MAX_AGE_SECS", "1"),
            ("BERTH_VULNDB__PUBLIC_KEY", public_hex.as_str()),
        ],
    );
    let (code, st) = api(&server, "GET", "/api/v1/vulndb", None);
    assert_eq!((code, &st["stale"]), (200, &Value::Bool(true)), "{st}");
    // Bundles through the API: the signature in a header, checked against the same key.
    let post_bundle = |body: &[u8], sig: Option<&str>| {
        let auth = common::admin_basic_auth();
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(s) = sig {
            headers.push(("X-Berth-Signature", s));
        }
        let r = http_request(
            "POST",
            &format!("{}/api/v1/vulndb/bundle", server.url()),
            &headers,
            Some(body),
        )
        .unwrap();
        (
            r.status,
            serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null),
        )
    };
    let good_hex = std::fs::read_to_string(&good_sig).unwrap();
    let wrong_hex = std::fs::read_to_string(&wrong_sig).unwrap();
    let tampered_bytes = std::fs::read(&tampered).unwrap();
    for (body, sig) in [
        (&bytes[..], None),
        (&bytes[..], Some(wrong_hex.as_str())),
        (&tampered_bytes[..], Some(good_hex.as_str())),
        (&bytes[..], Some("zz")),
    ] {
        let (code, e) = post_bundle(body, sig);
        assert_eq!(
            (code, &e["error"]["code"]),
            (400, &Value::from("bad_signature")),
            "{e}"
        );
    }
    let (code, e) = post_bundle(b"BERTH-VULNDB 1\nsha256:00 5\nhello", None);
    assert_eq!(code, 400, "{e}");
    let (code, o) = post_bundle(&bytes, Some(good_hex.as_str()));
    assert_eq!(code, 201, "{o}");
    assert_eq!(o["version"], db.version());
    wait_for(10, "the stale warning", || {
        server
            .stderr()
            .contains("the vulnerability database is stale")
            .then_some(())
    });
    drop(server);

    // Without a configured key a bundle needs no signature.
    let data2 = tempfile::tempdir().unwrap();
    let out = vulndb_cmd(
        data2.path(),
        &["import-bundle", tampered.to_str().unwrap()],
        &[],
    );
    assert!(
        !out.success(),
        "a corrupt bundle is refused whatever the key: {out}"
    );
    std::fs::remove_file(berth_vulndb::signature::signature_path(&bundle)).unwrap();
    let out = vulndb_cmd(data2.path(), &["import-bundle", b], &[]);
    assert!(out.success(), "{out}");
}

// ---- a feed server ----

/// What the feed server answers.
#[derive(Clone)]
enum Serve {
    /// The body, with this ETag and a Last-Modified.
    File { body: Vec<u8>, etag: String },
    /// Says the body has twice its length, sends half, and hangs up.
    Truncated { body: Vec<u8>, etag: String },
    /// Sends headers and a few bytes, then nothing for a minute.
    Stall,
}

#[derive(Default)]
struct FeedLog {
    /// When each request came, and whether it was conditional.
    requests: Vec<(Instant, bool)>,
    not_modified: usize,
}

struct FeedServer {
    url: String,
    serve: Arc<Mutex<Serve>>,
    log: Arc<Mutex<FeedLog>>,
}

impl FeedServer {
    fn start(initial: Serve) -> FeedServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/osv/all.zip", listener.local_addr().unwrap());
        let serve = Arc::new(Mutex::new(initial));
        let log = Arc::new(Mutex::new(FeedLog::default()));
        let (s, l) = (serve.clone(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, l) = (s.clone(), l.clone());
                std::thread::spawn(move || {
                    let _ = answer(conn, &s, &l);
                });
            }
        });
        FeedServer { url, serve, log }
    }

    fn set(&self, s: Serve) {
        *self.serve.lock().unwrap() = s;
    }

    fn requests(&self) -> Vec<(Instant, bool)> {
        self.log.lock().unwrap().requests.clone()
    }

    fn not_modified(&self) -> usize {
        self.log.lock().unwrap().not_modified
    }
}

const LAST_MODIFIED: &str = "Tue, 03 Nov 2026 10:00:00 GMT";

fn answer(conn: TcpStream, serve: &Mutex<Serve>, log: &Mutex<FeedLog>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut if_none_match = None;
    let mut conditional = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let k = k.to_ascii_lowercase();
            if k == "if-none-match" {
                if_none_match = Some(v.trim().to_owned());
                conditional = true;
            } else if k == "if-modified-since" {
                conditional = true;
            }
        }
    }
    let now = serve.lock().unwrap().clone();
    let mut out = conn;
    let mut log = log.lock().unwrap();
    log.requests.push((Instant::now(), conditional));
    match now {
        Serve::File { body, etag } => {
            if if_none_match.as_deref() == Some(etag.as_str()) {
                log.not_modified += 1;
                drop(log);
                write!(
                    out,
                    "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                )?;
                return Ok(());
            }
            drop(log);
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {}\r\n\
                 ETag: {etag}\r\nLast-Modified: {LAST_MODIFIED}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(&body)?;
        }
        Serve::Stall => {
            drop(log);
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nPK")?;
            out.flush()?;
            std::thread::sleep(Duration::from_secs(60));
        }
        Serve::Truncated { body, etag } => {
            drop(log);
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                body.len() * 2
            )?;
            out.write_all(&body[..body.len() / 2])?;
        }
    }
    out.flush()?;
    // Read whatever the client still sends, then close.
    let _ = out.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    Ok(())
}

/// A zip archive of the first `n` OSV records of the shared crates.io feed.
fn osv_zip(n: usize) -> Vec<u8> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(format!("{}/osv-crates", advisories()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for p in names.iter().take(n) {
        w.start_file(p.file_name().unwrap().to_str().unwrap(), opts)
            .unwrap();
        w.write_all(&std::fs::read(p).unwrap()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `secs`.
fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn feed_updates_reach_both_replicas() {
    let feed_server = FeedServer::start(Serve::File {
        body: osv_zip(40),
        etag: "\"v1\"".into(),
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[vulndb]\nupdate_interval_secs = 2\ncheck_interval_secs = 1\n\
             [[vulndb.feeds]]\nname = \"osv-crates\"\nurl = \"{}\"\nformat = \"osv-zip\"\n",
            feed_server.url
        ),
    )
    .unwrap();
    let storage = dir.path().join("shared-storage");
    let db_url = berth_testkit::PgServer::shared().create_database();
    let env = [
        ("BERTH_DATABASE__URL", db_url.as_str()),
        ("BERTH_STORAGE__PATH", storage.to_str().unwrap()),
    ];
    let (d1, d2) = (dir.path().join("r1"), dir.path().join("r2"));
    let args = ["--config", config.to_str().unwrap()];
    let r1 = TestServer::start_with_env(&d1, &args, &env);
    let r2 = TestServer::start_with_env(&d2, &args, &env);
    let replicas = [&r1, &r2];

    let status = |r: &TestServer| api(r, "GET", "/api/v1/vulndb", None).1;
    let on_all = |what: &str, pred: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        wait_for(30, what, || {
            let all: Vec<Value> = replicas.iter().map(|r| status(r)).collect();
            all.iter().all(pred).then_some(all)
        })
    };

    // The first poll imports the feed; both replicas serve it.
    let first = on_all("the first import", &|s| s["advisories"] == 40);
    let v1 = first[0]["version"].as_str().unwrap().to_owned();
    assert_eq!(first[1]["version"], v1.as_str());
    assert_eq!(feed(&first[0], "osv-crates")["records"], 40);
    assert_eq!(feed(&first[0], "osv-crates")["error"], Value::Null);
    assert_eq!(first[0]["stale"], false);

    // The next polls are conditional and answered 304: nothing changes.
    wait_for(20, "a 304", || {
        (feed_server.not_modified() >= 2).then_some(())
    });
    for s in replicas.iter().map(|r| status(r)) {
        assert_eq!(s["version"], v1.as_str());
        assert_eq!(s["digest"], first[0]["digest"]);
    }

    // A changed feed is downloaded again and imported; the version changes everywhere.
    feed_server.set(Serve::File {
        body: osv_zip(80),
        etag: "\"v2\"".into(),
    });
    let second = on_all("the changed feed", &|s| s["advisories"] == 80);
    let v2 = second[0]["version"].as_str().unwrap().to_owned();
    assert_ne!(v2, v1);
    assert_eq!(second[1]["version"], v2.as_str());

    // A download cut short is an error; the previous database stays.
    feed_server.set(Serve::Truncated {
        body: osv_zip(120),
        etag: "\"v3\"".into(),
    });
    let broken = on_all("the truncated download's error", &|s| {
        feed(s, "osv-crates")["error"].is_string()
    });
    for s in &broken {
        assert_eq!(s["version"], v2.as_str(), "{s:#}");
        assert_eq!(s["advisories"], 80);
    }

    // So is a complete download of something that is not a feed.
    let requests_before = feed_server.requests().len();
    feed_server.set(Serve::File {
        body: b"PK\x03\x04 this is not a zip archive".to_vec(),
        etag: "\"v4\"".into(),
    });
    wait_for(20, "the corrupt download", || {
        (feed_server.requests().len() >= requests_before + 2).then_some(())
    });
    for s in replicas.iter().map(|r| status(r)) {
        assert_eq!(s["version"], v2.as_str());
        let err = feed(&s, "osv-crates")["error"].as_str().unwrap().to_owned();
        assert!(err.contains("zip"), "{err}");
    }

    // And the feed recovers when it is fixed.
    feed_server.set(Serve::File {
        body: osv_zip(60),
        etag: "\"v5\"".into(),
    });
    let fixed = on_all("the recovery", &|s| {
        s["advisories"] == 60 && feed(s, "osv-crates")["error"].is_null()
    });
    assert_eq!(fixed[0]["version"], fixed[1]["version"]);

    // One replica polls per interval: consecutive requests are an interval apart (2 s, less
    // scheduling slack), never two replicas at once.
    let times = feed_server.requests();
    assert!(times.len() >= 6, "{} requests", times.len());
    for w in times.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap >= Duration::from_millis(1500),
            "two polls {gap:?} apart: {:?}",
            times.iter().map(|t| t.0 - times[0].0).collect::<Vec<_>>()
        );
    }
    // Conditional requests are sent only while the feed's records are current.
    assert!(times.iter().filter(|t| t.1).count() >= 2);
}

/// On PostgreSQL and S3 the snapshot is an object in the shared bucket: an import by the CLI
/// (from any machine with the configuration) and an upload through one replica reach the other.
#[test]
fn s3_replicas_share_imports() {
    let env = common::scale_out_env();
    let mut env_refs = common::env_refs(&env);
    env_refs.push(("BERTH_VULNDB__CHECK_INTERVAL_SECS", "1"));
    let dirs = tempfile::tempdir().unwrap();
    let (d1, d2, d3) = (
        dirs.path().join("r1"),
        dirs.path().join("r2"),
        dirs.path().join("cli"),
    );
    let r1 = TestServer::start_with_env(&d1, &[], &env_refs);
    let r2 = TestServer::start_with_env(&d2, &[], &env_refs);

    let crates = format!("{}/osv-crates", advisories());
    let out = vulndb_cmd(&d3, &["import", "--feed", "osv-crates", &crates], &env_refs);
    assert!(out.success(), "{out}");
    assert_eq!(field(&out.stdout, "records"), "1206");
    let v1 = field(&out.stdout, "version");
    for r in [&r1, &r2] {
        wait_for(15, "the CLI's import on a replica", || {
            let (_, st) = api(r, "GET", "/api/v1/vulndb", None);
            (st["version"] == v1.as_str()).then_some(())
        });
    }

    let alpine = std::fs::read(fixture("alpine/v3.19-main.json")).unwrap();
    let (code, o) = api(
        &r1,
        "POST",
        "/api/v1/vulndb/import?format=alpine-secdb",
        Some(alpine),
    );
    assert_eq!(code, 201, "{o}");
    let st = wait_for(15, "the upload on the other replica", || {
        let (_, st) = api(&r2, "GET", "/api/v1/vulndb", None);
        (st["version"] == o["version"]).then_some(st)
    });
    assert_eq!(feed(&st, "osv-crates")["records"], 1206);
    assert_eq!(feed(&st, "alpine-secdb")["records"], o["records"]);
    let (code, a) = api(
        &r2,
        "GET",
        "/api/v1/vulndb/advisories/GHSA-43w2-9j62-hq99",
        None,
    );
    assert_eq!(code, 200, "{a}");
}

/// A server stops promptly on SIGTERM even while a feed download is stalled, and the database
/// it had stays recorded.
#[test]
fn shutdown_does_not_wait_for_a_stalled_download() {
    let feed_server = FeedServer::start(Serve::Stall);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[vulndb]\ncheck_interval_secs = 1\n\
             [[vulndb.feeds]]\nname = \"stalled\"\nurl = \"{}\"\nformat = \"osv-zip\"\n",
            feed_server.url
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut server = TestServer::start_with(&data, &["--config", config.to_str().unwrap()]);
    wait_for(15, "the download to start", || {
        (!feed_server.requests().is_empty()).then_some(())
    });
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status}: {}", server.stderr());
    assert!(started.elapsed() < Duration::from_secs(10));
}
