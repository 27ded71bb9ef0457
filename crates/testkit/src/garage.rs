//! [`Garage`]: a throwaway single-node Garage (a real S3-compatible object store) for tests.
//!
//! The node runs from a temporary directory on free loopback ports with an SQLite metadata
//! engine and replication factor 1; the helper applies a one-node layout and creates an access
//! key. [`Garage::shared`] is the process's node, started on first use; [`Garage::create_bucket`]
//! hands each test a fresh bucket that the key may read, write and own. Tests that stop and
//! restart the store take a private node with [`Garage::start`].
//!
//! As with PostgreSQL, a watchdog (`sh` in its own process group) kills the node and deletes its
//! directory when the test process goes away, however it goes.
//!
//! The `garage` program comes from `$BERTH_GARAGE_BIN` (the program itself), then `PATH`, then
//! `~/.cache/berth/garage/bin/garage`, where `scripts/test` installs it (`cargo install garage`).
//! Without it the tests fail with a message saying so; they never skip.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::free_port;

const INSTALL_HINT: &str = "run `scripts/test` (which installs Garage with `cargo install garage \
     --locked --root ~/.cache/berth/garage`), or point BERTH_GARAGE_BIN at a garage 2.x program";

/// S3 region name Garage answers to (its configuration sets it).
pub const REGION: &str = "garage";

fn program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        if let Some(p) = std::env::var_os("BERTH_GARAGE_BIN") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "BERTH_GARAGE_BIN={} is not a file",
                p.display()
            );
            return p;
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join("garage"))
            .find(|p| p.is_file())
        {
            return p;
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let cached = home.join(".cache/berth/garage/bin/garage");
        assert!(
            cached.is_file(),
            "the garage program was not found (BERTH_GARAGE_BIN, PATH, {}). The S3 tests run a \
             real Garage node and never skip: {INSTALL_HINT}.",
            cached.display()
        );
        cached
    })
}

/// A throwaway Garage node. See the module documentation.
pub struct Garage {
    root: PathBuf,
    s3_port: u16,
    /// The running server, if running.
    server: Mutex<Option<Child>>,
    key_id: String,
    secret: String,
    next_bucket: AtomicU32,
    watchdog: Mutex<Option<Child>>,
}

impl Garage {
    /// This process's shared node, started on first use and removed when the process exits.
    pub fn shared() -> &'static Garage {
        static SHARED: OnceLock<Garage> = OnceLock::new();
        SHARED.get_or_init(Garage::start)
    }

    /// A new private node, removed when dropped (or when the process exits).
    pub fn start() -> Garage {
        let root = tempfile::Builder::new()
            .prefix("berth-garage-")
            .tempdir()
            .expect("create a temp dir for Garage")
            .keep();
        let s3_port = free_port();
        let rpc_port = free_port();
        let admin_port = free_port();
        let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
        let config = format!(
            "metadata_dir = \"{root}/meta\"\n\
             data_dir = \"{root}/data\"\n\
             db_engine = \"sqlite\"\n\
             metadata_fsync = false\n\
             data_fsync = false\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_secret = \"{secret}\"\n\
             [s3_api]\n\
             s3_region = \"{REGION}\"\n\
             api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
             root_domain = \".s3.garage.localhost\"\n\
             [admin]\n\
             api_bind_addr = \"127.0.0.1:{admin_port}\"\n",
            root = root.display()
        );
        std::fs::write(root.join("garage.toml"), config).expect("write garage.toml");
        let mut g = Garage {
            watchdog: Mutex::new(Some(spawn_watchdog(&root))),
            root,
            s3_port,
            server: Mutex::new(None),
            key_id: String::new(),
            secret: String::new(),
            next_bucket: AtomicU32::new(0),
        };
        g.start_again();
        let node = g.cli(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap_or_default().to_owned();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        let key = g.cli(&["key", "create", "berth-test"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("no `{name}` in `garage key create` output:\n{key}"))
        };
        g.key_id = field("Key ID:");
        g.secret = field("Secret key:");
        eprintln!(
            "berth-testkit: Garage on http://127.0.0.1:{} ({})",
            g.s3_port,
            g.root.display()
        );
        g
    }

    /// The S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn access_key_id(&self) -> &str {
        &self.key_id
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret
    }

    /// Creates a fresh bucket the key may read, write and own, and returns its name.
    pub fn create_bucket(&self) -> String {
        let name = format!(
            "berth-test-{}",
            self.next_bucket.fetch_add(1, Ordering::Relaxed)
        );
        self.cli(&["bucket", "create", &name]);
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &name,
            "--key",
            "berth-test",
        ]);
        name
    }

    /// Stops the node (SIGKILL: like a crash or a network cut). Its data stays.
    pub fn stop(&self) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped node again on the same ports and data, and waits until S3 answers.
    pub fn start_again(&self) {
        let mut server = self.server.lock().unwrap();
        if server.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("garage.log"))
            .expect("open garage.log");
        let child = Command::new(program())
            .arg("-c")
            .arg(self.root.join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program().display()));
        std::fs::write(self.root.join("garage.pid"), child.id().to_string())
            .expect("write garage.pid");
        *server = Some(child);
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(program())
                .arg("-c")
                .arg(self.root.join("garage.toml"))
                .arg("status")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            if ok && std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Garage did not come up within 60 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.root.join("garage.log")).unwrap_or_default();
        let start = log.len().saturating_sub(8192);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        log[start..].to_owned()
    }

    /// Runs a `garage` admin command against this node; panics with its output on failure.
    fn cli(&self, args: &[&str]) -> String {
        let mut last = String::new();
        // Right after start the node may still be settling its layout: retry briefly.
        for _ in 0..50 {
            let out = Command::new(program())
                .arg("-c")
                .arg(self.root.join("garage.toml"))
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", program().display()));
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            last = format!(
                "garage {}: {}\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{last}\n{}", self.log_tail());
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut child) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Waits for EOF on stdin (the test process's end closes when it exits or is killed), then
/// kills the node whose pid is in `garage.pid` and removes the directory.
fn spawn_watchdog(root: &Path) -> Child {
    const SCRIPT: &str = r#"read _ || true
[ -f "$0/garage.pid" ] && kill -9 "$(cat "$0/garage.pid")" 2>/dev/null
sleep 0.2
rm -rf "$0""#;
    Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg(root)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn the Garage watchdog (/bin/sh)")
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u8
}
