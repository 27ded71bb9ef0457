//! `berth scan`: the software inventory (SBOM) of an image, from an OCI layout directory, an
//! OCI or `docker save` archive, or a registry, without a server; and, with a vulnerability
//! database (a registry's data dir, or a snapshot file), the vulnerabilities that affect it and
//! a CI gate on their severity.
//!
//! The report goes to standard output (or `--output`); progress goes to standard error, as a bar
//! on a terminal and not at all otherwise, so a CI job's log stays readable. The gate's verdict
//! is one line on standard error, after the report is written; exit code 3 means that findings
//! reached the threshold, so a pipeline can tell "vulnerable" from "broken" (1).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use berth_assess::gate::{Gate, IgnoreList};
use berth_assess::{VulnReport, level_name};
use berth_scan::{
    AnalyzeOptions, Credentials, ImageReport, LocalSource, Platform, Progress, ProgressFn,
    RegistrySource, output,
};
use berth_vulndb::{Level, VulnDb};

use crate::config::{Config, Overrides};

/// The exit code of a scan whose findings reach the `--fail-on` threshold.
pub const EXIT_GATE_FAILED: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A readable table: the inventory, then the vulnerabilities.
    Table,
    /// Berth's own JSON report: the inventory, and the vulnerability report under
    /// `vulnerabilities`.
    Json,
    /// CycloneDX 1.6 JSON: the inventory as components, and `vulnerabilities`.
    Cyclonedx,
    /// SPDX 2.3 JSON: the inventory only (SPDX 2.3 has no place for vulnerabilities; use
    /// cyclonedx or sarif for them).
    Spdx,
    /// SARIF 2.1.0, for code-scanning services: the vulnerabilities only (needs a database).
    Sarif,
}

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// What to analyse: an OCI image layout directory (`DIR` or `DIR:TAG`), an OCI or `docker
    /// save` tarball (`FILE` or `FILE:TAG`), or an image in a registry
    /// (`registry.example/acme/app:1.0`, `...@sha256:...`). Prefixes force the kind: `oci:`,
    /// `archive:`, `docker://`.
    target: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Platform to analyse in a multi-platform image (`os/arch[/variant]`); default
    /// linux/amd64, or the only image there is.
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Analyse every platform of a multi-platform image (attestations are skipped); the JSON
    /// formats then hold a list of reports, SARIF one run per platform, and --fail-on counts
    /// the findings of every platform.
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,
    /// A Berth registry's data dir: match the image against its vulnerability database (read
    /// only; works while the server runs). BERTH_* variables apply as for `serve`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A Berth configuration file naming the data dir, database and storage whose
    /// vulnerability database to match against.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A vulnerability database snapshot file (from `berth vulndb export`) to match against,
    /// for machines without access to the registry's storage.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data_dir", "config"])]
    vulndb: Option<PathBuf>,
    /// Exit with code 3 when any finding reaches this severity: critical, high, medium, low,
    /// negligible or unknown (every finding). The report is written first; one line on
    /// standard error says how many findings reached it. Needs a vulnerability database.
    #[arg(long, value_name = "SEVERITY", value_parser = berth_assess::parse_level)]
    fail_on: Option<Level>,
    /// A vulnerability id (or any of its aliases: CVE, GHSA, ...) whose findings do not count
    /// for --fail-on; they stay in the report, marked (SARIF: suppressed). Repeatable.
    #[arg(long, value_name = "ID")]
    ignore: Vec<String>,
    /// A file of ids to ignore as --ignore does: one per line, `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    ignore_file: Option<PathBuf>,
    /// Registry user name (the password comes from BERTH_SCAN_PASSWORD or --password-stdin).
    #[arg(long, short, value_name = "USER")]
    username: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Talk to the registry over plain HTTP instead of HTTPS.
    #[arg(long)]
    plain_http: bool,
    /// Draw no progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

enum Target {
    Layout(PathBuf, String),
    Archive(PathBuf, String),
    Registry(String),
}

/// A path, optionally with `:TAG`, that exists on disk.
fn local(spec: &str) -> Option<(PathBuf, String)> {
    if Path::new(spec).exists() {
        return Some((PathBuf::from(spec), String::new()));
    }
    let (path, tag) = spec.rsplit_once(':')?;
    (!tag.contains('/') && Path::new(path).exists()).then(|| (PathBuf::from(path), tag.into()))
}

fn parse_target(spec: &str) -> anyhow::Result<Target> {
    if let Some(rest) = spec.strip_prefix("docker://") {
        return Ok(Target::Registry(rest.to_owned()));
    }
    if let Some(rest) = spec.strip_prefix("oci:") {
        let (path, tag) = local(rest).with_context(|| format!("no OCI layout at {rest}"))?;
        return Ok(Target::Layout(path, tag));
    }
    if let Some(rest) = spec.strip_prefix("archive:") {
        let (path, tag) = local(rest).with_context(|| format!("no archive at {rest}"))?;
        return Ok(Target::Archive(path, tag));
    }
    match local(spec) {
        Some((path, tag)) if path.is_dir() => Ok(Target::Layout(path, tag)),
        Some((path, tag)) => Ok(Target::Archive(path, tag)),
        None if spec.contains('/') => Ok(Target::Registry(spec.to_owned())),
        None => bail!(
            "{spec} is neither a file or directory here nor an image reference (HOST/REPO:TAG)"
        ),
    }
}

fn parse_platform(s: &str) -> anyhow::Result<Platform> {
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(os), Some(arch), variant, None) if !os.is_empty() && !arch.is_empty() => {
            Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.filter(|v| !v.is_empty()).map(str::to_owned),
            })
        }
        _ => bail!("--platform must be OS/ARCH or OS/ARCH/VARIANT, not {s:?}"),
    }
}

fn credentials(args: &ScanArgs) -> anyhow::Result<Option<Credentials>> {
    let Some(username) = args.username.clone() else {
        return Ok(None);
    };
    let password = if args.password_stdin {
        let mut p = String::new();
        std::io::stdin()
            .read_line(&mut p)
            .context("reading the password from standard input")?;
        p.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        std::env::var("BERTH_SCAN_PASSWORD").context(
            "--username needs a password: set BERTH_SCAN_PASSWORD or use --password-stdin",
        )?
    };
    Ok(Some(Credentials { username, password }))
}

/// A progress bar over the compressed bytes of all layers.
fn progress_bar(enabled: bool) -> (ProgressFn, Option<indicatif::ProgressBar>) {
    if !enabled {
        return (berth_scan::no_progress(), None);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("resolving");
    let b = bar.clone();
    // Per-layer progress arrives as running totals; keep each layer's last figure.
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let f: ProgressFn = Arc::new(move |p| match p {
        Progress::Resolved {
            layers,
            total_bytes,
        } => {
            b.set_length(total_bytes);
            b.set_message(format!("{layers} layers"));
        }
        Progress::LayerBytes { digest, read } => {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let before = seen.insert(digest, read).unwrap_or(0);
            b.inc(read.saturating_sub(before));
        }
        Progress::LayerDone { digest, .. } => {
            b.set_message(format!("done {}", &digest.hex()[..12]));
        }
        Progress::Merging => b.set_message("merging"),
        Progress::LayerStarted { .. } => {}
    });
    (f, Some(bar))
}

/// Where the vulnerabilities come from.
enum Database {
    /// None was asked for (no --data-dir, --config or --vulndb).
    NotAsked,
    /// The data dir or configuration named has none; the text says where that was.
    Missing(String),
    Loaded(Arc<VulnDb>),
}

/// The database of the data dir or configuration named, or of the snapshot file.
async fn open_database(args: &ScanArgs) -> anyhow::Result<Database> {
    if let Some(file) = &args.vulndb {
        let path = file.clone();
        let db = tokio::task::spawn_blocking(move || VulnDb::load_snapshot(&path))
            .await?
            .with_context(|| format!("reading the vulnerability database {}", file.display()))?;
        return Ok(Database::Loaded(Arc::new(db)));
    }
    if args.data_dir.is_none() && args.config.is_none() {
        return Ok(Database::NotAsked);
    }
    let config = Config::load(
        args.config.as_deref(),
        Overrides {
            listen: None,
            data_dir: args.data_dir.clone(),
        },
    )?;
    let place = match &config.database.url {
        None => config.data_dir.display().to_string(),
        Some(_) => "the configured database".to_string(),
    };
    // Opening an embedded database that is not there would create it (and the data dir):
    // a scan must not leave a registry's files behind where there was none.
    if config.database.url.is_none() && !config.data_dir.join("meta.db").exists() {
        return Ok(Database::Missing(place));
    }
    let meta = crate::open_meta(&config).await?;
    let loaded = async {
        let blobs = crate::open_blobs(&config)?;
        let service =
            berth_registry::VulnDbService::open(meta.clone(), blobs, config.vulndb_config()?)
                .await?;
        Ok::<_, anyhow::Error>(service.current().await?)
    }
    .await;
    meta.close().await;
    match loaded.with_context(|| format!("reading the vulnerability database of {place}"))? {
        Some(db) => Ok(Database::Loaded(db)),
        None => Ok(Database::Missing(place)),
    }
}

/// The ids of --ignore and --ignore-file.
fn ignore_list(args: &ScanArgs) -> anyhow::Result<IgnoreList> {
    let mut list = match &args.ignore_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the ignore file {}", path.display()))?;
            IgnoreList::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => IgnoreList::default(),
    };
    list.extend(&args.ignore);
    Ok(list)
}

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let target = parse_target(&args.target)?;
    let ignore = ignore_list(&args)?;
    // The database first: a gate that cannot be evaluated should fail before a long analysis.
    let db = match open_database(&args).await? {
        Database::Loaded(db) => Some(db),
        Database::NotAsked => {
            if args.fail_on.is_some() || args.format == Format::Sarif {
                bail!(
                    "{} needs a vulnerability database: name a registry's data dir \
                     (--data-dir or --config) or a snapshot file (--vulndb)",
                    needs_db(&args)
                );
            }
            None
        }
        Database::Missing(place) => {
            if args.fail_on.is_some() || args.format == Format::Sarif {
                bail!(
                    "{} needs a vulnerability database, and {place} has none: import one \
                     with `berth vulndb import`, or pass a snapshot file with --vulndb",
                    needs_db(&args)
                );
            }
            eprintln!(
                "berth scan: no vulnerability database in {place} (import one with `berth \
                 vulndb import`): the report is the inventory only"
            );
            None
        }
    };
    let mut opts = AnalyzeOptions::default();
    if let Some(p) = &args.platform {
        opts.platform = Some(parse_platform(p)?);
    }
    let show = !args.no_progress && std::io::stderr().is_terminal();
    let (progress, bar) = progress_bar(show);
    let reports = match target {
        Target::Layout(dir, tag) => {
            let src = LocalSource::oci_layout(&dir)
                .with_context(|| format!("opening the OCI layout {}", dir.display()))?;
            analyze(&src, &tag, &opts, progress, args.all_platforms).await
        }
        Target::Archive(file, tag) => {
            let src = LocalSource::archive(&file)
                .await
                .with_context(|| format!("opening the archive {}", file.display()))?;
            analyze(&src, &tag, &opts, progress, args.all_platforms).await
        }
        Target::Registry(image) => {
            let (src, reference) =
                RegistrySource::from_image_ref(&image, credentials(&args)?, args.plain_http)?;
            analyze(&src, &reference, &opts, progress, args.all_platforms).await
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let reports = reports.with_context(|| format!("analysing {}", args.target))?;
    let vulns: Option<Vec<VulnReport>> = db.map(|db| {
        reports
            .iter()
            .map(|r| berth_assess::assess(&db, r))
            .collect()
    });
    let text = render(
        &reports,
        vulns.as_deref(),
        args.format,
        args.all_platforms,
        &ignore,
    )?;
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("writing the report to {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    let (Some(threshold), Some(vulns)) = (args.fail_on, &vulns) else {
        return Ok(ExitCode::SUCCESS);
    };
    let outcome = Gate::new(threshold, ignore).evaluate(vulns);
    let level = level_name(threshold);
    let ignored = match outcome.ignored {
        0 => String::new(),
        n => format!(" ({n} more ignored)"),
    };
    if outcome.passed() {
        eprintln!("berth scan: no findings at or above {level}{ignored}: passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "berth scan: {} finding(s) at or above {level}{ignored}: failed (exit code \
             {EXIT_GATE_FAILED})",
            outcome.reached
        );
        Ok(ExitCode::from(EXIT_GATE_FAILED))
    }
}

/// The option that needs a database, for messages.
fn needs_db(args: &ScanArgs) -> &'static str {
    if args.fail_on.is_some() {
        "--fail-on"
    } else {
        "--format sarif"
    }
}

async fn analyze<S: berth_scan::ImageSource>(
    src: &S,
    reference: &str,
    opts: &AnalyzeOptions,
    progress: ProgressFn,
    all: bool,
) -> Result<Vec<ImageReport>, berth_scan::ScanError> {
    if all {
        berth_scan::analyze_index(src, reference, opts, progress).await
    } else {
        Ok(vec![
            berth_scan::analyze_image(src, reference, opts, progress).await?,
        ])
    }
}

fn render(
    reports: &[ImageReport],
    vulns: Option<&[VulnReport]>,
    format: Format,
    list: bool,
    ignore: &IgnoreList,
) -> anyhow::Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let vuln = |i: usize| vulns.and_then(|v| v.get(i));
    let value = match format {
        Format::Table => {
            let sections: Vec<String> = reports
                .iter()
                .enumerate()
                .map(|(i, r)| match vuln(i) {
                    Some(v) => format!(
                        "{}\n{}",
                        output::to_table(r),
                        berth_assess::table::to_table(v, ignore)
                    ),
                    None => output::to_table(r),
                })
                .collect();
            return Ok(sections.join("\n"));
        }
        Format::Sarif => {
            let vulns = vulns.context("SARIF needs a vulnerability database")?;
            berth_assess::sarif::to_sarif(vulns, ignore)
        }
        Format::Json | Format::Cyclonedx | Format::Spdx => {
            let one = |i: usize, r: &ImageReport| match (format, vuln(i)) {
                (Format::Json, v) => berth_assess::json::scan_document(r, v),
                (Format::Cyclonedx, Some(v)) => berth_assess::cyclonedx::to_cyclonedx(r, v),
                (Format::Cyclonedx, None) => output::to_cyclonedx(r),
                _ => output::to_spdx(r, now),
            };
            if list {
                serde_json::Value::Array(
                    reports.iter().enumerate().map(|(i, r)| one(i, r)).collect(),
                )
            } else {
                one(0, reports.first().context("no image was analysed")?)
            }
        }
    };
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    Ok(text)
}
