//! `berth bench`: a lean benchmark client for OCI distribution registries.
//!
//! It pushes and pulls generated blobs (never held whole in memory), hammers
//! manifest reads over dedicated keep-alive connections, creates and lists
//! tags and repositories, and samples the server's CPU time and resident
//! memory from /proc around each timed phase. See docs/performance.md.

mod blob;
mod client;
mod hot;
mod ingest;
mod machine;
mod procfs;
mod report;
mod s3;
mod scan;
mod scenarios;
mod summary;
mod vulndb;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

pub use report::ScenarioResult;

/// Registry scenarios in the order they run (`all`).
pub const ALL: &[&str] = &[
    "idle-rss",
    "push-mono",
    "push-chunked",
    "pull",
    "push-concurrent",
    "manifest-get",
    "manifest-head",
    "tag-create",
    "tag-list",
    "catalog",
    "idle-rss-after",
];

/// Scenarios of a registry with authentication (`auth`; they need `--credentials`): manifest GETs
/// of a public repository without credentials and with a bearer token, and token issuance.
pub const AUTH: &[&str] = &["manifest-get-public", "manifest-get-bearer", "token-issue"];

/// The object store's own throughput (`s3`; they need `--s3-endpoint` and `--s3-bucket`): a plain
/// multipart PUT and a GET of the same blobs the registry scenarios push.
pub const S3: &[&str] = &["s3-put", "s3-get"];

pub use vulndb::VULNDB;

/// Machine-limit scenarios (`machine`); they send no request.
pub const MACHINE: &[&str] = &[
    "machine-sha256",
    "machine-loopback",
    "machine-disk",
    "machine-ingest",
];

/// Image analysis (`scan`; they send no request): indexing a layer against decompressing it,
/// analysing a Debian image, peak memory while indexing a large layer.
pub const SCAN: &[&str] = &["scan-layer", "scan-image", "scan-rss"];

/// Benchmark an OCI registry (only send it traffic you are allowed to).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Registry base URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    pub registry: String,

    /// PID of the registry process, to sample its RSS (VmRSS/VmHWM) and CPU
    /// time (utime+stime) from /proc around each scenario.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// PID of a process the registry depends on (its object store, its database); may be
    /// repeated. Its CPU time is reported per scenario as the backend's and not counted as
    /// other processes' (which flags a busy machine).
    #[arg(long = "backend-pid")]
    pub backend_pids: Vec<u32>,

    /// Comma-separated scenarios, run in the canonical order. `all` = every
    /// registry scenario; `machine` = machine-sha256,machine-loopback,machine-disk,
    /// machine-ingest;
    /// `scan` = scan-layer,scan-image,scan-rss (image analysis, on one core).
    /// Registry scenarios: idle-rss, push-mono, push-chunked, pull,
    /// push-concurrent, manifest-get, manifest-head, tag-create, tag-list,
    /// catalog, idle-rss-after.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub scenarios: Vec<String>,

    /// Blob size for push-mono, push-chunked, pull and the machine scenarios
    /// (suffixes K/M/G = KiB/MiB/GiB; KB/MB/GB = powers of ten).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub blob_size: u64,

    /// PATCH chunk size for push-chunked.
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    pub chunk_size: u64,

    /// Timed repetitions of each transfer scenario (headline = median).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,

    /// Parallel pushes in push-concurrent.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// Blob size of each push in push-concurrent.
    #[arg(long, default_value = "128M", value_parser = parse_size)]
    pub concurrent_blob_size: u64,

    /// Keep-alive connections for manifest-get / manifest-head.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,

    /// Measuring window of manifest-get / manifest-head (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Unmeasured warm-up before that window.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Tags created (timed) by tag-create.
    #[arg(long, default_value_t = 2000)]
    pub tags: usize,

    /// Connections tag-create uses, each one PUT at a time.
    #[arg(long, default_value_t = 4)]
    pub tag_connections: usize,

    /// Tags on the repository listed by tag-list (created untimed as needed).
    #[arg(long, default_value_t = 10_000)]
    pub list_tags: usize,

    /// Repositories created (untimed) before catalog.
    #[arg(long, default_value_t = 1000)]
    pub repos: usize,

    /// Parallel connections for untimed setup (tags, repositories).
    #[arg(long, default_value_t = 16)]
    pub setup_connections: usize,

    /// Timed GETs for tag-list and catalog (headline = median).
    #[arg(long, default_value_t = 11)]
    pub list_repeat: usize,

    /// First path component of every repository the run creates.
    #[arg(long, default_value = "berth-bench")]
    pub repo_prefix: String,

    /// Run id (second path component); default: random per run.
    #[arg(long)]
    pub run_id: Option<String>,

    /// `USER:PASSWORD` for a registry with authentication: sent as Basic credentials on every
    /// request, and used by the `auth` scenarios (Berth's management API) to make the test
    /// repository public and to create an access token.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub credentials: Option<String>,

    /// Label stored in each JSON result (e.g. berth, distribution).
    #[arg(long)]
    pub label: Option<String>,

    /// Print one JSON object per scenario on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Client runtime threads (1 = a single-threaded client, leaving the other
    /// core(s) to the server).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,

    /// Hash pulled bytes and compare with the digest (costs client CPU).
    #[arg(long)]
    pub verify_pull: bool,

    /// Directory for the scratch files of machine-disk and machine-ingest (default: the temp dir).
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,

    /// Wait before sampling idle RSS.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub idle_settle: Duration,

    /// Before each scenario, wait (up to this long) until the machine is
    /// quiet: under 0.25 core busy over 1 s, this client excluded. 0 = off.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub quiet_wait: Duration,

    /// Bound on one blob transfer request.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub transfer_timeout: Duration,

    /// Instead of running, summarise JSON result files (medians per scenario
    /// and label, ratio to --baseline) as Markdown.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub summarize: Vec<PathBuf>,

    /// With --summarize: leave out of the medians the results measured while
    /// other processes used more than a quarter core.
    #[arg(long)]
    pub exclude_busy: bool,

    /// S3 endpoint for the `s3` scenarios (credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY).
    #[arg(long)]
    pub s3_endpoint: Option<String>,

    /// Bucket for the `s3` scenarios.
    #[arg(long)]
    pub s3_bucket: Option<String>,

    /// Region for the `s3` scenarios.
    #[arg(long, default_value = "us-east-1")]
    pub s3_region: String,

    /// Multipart part size for the `s3` scenarios (Berth's default is 8 MiB).
    #[arg(long, default_value = "8M", value_parser = parse_size)]
    pub s3_part_size: u64,

    /// Directory of OSV advisories (its `osv-*` subdirectories) for the `vulndb` scenarios:
    /// vulndb-import, vulndb-match, vulndb-rematch.
    #[arg(long)]
    pub advisories: Option<PathBuf>,

    /// Packages in the inventory vulndb-match matches.
    #[arg(long, default_value_t = 500)]
    pub match_packages: usize,

    /// Stored image inventories vulndb-rematch matches again.
    #[arg(long, default_value_t = 10_000)]
    pub rematch_images: usize,

    /// Packages per stored inventory in vulndb-rematch.
    #[arg(long, default_value_t = 200)]
    pub rematch_packages: usize,

    /// Metadata database URL for vulndb-rematch (default: SQLite in a temporary directory).
    #[arg(long)]
    pub rematch_database: Option<String>,
    /// OCI layout the `scan-layer` and `scan-image` scenarios analyse (default: the Debian
    /// image of scripts/test-images, in $BERTH_TEST_IMAGES or ~/.cache/berth/images).
    #[arg(long)]
    pub scan_image: Option<PathBuf>,

    /// Uncompressed size of the layer `scan-rss` generates and indexes.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub scan_layer_size: u64,

    /// Timed repetitions in `scan-layer` and `scan-image` (headline = median).
    #[arg(long, default_value_t = 5)]
    pub scan_repeat: usize,

    /// Label the ratios are taken against in --summarize.
    #[arg(long, default_value = "distribution")]
    pub baseline: String,
}

/// Runs the benchmark (or the summary). The client runs on its own runtime
/// on a dedicated thread, sized by `--client-threads`, whatever runtime the
/// caller has.
pub async fn run(args: BenchArgs) -> Result<()> {
    if !args.summarize.is_empty() {
        let s = summary::summarize(&args.summarize, &args.baseline, args.exclude_busy)?;
        print!("{s}");
        return Ok(());
    }
    let threads = args.client_threads.max(1);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-bench".into())
        .spawn(move || {
            let rt = if threads == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()
            };
            let res = match rt {
                Ok(rt) => rt.block_on(run_inner(args)),
                Err(e) => Err(e.into()),
            };
            let _ = tx.send(res);
        })?;
    rx.await.map_err(|_| anyhow!("benchmark thread died"))?
}

fn select(list: &[String]) -> Result<Vec<&'static str>> {
    let mut want: Vec<&'static str> = Vec::new();
    for s in list {
        let s = s.trim();
        match s {
            "" => {}
            "all" => want.extend(ALL),
            "machine" => want.extend(MACHINE),
            "auth" => want.extend(AUTH),
            "s3" => want.extend(S3),
            "vulndb" => want.extend(VULNDB),
            "scan" => want.extend(SCAN),
            _ => match ALL
                .iter()
                .chain(AUTH)
                .chain(MACHINE)
                .chain(S3)
                .chain(VULNDB)
                .chain(SCAN)
                .find(|x| **x == s)
            {
                Some(x) => want.push(x),
                None => bail!(
                    "unknown scenario {s:?}; known: all, auth, machine, s3, vulndb, scan, {}, {}, {}, {}, {}, {}",
                    ALL.join(", "),
                    AUTH.join(", "),
                    MACHINE.join(", "),
                    S3.join(", "),
                    VULNDB.join(", "),
                    SCAN.join(", ")
                ),
            },
        }
    }
    Ok(ALL
        .iter()
        .chain(AUTH)
        .chain(MACHINE)
        .chain(S3)
        .chain(VULNDB)
        .chain(SCAN)
        .copied()
        .filter(|x| want.contains(x))
        .collect())
}

async fn run_inner(mut args: BenchArgs) -> Result<()> {
    let scenarios = select(&args.scenarios)?;
    if scenarios.is_empty() {
        bail!("no scenario selected");
    }
    if args.chunk_size == 0 || args.blob_size == 0 || args.concurrent_blob_size == 0 {
        bail!("sizes must be positive");
    }
    args.connections = args.connections.clamp(1, 4096);
    args.repeat = args.repeat.clamp(1, 100);
    args.list_repeat = args.list_repeat.clamp(1, 1000);
    let run_id = match &args.run_id {
        Some(r) => r.clone(),
        None => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64;
            let mut m = blob::SplitMix64::new(t ^ ((std::process::id() as u64) << 32));
            format!("r{:010x}", m.next_u64() >> 24)
        }
    };
    let needs_registry = scenarios
        .iter()
        .any(|s| ALL.contains(s) || AUTH.contains(s));
    let server = match args.server_pid {
        Some(pid) => Some(procfs::Proc::new(pid)?),
        None => None,
    };
    let backends = args
        .backend_pids
        .iter()
        .map(|&pid| procfs::Proc::new(pid))
        .collect::<Result<Vec<_>>>()?;
    report::set_backends(backends);

    let mut table: Box<dyn std::io::Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let _ = writeln!(
        table,
        "berth-bench run {run_id} against {}{}",
        args.registry,
        args.label
            .as_ref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default()
    );
    report::table_header(&mut *table);

    let mut ctx = if needs_registry {
        let mut http = client::Http::new(&args.registry, args.transfer_timeout).await?;
        if let Some(c) = &args.credentials {
            use base64::Engine as _;
            http.auth = Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            ));
        }
        // Fail early and clearly when nothing (or no registry) listens there.
        http.call(
            ::http::Method::GET,
            "/v2/",
            &[],
            client::Body::Empty,
            &[200, 401],
        )
        .await
        .context("GET /v2/ (is the registry running?)")?;
        Some(scenarios::Ctx::new(
            args.clone(),
            http,
            run_id.clone(),
            server,
        ))
    } else {
        None
    };

    let mut s3 = if scenarios.iter().any(|s| S3.contains(s)) {
        Some(s3::S3Bench::new(&args, &run_id)?)
    } else {
        None
    };

    let mut vulndb = vulndb::VulnBench::default();
    let advisories = || {
        args.advisories
            .clone()
            .ok_or_else(|| anyhow!("the vulndb scenarios need --advisories DIR"))
    };
    let mut failed = Vec::new();
    for name in &scenarios {
        eprintln!("[{name}]");
        let mut r = ScenarioResult::new(name, args.label.clone(), &run_id);
        if !args.quiet_wait.is_zero() {
            let (waited, quiet) = wait_quiet(args.quiet_wait).await;
            r.extra.insert("quiet_wait_s".into(), waited.into());
            if !quiet {
                eprintln!("  machine still busy after {waited:.0} s; measuring anyway");
                r.extra.insert("machine_busy".into(), true.into());
            }
        }
        let res = match *name {
            "machine-sha256" => machine::sha256(&mut r, args.blob_size, args.repeat),
            "machine-loopback" => machine::loopback(&mut r, args.blob_size, args.repeat),
            "machine-disk" => {
                let dir = args.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
                machine::disk(&mut r, &dir, args.blob_size, &run_id)
            }
            "machine-ingest" => {
                let dir = args.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
                ingest::concurrent(
                    &mut r,
                    &dir,
                    &run_id,
                    args.concurrency,
                    args.concurrent_blob_size,
                    args.repeat,
                )
                .await
            }
            "scan-layer" | "scan-image" | "scan-rss" => {
                let image = args.scan_image.clone().unwrap_or_else(scan::default_image);
                let scratch = args.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
                let (name, repeat, size, id) = (
                    *name,
                    args.scan_repeat,
                    args.scan_layer_size,
                    run_id.clone(),
                );
                // The analysis blocks: off the client's runtime.
                let mut scanned = r.clone();
                let res = tokio::task::spawn_blocking(move || {
                    let res = match name {
                        "scan-layer" => scan::layer(&mut scanned, &image, repeat),
                        "scan-image" => scan::image(&mut scanned, &image, repeat),
                        _ => scan::rss(&mut scanned, &scratch, size, &id),
                    };
                    (scanned, res)
                })
                .await;
                match res {
                    Ok((scanned, res)) => {
                        r = scanned;
                        res
                    }
                    Err(e) => Err(anyhow!("scan scenario: {e}")),
                }
            }
            "s3-put" => s3.as_mut().expect("s3 context").put(&mut r).await,
            "s3-get" => s3.as_mut().expect("s3 context").get(&mut r).await,
            "vulndb-import" => match advisories() {
                Ok(a) => vulndb.import(&mut r, &a),
                Err(e) => Err(e),
            },
            "vulndb-match" => match advisories() {
                Ok(a) => vulndb.matching(&mut r, &a, args.match_packages.max(1)),
                Err(e) => Err(e),
            },
            "vulndb-rematch" => match advisories() {
                Ok(a) => {
                    vulndb
                        .rematch(
                            &mut r,
                            &a,
                            args.rematch_images,
                            args.rematch_packages.max(1),
                            args.rematch_database.as_deref(),
                        )
                        .await
                }
                Err(e) => Err(e),
            },
            _ => {
                ctx.as_mut()
                    .expect("registry context")
                    .run(name, &mut r)
                    .await
            }
        };
        match res {
            Ok(()) => r.ok = true,
            Err(e) => {
                r.ok = false;
                r.error = Some(format!("{e:#}"));
                failed.push(*name);
            }
        }
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
            let _ = std::io::stdout().flush();
        }
        report::table_row(&mut *table, &r);
        let _ = table.flush();
    }
    if !failed.is_empty() {
        bail!("{} scenario(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// Waits until the machine (less this process) uses under 0.25 core over a
/// 1 s window, for at most `limit`; returns the seconds waited and whether
/// it got quiet.
async fn wait_quiet(limit: Duration) -> (f64, bool) {
    let t = std::time::Instant::now();
    let me = procfs::Proc::current();
    while t.elapsed() < limit {
        let (b0, c0) = (procfs::machine_busy_s(), me.sample().ok());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (b1, c1) = (procfs::machine_busy_s(), me.sample().ok());
        match (b0, b1, c0, c1) {
            (Some(b0), Some(b1), Some(c0), Some(c1)) => {
                if (b1 - b0) - (c1.cpu_s - c0.cpu_s) < 0.25 {
                    return (t.elapsed().as_secs_f64(), true);
                }
            }
            _ => return (0.0, true),
        }
    }
    (t.elapsed().as_secs_f64(), false)
}

/// `1G`, `128M`, `16MiB`, `1GB` (10^9), `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let i = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, suf) = s.split_at(i);
    let n: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult: f64 = match suf.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return Err(format!("bad size suffix in {s:?}")),
    };
    Ok((n * mult) as u64)
}

/// `10s`, `500ms`, `2m`, `10` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let i = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, suf) = s.split_at(i);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match suf {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration suffix in {s:?}")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("1X").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
    }

    #[test]
    fn selection_is_canonical_order() {
        let s = select(&["catalog".into(), "push-mono".into()]).unwrap();
        assert_eq!(s, vec!["push-mono", "catalog"]);
        assert_eq!(select(&["all".into()]).unwrap(), ALL);
        assert_eq!(
            select(&["s3-get".into(), "s3".into()]).unwrap(),
            ["s3-put", "s3-get"]
        );
        assert_eq!(
            select(&["scan".into()]).unwrap(),
            ["scan-layer", "scan-image", "scan-rss"]
        );
        assert!(select(&["nope".into()]).is_err());
    }
}
