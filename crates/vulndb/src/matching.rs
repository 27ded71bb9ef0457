//! Matching a package inventory against the database.
//!
//! Operating-system packages are matched by their **source** package and source version within
//! their distribution release, because that is what distributions publish advisories for
//! (`bsdutils 1:2.38.1-5+deb12u3` is built from `util-linux 2.38.1-5+deb12u3`). A Debian binNMU
//! suffix (`+b1`) is removed first: it rebuilds the same source. Language packages are matched by
//! their own name and version.
//!
//! All records of one issue that hit one package (a GHSA, its CVE and its PYSEC) become one
//! [`Finding`] listing every id.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::advisory::{Advisory, Affected, Level, Severity, Status};
use crate::db::{IndexEntry, VulnDb};
use crate::names::normalize_name;
use crate::versions::{Ecosystem, ParsedVersion, dpkg, normalize_release};

/// A package found in an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageRef {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// The source package it was built from (distribution packages). Matching uses it when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// The source package's version, when it differs from `version` (dpkg's `Source: name
    /// (version)`, written when a binary has its own epoch or a binNMU); otherwise `version` is
    /// used, without any binNMU suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// The distribution release of the image (`12`, `bookworm`, `3.19`, `v3.19`). Advisories
    /// for a specific release match only packages of that release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Where the scanner found the package (layer, path, …): passed through to findings
    /// untouched.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub evidence: serde_json::Value,
}

/// One issue affecting one package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Every id of the issue: CVE ids first, then GHSA ids, then the others, each sorted.
    pub ids: Vec<String>,
    /// The package as given, evidence included (shared by the package's findings).
    pub package: Arc<PackageRef>,
    /// The name and version that were compared (the source package's, for distributions).
    pub matched_name: String,
    pub installed_version: String,
    /// The lowest version that fixes every merged record that knows a fix, if any does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_version: Option<String>,
    pub status: Status,
    /// The most severe rating among the merged records, with its source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Arc<str>>,
    /// The feeds whose records matched.
    pub feeds: Vec<String>,
}

impl Finding {
    pub fn level(&self) -> Level {
        self.severity.as_ref().map_or(Level::Unknown, |s| s.level)
    }
}

/// Counts of findings per severity level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeveritySummary {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub negligible: usize,
    pub unknown: usize,
}

impl SeveritySummary {
    fn add(&mut self, level: Level) {
        let slot = match level {
            Level::Critical => &mut self.critical,
            Level::High => &mut self.high,
            Level::Medium => &mut self.medium,
            Level::Low => &mut self.low,
            Level::Negligible => &mut self.negligible,
            Level::Unknown => &mut self.unknown,
        };
        *slot += 1;
    }

    pub fn total(&self) -> usize {
        self.critical + self.high + self.medium + self.low + self.negligible + self.unknown
    }
}

/// A package that could not be checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmatched {
    pub package: PackageRef,
    pub reason: String,
}

/// The result of matching an inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchReport {
    /// The database version the inventory was matched against.
    pub db_version: String,
    /// Findings in inventory order, most severe first within a package.
    pub findings: Vec<Finding>,
    pub summary: SeveritySummary,
    /// Packages named by some record whose version is not valid in their ecosystem: they could
    /// not be checked, which is never reported as "not affected".
    pub unmatched: Vec<Unmatched>,
}

/// One record that hit a package.
struct Hit<'a> {
    advisory: &'a Advisory,
    affected: &'a Affected,
    fixed: Option<&'a str>,
    status: Status,
}

/// The name and version to look up for a package, and its normalised release.
fn lookup_key(p: &PackageRef) -> (String, String, Option<String>) {
    let eco = p.ecosystem;
    if eco.is_distro() {
        let name = p.source_name.as_deref().unwrap_or(&p.name);
        let mut version = p.source_version.as_deref().unwrap_or(&p.version);
        if matches!(eco, Ecosystem::Debian | Ecosystem::Ubuntu) {
            version = dpkg::Version::strip_binnmu(version);
        }
        let release = p.release.as_deref().map(|r| normalize_release(eco, r));
        (name.to_string(), version.to_string(), release)
    } else {
        (p.name.clone(), p.version.clone(), None)
    }
}

/// Evaluates one affected entry for a version: `Some(fixed)` when affected. The ranges come
/// first: OSV records often list every affected version explicitly *and* give the range they
/// came from, and only the range knows the fix.
fn evaluate<'a>(
    affected: &'a Affected,
    entry: &IndexEntry,
    version: &ParsedVersion,
) -> Option<Option<&'a str>> {
    let in_range = entry
        .intervals
        .iter()
        .zip(&affected.ranges)
        .find(|(parsed, _)| parsed.contains(version))
        .map(|(_, range)| range.fixed.as_deref());
    if in_range.is_some() {
        return in_range;
    }
    entry
        .versions
        .binary_search(version)
        .is_ok()
        .then_some(None)
}

fn id_rank(id: &str) -> (u8, &str) {
    let rank = if id.starts_with("CVE-") {
        0
    } else if id.starts_with("GHSA-") {
        1
    } else {
        2
    };
    (rank, id)
}

impl VulnDb {
    /// Matches an inventory against the database.
    pub fn match_packages(&self, packages: &[PackageRef]) -> MatchReport {
        // Findings are large; sizing for one per package avoids most of the copying a growing
        // vector would do.
        let mut findings = Vec::with_capacity(packages.len());
        let mut unmatched = Vec::new();
        for p in packages {
            let (name, version, release) = lookup_key(p);
            let eco = p.ecosystem;
            let key = normalize_name(eco, &name);
            let mut candidates = self.candidates(eco, &key).peekable();
            // A package no record names cannot be affected, whatever its version says.
            if candidates.peek().is_none() {
                continue;
            }
            let parsed = match ParsedVersion::parse(eco.scheme(), &version) {
                Ok(v) => v,
                Err(e) => {
                    unmatched.push(Unmatched {
                        package: p.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let mut hits = Vec::new();
            for (advisory, affected, entry) in candidates {
                if advisory.withdrawn.is_some() {
                    continue;
                }
                if let Some(r) = &affected.release
                    && release.as_ref() != Some(r)
                {
                    continue;
                }
                if let Some(fixed) = evaluate(affected, entry, &parsed) {
                    hits.push(Hit {
                        advisory,
                        affected,
                        fixed,
                        status: if fixed.is_some() {
                            Status::Fixed
                        } else if affected.status == Status::Fixed {
                            // Affected through an open interval or an explicit version of an
                            // entry whose other ranges are fixed: no fix for this version.
                            Status::NotFixed
                        } else {
                            affected.status
                        },
                    });
                }
            }
            if hits.is_empty() {
                continue;
            }
            let shared = Arc::new(p.clone());
            let start = findings.len();
            merge_hits(eco, &hits, &shared, &name, &version, &mut findings);
            findings[start..].sort_by(|a, b| b.level().cmp(&a.level()).then(a.ids.cmp(&b.ids)));
        }
        let mut summary = SeveritySummary::default();
        for f in &findings {
            summary.add(f.level());
        }
        MatchReport {
            db_version: self.version().to_string(),
            findings,
            summary,
            unmatched,
        }
    }
}

/// Groups hits that share any id (union-find over the hits of one package) and appends one
/// finding per group to `out`.
fn merge_hits(
    eco: Ecosystem,
    hits: &[Hit<'_>],
    p: &Arc<PackageRef>,
    name: &str,
    version: &str,
    out: &mut Vec<Finding>,
) {
    // Most packages are hit by one record: no grouping needed.
    if let [hit] = hits {
        out.push(finding(eco, &[hit], p, name, version));
        return;
    }
    let n = hits.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut owner: HashMap<&str, usize> = HashMap::with_capacity(n * 3);
    for (i, h) in hits.iter().enumerate() {
        for id in h.advisory.ids() {
            match owner.get(id) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
                None => {
                    owner.insert(id, i);
                }
            }
        }
    }
    // Groups in the order of their first hit, so the output does not depend on hashing.
    let mut groups: Vec<(usize, Vec<&Hit<'_>>)> = Vec::new();
    for (i, h) in hits.iter().enumerate() {
        let root = find(&mut parent, i);
        match groups.iter_mut().find(|(r, _)| *r == root) {
            Some((_, g)) => g.push(h),
            None => groups.push((root, vec![h])),
        }
    }
    out.extend(
        groups
            .iter()
            .map(|(_, group)| finding(eco, group, p, name, version)),
    );
}

/// One finding from the hits of one issue.
fn finding(
    eco: Ecosystem,
    group: &[&Hit<'_>],
    p: &Arc<PackageRef>,
    name: &str,
    version: &str,
) -> Finding {
    let mut ids: Vec<&str> = group.iter().flat_map(|h| h.advisory.ids()).collect();
    ids.sort_by_key(|id| id_rank(id));
    ids.dedup();
    let mut fixed: Option<&str> = None;
    for h in group {
        if let Some(f) = h.fixed
            && fixed.is_none_or(|cur| eco.compare(f, cur) == Ok(Ordering::Greater))
        {
            fixed = Some(f);
        }
    }
    // A fix known to any merged record is a fix: feeds often lag one another.
    let status = if group.iter().any(|h| h.status == Status::Fixed) {
        Status::Fixed
    } else {
        [Status::NotFixed, Status::Undetermined, Status::WillNotFix]
            .into_iter()
            .find(|s| group.iter().any(|h| h.status == *s))
            .unwrap_or(Status::NotFixed)
    };
    let severity = group
        .iter()
        .flat_map(|h| h.advisory.severity.iter().chain(&h.affected.severity))
        .max_by_key(|s| s.rank())
        .cloned();
    let summary = group.iter().find_map(|h| h.advisory.summary.clone());
    let mut feeds: Vec<String> = group.iter().map(|h| h.advisory.source.clone()).collect();
    feeds.sort();
    feeds.dedup();
    Finding {
        ids: ids.into_iter().map(str::to_string).collect(),
        package: Arc::clone(p),
        matched_name: name.to_string(),
        installed_version: version.to_string(),
        fixed_version: if status == Status::Fixed {
            fixed.map(str::to_string)
        } else {
            None
        },
        status,
        severity,
        summary,
        feeds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advisory::{Event, Interval};
    use crate::import::ImportReport;

    fn affected(eco: Ecosystem, name: &str, events: &[Event], versions: &[&str]) -> Affected {
        let ranges = Interval::from_events(eco, events).unwrap();
        let status = if ranges.iter().any(|r| r.fixed.is_some()) {
            Status::Fixed
        } else {
            Status::NotFixed
        };
        Affected {
            ecosystem: eco,
            release: None,
            name: name.to_string(),
            ranges,
            versions: versions.iter().map(|v| v.to_string()).collect(),
            status,
            severity: Vec::new(),
        }
    }

    fn advisory(id: &str, aliases: &[&str], affected: Vec<Affected>) -> Advisory {
        Advisory {
            id: id.to_string(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            related: Vec::new(),
            source: "test".to_string(),
            summary: None,
            severity: Vec::new(),
            references: Vec::new(),
            published: None,
            modified: None,
            withdrawn: None,
            affected,
        }
    }

    fn db(advisories: Vec<Advisory>) -> VulnDb {
        let mut report = ImportReport::new("test");
        for a in advisories {
            report.push(a);
        }
        VulnDb::from_imports(vec![report]).unwrap()
    }

    fn pkg(eco: Ecosystem, name: &str, version: &str) -> PackageRef {
        PackageRef {
            ecosystem: eco,
            name: name.to_string(),
            version: version.to_string(),
            source_name: None,
            source_version: None,
            release: None,
            evidence: serde_json::Value::Null,
        }
    }

    fn ids(db: &VulnDb, p: PackageRef) -> Vec<Vec<String>> {
        let r = db.match_packages(&[p]);
        assert!(r.unmatched.is_empty(), "{:?}", r.unmatched);
        r.findings.into_iter().map(|f| f.ids).collect()
    }

    #[test]
    fn ecosystems_ranges_and_lists() {
        let intro = |v: &str| Event::Introduced(v.into());
        let fixed = |v: &str| Event::Fixed(v.into());
        let last = |v: &str| Event::LastAffected(v.into());
        let db = db(vec![
            advisory(
                "GHSA-maven",
                &["CVE-2021-44228"],
                vec![affected(
                    Ecosystem::Maven,
                    "org.apache.logging.log4j:log4j-core",
                    &[intro("2.0-beta9"), fixed("2.15.0")],
                    &[],
                )],
            ),
            advisory(
                "GHSA-npm",
                &[],
                vec![affected(
                    Ecosystem::Npm,
                    "lodash",
                    &[intro("0"), last("4.17.20")],
                    &[],
                )],
            ),
            advisory(
                "GHSA-gem",
                &[],
                vec![affected(
                    Ecosystem::RubyGems,
                    "rails",
                    &[],
                    &["6.1.0", "6.1.1"],
                )],
            ),
            advisory(
                "RUSTSEC-listed",
                &[],
                vec![affected(
                    Ecosystem::CratesIo,
                    "listed",
                    &[intro("0"), fixed("1.1.0")],
                    &["1.0.0", "1.0.1", "2.0.0"],
                )],
            ),
            advisory(
                "PYSEC-1",
                &["CVE-9"],
                vec![affected(
                    Ecosystem::PyPI,
                    "Foo_Bar",
                    &[intro("1.0"), fixed("1.2")],
                    &[],
                )],
            ),
            advisory(
                "GHSA-pypi",
                &["CVE-9"],
                vec![affected(
                    Ecosystem::PyPI,
                    "foo-bar",
                    &[intro("0"), fixed("1.3")],
                    &[],
                )],
            ),
        ]);
        let maven = |v| pkg(Ecosystem::Maven, "org.apache.logging.log4j:log4j-core", v);
        assert_eq!(
            ids(&db, maven("2.14.1")),
            [["CVE-2021-44228", "GHSA-maven"]]
        );
        assert!(ids(&db, maven("2.15.0")).is_empty());
        assert!(ids(&db, maven("2.0-alpha1")).is_empty());
        assert_eq!(ids(&db, maven("2.0")).len(), 1);
        assert_eq!(ids(&db, pkg(Ecosystem::Npm, "lodash", "4.17.20")).len(), 1);
        assert!(ids(&db, pkg(Ecosystem::Npm, "lodash", "4.17.21")).is_empty());
        let r = db.match_packages(&[pkg(Ecosystem::Npm, "lodash", "4.17.20")]);
        assert_eq!(r.findings[0].status, Status::NotFixed);
        assert_eq!(r.findings[0].fixed_version, None);
        assert_eq!(
            ids(&db, pkg(Ecosystem::RubyGems, "rails", "6.1.1")).len(),
            1
        );
        assert!(ids(&db, pkg(Ecosystem::RubyGems, "rails", "6.1.2")).is_empty());
        // A version listed explicitly and inside a fixed range: the range's fix is known.
        let r = db.match_packages(&[pkg(Ecosystem::CratesIo, "listed", "1.0.1")]);
        assert_eq!(r.findings[0].fixed_version.as_deref(), Some("1.1.0"));
        assert_eq!(r.findings[0].status, Status::Fixed);
        // Listed only: affected, no fix known.
        let r = db.match_packages(&[pkg(Ecosystem::CratesIo, "listed", "2.0.0")]);
        assert_eq!(r.findings[0].fixed_version, None);
        assert_eq!(r.findings[0].status, Status::NotFixed);
        // Two records of one issue with different fixes: one finding, the fix that covers both.
        let r = db.match_packages(&[pkg(Ecosystem::PyPI, "FOO.bar", "1.1")]);
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].ids, ["CVE-9", "GHSA-pypi", "PYSEC-1"]);
        assert_eq!(r.findings[0].fixed_version.as_deref(), Some("1.3"));
        assert_eq!(r.summary.unknown, 1);
        // Only the GHSA covers 0.9.
        assert_eq!(
            ids(&db, pkg(Ecosystem::PyPI, "foo-bar", "0.9")),
            [["CVE-9", "GHSA-pypi"]]
        );
        // An ecosystem's name space is its own.
        assert!(ids(&db, pkg(Ecosystem::CratesIo, "lodash", "1.0.0")).is_empty());
        // Invalid installed versions are reported, when some record names the package.
        let r = db.match_packages(&[pkg(Ecosystem::Npm, "lodash", "latest")]);
        assert_eq!(r.unmatched.len(), 1);
        let r = db.match_packages(&[pkg(Ecosystem::Npm, "unknown", "latest")]);
        assert!(r.unmatched.is_empty());
    }

    #[test]
    fn withdrawn_and_release_specific() {
        let mut withdrawn = advisory(
            "GO-W",
            &[],
            vec![affected(
                Ecosystem::Go,
                "example.com/m",
                &[Event::Introduced("0".into())],
                &[],
            )],
        );
        withdrawn.withdrawn = Some("2024-01-01T00:00:00Z".into());
        let mut deb = affected(
            Ecosystem::Debian,
            "openssl",
            &[
                Event::Introduced("0".into()),
                Event::Fixed("3.0.13-1~deb12u1".into()),
            ],
            &[],
        );
        deb.release = Some("12".into());
        let db = db(vec![withdrawn, advisory("CVE-1", &[], vec![deb])]);
        assert!(ids(&db, pkg(Ecosystem::Go, "example.com/m", "v1.0.0")).is_empty());
        assert_eq!(db.lookup(Ecosystem::Go, "example.com/m").count(), 0);
        let mut p = pkg(Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u2");
        p.source_name = Some("openssl".into());
        // Without a release, release-specific records do not apply.
        assert!(ids(&db, p.clone()).is_empty());
        p.release = Some("bookworm".into());
        assert_eq!(ids(&db, p.clone()), [["CVE-1"]]);
        p.release = Some("11".into());
        assert!(ids(&db, p).is_empty());
    }
}
