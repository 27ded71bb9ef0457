//! `berth scan`: the software inventory (SBOM) of an image, from an OCI layout directory, an
//! OCI or `docker save` archive, or a registry, without a server.
//!
//! The report goes to standard output (or `--output`); progress goes to standard error, as a bar
//! on a terminal and not at all otherwise, so a CI job's log stays readable.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use berth_scan::{
    AnalyzeOptions, Credentials, ImageReport, LocalSource, Platform, Progress, ProgressFn,
    RegistrySource, output,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A readable table.
    Table,
    /// Berth's own JSON report.
    Json,
    /// CycloneDX 1.6 JSON.
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
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
    /// formats then hold a list of reports.
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,
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

pub async fn run(args: ScanArgs) -> anyhow::Result<()> {
    let target = parse_target(&args.target)?;
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
    let text = render(&reports, args.format, args.all_platforms)?;
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("writing the report to {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(())
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

fn render(reports: &[ImageReport], format: Format, list: bool) -> anyhow::Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let one = |r: &ImageReport| match format {
        Format::Json => output::to_json(r),
        Format::Cyclonedx => output::to_cyclonedx(r),
        Format::Spdx => output::to_spdx(r, now),
        Format::Table => serde_json::Value::Null,
    };
    if format == Format::Table {
        return Ok(reports
            .iter()
            .map(output::to_table)
            .collect::<Vec<_>>()
            .join("\n"));
    }
    let value = if list {
        serde_json::Value::Array(reports.iter().map(one).collect())
    } else {
        one(reports.first().context("no image was analysed")?)
    };
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    Ok(text)
}
