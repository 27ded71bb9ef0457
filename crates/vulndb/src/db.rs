//! The in-memory database, its snapshot file, and the shared handle that swaps databases.
//!
//! A [`VulnDb`] is immutable once built: updating a feed builds a new one
//! ([`VulnDb::with_feed`]), and [`SharedVulnDb`] swaps the `Arc` that matchers read, so a match
//! in progress keeps the database it started with and a failed load changes nothing.
//!
//! # Snapshot format (version 1)
//!
//! ```text
//! BERTH-VULNDB 1\n
//! sha256:<64 hex> <body length>\n
//! <body: JSON {"feeds": [...], "advisories": [...]}>
//! ```
//!
//! The header's digest covers the body, so truncation and corruption are caught before parsing;
//! then every record is validated (ids, lengths, every version parses in its ecosystem) and the
//! feed statistics must agree with the records. A bundle may also carry a detached Ed25519
//! signature over the whole file's bytes ([`crate::signature`]).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::advisory::{Advisory, Affected, InvalidAdvisory};
use crate::import::ImportReport;
use crate::names::normalize_name;
use crate::signature::{self, SignatureError};
use crate::versions::{Ecosystem, ParsedVersion, VersionError};

const MAGIC: &str = "BERTH-VULNDB";
/// The snapshot format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest snapshot read by default.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 2 << 30;

/// Statistics of one feed in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedStats {
    pub feed: String,
    /// Records of this feed in the database.
    pub records: usize,
    /// When the feed was last imported, in seconds since the Unix epoch.
    pub imported_at: u64,
    /// Documents read by that import.
    pub documents: usize,
    /// Warnings (skipped parts of records) reported by that import.
    pub warnings: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("not a Berth vulnerability database snapshot")]
    NotASnapshot,
    #[error("snapshot format {0} is not supported (this build reads format {FORMAT_VERSION})")]
    UnsupportedFormat(u32),
    #[error("snapshot is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error(
        "snapshot is truncated or has trailing data: header says {expected} bytes, found {found}"
    )]
    Length { expected: u64, found: u64 },
    #[error("snapshot digest mismatch: the file is corrupt")]
    Digest,
    #[error("snapshot body is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("snapshot holds an invalid record: {0}")]
    Record(#[from] InvalidAdvisory),
    #[error("snapshot feed statistics disagree with its records: {0}")]
    Feeds(String),
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

#[derive(Serialize, Deserialize)]
struct Body {
    feeds: Vec<FeedStats>,
    advisories: Vec<Advisory>,
}

/// The vulnerability database: advisories of every feed, indexed by ecosystem and normalised
/// package name.
#[derive(Debug, Clone, Default)]
pub struct VulnDb {
    /// Sorted by (feed, id), so equal content serialises identically.
    advisories: Vec<Advisory>,
    feeds: BTreeMap<String, FeedStats>,
    /// (ecosystem, normalised name) → the records naming that package, with their versions
    /// parsed once here so that matching never re-parses a range bound.
    /// Keyed by ecosystem first so that a lookup borrows the name instead of allocating a key.
    /// Withdrawn records are not indexed: they never match.
    index: HashMap<Ecosystem, HashMap<String, Vec<IndexEntry>>>,
    /// Every id and alias → the records that carry it.
    ids: HashMap<String, Vec<u32>>,
    /// The content hash of the advisories (hex SHA-256 of their canonical JSON).
    version: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl VulnDb {
    /// An empty database.
    pub fn empty() -> Self {
        Self::build(Vec::new(), BTreeMap::new()).unwrap_or_default()
    }

    /// Builds a database from records and feed statistics, validating every record.
    fn build(
        mut advisories: Vec<Advisory>,
        feeds: BTreeMap<String, FeedStats>,
    ) -> Result<Self, SnapshotError> {
        for a in &advisories {
            a.validate()?;
        }
        advisories.sort_by(|a, b| (&a.source, &a.id).cmp(&(&b.source, &b.id)));
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &advisories {
            *counts.entry(&a.source).or_default() += 1;
        }
        for (feed, n) in &counts {
            match feeds.get(*feed) {
                Some(s) if s.records == *n => {}
                Some(s) => {
                    return Err(SnapshotError::Feeds(format!(
                        "feed {feed} claims {} records, has {n}",
                        s.records
                    )));
                }
                None => {
                    return Err(SnapshotError::Feeds(format!(
                        "feed {feed} has no statistics"
                    )));
                }
            }
        }
        for (feed, s) in &feeds {
            if s.records != 0 && !counts.contains_key(feed.as_str()) {
                return Err(SnapshotError::Feeds(format!(
                    "feed {feed} claims {} records, has none",
                    s.records
                )));
            }
        }
        let mut index: HashMap<Ecosystem, HashMap<String, Vec<IndexEntry>>> = HashMap::new();
        for (i, a) in advisories.iter().enumerate() {
            if a.withdrawn.is_some() {
                continue;
            }
            for (j, aff) in a.affected.iter().enumerate() {
                let entry = IndexEntry::new(i as u32, j as u32, aff).map_err(|source| {
                    InvalidAdvisory::Version {
                        id: a.id.clone(),
                        source,
                    }
                })?;
                index
                    .entry(aff.ecosystem)
                    .or_default()
                    .entry(normalize_name(aff.ecosystem, &aff.name))
                    .or_default()
                    .push(entry);
            }
        }
        let mut ids: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, a) in advisories.iter().enumerate() {
            for id in a.ids() {
                let list = ids.entry(id.to_string()).or_default();
                if list.last() != Some(&(i as u32)) {
                    list.push(i as u32);
                }
            }
        }
        let mut hasher = Sha256::new();
        serde_json::to_writer(HashWriter(&mut hasher), &advisories)?;
        let version = hex::encode(hasher.finalize());
        Ok(Self {
            advisories,
            feeds,
            index,
            ids,
            version,
        })
    }

    /// Builds a database from import reports, stamped as imported now.
    pub fn from_imports(reports: Vec<ImportReport>) -> Result<Self, SnapshotError> {
        let mut db = Self::empty();
        for r in reports {
            db = db.with_feed(r)?;
        }
        Ok(db)
    }

    /// A new database in which the feed of `report` is replaced by the report's records.
    pub fn with_feed(&self, report: ImportReport) -> Result<Self, SnapshotError> {
        self.with_feed_at(report, now_secs())
    }

    /// Like [`Self::with_feed`], with an explicit import time (seconds since the Unix epoch).
    pub fn with_feed_at(
        &self,
        report: ImportReport,
        imported_at: u64,
    ) -> Result<Self, SnapshotError> {
        let feed = report.feed.clone();
        let mut advisories: Vec<Advisory> = self
            .advisories
            .iter()
            .filter(|a| a.source != feed)
            .cloned()
            .collect();
        let records = report.advisories.len();
        advisories.extend(report.advisories.into_iter().map(|mut a| {
            a.source = feed.clone();
            a
        }));
        let mut feeds = self.feeds.clone();
        feeds.insert(
            feed.clone(),
            FeedStats {
                feed,
                records,
                imported_at,
                documents: report.documents,
                warnings: report.warnings.len() + report.warnings_dropped,
            },
        );
        Self::build(advisories, feeds)
    }

    /// The content version: a hex SHA-256 over the records (not the import times), so it
    /// changes exactly when the vulnerability data does.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    pub fn feeds(&self) -> impl Iterator<Item = &FeedStats> {
        self.feeds.values()
    }

    pub fn feed(&self, name: &str) -> Option<&FeedStats> {
        self.feeds.get(name)
    }

    /// The records whose own id is `id` (one per feed that has it).
    pub fn get(&self, id: &str) -> impl Iterator<Item = &Advisory> {
        self.about(id).filter(move |a| a.id == id)
    }

    /// The records about an issue: those whose id or one of whose aliases is `id` (so
    /// `CVE-2024-28085` finds the Debian tracker's entry, the GHSA and the PYSEC).
    pub fn about(&self, id: &str) -> impl Iterator<Item = &Advisory> {
        self.ids
            .get(id)
            .into_iter()
            .flatten()
            .map(|&i| &self.advisories[i as usize])
    }

    /// The records (not withdrawn) that name a package (`name` already normalised with
    /// [`crate::names::normalize_name`]).
    pub fn lookup(
        &self,
        eco: Ecosystem,
        name: &str,
    ) -> impl Iterator<Item = (&Advisory, &Affected)> {
        self.candidates(eco, name).map(|(a, aff, _)| (a, aff))
    }

    pub(crate) fn candidates(
        &self,
        eco: Ecosystem,
        name: &str,
    ) -> impl Iterator<Item = (&Advisory, &Affected, &IndexEntry)> {
        self.index
            .get(&eco)
            .and_then(|m| m.get(name))
            .into_iter()
            .flatten()
            .map(|e| {
                let a = &self.advisories[e.advisory as usize];
                (a, &a.affected[e.affected as usize], e)
            })
    }

    /// The snapshot file's bytes.
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        let body = serde_json::to_vec(&Body {
            feeds: self.feeds.values().cloned().collect(),
            advisories: self.advisories.clone(),
        })?;
        let digest = hex::encode(Sha256::digest(&body));
        let mut out =
            format!("{MAGIC} {FORMAT_VERSION}\nsha256:{digest} {}\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Parses and fully validates snapshot bytes.
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let (line1, rest) = split_line(bytes).ok_or(SnapshotError::NotASnapshot)?;
        let line1 = std::str::from_utf8(line1).map_err(|_| SnapshotError::NotASnapshot)?;
        let version = line1
            .strip_prefix(MAGIC)
            .and_then(|v| v.strip_prefix(' '))
            .ok_or(SnapshotError::NotASnapshot)?;
        let version: u32 = version.parse().map_err(|_| SnapshotError::NotASnapshot)?;
        if version != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedFormat(version));
        }
        let (line2, body) = split_line(rest).ok_or(SnapshotError::Length {
            expected: 0,
            found: 0,
        })?;
        let line2 = std::str::from_utf8(line2).map_err(|_| SnapshotError::NotASnapshot)?;
        let (digest, len) = line2
            .strip_prefix("sha256:")
            .and_then(|l| l.split_once(' '))
            .ok_or(SnapshotError::NotASnapshot)?;
        let len: u64 = len.parse().map_err(|_| SnapshotError::NotASnapshot)?;
        if len != body.len() as u64 {
            return Err(SnapshotError::Length {
                expected: len,
                found: body.len() as u64,
            });
        }
        if hex::encode(Sha256::digest(body)) != digest {
            return Err(SnapshotError::Digest);
        }
        let body: Body = serde_json::from_slice(body)?;
        let mut feeds = BTreeMap::new();
        for f in body.feeds {
            if feeds.insert(f.feed.clone(), f).is_some() {
                return Err(SnapshotError::Feeds("a feed is listed twice".to_string()));
            }
        }
        Self::build(body.advisories, feeds)
    }

    /// Writes the snapshot atomically: a temporary file in the same directory is written and
    /// fsynced, renamed over `path`, and the directory is fsynced, so after a crash `path` holds
    /// either the old snapshot or the new one, never a mix.
    pub fn write_snapshot(&self, path: &Path) -> Result<(), SnapshotError> {
        let bytes = self.to_snapshot_bytes()?;
        write_atomic(path, &bytes)
    }

    /// Reads and validates a snapshot file (at most [`DEFAULT_MAX_SNAPSHOT_BYTES`]).
    pub fn load_snapshot(path: &Path) -> Result<Self, SnapshotError> {
        let bytes = read_file(path, DEFAULT_MAX_SNAPSHOT_BYTES)?;
        Self::from_snapshot_bytes(&bytes)
    }

    /// Validates a bundle received as bytes (over HTTP, say): when `key` is set, `signature`
    /// must be a valid detached signature of `bundle` by that key.
    pub fn from_bundle(
        bundle: &[u8],
        signature: Option<&[u8]>,
        key: Option<&ed25519_dalek::VerifyingKey>,
    ) -> Result<Self, SnapshotError> {
        if let Some(key) = key {
            let sig = signature.ok_or(SignatureError::Missing)?;
            signature::verify(key, bundle, sig)?;
        }
        Self::from_snapshot_bytes(bundle)
    }

    /// Reads a snapshot and, when `key` is set, requires a valid detached signature in
    /// `<path>.sig` (see [`crate::signature`]). Without a key no signature is needed.
    pub fn load_snapshot_verified(
        path: &Path,
        key: Option<&ed25519_dalek::VerifyingKey>,
    ) -> Result<Self, SnapshotError> {
        let bytes = read_file(path, DEFAULT_MAX_SNAPSHOT_BYTES)?;
        if let Some(key) = key {
            let sig_path = signature::signature_path(path);
            let sig = match read_file(&sig_path, 4096) {
                Ok(s) => s,
                Err(SnapshotError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    return Err(SignatureError::Missing.into());
                }
                Err(e) => return Err(e),
            };
            return Self::from_bundle(&bytes, Some(&sig), Some(key));
        }
        Self::from_snapshot_bytes(&bytes)
    }
}

/// An affected entry's versions, parsed.
#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    advisory: u32,
    affected: u32,
    /// Parallel to `Affected::ranges`.
    pub(crate) intervals: Vec<ParsedInterval>,
    /// `Affected::versions`, parsed and sorted.
    pub(crate) versions: Vec<ParsedVersion>,
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedInterval {
    introduced: Option<ParsedVersion>,
    fixed: Option<ParsedVersion>,
    last_affected: Option<ParsedVersion>,
    limit: Option<ParsedVersion>,
}

impl ParsedInterval {
    pub(crate) fn contains(&self, v: &ParsedVersion) -> bool {
        self.introduced.as_ref().is_none_or(|i| v >= i)
            && self.fixed.as_ref().is_none_or(|f| v < f)
            && self.last_affected.as_ref().is_none_or(|l| v <= l)
            && self.limit.as_ref().is_none_or(|l| v < l)
    }
}

impl IndexEntry {
    fn new(advisory: u32, affected: u32, aff: &Affected) -> Result<Self, VersionError> {
        let scheme = aff.ecosystem.scheme();
        let parse = |v: &Option<String>| {
            v.as_deref()
                .map(|v| ParsedVersion::parse(scheme, v))
                .transpose()
        };
        let intervals = aff
            .ranges
            .iter()
            .map(|r| {
                Ok(ParsedInterval {
                    introduced: parse(&r.introduced)?,
                    fixed: parse(&r.fixed)?,
                    last_affected: parse(&r.last_affected)?,
                    limit: parse(&r.limit)?,
                })
            })
            .collect::<Result<_, VersionError>>()?;
        let mut versions = aff
            .versions
            .iter()
            .map(|v| ParsedVersion::parse(scheme, v))
            .collect::<Result<Vec<_>, _>>()?;
        // Sorted for binary search: PyPI records list a hundred versions and more.
        versions.sort();
        versions.dedup();
        Ok(Self {
            advisory,
            affected,
            intervals,
            versions,
        })
    }
}

fn split_line(b: &[u8]) -> Option<(&[u8], &[u8])> {
    // Header lines are short; a missing newline in the first 256 bytes is not a snapshot.
    let pos = b.iter().take(256).position(|&c| c == b'\n')?;
    Some((&b[..pos], &b[pos + 1..]))
}

pub(crate) fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, SnapshotError> {
    let io = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(SnapshotError::TooLarge(limit));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let io = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    // The temporary file lives in the target's directory so the rename stays on one file
    // system (and is atomic); it is deleted if anything below fails.
    let mut tmp = tempfile::Builder::new()
        .prefix(".vulndb-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    // Data must be on disk before the rename makes it visible, or a crash could publish an
    // empty or partial file under the final name.
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    // The rename itself is durable only once the directory entry is.
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The database the server matches against, swapped whole when a new one is loaded.
///
/// Readers take an `Arc` clone under a read lock held only for the clone, so a swap never waits
/// for a match to finish and a match never sees half of an update.
#[derive(Debug)]
pub struct SharedVulnDb {
    current: RwLock<Arc<VulnDb>>,
}

impl Default for SharedVulnDb {
    fn default() -> Self {
        Self::new(VulnDb::empty())
    }
}

impl SharedVulnDb {
    pub fn new(db: VulnDb) -> Self {
        Self {
            current: RwLock::new(Arc::new(db)),
        }
    }

    /// The database in use.
    pub fn get(&self) -> Arc<VulnDb> {
        // A poisoned lock only means a writer panicked between two whole `Arc`s; the value is
        // still one complete database.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the database in use.
    pub fn replace(&self, db: VulnDb) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(db);
    }

    /// Loads a snapshot (checking its signature when `key` is set) and swaps it in. On any
    /// error the database in use stays as it was. Returns the new database's version.
    pub fn reload(
        &self,
        path: &Path,
        key: Option<&ed25519_dalek::VerifyingKey>,
    ) -> Result<String, SnapshotError> {
        let db = VulnDb::load_snapshot_verified(path, key)?;
        let version = db.version().to_string();
        self.replace(db);
        Ok(version)
    }
}
