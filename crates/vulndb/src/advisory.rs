//! The advisory model shared by every importer: what is vulnerable, where, how badly, and
//! whether a fix exists.
//!
//! Importers turn their feed's format into [`Advisory`] values; the database indexes them and
//! the matcher reads them. Ranges are stored as ordered [`Interval`]s (computed once at import
//! from OSV's event lists), so matching never sorts events.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::versions::{Ecosystem, VersionError};

/// One advisory record from one feed (an OSV record, a Debian tracker CVE entry, the CVEs of an
/// Alpine secdb).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The record's own id (`GHSA-…`, `PYSEC-…`, `RUSTSEC-…`, `GO-…`, `CVE-…`).
    pub id: String,
    /// Other ids of the same issue (`CVE-…`, `GHSA-…`, `DSA-…`, `DLA-…`). Findings merge records
    /// that share any id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Ids of related but distinct issues (OSV `related`, and the `upstream` CVEs of a record
    /// that covers several). Shown, never merged on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    /// The feed it came from (`osv`, `debian-tracker`, `alpine-secdb`).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Shared with the findings that quote it, so matching does not copy it.
    pub summary: Option<Arc<str>>,
    /// Record-level severities; an [`Affected`] may add its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<Severity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// RFC 3339 times as the feed wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Set when the feed withdrew the record: it is kept for reference and never matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    pub affected: Vec<Affected>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// OSV's reference type (`ADVISORY`, `FIX`, `WEB`, …).
    pub kind: String,
    pub url: String,
}

/// A package affected by an advisory, in one ecosystem (and, for distributions, one release).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    pub ecosystem: Ecosystem,
    /// The distribution release (`12`, `3.19`; see [`crate::versions::normalize_release`]);
    /// `None` means every release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// The package name as the feed wrote it (for distributions, the source package).
    pub name: String,
    /// Version intervals that are affected. Empty with empty `versions` means every version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Interval>,
    /// Versions listed explicitly as affected (OSV `versions`), matched exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<Severity>,
}

/// A half-open affected interval of versions: `introduced <= v < fixed`, or `<= last_affected`.
///
/// `introduced: None` means from the first version (`0`, `0.0.0-0`); no upper bound means every
/// later version is affected. `limit` additionally caps the interval (OSV `limit` events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Interval {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// One OSV range event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Event {
    fn version(&self) -> &str {
        match self {
            Self::Introduced(v) | Self::Fixed(v) | Self::LastAffected(v) | Self::Limit(v) => v,
        }
    }
}

/// Whether an introduced version means "since the beginning".
pub fn is_zero_version(v: &str) -> bool {
    v == "0" || v == "0.0.0-0"
}

impl Interval {
    /// Turns an OSV event list into intervals, following the OSV evaluation rules: events are
    /// sorted by version, an `introduced` opens an interval, the next `fixed` or `last_affected`
    /// closes it; `limit` events cap every interval. Errors if a version is invalid.
    pub fn from_events(eco: Ecosystem, events: &[Event]) -> Result<Vec<Self>, VersionError> {
        let mut limits = Vec::new();
        let mut sorted: Vec<&Event> = Vec::new();
        for e in events {
            match e {
                Event::Limit(v) => {
                    if v != "*" {
                        eco.validate(v)?;
                        limits.push(v.clone());
                    }
                }
                Event::Introduced(v) if is_zero_version(v) => sorted.push(e),
                _ => {
                    eco.validate(e.version())?;
                    sorted.push(e);
                }
            }
        }
        // Sort by version, "0" first. On equal versions an introduced comes first (so
        // `introduced: X, fixed: X` is an empty interval rather than an open one), then a fixed,
        // then a last_affected: a fix stated at the same version as a last affected one wins,
        // as in the OSV reference evaluation.
        let mut err = None;
        sorted.sort_by(|a, b| {
            let key = |e: &Event| match e {
                Event::Introduced(_) => 0,
                Event::Fixed(_) => 1,
                _ => 2,
            };
            match (a, b) {
                (Event::Introduced(x), _) if is_zero_version(x) => {
                    return if matches!(b, Event::Introduced(y) if is_zero_version(y)) {
                        Ordering::Equal
                    } else {
                        Ordering::Less
                    };
                }
                (_, Event::Introduced(y)) if is_zero_version(y) => return Ordering::Greater,
                _ => {}
            }
            match eco.compare(a.version(), b.version()) {
                Ok(Ordering::Equal) => key(a).cmp(&key(b)),
                Ok(o) => o,
                Err(e) => {
                    err = Some(e);
                    Ordering::Equal
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let limit = limits
            .into_iter()
            .min_by(|a, b| eco.compare(a, b).unwrap_or(Ordering::Equal));
        let mut out = Vec::new();
        let mut open: Option<Option<String>> = None;
        for e in sorted {
            match e {
                Event::Introduced(v) => {
                    if open.is_none() {
                        open = Some((!is_zero_version(v)).then(|| v.clone()));
                    }
                }
                Event::Fixed(v) => {
                    if let Some(introduced) = open.take() {
                        out.push(Self {
                            introduced,
                            fixed: Some(v.clone()),
                            last_affected: None,
                            limit: limit.clone(),
                        });
                    }
                }
                Event::LastAffected(v) => {
                    if let Some(introduced) = open.take() {
                        out.push(Self {
                            introduced,
                            fixed: None,
                            last_affected: Some(v.clone()),
                            limit: limit.clone(),
                        });
                    }
                }
                Event::Limit(_) => {}
            }
        }
        if let Some(introduced) = open {
            out.push(Self {
                introduced,
                fixed: None,
                last_affected: None,
                limit,
            });
        }
        Ok(out)
    }

    /// Whether `v` lies in this interval.
    pub fn contains(&self, eco: Ecosystem, v: &str) -> Result<bool, VersionError> {
        if let Some(i) = &self.introduced
            && eco.compare(v, i)? == Ordering::Less
        {
            return Ok(false);
        }
        if let Some(f) = &self.fixed
            && eco.compare(v, f)? != Ordering::Less
        {
            return Ok(false);
        }
        if let Some(l) = &self.last_affected
            && eco.compare(v, l)? == Ordering::Greater
        {
            return Ok(false);
        }
        if let Some(l) = &self.limit
            && eco.compare(v, l)? != Ordering::Less
        {
            return Ok(false);
        }
        Ok(true)
    }

    /// Every version string this interval holds.
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        [
            &self.introduced,
            &self.fixed,
            &self.last_affected,
            &self.limit,
        ]
        .into_iter()
        .filter_map(|v| v.as_deref())
    }
}

/// What the feed says about a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A fixed version exists (ranges end in `fixed`).
    Fixed,
    /// No fix released yet.
    NotFixed,
    /// The distribution decided not to fix it (Debian `<no-dsa>`, `<ignored>`, `<postponed>`).
    WillNotFix,
    /// The distribution has not yet determined whether it is affected.
    Undetermined,
}

/// How severe an issue is, on the usual qualitative scale.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[default]
    Unknown,
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    /// The CVSS v3/v4 qualitative rating of a base score.
    pub fn from_cvss_score(score: f64) -> Self {
        if score >= 9.0 {
            Self::Critical
        } else if score >= 7.0 {
            Self::High
        } else if score >= 4.0 {
            Self::Medium
        } else if score > 0.0 {
            Self::Low
        } else {
            Self::Negligible
        }
    }

    /// Parses a vendor's word (`HIGH`, `moderate`, `important`, Debian's `unimportant`).
    pub fn from_vendor(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Self::Critical,
            "high" | "important" => Self::High,
            "medium" | "moderate" => Self::Medium,
            "low" => Self::Low,
            "unimportant" | "negligible" | "none" => Self::Negligible,
            _ => Self::Unknown,
        }
    }
}

/// The kind of a severity statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeverityKind {
    CvssV2,
    CvssV3,
    CvssV4,
    /// A vendor's own rating (GHSA `severity`, Debian urgency).
    Vendor,
}

/// One severity statement, with who made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Severity {
    pub kind: SeverityKind,
    /// The CVSS vector, for CVSS kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    /// The base score computed from the vector (CVSS kinds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub level: Level,
    /// Who rated it (`osv`, `GHSA`, `debian`, `nvd`…).
    pub source: String,
}

impl Severity {
    /// Parses a CVSS vector (v2 not prefixed, `CVSS:3.0/…`, `CVSS:3.1/…`, `CVSS:4.0/…`) and
    /// computes its base score.
    pub fn from_cvss(vector: &str, source: &str) -> Result<Self, cvss::Error> {
        let (kind, score) = crate::cvss::base_score(vector)?;
        Ok(Self {
            kind,
            vector: Some(vector.to_string()),
            score: Some(score),
            level: Level::from_cvss_score(score),
            source: source.to_string(),
        })
    }

    pub fn vendor(level: &str, source: &str) -> Self {
        Self {
            kind: SeverityKind::Vendor,
            vector: None,
            score: None,
            level: Level::from_vendor(level),
            source: source.to_string(),
        }
    }

    /// Orders severities by how much a reader should trust and fear them: a higher level first,
    /// then a computed score, then a newer CVSS version.
    pub fn rank(&self) -> (Level, u64, u8) {
        let kind = match self.kind {
            SeverityKind::Vendor => 0,
            SeverityKind::CvssV2 => 1,
            SeverityKind::CvssV3 => 2,
            SeverityKind::CvssV4 => 3,
        };
        (self.level, (self.score.unwrap_or(0.0) * 10.0) as u64, kind)
    }
}

/// Why a record was refused by [`Advisory::validate`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidAdvisory {
    #[error("advisory id is empty or longer than {MAX_ID_LEN} bytes")]
    BadId,
    #[error("{id}: {field} is longer than {max} bytes")]
    TooLong {
        id: String,
        field: &'static str,
        max: usize,
    },
    #[error("{id}: package name is empty")]
    EmptyName { id: String },
    #[error("{id}: {source}")]
    Version {
        id: String,
        #[source]
        source: VersionError,
    },
}

pub const MAX_ID_LEN: usize = 128;
pub const MAX_NAME_LEN: usize = 1024;
pub const MAX_SUMMARY_LEN: usize = 4096;
pub const MAX_URL_LEN: usize = 4096;

impl Advisory {
    /// Checks a record completely: id and field lengths, non-empty names, and every version
    /// valid in its ecosystem. A snapshot is loaded only if every record passes.
    pub fn validate(&self) -> Result<(), InvalidAdvisory> {
        if self.id.is_empty() || self.id.len() > MAX_ID_LEN {
            return Err(InvalidAdvisory::BadId);
        }
        let too_long = |field, max| InvalidAdvisory::TooLong {
            id: self.id.clone(),
            field,
            max,
        };
        if self
            .aliases
            .iter()
            .any(|a| a.is_empty() || a.len() > MAX_ID_LEN)
        {
            return Err(too_long("alias", MAX_ID_LEN));
        }
        if self
            .summary
            .as_ref()
            .is_some_and(|s| s.len() > MAX_SUMMARY_LEN)
        {
            return Err(too_long("summary", MAX_SUMMARY_LEN));
        }
        if self.references.iter().any(|r| r.url.len() > MAX_URL_LEN) {
            return Err(too_long("reference", MAX_URL_LEN));
        }
        for a in &self.affected {
            if a.name.is_empty() {
                return Err(InvalidAdvisory::EmptyName {
                    id: self.id.clone(),
                });
            }
            if a.name.len() > MAX_NAME_LEN {
                return Err(too_long("package name", MAX_NAME_LEN));
            }
            let version = |source| InvalidAdvisory::Version {
                id: self.id.clone(),
                source,
            };
            for r in &a.ranges {
                for v in r.versions() {
                    a.ecosystem.validate(v).map_err(version)?;
                }
            }
            for v in &a.versions {
                a.ecosystem.validate(v).map_err(version)?;
            }
        }
        Ok(())
    }

    /// Every id of the record: its own first, then its aliases.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intro(v: &str) -> Event {
        Event::Introduced(v.into())
    }
    fn fixed(v: &str) -> Event {
        Event::Fixed(v.into())
    }

    #[test]
    fn intervals_from_unsorted_events() {
        let eco = Ecosystem::Go;
        let iv = Interval::from_events(
            eco,
            &[
                intro("1.22.0-0"),
                fixed("1.22.2"),
                intro("0"),
                fixed("1.21.9"),
            ],
        )
        .unwrap();
        assert_eq!(iv.len(), 2);
        let hit = |v| iv.iter().any(|i| i.contains(eco, v).unwrap());
        assert!(hit("1.21.8"));
        assert!(!hit("1.21.9"));
        assert!(!hit("1.21.10"));
        assert!(hit("1.22.0"));
        assert!(hit("1.22.1"));
        assert!(!hit("1.22.2"));
    }

    #[test]
    fn last_affected_and_limit() {
        let eco = Ecosystem::PyPI;
        let iv = Interval::from_events(
            eco,
            &[
                intro("1.0"),
                Event::LastAffected("1.5".into()),
                Event::Limit("2.0".into()),
            ],
        )
        .unwrap();
        assert!(iv[0].contains(eco, "1.5").unwrap());
        assert!(!iv[0].contains(eco, "1.5.1").unwrap());
        assert!(!iv[0].contains(eco, "0.9").unwrap());
        let open = Interval::from_events(eco, &[intro("0"), Event::Limit("2.0".into())]).unwrap();
        assert!(open[0].contains(eco, "1.9").unwrap());
        assert!(!open[0].contains(eco, "2.0").unwrap());
    }

    /// The OSV specification's reference evaluation: walk the events in version order and
    /// flip a flag.
    fn reference(eco: Ecosystem, events: &[Event], v: &str) -> bool {
        let mut sorted: Vec<&Event> = events.iter().collect();
        let key = |e: &Event| match e {
            Event::Introduced(x) if is_zero_version(x) => (0, String::new(), 0),
            Event::Introduced(x) => (1, x.clone(), 0),
            Event::Fixed(x) => (1, x.clone(), 1),
            other => (1, other.version().to_string(), 2),
        };
        sorted.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then_with(|| eco.compare(&ka.1, &kb.1).unwrap_or(Ordering::Equal))
                .then(ka.2.cmp(&kb.2))
        });
        let mut vulnerable = false;
        for e in sorted {
            match e {
                Event::Introduced(x) => {
                    if is_zero_version(x) || eco.compare(v, x).unwrap() != Ordering::Less {
                        vulnerable = true;
                    }
                }
                Event::Fixed(x) => {
                    if eco.compare(v, x).unwrap() != Ordering::Less {
                        vulnerable = false;
                    }
                }
                Event::LastAffected(x) => {
                    if eco.compare(v, x).unwrap() == Ordering::Greater {
                        vulnerable = false;
                    }
                }
                Event::Limit(_) => {}
            }
        }
        vulnerable
    }

    proptest::proptest! {
        #[test]
        fn intervals_agree_with_the_osv_reference(
            raw in proptest::collection::vec((0u8..3, 0u64..8), 0..7),
            v in 0u64..9,
        ) {
            let eco = Ecosystem::CratesIo;
            let events: Vec<Event> = raw
                .iter()
                .map(|&(kind, n)| {
                    let ver = format!("0.{n}.0");
                    match kind {
                        0 if n == 0 => Event::Introduced("0".into()),
                        0 => Event::Introduced(ver),
                        1 => Event::Fixed(ver),
                        _ => Event::LastAffected(ver),
                    }
                })
                .collect();
            let version = format!("0.{v}.0");
            let intervals = Interval::from_events(eco, &events).unwrap();
            let ours = intervals.iter().any(|i| i.contains(eco, &version).unwrap());
            proptest::prop_assert_eq!(ours, reference(eco, &events, &version), "{:?}", events);
        }
    }

    #[test]
    fn invalid_version_is_an_error() {
        assert!(Interval::from_events(Ecosystem::CratesIo, &[intro("0"), fixed("x.y")]).is_err());
    }
}
