//! `berth vulndb`: the vulnerability database of a data dir (or of the configured database and
//! storage), for air-gapped sites: import feed files and signed bundles, show the status.
//!
//! The commands work on the shared records directly, like a replica would: the new snapshot is
//! stored in blob storage and recorded in the metadata database, and running servers load it at
//! their next check.

use std::path::PathBuf;

use anyhow::Context;
use berth_registry::vulndb::{ImportFormat, ImportOutcome, VulnDbService};
use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum VulnDbCommand {
    /// Import a feed file (JSON or zip archive) or a directory tree of JSON files, replacing
    /// the records of that feed. Nothing changes unless all of it imports.
    Import {
        /// osv, debian-tracker or alpine-secdb.
        #[arg(long, default_value = "osv")]
        format: String,
        /// The feed's name in the database [default: the format's name].
        #[arg(long)]
        feed: Option<String>,
        path: PathBuf,
    },
    /// Replace the whole database with a bundle (a snapshot file). With `vulndb.public_key`
    /// configured, it must carry a valid detached Ed25519 signature.
    ImportBundle {
        file: PathBuf,
        /// The detached signature (64 bytes or 128 hex digits) [default: FILE.sig, if present].
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// Show the database's version, age and every feed's status, as JSON.
    Status,
    /// Write the current database to a snapshot file, byte for byte as stored, for `berth
    /// scan --vulndb FILE` on machines without access to the registry's storage (CI runners
    /// that copy it) or for `import-bundle` elsewhere.
    Export {
        /// The snapshot file to write (replaced atomically if it exists).
        file: PathBuf,
    },
}

pub async fn run(config: Config, command: VulnDbCommand) -> anyhow::Result<()> {
    let meta = crate::open_meta(&config).await?;
    let blobs = crate::open_blobs(&config)?;
    let service = VulnDbService::open(meta.clone(), blobs, config.vulndb_config()?).await?;
    let result = match command {
        VulnDbCommand::Import { format, feed, path } => {
            let format: ImportFormat = format.parse()?;
            let outcome = service
                .import_path(&path, format, feed.as_deref())
                .await
                .with_context(|| format!("importing {}", path.display()))?;
            print_outcome(&outcome)
        }
        VulnDbCommand::ImportBundle { file, signature } => {
            let bundle = std::fs::read(&file)
                .with_context(|| format!("reading the bundle {}", file.display()))?;
            let sig_path = signature
                .clone()
                .unwrap_or_else(|| berth_registry::vulndb::signature_path(&file));
            let sig = match std::fs::read(&sig_path) {
                Ok(s) => Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && signature.is_none() => None,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading the signature {}", sig_path.display()));
                }
            };
            let outcome = service
                .import_bundle(bundle, sig)
                .await
                .with_context(|| format!("importing the bundle {}", file.display()))?;
            print_outcome(&outcome)
        }
        VulnDbCommand::Export { file } => export(&service, &file).await,
        VulnDbCommand::Status => {
            let status = service.status().await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(())
        }
    };
    meta.close().await;
    result
}

async fn export(service: &VulnDbService, file: &std::path::Path) -> anyhow::Result<()> {
    let (snapshot, bytes) = service
        .export()
        .await
        .context("reading the vulnerability database")?
        .context("there is no vulnerability database to export: import one first")?;
    let path = file.to_owned();
    tokio::task::spawn_blocking(move || berth_vulndb::db::write_atomic(&path, &bytes))
        .await?
        .with_context(|| format!("writing {}", file.display()))?;
    println!("file: {}", file.display());
    println!("version: {}", snapshot.version);
    println!("digest: {}", snapshot.digest);
    println!("bytes: {}", snapshot.size);
    Ok(())
}

fn print_outcome(o: &ImportOutcome) -> anyhow::Result<()> {
    println!("feed: {}", o.feed);
    println!("records: {}", o.records);
    println!("documents: {}", o.documents);
    println!("warnings: {}", o.warnings);
    println!("version: {}", o.version);
    println!("digest: {}", o.digest);
    Ok(())
}
