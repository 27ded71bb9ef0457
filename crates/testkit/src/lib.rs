//! Test-only helpers shared by the workspace's integration tests (`publish = false`).
//!
//! [`Garage`] (in `garage.rs`) runs a throwaway S3-compatible object store the same way.
//! [`schemas`] validates reports against the official SARIF and CycloneDX schemas.
//!
//! [`PgServer`] runs a throwaway PostgreSQL server: `initdb` into a temporary directory, the
//! server on a free `127.0.0.1` port (its unix socket in the same directory), as an unprivileged
//! OS user. [`PgServer::shared`] is the process's server, started on first use;
//! [`PgServer::create_database`] hands every test a fresh database on it. Tests that need to
//! stop and restart a server take a private one with [`PgServer::start`].
//!
//! Nothing leaks: each server has a watchdog process (`sh`, in its own process group) that waits
//! for the test process to go away, however it goes (normal exit, panic, `kill -9`), then stops
//! the server (`pg_ctl stop -m immediate`) and deletes its directory.
//!
//! Where the programs come from, in order: `$BERTH_PG_BIN` (a directory holding `initdb`,
//! `pg_ctl` and `postgres`), the first `PATH` directory holding all three, then the newest
//! `/usr/lib/postgresql/<major>/bin` (Debian's `postgresql` package). Without them the tests fail
//! with a message naming the package; they never skip.

pub mod garage;
pub mod schemas;

pub use garage::Garage;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// How to get the server programs, for failure messages.
const INSTALL_HINT: &str = "install Debian's `postgresql` package (`apt-get install -y postgresql`, \
     which `scripts/test` does), or point BERTH_PG_BIN at a directory holding initdb, pg_ctl and \
     postgres";

/// The OS user that runs the server when the tests run as root (initdb and postgres refuse root).
const SERVER_USER: &str = "postgres";

/// The database superuser that `initdb` creates; connections need no password (`trust`).
const SUPERUSER: &str = "postgres";

/// PostgreSQL's programs and the OS user that runs them.
struct Install {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    /// `postgres --version`, e.g. `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
    version: String,
    major: u32,
    /// `(uid, gid)` to switch to before running any PostgreSQL program; `None` when the tests
    /// are not root and the programs run as the current user.
    run_as: Option<(u32, u32)>,
}

fn install() -> &'static Install {
    static INSTALL: OnceLock<Install> = OnceLock::new();
    INSTALL.get_or_init(|| {
        let bin = find_bin_dir();
        let postgres = bin.join("postgres");
        let out = Command::new(&postgres)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", postgres.display()));
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let major = version
            .split_whitespace()
            .find_map(|w| w.split('.').next()?.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("cannot read a version from `{version}`"));
        Install {
            initdb: bin.join("initdb"),
            pg_ctl: bin.join("pg_ctl"),
            version,
            major,
            run_as: server_user(),
        }
    })
}

fn find_bin_dir() -> PathBuf {
    const PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
    let has_all = |dir: &Path| PROGRAMS.iter().all(|p| dir.join(p).is_file());
    if let Some(dir) = std::env::var_os("BERTH_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            has_all(&dir),
            "BERTH_PG_BIN={} does not hold initdb, pg_ctl and postgres",
            dir.display()
        );
        return dir;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = std::env::split_paths(&path).find(|d| has_all(d)) {
        return dir;
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_all(&bin).then_some((major, bin))
        })
        .collect();
    debian.sort();
    match debian.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server programs (initdb, pg_ctl, postgres) were not found on PATH or in \
             /usr/lib/postgresql/*/bin. The PostgreSQL tests run a real server and never skip: \
             {INSTALL_HINT}."
        ),
    }
}

/// The unprivileged user to run the server as, when the tests run as root. Creates the
/// `postgres` system user if it does not exist (Debian's package would have created it).
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    if let Some(ids) = lookup_user(SERVER_USER) {
        return Some(ids);
    }
    let out = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home"])
        .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
        .arg(SERVER_USER)
        .output();
    match lookup_user(SERVER_USER) {
        Some(ids) => Some(ids),
        None => panic!(
            "the tests run as root, and PostgreSQL refuses to run as root, so they run it as the \
             OS user `{SERVER_USER}`, which does not exist and could not be created \
             (`useradd --system {SERVER_USER}`: {out:?}). Create it, or {INSTALL_HINT}."
        ),
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    // getpwnam returns a pointer into static storage: one caller at a time.
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: `cname` is a valid C string; the result is read before the lock is released.
    unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// A throwaway PostgreSQL server. See the crate documentation.
pub struct PgServer {
    /// Everything of this server: `data/` (the cluster), `postgres.log`, the unix socket.
    root: PathBuf,
    port: Mutex<u16>,
    running: Mutex<bool>,
    next_db: AtomicU32,
    /// Its stdin is the test process's lifeline: when it closes, the watchdog cleans up.
    watchdog: Mutex<Option<Child>>,
}

impl PgServer {
    /// The PostgreSQL version in use, as `postgres --version` prints it.
    pub fn version() -> &'static str {
        &install().version
    }

    /// This process's shared server, started on first use and stopped when the process exits.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::start)
    }

    /// A new private server, stopped and deleted when dropped (or when the process exits).
    pub fn start() -> PgServer {
        let inst = install();
        let root = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir()
            .expect("create a temp dir for PostgreSQL")
            .keep();
        if let Some((uid, gid)) = inst.run_as {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to {SERVER_USER}: {e}", root.display()));
        }
        let server = PgServer {
            watchdog: Mutex::new(Some(spawn_watchdog(inst, &root))),
            root,
            port: Mutex::new(0),
            running: Mutex::new(false),
            next_db: AtomicU32::new(0),
        };
        server.initdb();
        server.start_postmaster();
        eprintln!(
            "berth-testkit: {} on 127.0.0.1:{} ({})",
            inst.version,
            server.port(),
            server.root.display()
        );
        server
    }

    pub fn port(&self) -> u16 {
        *self.port.lock().unwrap()
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port())
    }

    /// Creates a fresh, empty database and returns its URL. Blocking; may be called from async
    /// code (it runs its own small runtime on a helper thread).
    pub fn create_database(&self) -> String {
        let name = format!(
            "berth_test_{}",
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        let admin = self.url("postgres");
        let sql = format!("CREATE DATABASE \"{name}\"");
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a runtime");
            rt.block_on(async {
                use sqlx::{Connection, Executor};
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                conn.execute(sql.as_str()).await?;
                conn.close().await
            })
        })
        .join()
        .expect("the create-database thread panicked");
        if let Err(e) = result {
            panic!(
                "CREATE DATABASE {name} on 127.0.0.1:{}: {e}\n{}",
                self.port(),
                self.log_tail()
            );
        }
        self.url(&name)
    }

    /// Stops the server (fast shutdown: open connections are closed). Its data stays.
    pub fn stop(&self) {
        let mut running = self.running.lock().unwrap();
        if *running {
            self.pg_ctl_stop("fast");
            *running = false;
        }
    }

    /// Starts a stopped server again, on the same port and data.
    pub fn start_again(&self) {
        self.start_postmaster();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let start = log.len().saturating_sub(8192);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        format!(
            "---- {} (last 8 KiB) ----\n{}",
            self.root.join("postgres.log").display(),
            &log[start..]
        )
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// A command for one of PostgreSQL's programs, run as the server user, in the server's
    /// directory, without the caller's `PG*` settings.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        if let Some((uid, gid)) = install().run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn initdb(&self) {
        let inst = install();
        let attempt = |icu: bool| {
            let mut cmd = self.command(&inst.initdb);
            cmd.arg("--pgdata")
                .arg(self.data_dir())
                .args([
                    "--username",
                    SUPERUSER,
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                ])
                .args(["--no-sync", "--locale", "C.UTF-8"]);
            if icu {
                // A default collation that is not byte order, so the tests prove that the
                // schema's `COLLATE "C"` gives listings their byte-wise order.
                cmd.args(["--locale-provider", "icu", "--icu-locale", "en-US"]);
            }
            cmd.output()
                .unwrap_or_else(|e| panic!("run {}: {e}", inst.initdb.display()))
        };
        let mut out = attempt(inst.major >= 15);
        if !out.status.success() && inst.major >= 15 {
            eprintln!(
                "berth-testkit: initdb with an ICU default collation failed, using C.UTF-8:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_dir_all(self.data_dir());
            out = attempt(false);
        }
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let settings = format!(
            "\n# berth-testkit: a throwaway server for tests\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 300\n\
             shared_buffers = 32MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            self.root.display()
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .expect("append test settings to postgresql.conf");
    }

    /// Starts the server and waits until it accepts connections. The first start picks a free
    /// port (retrying if another process takes it first); later starts reuse it.
    fn start_postmaster(&self) {
        let mut running = self.running.lock().unwrap();
        if *running {
            return;
        }
        let inst = install();
        let fixed = self.port() != 0;
        let mut last = String::new();
        for _ in 0..5 {
            let port = if fixed { self.port() } else { free_port() };
            let out = self
                .command(&inst.pg_ctl)
                .arg("start")
                .arg("--pgdata")
                .arg(self.data_dir())
                .arg("--log")
                .arg(self.root.join("postgres.log"))
                .args(["--wait", "--timeout", "60", "--silent"])
                .arg("-o")
                .arg(format!("-p {port}"))
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", inst.pg_ctl.display()));
            if out.status.success() {
                *self.port.lock().unwrap() = port;
                *running = true;
                return;
            }
            last = format!(
                "pg_ctl start on port {port} failed ({}):\n{}{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
            let log = self.log();
            if fixed || !(log.contains("could not bind") || log.contains("already in use")) {
                break;
            }
        }
        panic!("{last}");
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let out = self
            .command(&install().pg_ctl)
            .arg("stop")
            .arg("--pgdata")
            .arg(self.data_dir())
            .args(["--mode", mode, "--wait", "--timeout", "60", "--silent"])
            .stdout(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            out => panic!("pg_ctl stop failed: {out:?}\n{}", self.log_tail()),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner())) {
            let _ = self
                .command(&install().pg_ctl)
                .arg("stop")
                .arg("--pgdata")
                .arg(self.data_dir())
                .args(["--mode", "immediate", "--wait", "--silent"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Closing its stdin makes the watchdog delete the directory; wait for that.
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

/// A shell that waits for EOF on its stdin (the test process holds the write end, so EOF comes
/// when the process exits or is killed), then stops the server and removes `root`. It runs in its
/// own process group so a signal to the test's group does not take it down first.
fn spawn_watchdog(inst: &Install, root: &Path) -> Child {
    const SCRIPT: &str = r#"read _ || true
"$0" stop --pgdata "$1/data" --mode immediate --wait --timeout 30 --silent >/dev/null 2>&1
rm -rf "$1""#;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg(&inst.pg_ctl)
        .arg(root)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some((uid, gid)) = inst.run_as {
        cmd.uid(uid).gid(gid);
    }
    cmd.spawn()
        .expect("spawn the PostgreSQL watchdog (/bin/sh)")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// The directory of real OSV advisories shared with the project (`shared/advisories`, 8,158
/// records): `$BERTH_ADVISORIES` if set, else the first `shared/advisories` found beside this
/// checkout or one of its parents, else `/work/shared/advisories`. Panics, naming where it
/// looked, when there is none: the tests that use it never skip.
pub fn shared_advisories() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_ADVISORIES") {
        return PathBuf::from(dir);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut candidates: Vec<PathBuf> = here
        .ancestors()
        .map(|a| a.join("shared/advisories"))
        .collect();
    candidates.push(PathBuf::from("/work/shared/advisories"));
    candidates
        .iter()
        .find(|c| c.join("osv-crates").is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the shared OSV advisories were not found (looked in {candidates:?}); set \
                 BERTH_ADVISORIES to the directory holding osv-crates, osv-go and osv-pypi"
            )
        })
}
