//! The vulnerability database's figures (`vulndb` scenarios), in process and on this machine:
//!
//! - `vulndb-import`: the OSV records of `--advisories` (every `osv-*` directory under it)
//!   imported and indexed into one database, as `berth vulndb import` does.
//! - `vulndb-match`: one inventory of `--match-packages` packages matched against it (median of
//!   many runs). The inventory is made of packages the records name, at versions the records
//!   fixed, so it exercises real hits (records fixed later) and misses.
//! - `vulndb-rematch`: `--rematch-images` stored image inventories (`--rematch-packages` each,
//!   drawn the same way) matched again after a database update, through the registry's own
//!   `ScanService::rematch_all` on a real metadata store (SQLite in a temporary directory, or
//!   `--rematch-database` for PostgreSQL): reading the rows, matching, diffing, and writing the
//!   new findings and their events. The inventories were matched (untimed) against the same
//!   records less every twentieth, so the update brings new findings as a real one does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use berth_meta::scans::ImageScan;
use berth_vulndb::import::{Limits, Osv, import_dir};
use berth_vulndb::{Ecosystem, PackageRef, VulnDb};

use crate::blob::SplitMix64;
use crate::report::ScenarioResult;

pub const VULNDB: &[&str] = &["vulndb-import", "vulndb-match", "vulndb-rematch"];

/// What the scenarios share: the database imported by `vulndb-import` (or on first use).
#[derive(Default)]
pub struct VulnBench {
    db: Option<Arc<VulnDb>>,
}

fn feeds(advisories: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(advisories)
        .with_context(|| format!("reading {}", advisories.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("osv-"))
        })
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!("no osv-* directories under {}", advisories.display());
    }
    Ok(dirs)
}

/// Every feed under `advisories`, keeping the records `keep` accepts (by their index).
fn import_where(advisories: &Path, keep: impl Fn(usize) -> bool) -> Result<VulnDb> {
    let mut reports = Vec::new();
    for dir in feeds(advisories)? {
        let feed = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let full = import_dir(&Osv { feed: feed.clone() }, &dir, &Limits::default())?;
        let mut kept = berth_vulndb::ImportReport::new(&feed);
        for (i, a) in full.advisories.into_iter().enumerate() {
            if keep(i) {
                kept.push(a);
            }
        }
        reports.push(kept);
    }
    Ok(VulnDb::from_imports(reports)?)
}

fn import(advisories: &Path) -> Result<VulnDb> {
    import_where(advisories, |_| true)
}

/// The records less every twentieth of each feed: the database before an update.
fn previous(advisories: &Path) -> Result<VulnDb> {
    import_where(advisories, |i| i % 20 != 0)
}

/// How many of an inventory's packages some record names (the rest, none does).
const NAMED_PERCENT: u64 = 25;

/// Every (ecosystem, name, version) the records mention, the pool inventories are drawn from.
fn candidates(db: &VulnDb) -> Vec<(Ecosystem, String, String)> {
    let mut out = Vec::new();
    for a in db.advisories() {
        for af in &a.affected {
            // Versions some record fixed (or last affected): what an image that is kept
            // reasonably current holds, hit by the records fixed later, missed by the rest.
            let versions = af
                .ranges
                .iter()
                .flat_map(|r| [&r.fixed, &r.last_affected].into_iter().flatten());
            for v in versions.take(4) {
                out.push((af.ecosystem, af.name.clone(), v.clone()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The pool grouped by package: (ecosystem, name, versions).
type Groups = Vec<(Ecosystem, String, Vec<String>)>;

fn groups(pool: Vec<(Ecosystem, String, String)>) -> Groups {
    let mut out: Groups = Vec::new();
    for (e, n, v) in pool {
        match out.last_mut() {
            Some((le, ln, vs)) if *le == e && *ln == n => vs.push(v),
            _ => out.push((e, n, vec![v])),
        }
    }
    out
}

fn inventory(groups: &Groups, n: usize, rng: &mut SplitMix64) -> Vec<PackageRef> {
    // Pick packages by name, uniformly, so the few packages with hundreds of records (a
    // language's standard library, TensorFlow) are as rare as in an image; and, as in an image,
    // only some packages are named by any record at all.
    (0..n)
        .map(|i| {
            let (eco, names, versions) = &groups[(rng.next_u64() as usize) % groups.len()];
            let (name, version) = if rng.next_u64() % 100 < NAMED_PERCENT {
                let v = &versions[(rng.next_u64() as usize) % versions.len()];
                (names.clone(), v.clone())
            } else {
                (format!("unlisted-{}", rng.next_u64() % 100_000), "1.2.3".to_string())
            };
            PackageRef {
                ecosystem: *eco,
                name,
                version,
                source_name: None,
                source_version: None,
                release: None,
                evidence: serde_json::json!({"purl": "", "locations": [{"layer": "sha256:00", "path": format!("p/{i}")}]}),
            }
        })
        .collect()
}

impl VulnBench {
    fn db(&mut self, advisories: &Path) -> Result<Arc<VulnDb>> {
        if self.db.is_none() {
            self.db = Some(Arc::new(import(advisories)?));
        }
        Ok(self.db.clone().expect("imported"))
    }

    pub fn import(&mut self, r: &mut ScenarioResult, advisories: &Path) -> Result<()> {
        let t = Instant::now();
        let db = import(advisories)?;
        let secs = t.elapsed().as_secs_f64();
        r.seconds = Some(secs);
        r.metric = Some(secs);
        r.unit = "s".into();
        r.higher_is_better = false;
        r.items = Some(db.advisories().len() as u64);
        self.db = Some(Arc::new(db));
        Ok(())
    }

    pub fn matching(
        &mut self,
        r: &mut ScenarioResult,
        advisories: &Path,
        packages: usize,
    ) -> Result<()> {
        let db = self.db(advisories)?;
        let pool = groups(candidates(&db));
        let mut rng = SplitMix64::new(42);
        let inv = inventory(&pool, packages, &mut rng);
        let mut samples = Vec::new();
        let mut findings = 0;
        for _ in 0..31 {
            let t = Instant::now();
            let m = db.match_packages(&inv);
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            findings = m.findings.len();
        }
        samples.sort_by(f64::total_cmp);
        r.metric = Some(samples[samples.len() / 2]);
        r.p50_ms = r.metric;
        r.min_ms = samples.first().copied();
        r.max_ms = samples.last().copied();
        r.unit = "ms".into();
        r.higher_is_better = false;
        r.items = Some(packages as u64);
        r.extra.insert("findings".into(), findings.into());
        Ok(())
    }

    pub async fn rematch(
        &mut self,
        r: &mut ScenarioResult,
        advisories: &Path,
        images: usize,
        packages: usize,
        database: Option<&str>,
    ) -> Result<()> {
        let full = self.db(advisories)?;
        let dir = tempfile::tempdir()?;
        let url = match database {
            Some(u) => u.to_string(),
            None => berth_meta::MetaStore::sqlite_url(&dir.path().join("meta.db")),
        };
        let meta = berth_meta::MetaStore::connect(&url).await?;
        let blobs = berth_storage::FsStore::open(dir.path().join("blobs"), false)?;
        let registry = Arc::new(berth_registry::Registry::new(
            meta.clone(),
            blobs.clone(),
            Default::default(),
        ));
        let vulndb =
            berth_registry::VulnDbService::open(meta.clone(), blobs.into(), Default::default())
                .await?;
        let scans = berth_registry::ScanService::new(registry, vulndb.clone(), Default::default());
        // The stored inventories, last matched against "an older database" (so every one is
        // matched again), with no findings recorded: every finding is an `appeared` event.
        let pool = groups(candidates(&full));
        let mut rng = SplitMix64::new(7);
        let setup = Instant::now();
        for i in 0..images {
            let inv = berth_assess::MatchableInventory {
                packages: inventory(&pool, packages, &mut rng),
                unsupported: Vec::new(),
            };
            meta.put_image_scan(&ImageScan {
                digest: format!("sha256:{:064x}", i),
                analyzer_version: 1,
                sbom_digest: format!("sha256:{:064x}", 0),
                sbom_size: 0,
                inventory: serde_json::to_string(&inv)?,
                packages: packages as i64,
                db_version: "older".into(),
                findings: "[]".into(),
                summary: "{}".into(),
                max_level: 0,
                scanned_at: 0,
                matched_at: 0,
            })
            .await?;
        }
        eprintln!(
            "  {images} inventories of {packages} packages stored in {:.1} s",
            setup.elapsed().as_secs_f64()
        );
        // Before the update: the records less every twentieth, matched untimed.
        let previous = previous(advisories)?;
        let snapshot = dir.path().join("db.snapshot");
        previous.write_snapshot(&snapshot)?;
        vulndb
            .import_bundle(std::fs::read(&snapshot)?, None)
            .await?;
        let t = Instant::now();
        scans.rematch_all().await?;
        let before = meta.scan_events(0, None, i64::MAX).await?.len();
        eprintln!(
            "  matched against the previous database in {:.1} s ({before} findings)",
            t.elapsed().as_secs_f64()
        );
        // The update: the full database becomes the one in use.
        full.write_snapshot(&snapshot)?;
        vulndb
            .import_bundle(std::fs::read(&snapshot)?, None)
            .await?;
        let t = Instant::now();
        let done = scans.rematch_all().await?;
        let secs = t.elapsed().as_secs_f64();
        let events = meta.scan_events(0, None, i64::MAX).await?.len() - before;
        if done != images {
            bail!("re-matched {done} of {images} inventories");
        }
        r.seconds = Some(secs);
        r.metric = Some(secs);
        r.unit = "s".into();
        r.higher_is_better = false;
        r.items = Some(images as u64);
        r.extra.insert("packages_per_image".into(), packages.into());
        r.extra.insert("events".into(), events.into());
        r.extra
            .insert("images_per_s".into(), (images as f64 / secs).into());
        Ok(())
    }
}
