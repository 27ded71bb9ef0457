//! `berth`: a private OCI container registry in one binary.

mod admin;
mod config;
mod scan;
mod vulndb;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A private OCI container registry: fast, safe and complete, in one binary."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    ///
    /// With no configuration it keeps everything under the data dir: metadata in SQLite
    /// (meta.db) and blobs on the local filesystem (storage/). Configuration comes from, in
    /// increasing precedence: built-in defaults, the --config TOML file, BERTH_* environment
    /// variables (BERTH_LISTEN, BERTH_DATA_DIR, BERTH_STORAGE__FSYNC, ...: sections joined by
    /// "__"), and these flags. Prints "listening on ADDR" on standard output once bound; logs
    /// go to standard error (filter with BERTH_LOG, e.g. BERTH_LOG=debug).
    ///
    /// Authentication is on: on first start the user "admin" is created with the password in
    /// BERTH_ADMIN_PASSWORD, or a random one that is logged once.
    Serve(Location),
    /// Manage users, organisations, robot accounts and access tokens directly in the data dir
    /// (for bootstrap and recovery; works while the server runs).
    Admin {
        #[command(flatten)]
        location: Location,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Manage the vulnerability database in the data dir's storage: import feed files (for
    /// air-gapped sites), import signed bundles, show its status. Works while the server runs;
    /// running servers load the new database within `vulndb.check_interval_secs`.
    Vulndb {
        #[command(flatten)]
        location: Location,
        #[command(subcommand)]
        command: vulndb::VulnDbCommand,
    },
    /// Measure a registry's throughput and latency (Berth or any other, for comparison).
    Bench(Box<berth_bench::BenchArgs>),
    /// Inventory an image down to its binaries (an SBOM) and match it against the
    /// vulnerability database: OS packages, language packages and statically linked
    /// libraries, from an OCI layout, an archive or a registry.
    ///
    /// With --data-dir or --config, the vulnerabilities come from that registry's database
    /// (read only; it works while the server runs); with --vulndb, from a snapshot file
    /// (`berth vulndb export`). Without either, or when the data dir has no database, the
    /// report is the inventory alone.
    ///
    /// Exit codes: 0 success; 1 error (the image or the database cannot be read); 2 bad usage;
    /// 3 findings reach the --fail-on threshold (the report is written first).
    Scan(Box<scan::ScanArgs>),
}

/// Where the registry's configuration and data are.
#[derive(clap::Args)]
struct Location {
    /// Address to listen on [default: 127.0.0.1:5000]. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Directory for the embedded database and blob storage [default: ./berth-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file. Unknown keys are errors.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Location {
    fn load(&self) -> anyhow::Result<Config> {
        Config::load(
            self.config.as_deref(),
            Overrides {
                listen: self.listen,
                data_dir: self.data_dir.clone(),
            },
        )
    }
}

fn main() -> anyhow::Result<ExitCode> {
    // glibc gives each thread that allocates its own arena, up to eight per core; with many
    // concurrent uploads that multiplies resident memory for no gain. Two arenas are plenty
    // for a server whose hot paths allocate little.
    //
    // Fixed thresholds instead of glibc's moving ones: buffers of up to 4 MiB (socket reads,
    // body chunks in flight) come from the arenas rather than from mmap, and an arena keeps up
    // to 16 MiB of free memory at its top instead of handing it back at once. Otherwise the
    // same few MiB are returned to the kernel and faulted in again over and over during
    // uploads: 8 concurrent pushes spent ~4% of the server's CPU on those page faults,
    // measured in docs/performance.md.
    // SAFETY: called before any other thread exists; mallopt only adjusts allocator settings.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let done = match cli.command {
        Command::Serve(location) => {
            init_logging();
            runtime.block_on(serve(location.load()?))
        }
        Command::Admin { location, command } => {
            runtime.block_on(admin::run(location.load()?, command))
        }
        Command::Vulndb { location, command } => {
            runtime.block_on(vulndb::run(location.load()?, command))
        }
        Command::Bench(args) => runtime.block_on(berth_bench::run(*args)),
        Command::Scan(args) => return runtime.block_on(scan::run(*args)),
    };
    done.map(|()| ExitCode::SUCCESS)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Opens the metadata store the configuration names.
async fn open_meta(config: &Config) -> anyhow::Result<berth_meta::MetaStore> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    berth_meta::MetaStore::connect(&config.database_url())
        .await
        .context("opening the metadata database")
}

/// Opens the blob storage the configuration names.
fn open_blobs(config: &Config) -> anyhow::Result<berth_storage::BlobStore> {
    Ok(match config.storage.kind {
        config::StorageKind::Fs => {
            let fs = berth_storage::FsStore::open(config.storage_path(), config.storage.fsync)
                .with_context(|| {
                    format!(
                        "opening blob storage at {}",
                        config.storage_path().display()
                    )
                })?;
            if !config.storage.fsync {
                tracing::warn!(
                    "storage.fsync is off: blobs acknowledged shortly before a power loss may be lost"
                );
            }
            fs.into()
        }
        config::StorageKind::S3 => berth_storage::S3Store::open(&config.s3_config())
            .context("opening S3 blob storage")?
            .into(),
    })
}

fn auth_config(config: &Config) -> berth_auth::AuthConfig {
    berth_auth::AuthConfig {
        service: config.auth.service.clone(),
        token_ttl: Duration::from_secs(config.auth.token_ttl_secs),
        users_create_orgs: config.auth.users_create_orgs,
        ..Default::default()
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;

    let meta = open_meta(&config).await?;
    let blobs = open_blobs(&config)?;
    let (authorizer, auth): (Arc<dyn berth_server::Authorizer>, _) = if config.auth.enabled {
        let auth =
            Arc::new(berth_auth::AuthService::start(meta.clone(), auth_config(&config)).await?);
        let password = std::env::var("BERTH_ADMIN_PASSWORD").ok();
        if let Some(generated) = auth.bootstrap_admin(password.as_deref()).await? {
            // Shown once, as the only way to get into a fresh registry without configuration.
            tracing::warn!(
                "created the site admin \"admin\" with password {generated} (shown only now; change it)"
            );
        }
        let authorizer = berth_server::TokenAuthorizer {
            auth: auth.clone(),
            external_url: config.auth.external_url.clone(),
        };
        (Arc::new(authorizer), Some(auth))
    } else {
        tracing::warn!(
            "auth.enabled is false: anyone who can reach this registry may push, pull and delete"
        );
        (Arc::new(berth_server::AllowAll), None)
    };
    let vulndb_config = config.vulndb_config()?;
    let vulndb =
        berth_registry::VulnDbService::open(meta.clone(), blobs.clone(), vulndb_config).await?;
    let vulndb_worker = berth_registry::VulnDbWorker::start(vulndb.clone());
    let registry = Arc::new(berth_registry::Registry::new(
        meta,
        blobs,
        berth_registry::RegistryConfig {
            max_manifest_size: config.limits.max_manifest_bytes,
            max_blob_size: config.limits.max_blob_bytes,
            upload_expiry: Duration::from_secs(config.uploads.expiry_secs),
            redirect_ttl: config
                .storage
                .redirect
                .then(|| Duration::from_secs(config.storage.redirect_ttl_secs)),
            ..Default::default()
        },
    ));
    let scans =
        berth_registry::ScanService::new(registry.clone(), vulndb.clone(), config.scan_config());
    let scan_worker = berth_registry::ScanWorker::start(scans.clone());
    let expiry = berth_registry::UploadExpiry::start(
        registry.clone(),
        Duration::from_secs(config.uploads.sweep_interval_secs),
    );

    let state = berth_server::AppState {
        registry: registry.clone(),
        authorizer,
        auth,
        vulndb: Some(vulndb),
        scans: Some(scans),
        body_idle_timeout: Duration::from_secs(config.uploads.body_idle_timeout_secs),
    };
    tokio::spawn(trim_when_idle());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "berth is serving");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    berth_server::serve(listener, berth_server::app(state), shutdown).await?;
    tracing::info!("shutting down");
    expiry.shutdown().await;
    scan_worker.shutdown().await;
    vulndb_worker.shutdown().await;
    registry.shutdown().await;
    Ok(())
}

/// One server per data dir: a second one on the same SQLite file and upload directory would
/// break the single-writer assumptions (tag cache, upload locks). The lock is released when the
/// process exits, however it exits.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("berth.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    file.try_lock()
        .map_err(|_| anyhow::anyhow!("another berth process is using {}", dir.display()))?;
    Ok(file)
}

/// Resolves on SIGTERM or SIGINT. The handlers are registered here, before the server says it
/// is listening, so that a signal sent right after that line is never missed (the default
/// action would kill the process without a graceful shutdown).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// How often the server checks whether it went idle.
const IDLE_CHECK: Duration = Duration::from_secs(2);

/// Hands the allocator's free memory back to the kernel once no request has arrived or been in
/// flight for a while. `main` lets the arenas keep up to 16 MiB free so that busy uploads reuse
/// their buffers; an idle server does not need to hold on to it.
async fn trim_when_idle() {
    let mut interval = tokio::time::interval(IDLE_CHECK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, _) = berth_server::requests_received();
    let mut trimmed = true;
    loop {
        interval.tick().await;
        let (received, in_flight) = berth_server::requests_received();
        if received != seen || in_flight > 0 {
            seen = received;
            trimmed = false;
        } else if !trimmed {
            trimmed = true;
            // SAFETY: malloc_trim only returns free memory to the kernel.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    }
}
