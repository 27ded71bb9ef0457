//! Image analysis and vulnerability matching inside the registry.
//!
//! ```text
//!  PUT manifest ──▶ on_push: an image, and the scope scans on push? ──▶ enqueue_job("scan", repo@digest)
//!                                                                              │
//!  ScanWorker (per replica, `workers` tasks) ◀── claim_job (lease; SKIP LOCKED on PostgreSQL)
//!     │  analysed before (same digest, same analyser)? reuse the stored inventory
//!     │  else berth-scan reads the manifest and layers straight from storage, layer
//!     │       indexes cached by (layer digest, analyser version) as blobs
//!     ├─▶ SBOM (berth-scan's report) ──▶ blob; inventory + match ──▶ image_scans row
//!     └─▶ CycloneDX SBOM pushed into the repository as an OCI artifact whose subject is the
//!         image, so the referrers API lists it
//!
//!  vulnerability database changes ──▶ the worker holding the `scan-rematch` lease re-matches
//!      every image whose row names an older database version, from its stored inventory
//!      (no layer is read), recording findings that appeared or went away as events
//! ```
//!
//! Pull policy: a scope (organisation, or repository, which wins) may refuse pulls of images
//! with findings at or above a severity, except for allow-listed vulnerability ids.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_assess::{MatchableInventory, level_name};
use berth_meta::MetaStore;
use berth_meta::scans::{AllowedVuln, ImageScan, NewScanEvent, Rematch, ScanPolicy};
use berth_oci::{Digest, Manifest, Reference, RepoName, media};
use berth_scan::{
    ANALYZER_VERSION, AnalyzeOptions, AnalyzerOptions, FetchedManifest, ImageReport, ImageSource,
    LayerCache, LayerIndex, ScanError,
};
use berth_storage::ByteStream;
use berth_vulndb::{Finding, Level, VulnDb};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{RegistryError, Result};
use crate::service::Registry;
use crate::vulndb::VulnDbService;

/// The job kind of an image analysis.
pub const SCAN_JOB: &str = "scan";
/// The lease under which one replica at a time re-matches stored inventories.
const REMATCH_LEASE: &str = "scan-rematch";
/// Held by the replica that watches `vulndb.bundle_artifact`.
const ARTIFACT_LEASE: &str = "vulndb-artifact";
/// The artifact type of the SBOMs Berth attaches to images.
pub const SBOM_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";
/// The annotation that marks an SBOM as Berth's, with the analyser version that made it.
pub const SBOM_ANNOTATION: &str = "dev.berth.sbom.analyzer-version";
/// Largest stored document (layer index, SBOM) read back into memory.
const MAX_DOCUMENT: u64 = 256 << 20;

#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Whether the registry analyses images at all.
    pub enabled: bool,
    /// Whether pushes are analysed where no organisation or repository policy says.
    pub on_push: bool,
    /// Analyses at once on this replica.
    pub workers: usize,
    /// Whether the SBOM is pushed into the repository as a referrer of the image.
    pub attach_sbom: bool,
    /// How often idle workers look for queued work another replica enqueued.
    pub poll_interval: Duration,
    /// How long a policy read from the database is trusted before it is read again.
    pub policy_ttl: Duration,
    pub limits: AnalyzerOptions,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            enabled: true,
            on_push: true,
            workers: 1,
            attach_sbom: true,
            poll_interval: Duration::from_secs(2),
            policy_ttl: Duration::from_secs(2),
            limits: AnalyzerOptions::default(),
        }
    }
}

/// One finding as stored for policy decisions and re-match diffs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFinding {
    pub key: String,
    pub ids: Vec<String>,
    pub level: Level,
    /// `ecosystem/name@version`.
    pub package: String,
}

fn stored_findings(findings: &[Finding]) -> Vec<StoredFinding> {
    findings
        .iter()
        .map(|f| StoredFinding {
            key: berth_assess::finding_key(f),
            ids: f.ids.clone(),
            level: f.level(),
            package: format!(
                "{}/{}@{}",
                f.package.ecosystem.osv_name(),
                f.package.name,
                f.installed_version
            ),
        })
        .collect()
}

fn level_number(l: Level) -> i64 {
    l as i64
}

/// The analysis of an image as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScanStatus {
    pub digest: String,
    /// `queued`, `running`, `done`, `failed`, or `none` (never asked for).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanned_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_at: Option<i64>,
}

/// Why a pull was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRefusal {
    pub message: String,
}

/// A scope's effective pull policy.
#[derive(Debug, Clone)]
struct Effective {
    scan_on_push: bool,
    /// The scope whose level applies, and the level.
    block: Option<(String, Level)>,
    allow: Vec<AllowedVuln>,
}

/// When the bundle artifact was last checked, and the manifest that last failed to load (not
/// tried again until the tag moves).
#[derive(Default)]
struct BundleCheck {
    at: Option<Instant>,
    failed: Option<String>,
}

pub struct ScanService {
    bundle_check: Mutex<BundleCheck>,
    registry: Arc<Registry>,
    meta: MetaStore,
    vulndb: Arc<VulnDbService>,
    config: ScanConfig,
    wake: Notify,
    policies: Mutex<HashMap<String, (Instant, Arc<Effective>)>>,
}

fn internal(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Internal(e.to_string())
}

/// `org:<namespace>` for a repository's first path component.
pub fn org_scope(repo: &str) -> String {
    format!("org:{}", repo.split('/').next().unwrap_or(repo))
}

pub fn repo_scope(repo: &str) -> String {
    format!("repo:{repo}")
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ScanService {
    pub fn new(
        registry: Arc<Registry>,
        vulndb: Arc<VulnDbService>,
        config: ScanConfig,
    ) -> Arc<ScanService> {
        Arc::new(ScanService {
            bundle_check: Mutex::new(BundleCheck::default()),
            meta: registry.meta().clone(),
            registry,
            vulndb,
            config,
            wake: Notify::new(),
            policies: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &ScanConfig {
        &self.config
    }

    pub fn vulndb(&self) -> &Arc<VulnDbService> {
        &self.vulndb
    }

    // ---- policy ----

    async fn effective(&self, repo: &str) -> Result<Arc<Effective>> {
        if let Some((at, e)) = self
            .policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(repo)
            && at.elapsed() < self.config.policy_ttl
        {
            return Ok(e.clone());
        }
        let (org, own) = (org_scope(repo), repo_scope(repo));
        let org_policy = self.meta.scan_policy(&org).await?;
        let repo_policy = self.meta.scan_policy(&own).await?;
        let pick = |f: &dyn Fn(&ScanPolicy) -> Option<String>| {
            repo_policy
                .as_ref()
                .and_then(f)
                .map(|v| (own.clone(), v))
                .or_else(|| org_policy.as_ref().and_then(f).map(|v| (org.clone(), v)))
        };
        let scan_on_push = repo_policy
            .as_ref()
            .and_then(|p| p.scan_on_push)
            .or_else(|| org_policy.as_ref().and_then(|p| p.scan_on_push))
            .unwrap_or(self.config.on_push);
        let block = pick(&|p: &ScanPolicy| p.block_level.clone())
            .and_then(|(scope, l)| berth_assess::parse_level(&l).ok().map(|l| (scope, l)));
        let mut allow = Vec::new();
        if block.is_some() {
            allow.extend(self.meta.scan_allowlist(&org).await?);
            allow.extend(self.meta.scan_allowlist(&own).await?);
        }
        let e = Arc::new(Effective {
            scan_on_push,
            block,
            allow,
        });
        let mut map = self.policies.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(repo.to_string(), (Instant::now(), e.clone()));
        Ok(e)
    }

    /// Forgets cached policies (after a change through this replica).
    pub fn policies_changed(&self) {
        self.policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether a pull of `digest` from `repo` may go ahead under the repository's policy. The
    /// caller decides who is exempt (administrators); unanalysed images pass.
    pub async fn check_pull(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<std::result::Result<(), PolicyRefusal>> {
        if !self.config.enabled {
            return Ok(Ok(()));
        }
        let e = self.effective(repo).await?;
        let Some((scope, level)) = &e.block else {
            return Ok(Ok(()));
        };
        let Some(scan) = self.meta.image_scan(digest).await? else {
            return Ok(Ok(()));
        };
        if scan.max_level < level_number(*level) {
            return Ok(Ok(()));
        }
        let findings: Vec<StoredFinding> =
            serde_json::from_str(&scan.findings).map_err(internal)?;
        let now = now_millis();
        let allowed: HashSet<&str> = e
            .allow
            .iter()
            .filter(|a| a.expires_at.is_none_or(|t| t > now))
            .map(|a| a.vuln_id.as_str())
            .collect();
        let mut blocking: Vec<&StoredFinding> = findings
            .iter()
            .filter(|f| f.level >= *level && !f.ids.iter().any(|i| allowed.contains(i.as_str())))
            .collect();
        if blocking.is_empty() {
            return Ok(Ok(()));
        }
        blocking.sort_by(|a, b| b.level.cmp(&a.level).then(a.ids.cmp(&b.ids)));
        let worst: Vec<String> = blocking
            .iter()
            .take(5)
            .map(|f| {
                format!(
                    "{} ({}, {})",
                    f.ids.first().map_or("?", String::as_str),
                    level_name(f.level),
                    f.package
                )
            })
            .collect();
        let what = scope.replacen(':', " ", 1);
        Ok(Err(PolicyRefusal {
            message: format!(
                "pull refused by the vulnerability policy of {what}: {} finding(s) at or above {}: {}{}",
                blocking.len(),
                level_name(*level),
                worst.join(", "),
                if blocking.len() > worst.len() {
                    ", ..."
                } else {
                    ""
                }
            ),
        }))
    }

    // ---- queueing ----

    /// Called after a manifest push: queues its analysis if it is an image and its scope scans
    /// on push.
    pub async fn on_push(&self, repo: &RepoName, digest: &Digest, is_image: bool) -> Result<()> {
        if !self.config.enabled || !is_image {
            return Ok(());
        }
        if !self.effective(repo.as_str()).await?.scan_on_push {
            return Ok(());
        }
        self.enqueue(repo, digest).await.map(drop)
    }

    /// Queues an analysis on demand. Returns whether a job was queued (false: one is pending).
    pub async fn enqueue(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        if !self.config.enabled {
            return Err(RegistryError::Unsupported(
                "image scanning is disabled (scan.enabled = false)".into(),
            ));
        }
        let queued = self
            .meta
            .enqueue_job(SCAN_JOB, &format!("{repo}@{digest}"), None)
            .await?;
        self.wake.notify_one();
        Ok(queued)
    }

    /// Where an image's analysis stands.
    pub async fn status(&self, repo: &RepoName, digest: &Digest) -> Result<ScanStatus> {
        let d = digest.to_string();
        let job = self
            .meta
            .job_state(SCAN_JOB, &format!("{repo}@{digest}"))
            .await?;
        let scan = self.meta.image_scan(&d).await?;
        let (mut state, error) = match job {
            Some((s, e)) => (s, e),
            None => ("none".to_string(), None),
        };
        if state == "none" && scan.is_some() {
            state = "done".into();
        }
        Ok(ScanStatus {
            digest: d,
            state,
            error,
            packages: scan.as_ref().map(|s| s.packages),
            db_version: scan.as_ref().map(|s| s.db_version.clone()),
            summary: scan
                .as_ref()
                .and_then(|s| serde_json::from_str(&s.summary).ok()),
            scanned_at: scan.as_ref().map(|s| s.scanned_at),
            matched_at: scan.as_ref().map(|s| s.matched_at),
        })
    }

    /// The stored SBOM (berth-scan's report) of an image, if it was analysed.
    pub async fn sbom(&self, digest: &Digest) -> Result<Option<ImageReport>> {
        let Some(scan) = self.meta.image_scan(&digest.to_string()).await? else {
            return Ok(None);
        };
        let bytes = self
            .read_document(&scan.sbom_digest, scan.sbom_size)
            .await?;
        Ok(Some(serde_json::from_slice(&bytes).map_err(internal)?))
    }

    /// The vulnerabilities of an analysed image, matched now against the database in use (so
    /// they are current even between re-matches).
    pub async fn vulnerabilities(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<berth_assess::VulnReport>> {
        let Some(scan) = self.meta.image_scan(&digest.to_string()).await? else {
            return Ok(None);
        };
        let Some(report) = self.sbom(digest).await? else {
            return Ok(None);
        };
        let inventory: MatchableInventory =
            serde_json::from_str(&scan.inventory).map_err(internal)?;
        let db = self.vulndb.db();
        let reference = format!("{repo}@{digest}");
        let r = tokio::task::spawn_blocking(move || {
            berth_assess::assess_inventory(
                &db,
                &inventory,
                &reference,
                &report.manifest_digest.to_string(),
                report.platform.clone(),
                report.os.clone(),
            )
        })
        .await
        .map_err(internal)?;
        Ok(Some(r))
    }

    // ---- documents in blob storage ----

    async fn write_document(&self, bytes: Vec<u8>) -> Result<(Digest, u64)> {
        let digest = Digest::sha256_of(&bytes);
        let size = bytes.len() as u64;
        let body: ByteStream = Box::pin(futures::stream::once(async move {
            Ok::<_, std::io::Error>(Bytes::from(bytes))
        }));
        self.registry.blobs().put_blob(&digest, body, size).await?;
        Ok((digest, size))
    }

    async fn read_document(&self, digest: &str, size: i64) -> Result<Vec<u8>> {
        let d: Digest = digest.parse().map_err(internal)?;
        if size as u64 > MAX_DOCUMENT {
            return Err(internal(format!(
                "document {d} is too large ({size} bytes)"
            )));
        }
        let reader = self
            .registry
            .blobs()
            .open_blob(&d, None, size as u64)
            .await?
            .ok_or_else(|| internal(format!("document {d} is missing from blob storage")))?;
        let mut out = Vec::with_capacity(size as usize);
        let mut s = reader.stream(None);
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.map_err(internal)?);
        }
        if Digest::sha256_of(&out) != d {
            return Err(internal(format!(
                "document {d} does not hash to its digest"
            )));
        }
        Ok(out)
    }

    // ---- analysis ----

    /// Analyses one image of a repository (or reuses its stored analysis), matches it, and
    /// attaches the SBOM.
    async fn process(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let d = digest.to_string();
        if !self.meta.manifest_exists(repo.as_str(), &d).await? {
            // Deleted since it was queued.
            return Ok(());
        }
        let existing = self
            .meta
            .image_scan(&d)
            .await?
            .filter(|s| s.analyzer_version == i64::from(ANALYZER_VERSION));
        let report = match existing {
            Some(_) => self
                .sbom(digest)
                .await?
                .ok_or_else(|| internal("the stored analysis vanished"))?,
            None => {
                let report = self.analyze(repo, digest).await?;
                self.store_analysis(&report).await?;
                report
            }
        };
        if self.config.attach_sbom {
            self.attach_sbom(repo, digest, &report).await?;
        }
        Ok(())
    }

    async fn analyze(&self, repo: &RepoName, digest: &Digest) -> Result<ImageReport> {
        let source = RepoSource {
            registry: self.registry.clone(),
            repo: repo.clone(),
        };
        let fetched = source
            .manifest(&digest.to_string())
            .await
            .map_err(scan_err)?;
        let manifest = Manifest::parse(&fetched.bytes, fetched.media_type.as_deref())
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        // Layer indexes analysed before, by any image, are read instead of the layers.
        let cache = Arc::new(PrefetchedCache::default());
        for l in &manifest.layers {
            let ld = l.digest.to_string();
            if let Some((index_digest, size)) = self
                .meta
                .layer_index(&ld, i64::from(ANALYZER_VERSION))
                .await?
            {
                match self
                    .read_document(&index_digest, size)
                    .await
                    .and_then(|b| serde_json::from_slice::<LayerIndex>(&b).map_err(internal))
                {
                    Ok(index) => cache.preload(index),
                    Err(e) => {
                        tracing::warn!(layer = %ld, error = %e, "cached layer index unusable; analysing the layer again")
                    }
                }
            }
        }
        let options = AnalyzeOptions {
            limits: self.config.limits.clone(),
            platform: None,
            cache: Some(cache.clone()),
            concurrency: 1,
        };
        let report = berth_scan::analyze_image(
            &source,
            &digest.to_string(),
            &options,
            berth_scan::no_progress(),
        )
        .await
        .map_err(scan_err)?;
        for index in cache.new_indexes() {
            let bytes = serde_json::to_vec(&index).map_err(internal)?;
            let (id, size) = self.write_document(bytes).await?;
            self.meta
                .put_layer_index(
                    &index.digest.to_string(),
                    i64::from(ANALYZER_VERSION),
                    &id.to_string(),
                    size as i64,
                )
                .await?;
        }
        Ok(report)
    }

    async fn store_analysis(&self, report: &ImageReport) -> Result<()> {
        let sbom = serde_json::to_vec(report).map_err(internal)?;
        let (sbom_digest, sbom_size) = self.write_document(sbom).await?;
        let inventory = berth_assess::package_refs(report);
        let db = self.vulndb.db();
        let (stored, summary, max, inventory_json, packages) = {
            let inventory_json = serde_json::to_string(&inventory).map_err(internal)?;
            let packages = inventory.packages.len() as i64;
            let m = tokio::task::spawn_blocking(move || db.match_packages(&inventory.packages))
                .await
                .map_err(internal)?;
            let stored = stored_findings(&m.findings);
            let max = stored.iter().map(|f| f.level).max().unwrap_or_default();
            (
                stored,
                serde_json::to_string(&m.summary).map_err(internal)?,
                max,
                inventory_json,
                packages,
            )
        };
        let now = now_millis();
        self.meta
            .put_image_scan(&ImageScan {
                digest: report.manifest_digest.to_string(),
                analyzer_version: i64::from(ANALYZER_VERSION),
                sbom_digest: sbom_digest.to_string(),
                sbom_size: sbom_size as i64,
                inventory: inventory_json,
                packages,
                db_version: self.vulndb.db().version().to_string(),
                findings: serde_json::to_string(&stored).map_err(internal)?,
                summary,
                max_level: level_number(max),
                scanned_at: now,
                matched_at: now,
            })
            .await?;
        Ok(())
    }

    /// Pushes the CycloneDX SBOM into the repository as an artifact whose subject is the
    /// image, unless one from this analyser version is already there.
    async fn attach_sbom(
        &self,
        repo: &RepoName,
        digest: &Digest,
        report: &ImageReport,
    ) -> Result<()> {
        let version = ANALYZER_VERSION.to_string();
        let existing = self
            .registry
            .referrers(repo, digest, Some(SBOM_ARTIFACT_TYPE))
            .await?;
        if existing.iter().any(|r| {
            r.annotations
                .as_ref()
                .and_then(|a| a.get(SBOM_ANNOTATION))
                .and_then(|v| v.as_str())
                == Some(version.as_str())
        }) {
            return Ok(());
        }
        let subject = self
            .registry
            .get_manifest(repo, &Reference::Digest(digest.clone()))
            .await?;
        let bom =
            serde_json::to_vec(&berth_scan::output::to_cyclonedx(report)).map_err(internal)?;
        let bom_digest = Digest::sha256_of(&bom);
        let bom_size = bom.len();
        self.registry
            .put_blob(repo, &bom_digest, one_chunk(bom))
            .await?;
        let empty = b"{}".to_vec();
        let empty_digest = Digest::sha256_of(&empty);
        self.registry
            .put_blob(repo, &empty_digest, one_chunk(empty))
            .await?;
        let created = berth_scan::output::rfc3339((now_millis() / 1000) as u64);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": SBOM_ARTIFACT_TYPE,
            "config": {"mediaType": media::OCI_EMPTY, "digest": empty_digest.to_string(), "size": 2},
            "layers": [{
                "mediaType": SBOM_ARTIFACT_TYPE,
                "digest": bom_digest.to_string(),
                "size": bom_size,
                "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"},
            }],
            "subject": {
                "mediaType": subject.media_type,
                "digest": subject.digest,
                "size": subject.content.len(),
            },
            "annotations": {
                "org.opencontainers.image.created": created,
                SBOM_ANNOTATION: version,
            },
        });
        let bytes = serde_json::to_vec(&manifest).map_err(internal)?;
        let d = Digest::sha256_of(&bytes);
        self.registry
            .put_manifest(
                repo,
                &Reference::Digest(d),
                Some(media::OCI_MANIFEST),
                bytes,
            )
            .await?;
        Ok(())
    }

    // ---- re-matching ----

    /// Re-matches up to `batch` images whose last match is against another database version
    /// than the one in use. Returns how many were looked at (0: all are current).
    pub async fn rematch_some(&self, batch: usize) -> Result<usize> {
        let db = self.vulndb.db();
        let version = db.version().to_string();
        let stale = self
            .meta
            .stale_image_scans(&version, "", batch as i64)
            .await?;
        if stale.is_empty() {
            return Ok(0);
        }
        let n = stale.len();
        let rematches = tokio::task::spawn_blocking(move || rematch_batch(&db, stale))
            .await
            .map_err(internal)??;
        let applied = self.meta.apply_rematches(&rematches).await?;
        tracing::debug!(looked_at = n, applied, db_version = %version, "re-matched stored inventories");
        Ok(n)
    }

    /// Re-matches every stored inventory against the database in use. Returns how many were
    /// re-matched.
    pub async fn rematch_all(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.rematch_some(500).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Runs one claimed job: analysis, or a failure recorded for a retry.
    async fn run_job(self: &Arc<Self>, job: &berth_meta::jobs::Job, holder: &str) -> Result<()> {
        let Some((repo, digest)) = job.key.rsplit_once('@') else {
            self.meta
                .fail_job(job.id, holder, "malformed job key", None)
                .await?;
            return Ok(());
        };
        let parsed = repo
            .parse::<RepoName>()
            .ok()
            .zip(digest.parse::<Digest>().ok());
        let Some((repo, digest)) = parsed else {
            self.meta
                .fail_job(job.id, holder, "malformed job key", None)
                .await?;
            return Ok(());
        };
        let started = Instant::now();
        // The lease is renewed while the analysis runs, so a long one is not taken over.
        let renew = async {
            loop {
                tokio::time::sleep(JOB_LEASE / 3).await;
                match self.meta.renew_job(job.id, holder, JOB_LEASE).await {
                    Ok(true) => {}
                    _ => return,
                }
            }
        };
        // On its own task, so that a panic in the analysis of a hostile image fails the job
        // instead of taking the worker down.
        let analysis = {
            let (this, repo, digest) = (self.clone(), repo.clone(), digest.clone());
            tokio::spawn(async move { this.process(&repo, &digest).await })
        };
        let abort = analysis.abort_handle();
        let outcome = tokio::select! {
            r = analysis => Some(r.unwrap_or_else(|e| Err(internal(format!("the analysis panicked: {e}"))))),
            _ = renew => {
                abort.abort();
                None
            }
        };
        match outcome {
            Some(Ok(())) => {
                tracing::info!(repository = %repo, %digest, took_ms = started.elapsed().as_millis() as u64, "image analysed");
                self.meta.finish_job(job.id, holder).await?;
            }
            Some(Err(e)) => {
                // Storage or database trouble passes; a broken image stays broken.
                let transient = matches!(e, RegistryError::Unavailable(_));
                let retry = (transient || job.attempts < 3)
                    .then(|| Duration::from_secs(30 * job.attempts.clamp(1, 10) as u64));
                tracing::warn!(repository = %repo, %digest, error = %e, "image analysis failed");
                self.meta
                    .fail_job(job.id, holder, &e.to_string(), retry)
                    .await?;
            }
            None => {
                tracing::warn!(repository = %repo, %digest, "lost the analysis job's lease; another worker took it");
            }
        }
        Ok(())
    }
}

const JOB_LEASE: Duration = Duration::from_secs(120);

fn scan_err(e: ScanError) -> RegistryError {
    match e {
        ScanError::Io(e) => RegistryError::Internal(e.to_string()),
        other => RegistryError::Internal(format!("image analysis: {other}")),
    }
}

fn one_chunk(bytes: Vec<u8>) -> ByteStream {
    Box::pin(futures::stream::once(async move {
        Ok::<_, std::io::Error>(Bytes::from(bytes))
    }))
}

/// Matches stored inventories against `db` and works out their events.
fn rematch_batch(db: &VulnDb, stale: Vec<berth_meta::scans::StaleScan>) -> Result<Vec<Rematch>> {
    let mut out = Vec::with_capacity(stale.len());
    for s in stale {
        // An unreadable inventory (it cannot happen short of database corruption) is matched as
        // empty, so the image still moves to the new version and re-matching terminates; a new
        // analysis of the image restores it.
        let inventory: MatchableInventory = serde_json::from_str(&s.inventory).unwrap_or_else(|e| {
            tracing::error!(digest = %s.digest, error = %e, "stored inventory unreadable; matched as empty");
            MatchableInventory::default()
        });
        let old: Vec<StoredFinding> = serde_json::from_str(&s.findings).unwrap_or_default();
        let m = db.match_packages(&inventory.packages);
        let new = stored_findings(&m.findings);
        let old_keys: BTreeMap<&str, &StoredFinding> =
            old.iter().map(|f| (f.key.as_str(), f)).collect();
        let new_keys: BTreeMap<&str, &StoredFinding> =
            new.iter().map(|f| (f.key.as_str(), f)).collect();
        let event = |kind: &'static str, f: &StoredFinding| NewScanEvent {
            kind,
            vuln_id: f.ids.first().cloned().unwrap_or_default(),
            package: f.package.clone(),
            level: level_name(f.level).to_string(),
        };
        let mut events: Vec<NewScanEvent> = new_keys
            .iter()
            .filter(|(k, _)| !old_keys.contains_key(*k))
            .map(|(_, f)| event("appeared", f))
            .collect();
        events.extend(
            old_keys
                .iter()
                .filter(|(k, _)| !new_keys.contains_key(*k))
                .map(|(_, f)| event("resolved", f)),
        );
        let max = new.iter().map(|f| f.level).max().unwrap_or_default();
        out.push(Rematch {
            digest: s.digest,
            from_version: s.db_version,
            db_version: m.db_version,
            findings: serde_json::to_string(&new).map_err(internal)?,
            summary: serde_json::to_string(&m.summary).map_err(internal)?,
            max_level: level_number(max),
            events,
        });
    }
    Ok(out)
}

/// The images of one repository, read straight from the registry's stores.
struct RepoSource {
    registry: Arc<Registry>,
    repo: RepoName,
}

impl ImageSource for RepoSource {
    async fn manifest(&self, reference: &str) -> std::result::Result<FetchedManifest, ScanError> {
        let r: Reference = reference
            .parse()
            .map_err(|e| ScanError::Manifest(format!("{reference}: {e}")))?;
        let m = self
            .registry
            .get_manifest(&self.repo, &r)
            .await
            .map_err(|e| ScanError::Manifest(e.to_string()))?;
        Ok(FetchedManifest {
            digest: m
                .digest
                .parse()
                .map_err(|e| ScanError::Manifest(format!("{e}")))?,
            media_type: Some(m.media_type.clone()),
            bytes: m.content.to_vec(),
        })
    }

    async fn blob(
        &self,
        digest: &Digest,
    ) -> std::result::Result<berth_scan::BlobReader, ScanError> {
        let reader = self
            .registry
            .open_blob(&self.repo, digest)
            .await
            .map_err(|e| ScanError::Io(std::io::Error::other(e.to_string())))?;
        let stream = reader.stream(None);
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }
}

/// A layer cache filled from the database before an analysis, which remembers what the
/// analysis added so it can be stored afterwards.
#[derive(Default)]
struct PrefetchedCache {
    map: Mutex<HashMap<Digest, LayerIndex>>,
    added: Mutex<Vec<Digest>>,
}

impl PrefetchedCache {
    fn preload(&self, index: LayerIndex) {
        if index.analyzer_version == ANALYZER_VERSION {
            self.map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(index.digest.clone(), index);
        }
    }

    fn new_indexes(&self) -> Vec<LayerIndex> {
        let added = std::mem::take(&mut *self.added.lock().unwrap_or_else(|e| e.into_inner()));
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        added.iter().filter_map(|d| map.get(d).cloned()).collect()
    }
}

impl LayerCache for PrefetchedCache {
    fn get(&self, digest: &Digest) -> Option<LayerIndex> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned()
    }

    fn put(&self, index: &LayerIndex) {
        self.added
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(index.digest.clone());
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(index.digest.clone(), index.clone());
    }
}

/// The owned handle on this replica's analysis workers and its share of re-matching.
pub struct ScanWorker(crate::background::Background);

impl ScanWorker {
    pub fn start(service: Arc<ScanService>) -> ScanWorker {
        let (mut bg, stopped) = crate::background::Background::new();
        // With scanning off, one task still loads the bundle artifact when one is configured.
        let workers = if service.config.enabled {
            service.config.workers.max(1)
        } else if service.vulndb.config().bundle_artifact.is_some() {
            1
        } else {
            0
        };
        for i in 0..workers {
            let service = service.clone();
            let mut stopped = stopped.clone();
            bg.spawn(async move {
                let holder = format!("{}-{i}", uuid::Uuid::new_v4());
                loop {
                    let worked = tokio::select! {
                        r = service.work_once(&holder, i == 0) => r,
                        _ = stopped.changed() => break,
                    };
                    match worked {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "scan worker"),
                    }
                    tokio::select! {
                        _ = service.wake.notified() => {}
                        _ = tokio::time::sleep(service.config.poll_interval) => {}
                        _ = stopped.changed() => break,
                    }
                }
                if i == 0 {
                    let _ = service.meta.release_lease(REMATCH_LEASE, &holder).await;
                    let _ = service.meta.release_lease(ARTIFACT_LEASE, &holder).await;
                }
            });
        }
        ScanWorker(bg)
    }

    /// Stops the workers; an analysis in progress is abandoned (its job is claimed again when
    /// its lease expires).
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

impl ScanService {
    /// Loads the configured bundle artifact (`vulndb.bundle_artifact`) if its tag names a
    /// manifest not loaded yet, at most once per `vulndb.check_interval`, on the replica holding
    /// the `ARTIFACT_LEASE`. Returns whether the database changed.
    pub async fn check_bundle_artifact(&self, holder: &str) -> Result<bool> {
        let Some((repo, reference)) = self.vulndb.config().bundle_artifact.clone() else {
            return Ok(false);
        };
        let every = self.vulndb.config().check_interval;
        {
            let mut c = self.bundle_check.lock().unwrap_or_else(|e| e.into_inner());
            if c.at.is_some_and(|at| at.elapsed() < every) {
                return Ok(false);
            }
            c.at = Some(Instant::now());
        }
        if !self
            .meta
            .try_lease(ARTIFACT_LEASE, holder, every.saturating_mul(4))
            .await?
        {
            return Ok(false);
        }
        let feed = crate::bundle::ARTIFACT_FEED;
        let Some(digest) = crate::bundle::artifact_digest(&self.registry, &repo, &reference)
            .await
            .map_err(internal)?
        else {
            return Ok(false);
        };
        let loaded = self.meta.vulndb_feed(feed).await?.and_then(|r| r.etag);
        let failed = self
            .bundle_check
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed
            .clone();
        if loaded.as_deref() == Some(digest.as_str()) || failed.as_deref() == Some(digest.as_str())
        {
            return Ok(false);
        }
        let at = now_millis();
        // By digest: what is loaded is the manifest just compared, even if the tag moves now.
        let by_digest: Reference = digest.parse().map_err(internal)?;
        match crate::bundle::load_bundle_artifact(&self.registry, &self.vulndb, &repo, &by_digest)
            .await
        {
            Ok((d, outcome)) => {
                self.meta
                    .vulndb_feed_succeeded(
                        feed,
                        at,
                        Some((Some(&d), None)),
                        Some(outcome.records as i64),
                    )
                    .await?;
                tracing::info!(artifact = %format!("{repo}@{d}"), records = outcome.records, version = %outcome.version, "loaded the vulnerability database bundle artifact");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(artifact = %format!("{repo}@{digest}"), error = %e, "could not load the vulnerability database bundle artifact");
                self.meta
                    .vulndb_feed_failed(feed, at, &format!("{repo}@{digest}: {e}"))
                    .await?;
                self.bundle_check
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .failed = Some(digest);
                Ok(false)
            }
        }
    }

    /// One unit of background work: a queued analysis, else (on the first worker) a batch of
    /// re-matching under the lease. Returns whether there was anything to do.
    async fn work_once(self: &Arc<Self>, holder: &str, rematcher: bool) -> Result<bool> {
        if rematcher {
            // A failure here must not stop analyses.
            if let Err(e) = self.check_bundle_artifact(holder).await {
                tracing::warn!(error = %e, "vulnerability database bundle artifact check");
            }
        }
        if !self.config.enabled {
            return Ok(false);
        }
        if let Some(job) = self.meta.claim_job(SCAN_JOB, holder, JOB_LEASE).await? {
            self.run_job(&job, holder).await?;
            return Ok(true);
        }
        if rematcher
            && self
                .meta
                .try_lease(REMATCH_LEASE, holder, Duration::from_secs(120))
                .await?
        {
            return Ok(self.rematch_some(500).await? > 0);
        }
        Ok(false)
    }
}
