//! Shared test harness for the `berth` binary's integration tests.
//!
//! * [`TestServer`]: runs `berth serve` on an ephemeral port with its own data dir.
//! * [`PeerRegistry`]: runs Debian's `docker-registry` (CNCF Distribution 2.8) as a
//!   known-good reference registry.
//! * [`LayoutWriter`] / [`build_test_layout`]: writes OCI image layouts with exact
//!   digests and sizes, and [`layout_files`] reads the file tree of an image back.
//! * [`ClientEnv`]: runs `skopeo` / `podman` / `umoci` with per-test, isolated
//!   configuration and storage, with timeouts and useful failure messages.
//! * [`http_request`]: a tiny blocking HTTP/1.1 client for raw API checks.
//!
//! Every test binary compiles its own copy of this module and uses a different
//! subset of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// How long a server gets to print its `listening on` line / answer `/v2/`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server gets to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// Default timeout for one client command (skopeo, podman, ...).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------
// Child-process plumbing
// ---------------------------------------------------------------------------

type SharedBuf = Arc<Mutex<Vec<u8>>>;

/// Copy everything from `reader` into `buf` until EOF, on a background thread.
fn drain<R: Read + Send + 'static>(mut reader: R, buf: SharedBuf) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

fn buf_string(buf: &SharedBuf) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

/// The last `max` bytes of `text` (on a char boundary), marked when cut.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {start} bytes cut ...]\n{}", &text[start..])
}

/// Wait for `child` up to `timeout`; `None` if it is still running.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn send_signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid belongs to a
    // child we have not reaped yet, so it cannot have been recycled.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

/// Panic with a clear message when `tool` is not on PATH. Tests never skip:
/// a missing client is a broken environment (`scripts/test` installs them).
pub fn require_tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "required tool `{tool}` was not found on PATH. This test needs it and never skips; \
         run `scripts/test` (which apt-get installs skopeo, podman, umoci and docker-registry) \
         or install it by hand: `apt-get install -y {tool}` (the Debian package has the \
         tool's name)"
    );
}

// ---------------------------------------------------------------------------
// TestServer: the berth binary
// ---------------------------------------------------------------------------

/// The password of the `admin` user that every test server is started with.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// `Basic ...` for the test admin, for raw HTTP requests to a test server.
pub fn admin_basic_auth() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
    )
}

/// A running `berth serve` process on `127.0.0.1:<ephemeral port>`.
///
/// Dropping it kills the process (SIGKILL). When the test is panicking, the
/// server's stderr is printed so failures come with the server's logs.
/// Environment for a server on PostgreSQL (a fresh database on the process's shared server) and
/// S3 (a fresh bucket on the process's shared Garage node): the scale-out configuration.
/// Blocking: call from a blocking context.
pub fn scale_out_env() -> Vec<(String, String)> {
    let url = berth_testkit::PgServer::shared().create_database();
    let g = berth_testkit::Garage::shared();
    s3_env(g, &g.create_bucket(), url)
}

/// Environment for a server on database `url` and bucket `bucket` of Garage node `g`.
pub fn s3_env(g: &berth_testkit::Garage, bucket: &str, url: String) -> Vec<(String, String)> {
    [
        ("BERTH_DATABASE__URL", url),
        ("BERTH_STORAGE__KIND", "s3".into()),
        ("BERTH_STORAGE__ENDPOINT", g.endpoint()),
        ("BERTH_STORAGE__BUCKET", bucket.into()),
        (
            "BERTH_STORAGE__REGION",
            berth_testkit::garage::REGION.into(),
        ),
        ("BERTH_STORAGE__PART_SIZE", (5u64 << 20).to_string()),
        ("AWS_ACCESS_KEY_ID", g.access_key_id().into()),
        ("AWS_SECRET_ACCESS_KEY", g.secret_access_key().into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Borrowed view of an owned environment list, for [`TestServer::start_with_env`].
pub fn env_refs(envs: &[(String, String)]) -> Vec<(&str, &str)> {
    envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub struct TestServer {
    child: Option<Child>,
    addr: SocketAddr,
    data_dir: PathBuf,
    extra_args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Owned temp data dir (only for [`TestServer::start`]).
    temp: Option<TempDir>,
    stdout: SharedBuf,
    stderr: SharedBuf,
    drains: Vec<JoinHandle<()>>,
}

impl TestServer {
    /// Path of the `berth` binary under test.
    pub fn binary() -> &'static str {
        env!("CARGO_BIN_EXE_berth")
    }

    /// Start a server on a fresh temporary data dir (deleted on drop).
    pub fn start() -> TestServer {
        let temp = tempfile::Builder::new()
            .prefix("berth-data-")
            .tempdir()
            .expect("create temp data dir");
        let mut server = TestServer::start_with(temp.path(), &[]);
        server.temp = Some(temp);
        server
    }

    /// Start a server on a fresh temporary data dir with its metadata in a fresh PostgreSQL
    /// database (blobs in the data dir).
    pub fn start_postgres() -> TestServer {
        let temp = tempfile::Builder::new()
            .prefix("berth-data-")
            .tempdir()
            .expect("create temp data dir");
        let url = berth_testkit::PgServer::shared().create_database();
        let mut server =
            TestServer::start_with_env(temp.path(), &[], &[("BERTH_DATABASE__URL", &url)]);
        server.temp = Some(temp);
        server
    }

    /// Start a server on a fresh temporary data dir in the scale-out configuration: a fresh
    /// PostgreSQL database and a fresh S3 bucket (see [`scale_out_env`]).
    pub fn start_scale_out() -> TestServer {
        let temp = tempfile::Builder::new()
            .prefix("berth-data-")
            .tempdir()
            .expect("create temp data dir");
        let env = scale_out_env();
        let mut server = TestServer::start_with_env(temp.path(), &[], &env_refs(&env));
        server.temp = Some(temp);
        server
    }

    /// Start a server on `data_dir` (owned by the caller, so a test can restart
    /// a server on the same data) with extra arguments after `serve ...`.
    pub fn start_with(data_dir: &Path, extra_args: &[&str]) -> TestServer {
        TestServer::start_with_env(data_dir, extra_args, &[])
    }

    /// Like [`TestServer::start_with`], with extra environment variables
    /// (e.g. `BERTH_STORAGE__FSYNC`). Inherited `BERTH_*` variables other than
    /// `BERTH_LOG` are removed so a developer's shell cannot change the tests.
    pub fn start_with_env(
        data_dir: &Path,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> TestServer {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, addr, stdout, stderr, drains) = spawn_berth(data_dir, &extra_args, &envs);
        TestServer {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            extra_args,
            envs,
            temp: None,
            stdout,
            stderr,
            drains,
        }
    }

    /// Gracefully stop (SIGTERM) and start again on the same data dir with the
    /// same extra arguments. The port usually changes.
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "berth exited with {status} on SIGTERM; stderr:\n{}",
            self.stderr()
        );
        self.respawn();
    }

    /// Kill (SIGKILL) and start again on the same data dir: crash recovery.
    pub fn restart_after_kill9(&mut self) {
        self.kill9();
        self.respawn();
    }

    fn respawn(&mut self) {
        let (child, addr, stdout, stderr, drains) =
            spawn_berth(&self.data_dir, &self.extra_args, &self.envs);
        self.child = Some(child);
        self.addr = addr;
        self.stdout = stdout;
        self.stderr = stderr;
        self.drains = drains;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the registry host as clients spell it in image names.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Everything the server wrote to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        buf_string(&self.stderr)
    }

    /// Everything the server wrote to stdout so far.
    pub fn stdout(&self) -> String {
        buf_string(&self.stdout)
    }

    /// SIGKILL the process and reap it. No-op when already stopped.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.join_drains();
        }
    }

    /// SIGTERM the process and wait for it to exit; panics (with the server's
    /// stderr) if it does not exit within 15 s. Returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        send_signal(&child, libc::SIGTERM);
        match wait_timeout(&mut child, SHUTDOWN_TIMEOUT) {
            Some(status) => {
                self.join_drains();
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                self.join_drains();
                panic!(
                    "berth did not exit within {SHUTDOWN_TIMEOUT:?} after SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// `Some(status)` if the process has exited on its own.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn join_drains(&mut self) {
        for handle in self.drains.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!(
                "---- berth server {} stderr ----\n{}\n---- end of berth stderr ----",
                self.addr,
                tail(&self.stderr(), 64 * 1024)
            );
        }
    }
}

/// Runs `berth admin --data-dir DATA ARGS` on the server's data dir (it works while the server
/// runs), feeding `stdin` (passwords are read from it); panics unless it succeeds and returns its
/// standard output.
/// A `berth` command without the caller's `BERTH_*` variables: like the test servers, a
/// developer's environment must not change what the command does.
pub fn berth_command() -> Command {
    let mut cmd = Command::new(TestServer::binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BERTH_") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

pub fn admin(server: &TestServer, args: &[&str], stdin: &str) -> String {
    let mut cmd = berth_command();
    cmd.arg("admin")
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(args);
    // ... but the server's own (a database URL, say) are the data dir's configuration too.
    for (k, v) in &server.envs {
        cmd.env(k, v);
    }
    let out = run_command_with_stdin(cmd, Some(stdin.as_bytes()), Duration::from_secs(60));
    assert!(out.success(), "berth admin {args:?}: {out}");
    out.stdout
}

/// The value of the `KEY: value` line of a command's output, e.g. the `secret` that `berth admin
/// robot-add` prints.
#[track_caller]
pub fn field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}: ` line in:\n{out}"))
        .to_owned()
}

type Spawned = (Child, SocketAddr, SharedBuf, SharedBuf, Vec<JoinHandle<()>>);

fn spawn_berth(data_dir: &Path, extra_args: &[String], envs: &[(String, String)]) -> Spawned {
    let mut cmd = Command::new(TestServer::binary());
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("BERTH_") && key_str != "BERTH_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("RUST_BACKTRACE", "1");
    // Every test server starts with a known site admin; tests authenticate as it (or as users
    // they create) unless they turn authentication off.
    cmd.env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", TestServer::binary()));

    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let err_drain = drain(child.stderr.take().unwrap(), stderr.clone());

    // stdout: the first `listening on ADDR` line goes through the channel, and
    // everything (that line included) is kept in the buffer.
    let (tx, rx) = mpsc::channel::<SocketAddr>();
    let out = child.stdout.take().unwrap();
    let out_buf = stdout.clone();
    let out_drain = thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let mut tx = Some(tx);
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    out_buf.lock().unwrap().extend_from_slice(line.as_bytes());
                    if let Some(addr) = line.trim().strip_prefix("listening on ")
                        && let Ok(addr) = addr.trim().parse::<SocketAddr>()
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(addr);
                    }
                }
            }
        }
    });

    let addr = match rx.recv_timeout(STARTUP_TIMEOUT) {
        Ok(addr) => addr,
        Err(err) => {
            let status = if let mpsc::RecvTimeoutError::Timeout = err {
                let _ = child.kill();
                child.wait().ok()
            } else {
                // stdout closed without the line: wait a little for the exit.
                wait_timeout(&mut child, Duration::from_secs(5)).or_else(|| {
                    let _ = child.kill();
                    child.wait().ok()
                })
            };
            let _ = out_drain.join();
            let _ = err_drain.join();
            panic!(
                "berth serve (data dir {}) did not print `listening on 127.0.0.1:PORT` \
                 within {STARTUP_TIMEOUT:?} ({err:?}); exit status: {status:?}\n\
                 stdout:\n{}\nstderr:\n{}",
                data_dir.display(),
                buf_string(&stdout),
                buf_string(&stderr)
            );
        }
    };
    assert!(
        addr.ip().is_loopback() && addr.port() != 0,
        "berth reported an unexpected listen address {addr}"
    );
    (child, addr, stdout, stderr, vec![out_drain, err_drain])
}

// ---------------------------------------------------------------------------
// PeerRegistry: CNCF Distribution (Debian's docker-registry)
// ---------------------------------------------------------------------------

/// A running `docker-registry serve` (CNCF Distribution 2.8) on a free loopback
/// port with a temporary filesystem root and deletes enabled. Killed on drop.
pub struct PeerRegistry {
    child: Option<Child>,
    addr: SocketAddr,
    dir: TempDir,
    stderr: SharedBuf,
    stdout: SharedBuf,
}

impl PeerRegistry {
    pub fn start() -> PeerRegistry {
        let binary = require_tool("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("berth-peer-")
            .tempdir()
            .expect("create peer temp dir");
        let root = dir.path().join("storage");
        fs::create_dir_all(&root).unwrap();
        let mut last_err = String::new();
        // The free-port probe is racy; retry with another port if it was taken.
        for _ in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {root}\n  \
                     delete:\n    enabled: true\n  \
                     maintenance:\n    uploadpurging:\n      enabled: false\n\
                     http:\n  addr: {addr}\n  secret: berth-test-peer-secret\n",
                    root = root.display()
                ),
            )
            .unwrap();
            let mut cmd = Command::new(&binary);
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // Environment variables override the config file: keep the host's out.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(key);
                }
            }
            let mut child = cmd.spawn().expect("spawn docker-registry");
            let stdout = Arc::new(Mutex::new(Vec::new()));
            let stderr = Arc::new(Mutex::new(Vec::new()));
            drain(child.stdout.take().unwrap(), stdout.clone());
            drain(child.stderr.take().unwrap(), stderr.clone());
            let deadline = Instant::now() + STARTUP_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = format!("exited with {status}; stderr:\n{}", buf_string(&stderr));
                    break;
                }
                if let Ok(resp) = http_request("GET", &format!("http://{addr}/v2/"), &[], None)
                    && resp.status == 200
                {
                    return PeerRegistry {
                        child: Some(child),
                        addr,
                        dir,
                        stderr,
                        stdout,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = format!(
                        "no answer on /v2/ within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                        buf_string(&stderr)
                    );
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("could not start docker-registry: {last_err}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registry's filesystem storage root.
    pub fn storage_root(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn stderr(&self) -> String {
        buf_string(&self.stderr)
    }
}

impl Drop for PeerRegistry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- docker-registry {} stderr ----\n{}\n---- end ----",
                self.addr,
                tail(&self.stderr(), 16 * 1024)
            );
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Anything clients can push to: Berth or the peer registry.
pub trait Registry {
    /// `127.0.0.1:PORT`
    fn host(&self) -> String;
    /// `http://127.0.0.1:PORT`
    fn url(&self) -> String {
        format!("http://{}", self.host())
    }
    /// Server logs, for failure messages.
    fn logs(&self) -> String;
}

impl Registry for TestServer {
    fn host(&self) -> String {
        TestServer::host(self)
    }
    fn logs(&self) -> String {
        self.stderr()
    }
}

impl Registry for PeerRegistry {
    fn host(&self) -> String {
        PeerRegistry::host(self)
    }
    fn logs(&self) -> String {
        self.stderr()
    }
}

// ---------------------------------------------------------------------------
// Minimal HTTP/1.1 client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// One blocking request over a fresh connection (`Connection: close`).
/// `url` must be `http://HOST:PORT/path?query`. Handles `Content-Length`,
/// chunked and read-to-EOF bodies; HEAD responses have an empty body.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<HttpResponse> {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("only http:// URLs are supported: {url}"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let has_len = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    if let Some(body) = body
        && !has_len
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    } else if body.is_none() && matches!(method, "POST" | "PUT" | "PATCH") && !has_len {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    if let Some(body) = body {
        stream.write_all(body)?;
    }
    stream.flush()?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut resp_headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            resp_headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut resp = HttpResponse {
        status,
        headers: resp_headers,
        body: Vec::new(),
    };
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size_str = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_str, 16).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            reader.read_exact(&mut resp.body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "bad content-length")
        })?;
        resp.body.resize(len, 0);
        reader.read_exact(&mut resp.body)?;
    } else {
        reader.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// [`http_request`] that panics on transport errors.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    http_request(method, url, headers, body)
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"))
}

/// Every manifest media type a client would accept.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

// ---------------------------------------------------------------------------
// Digests and OCI image layouts
// ---------------------------------------------------------------------------

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (xorshift64*), incompressible.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    if state == 0 {
        state = 1;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A content-addressed blob with its media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&data),
            data,
        }
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The OCI descriptor `{mediaType, digest, size}`.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size(),
        })
    }

    /// Hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap()
    }
}

/// A regular file to put into a layer.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Relative path without leading `/`, e.g. `etc/berth/hello.txt`.
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

impl FileEntry {
    pub fn new(path: &str, data: impl Into<Vec<u8>>) -> FileEntry {
        FileEntry {
            path: path.trim_start_matches('/').to_string(),
            data: data.into(),
            mode: 0o644,
        }
    }

    pub fn executable(path: &str, data: impl Into<Vec<u8>>) -> FileEntry {
        FileEntry {
            mode: 0o755,
            ..FileEntry::new(path, data)
        }
    }
}

/// Fixed mtime for reproducible tars (2023-11-14T22:13:20Z).
const LAYER_MTIME: u64 = 1_700_000_000;

/// A reproducible uncompressed tar of `files` (with parent directory entries).
pub fn tar_files(files: &[FileEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs_done = std::collections::BTreeSet::new();
    for file in files {
        let parts: Vec<&str> = file.path.split('/').collect();
        for i in 1..parts.len() {
            let dir = format!("{}/", parts[..i].join("/"));
            if dirs_done.insert(dir.clone()) {
                let mut header = tar::Header::new_ustar();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(LAYER_MTIME);
                header.set_size(0);
                builder
                    .append_data(&mut header, &dir, std::io::empty())
                    .unwrap();
            }
        }
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(file.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(LAYER_MTIME);
        header.set_size(file.data.len() as u64);
        builder
            .append_data(&mut header, &file.path, file.data.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// Gzip `data` reproducibly (no mtime or file name in the header).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Gunzip if `data` starts with the gzip magic, else return it unchanged.
pub fn maybe_gunzip(data: &[u8]) -> Vec<u8> {
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("gunzip layer");
        out
    } else {
        data.to_vec()
    }
}

/// A gzip tar layer: `(compressed blob, diff_id)`.
pub fn gzip_layer(files: &[FileEntry]) -> (Blob, String) {
    let tar = tar_files(files);
    let diff_id = sha256_digest(&tar);
    (Blob::new(MT_OCI_LAYER_GZIP, gzip(&tar)), diff_id)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    pub fn linux_arm64() -> Platform {
        Platform::new("linux", "arm64", Some("v8"))
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"architecture": self.architecture, "os": self.os});
        if let Some(variant) = &self.variant {
            v["variant"] = json!(variant);
        }
        v
    }
}

/// A single-platform image: manifest, config and layers.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub platform: Platform,
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub diff_ids: Vec<String>,
    /// The resulting file tree (later layers win), path -> contents.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl BuiltImage {
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }
}

/// A multi-platform image index and its images.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    pub index: Blob,
    pub images: Vec<BuiltImage>,
}

/// Builds an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/*`).
pub struct LayoutWriter {
    root: PathBuf,
    blobs: BTreeMap<String, Vec<u8>>,
    refs: Vec<Value>,
}

impl LayoutWriter {
    pub fn new(root: &Path) -> LayoutWriter {
        LayoutWriter {
            root: root.to_path_buf(),
            blobs: BTreeMap::new(),
            refs: Vec::new(),
        }
    }

    pub fn add_blob(&mut self, blob: &Blob) {
        self.blobs.insert(blob.hex().to_string(), blob.data.clone());
    }

    /// Build an image whose layers hold `layers[i]`, store all its blobs and
    /// return it (not yet tagged).
    pub fn add_image(&mut self, platform: Platform, layers: &[Vec<FileEntry>]) -> BuiltImage {
        let mut blobs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut files = BTreeMap::new();
        let mut history = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let (blob, diff_id) = gzip_layer(layer);
            for f in layer {
                files.insert(f.path.clone(), f.data.clone());
            }
            history.push(json!({
                "created": "2023-11-14T22:13:20Z",
                "created_by": format!("berth test layer {i}"),
            }));
            blobs.push(blob);
            diff_ids.push(diff_id);
        }
        let mut config = json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/usr/bin/berth-hello"],
                "WorkingDir": "/",
                "Labels": {"org.opencontainers.image.title": "berth test image"},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        if let Some(variant) = &platform.variant {
            config["variant"] = json!(variant);
        }
        let config = Blob::new(MT_OCI_CONFIG, serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": blobs.iter().map(Blob::descriptor).collect::<Vec<_>>(),
            "annotations": {"org.opencontainers.image.created": "2023-11-14T22:13:20Z"},
        });
        let manifest = Blob::new(
            MT_OCI_MANIFEST,
            serde_json::to_vec_pretty(&manifest).unwrap(),
        );
        self.add_blob(&config);
        for b in &blobs {
            self.add_blob(b);
        }
        self.add_blob(&manifest);
        BuiltImage {
            platform,
            manifest,
            config,
            layers: blobs,
            diff_ids,
            files,
        }
    }

    /// Build and store an image index over `images`.
    pub fn add_index(&mut self, images: Vec<BuiltImage>) -> BuiltIndex {
        let manifests: Vec<Value> = images
            .iter()
            .map(|img| {
                let mut d = img.manifest.descriptor();
                d["platform"] = img.platform.to_json();
                d
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": manifests,
        });
        let index = Blob::new(MT_OCI_INDEX, serde_json::to_vec_pretty(&index).unwrap());
        self.add_blob(&index);
        BuiltIndex { index, images }
    }

    /// Reference `manifest` from `index.json` under the ref name `name`.
    pub fn tag(&mut self, name: &str, manifest: &Blob) {
        let mut d = manifest.descriptor();
        d["annotations"] = json!({ ANNOTATION_REF_NAME: name });
        self.refs.push(d);
    }

    /// Write the layout to disk.
    pub fn write(self) {
        let blob_dir = self.root.join("blobs").join("sha256");
        fs::create_dir_all(&blob_dir).unwrap();
        fs::write(
            self.root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        for (hex, data) in &self.blobs {
            fs::write(blob_dir.join(hex), data).unwrap();
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": self.refs,
        });
        fs::write(
            self.root.join("index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .unwrap();
    }
}

/// The standard test images written by [`build_test_layout`].
#[derive(Debug, Clone)]
pub struct TestLayout {
    pub path: PathBuf,
    /// linux/amd64 image with 2 gzip layers, ref name [`TestLayout::IMAGE_REF`].
    pub image: BuiltImage,
    /// linux/amd64 + linux/arm64 index, ref name [`TestLayout::INDEX_REF`].
    pub index: BuiltIndex,
}

impl TestLayout {
    pub const IMAGE_REF: &'static str = "v1";
    pub const INDEX_REF: &'static str = "multi";

    /// `oci:<path>:<ref>` for skopeo.
    pub fn oci_ref(&self, name: &str) -> String {
        format!("oci:{}:{name}", self.path.display())
    }

    /// Every blob digest of the layout (configs, layers, manifests, index).
    pub fn all_digests(&self) -> Vec<String> {
        let mut out = Vec::new();
        for img in std::iter::once(&self.image).chain(self.index.images.iter()) {
            out.push(img.manifest.digest.clone());
            out.push(img.config.digest.clone());
            out.extend(img.layer_digests());
        }
        out.push(self.index.index.digest.clone());
        out
    }
}

/// The files of the single-platform / amd64 image. `salt` makes the digests
/// unique per test (so clients' blob-location caches never hit across tests).
pub fn test_layers(salt: &str, arch: &str) -> Vec<Vec<FileEntry>> {
    let seed = salt
        .bytes()
        .chain(arch.bytes())
        .fold(1469598103934665603u64, |h, b| {
            (h ^ b as u64).wrapping_mul(1099511628211)
        });
    vec![
        vec![
            FileEntry::new(
                "etc/berth/hello.txt",
                format!("hello from berth ({arch})\n"),
            ),
            FileEntry::executable("usr/bin/berth-hello", "#!/bin/sh\necho hello from berth\n"),
            FileEntry::new("etc/berth/salt", format!("{salt}\n")),
        ],
        vec![
            FileEntry::new(
                "etc/berth/config.toml",
                format!("arch = \"{arch}\"\nsalt = \"{salt}\"\n"),
            ),
            // Incompressible, so the layer blob is > 256 KiB: exercises
            // streaming/chunked uploads rather than tiny single writes.
            FileEntry::new(
                "var/lib/berth/random.bin",
                pseudo_random_bytes(seed, 300 * 1024),
            ),
            FileEntry::new("etc/berth/hello.txt", format!("hello again ({arch})\n")),
        ],
    ]
}

/// Write the standard test layout into `dir`: a linux/amd64 image (ref `v1`)
/// and a linux/amd64 + linux/arm64 index (ref `multi`).
pub fn build_test_layout(dir: &Path, salt: &str) -> TestLayout {
    let mut w = LayoutWriter::new(dir);
    let image = w.add_image(Platform::linux_amd64(), &test_layers(salt, "amd64"));
    let multi_salt = format!("{salt}-multi");
    let amd = w.add_image(Platform::linux_amd64(), &test_layers(&multi_salt, "amd64"));
    let arm = w.add_image(Platform::linux_arm64(), &test_layers(&multi_salt, "arm64"));
    let index = w.add_index(vec![amd, arm]);
    w.tag(TestLayout::IMAGE_REF, &image.manifest);
    w.tag(TestLayout::INDEX_REF, &index.index);
    w.write();
    TestLayout {
        path: dir.to_path_buf(),
        image,
        index,
    }
}

/// Assert two byte strings are equal, reporting sizes, digests and (lossy,
/// truncated) text instead of dumping number arrays.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let show = |b: &[u8]| tail(&String::from_utf8_lossy(&b[..b.len().min(4096)]), 4096);
        panic!(
            "{what}: bytes differ\n got: {} bytes, {}\nwant: {} bytes, {}\n--- got ---\n{}\n--- want ---\n{}",
            got.len(),
            sha256_digest(got),
            want.len(),
            sha256_digest(want),
            show(got),
            show(want)
        );
    }
}

/// Assert two file trees are equal, reporting only the differing paths.
#[track_caller]
pub fn assert_same_files(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) {
    let mut problems = Vec::new();
    for (path, data) in want {
        match got.get(path) {
            None => problems.push(format!("missing {path}")),
            Some(g) if g != data => problems.push(format!(
                "{path}: {} bytes {} (want {} bytes {})",
                g.len(),
                sha256_digest(g),
                data.len(),
                sha256_digest(data)
            )),
            Some(_) => {}
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        problems.push(format!("unexpected {path}"));
    }
    assert!(
        problems.is_empty(),
        "file trees differ:\n{}",
        problems.join("\n")
    );
}

/// The layout's `index.json`.
pub fn layout_index(dir: &Path) -> Value {
    let raw = fs::read(dir.join("index.json"))
        .unwrap_or_else(|e| panic!("read {}/index.json: {e}", dir.display()));
    serde_json::from_slice(&raw).expect("index.json is JSON")
}

/// Descriptor of the manifest that `index.json` lists under ref name `name`.
pub fn layout_ref(dir: &Path, name: &str) -> Value {
    let index = layout_index(dir);
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["annotations"][ANNOTATION_REF_NAME] == name)
        .cloned()
        .unwrap_or_else(|| panic!("ref {name:?} not in {}/index.json: {index}", dir.display()))
}

/// Bytes of a blob in a layout, checking its digest.
pub fn layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    let path = dir.join("blobs").join("sha256").join(hex);
    let data = fs::read(&path).unwrap_or_else(|e| panic!("read blob {}: {e}", path.display()));
    assert_eq!(
        sha256_digest(&data),
        digest,
        "blob {} is corrupt",
        path.display()
    );
    data
}

/// The file tree of the image whose manifest is `manifest_digest` in the
/// layout at `dir`: applies all layers in order (gzip or plain tar); regular
/// files only, whiteouts honoured.
pub fn layout_files(dir: &Path, manifest_digest: &str) -> BTreeMap<String, Vec<u8>> {
    let manifest: Value = serde_json::from_slice(&layout_blob(dir, manifest_digest)).unwrap();
    let mut files = BTreeMap::new();
    for layer in manifest["layers"].as_array().expect("manifest has layers") {
        let digest = layer["digest"].as_str().unwrap();
        let data = layout_blob(dir, digest);
        assert_eq!(
            layer["size"].as_u64(),
            Some(data.len() as u64),
            "layer {digest} size mismatch"
        );
        apply_tar(&mut files, &maybe_gunzip(&data));
    }
    files
}

fn apply_tar(files: &mut BTreeMap<String, Vec<u8>>, tar_bytes: &[u8]) {
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().expect("read tar") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string();
        let name = path.rsplit('/').next().unwrap_or("");
        if name == ".wh..wh..opq" {
            let prefix = path.trim_end_matches(".wh..wh..opq").to_string();
            files.retain(|k, _| !k.starts_with(&prefix));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = &path[..path.len() - name.len()];
            let target = format!("{parent}{hidden}");
            files.remove(&target);
            let sub = format!("{target}/");
            files.retain(|k, _| !k.starts_with(&sub));
            continue;
        }
        if entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(path, data);
        }
    }
}

// ---------------------------------------------------------------------------
// Container clients with isolated configuration
// ---------------------------------------------------------------------------

/// Output of a finished client command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` did not print JSON ({e}):\n{}",
                self.command, self.stdout
            )
        })
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Run `cmd` to completion with a timeout, capturing stdout and stderr.
pub fn run_command(cmd: Command, timeout: Duration) -> CmdOutput {
    run_command_with_stdin(cmd, None, timeout)
}

/// Like [`run_command`], feeding `stdin` (then end of file) to the command's standard input, as
/// `--password-stdin` options and `berth admin` read passwords. `None` gives it no input at all.
pub fn run_command_with_stdin(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> CmdOutput {
    let command = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to run {command}: {e}"));
    // Written on a thread so that a command that prints before it reads cannot deadlock us; a
    // command that exits without reading everything just closes the pipe (the error is ignored).
    let feeder = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let d1 = drain(child.stdout.take().unwrap(), stdout.clone());
    let d2 = drain(child.stderr.take().unwrap(), stderr.clone());
    let status = match wait_timeout(&mut child, timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = d1.join();
            let _ = d2.join();
            panic!(
                "{command} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                buf_string(&stdout),
                buf_string(&stderr)
            );
        }
    };
    let _ = d1.join();
    let _ = d2.join();
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    CmdOutput {
        command,
        status,
        stdout: buf_string(&stdout),
        stderr: buf_string(&stderr),
    }
}

/// Per-test sandbox for skopeo, podman and umoci: private policy.json,
/// registries.conf, containers.conf, storage.conf, auth file, temp dir and
/// podman storage (vfs driver) under one temp dir. Nothing touches the host's
/// container storage or configuration.
pub struct ClientEnv {
    dir: TempDir,
    pub timeout: Duration,
}

impl ClientEnv {
    pub fn new() -> ClientEnv {
        let dir = tempfile::Builder::new()
            .prefix("berth-clients-")
            .tempdir()
            .expect("create client temp dir");
        let p = dir.path();
        for sub in [
            "tmp",
            "podman/root",
            "podman/runroot",
            "podman/tmp",
            "podman/net",
        ] {
            fs::create_dir_all(p.join(sub)).unwrap();
        }
        fs::write(
            p.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker-daemon":{"":[{"type":"insecureAcceptAnything"}]}}}"#,
        )
        .unwrap();
        fs::write(p.join("auth.json"), "{\"auths\":{}}\n").unwrap();
        fs::write(
            p.join("registries.conf"),
            "unqualified-search-registries = []\nshort-name-mode = \"permissive\"\n",
        )
        .unwrap();
        fs::write(
            p.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                p.join("podman/runroot").display(),
                p.join("podman/root").display()
            ),
        )
        .unwrap();
        fs::write(
            p.join("containers.conf"),
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 tmp_dir = \"{tmp}\"\nimage_copy_tmp_dir = \"{copy}\"\n\
                 [network]\nnetwork_config_dir = \"{net}\"\n",
                tmp = p.join("podman/tmp").display(),
                copy = p.join("tmp").display(),
                net = p.join("podman/net").display(),
            ),
        )
        .unwrap();
        ClientEnv {
            dir,
            timeout: CLIENT_TIMEOUT,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stores credentials for `host` in the sandbox's auth file, as `skopeo login` would, so
    /// that skopeo and podman authenticate to it.
    pub fn log_in(&self, host: &str, user: &str, password: &str) {
        use base64::Engine as _;
        let file = self.dir.path().join("auth.json");
        let mut v: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        v["auths"][host] = serde_json::json!({ "auth": auth });
        fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
    }

    /// The sandbox's auth file (`REGISTRY_AUTH_FILE`), where `skopeo login` and `podman login`
    /// store credentials.
    pub fn auth_file(&self) -> Value {
        let file = self.dir.path().join("auth.json");
        let raw = fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        serde_json::from_slice(&raw)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e})", file.display()))
    }

    /// Run `bash SCRIPT` (the script is written to a file in the sandbox first) the way a CI
    /// system runs a job: the sandbox's environment (auth file, registries.conf, storage, temp
    /// dir) plus `envs`, and a `HOME` of its own whose `~/.config/containers/policy.json` is the
    /// sandbox's policy, so that plain `skopeo` / `podman` commands in the script need no
    /// sandbox-specific flags. Tools the script calls must be on `PATH`; no panic.
    pub fn try_bash_script(&self, name: &str, script: &str, envs: &[(&str, &str)]) -> CmdOutput {
        let p = self.dir.path();
        let home = p.join("home");
        fs::create_dir_all(home.join(".config/containers")).unwrap();
        fs::copy(
            p.join("policy.json"),
            home.join(".config/containers/policy.json"),
        )
        .unwrap();
        let file = self.subdir("scripts").join(name);
        fs::write(&file, script).unwrap();
        let mut cmd = self.command("bash");
        cmd.arg(&file).env("HOME", &home);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run_command(cmd, self.timeout)
    }

    /// A fresh directory inside the sandbox, e.g. for an OCI layout.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("work").join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn command(&self, tool: &str) -> Command {
        let binary = require_tool(tool);
        let p = self.dir.path();
        let mut cmd = Command::new(binary);
        cmd.env("CONTAINERS_REGISTRIES_CONF", p.join("registries.conf"))
            .env("CONTAINERS_STORAGE_CONF", p.join("storage.conf"))
            .env("CONTAINERS_CONF", p.join("containers.conf"))
            .env("REGISTRY_AUTH_FILE", p.join("auth.json"))
            .env("TMPDIR", p.join("tmp"))
            .env_remove("DOCKER_CONFIG")
            .env_remove("CONTAINERS_REGISTRIES_CONF_DIR");
        cmd
    }

    fn skopeo_command(&self, args: &[&str]) -> Command {
        let p = self.dir.path();
        let mut cmd = self.command("skopeo");
        cmd.arg("--policy")
            .arg(p.join("policy.json"))
            .arg("--tmpdir")
            .arg(p.join("tmp"))
            .args(args);
        cmd
    }

    /// Run `skopeo ARGS` (with the sandbox's policy and temp dir); no panic.
    pub fn try_skopeo(&self, args: &[&str]) -> CmdOutput {
        run_command(self.skopeo_command(args), self.timeout)
    }

    /// Like [`ClientEnv::try_skopeo`], with `stdin` on standard input (`--password-stdin`).
    pub fn try_skopeo_with_stdin(&self, args: &[&str], stdin: &str) -> CmdOutput {
        run_command_with_stdin(
            self.skopeo_command(args),
            Some(stdin.as_bytes()),
            self.timeout,
        )
    }

    /// Run `skopeo ARGS`, panicking with full output unless it succeeds.
    pub fn skopeo(&self, args: &[&str]) -> CmdOutput {
        let out = self.try_skopeo(args);
        assert!(out.success(), "{out}");
        out
    }

    /// Run `podman ARGS` against the sandbox's private vfs storage; no panic.
    /// `--signature-policy` is added for `pull` and `push`.
    pub fn try_podman(&self, args: &[&str]) -> CmdOutput {
        run_command(self.podman_command(args), self.timeout)
    }

    /// Like [`ClientEnv::try_podman`], with `stdin` on standard input (`--password-stdin`).
    pub fn try_podman_with_stdin(&self, args: &[&str], stdin: &str) -> CmdOutput {
        run_command_with_stdin(
            self.podman_command(args),
            Some(stdin.as_bytes()),
            self.timeout,
        )
    }

    fn podman_command(&self, args: &[&str]) -> Command {
        let p = self.dir.path();
        let mut cmd = self.command("podman");
        cmd.arg("--root")
            .arg(p.join("podman/root"))
            .arg("--runroot")
            .arg(p.join("podman/runroot"))
            .arg("--tmpdir")
            .arg(p.join("podman/tmp"))
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--cgroup-manager")
            .arg("cgroupfs")
            .arg("--events-backend")
            .arg("file")
            .arg("--network-config-dir")
            .arg(p.join("podman/net"));
        let mut args = args.iter();
        if let Some(sub) = args.next() {
            cmd.arg(sub);
            if matches!(*sub, "pull" | "push") {
                cmd.arg("--signature-policy").arg(p.join("policy.json"));
            }
        }
        cmd.args(args);
        cmd
    }

    /// Run `podman ARGS`, panicking with full output unless it succeeds.
    pub fn podman(&self, args: &[&str]) -> CmdOutput {
        let out = self.try_podman(args);
        assert!(out.success(), "{out}");
        out
    }

    /// Run `umoci ARGS`, panicking with full output unless it succeeds.
    pub fn umoci(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = self.command("umoci");
        cmd.args(args);
        let out = run_command(cmd, self.timeout);
        assert!(out.success(), "{out}");
        out
    }
}

impl Default for ClientEnv {
    fn default() -> Self {
        ClientEnv::new()
    }
}
