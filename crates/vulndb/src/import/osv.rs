//! OSV records (<https://ossf.github.io/osv-schema/>), one JSON object per document.
//!
//! `ECOSYSTEM` and `SEMVER` ranges become intervals evaluated with the ecosystem's comparator;
//! `GIT` ranges are ignored (a commit hash is not a version). Severity comes from the record's
//! `severity` (CVSS vectors, scored here), an affected package's `severity`, RustSec's
//! `database_specific.cvss` and GHSA's `database_specific.severity`.

use std::sync::Arc;

use serde::Deserialize;

use super::{ImportError, ImportReport, Importer, truncate};
use crate::advisory::{
    Advisory, Affected, Event, Interval, MAX_ID_LEN, MAX_NAME_LEN, MAX_SUMMARY_LEN, MAX_URL_LEN,
    Reference, Severity, Status,
};
use crate::versions::Ecosystem;

/// The OSV importer. `feed` names the source in statistics (`osv` by default; use one per
/// mirror, such as `osv-pypi`, to track them separately).
#[derive(Debug, Clone)]
pub struct Osv {
    pub feed: String,
}

impl Default for Osv {
    fn default() -> Self {
        Self {
            feed: "osv".to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    related: Option<Vec<String>>,
    /// The issues a downstream record (a Debian DSA, an Ubuntu USN) is about.
    #[serde(default)]
    upstream: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<Vec<OsvSeverity>>,
    #[serde(default)]
    references: Option<Vec<OsvReference>>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    affected: Option<Vec<OsvAffected>>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OsvSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct OsvReference {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    url: String,
}

#[derive(Deserialize)]
struct OsvAffected {
    #[serde(default)]
    package: Option<OsvPackage>,
    #[serde(default)]
    severity: Option<Vec<OsvSeverity>>,
    #[serde(default)]
    ranges: Option<Vec<OsvRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OsvPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct OsvRange {
    #[serde(rename = "type")]
    kind: String,
    events: Vec<OsvEvent>,
}

#[derive(Deserialize)]
struct OsvEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// The rating body of an id: `GHSA` for `GHSA-…`, `RUSTSEC` for `RUSTSEC-…`.
fn id_source(id: &str) -> &str {
    id.split('-').next().unwrap_or(id)
}

fn severities(
    list: Option<Vec<OsvSeverity>>,
    source: &str,
    location: &str,
    report: &mut ImportReport,
) -> Vec<Severity> {
    let mut out = Vec::new();
    for s in list.unwrap_or_default() {
        match s.kind.as_str() {
            "CVSS_V2" | "CVSS_V3" | "CVSS_V4" => match Severity::from_cvss(&s.score, source) {
                Ok(sev) => out.push(sev),
                Err(e) => report.warn(location, format!("unreadable CVSS vector: {e}")),
            },
            // Ubuntu's priority and other vendor words.
            _ => out.push(Severity::vendor(&s.score, source)),
        }
    }
    out
}

impl Importer for Osv {
    fn feed(&self) -> &str {
        &self.feed
    }

    fn parse_document(
        &self,
        location: &str,
        bytes: &[u8],
        report: &mut ImportReport,
    ) -> Result<(), ImportError> {
        let record: Record = serde_json::from_slice(bytes).map_err(|source| ImportError::Json {
            location: location.to_string(),
            source,
        })?;
        let invalid = |reason: &str| ImportError::Invalid {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        if record.id.is_empty() || record.id.len() > MAX_ID_LEN {
            return Err(invalid("id is empty or too long"));
        }
        let id = record.id;
        let source = id_source(&id).to_string();
        let mut aliases: Vec<String> = record.aliases.unwrap_or_default();
        let ok = |a: &String| !a.is_empty() && a.len() <= MAX_ID_LEN && *a != id;
        let mut related: Vec<String> = record.related.unwrap_or_default();
        // A record about exactly one upstream issue is that issue (DEBIAN-CVE-… and its CVE);
        // one covering several (a DSA fixing five CVEs) is only related to each of them.
        match record.upstream.unwrap_or_default() {
            up if up.len() == 1 => aliases.extend(up),
            up => related.extend(up),
        }
        aliases.retain(ok);
        aliases.sort();
        aliases.dedup();
        related.retain(|r| ok(r) && !aliases.contains(r));
        related.sort();
        related.dedup();

        let mut severity = severities(record.severity, &source, location, report);
        if let Some(level) = record
            .database_specific
            .as_ref()
            .and_then(|d| d.get("severity"))
            .and_then(|s| s.as_str())
        {
            severity.push(Severity::vendor(level, &source));
        }

        let mut affected = Vec::new();
        for a in record.affected.unwrap_or_default() {
            let Some(pkg) = a.package else {
                continue;
            };
            let Some((ecosystem, release)) = Ecosystem::parse_osv(&pkg.ecosystem) else {
                report.warn(
                    location,
                    format!("unsupported ecosystem {:?}", truncate(&pkg.ecosystem, 64)),
                );
                continue;
            };
            if pkg.name.is_empty() || pkg.name.len() > MAX_NAME_LEN {
                return Err(invalid("package name is empty or too long"));
            }
            let mut a_severity = severities(a.severity, &source, location, report);
            if let Some(vector) = a
                .database_specific
                .as_ref()
                .and_then(|d| d.get("cvss"))
                .and_then(|s| s.as_str())
                && !severity.iter().any(|s| s.vector.as_deref() == Some(vector))
            {
                match Severity::from_cvss(vector, &source) {
                    Ok(s) => a_severity.push(s),
                    Err(e) => report.warn(location, format!("unreadable CVSS vector: {e}")),
                }
            }
            let mut ranges = Vec::new();
            for r in a.ranges.unwrap_or_default() {
                if r.kind != "ECOSYSTEM" && r.kind != "SEMVER" {
                    continue;
                }
                let events: Vec<Event> = r
                    .events
                    .into_iter()
                    .flat_map(|e| {
                        [
                            e.introduced.map(Event::Introduced),
                            e.fixed.map(Event::Fixed),
                            e.last_affected.map(Event::LastAffected),
                            e.limit.map(Event::Limit),
                        ]
                    })
                    .flatten()
                    .collect();
                match Interval::from_events(ecosystem, &events) {
                    Ok(iv) => ranges.extend(iv),
                    Err(e) => {
                        report.warn(location, format!("range of {} dropped: {e}", pkg.name));
                    }
                }
            }
            let mut versions = Vec::new();
            for v in a.versions.unwrap_or_default() {
                // Explicit lists often hold versions from GIT ranges (tags); only valid ones
                // of the ecosystem can ever match.
                if ecosystem.validate(&v).is_ok() {
                    versions.push(v);
                }
            }
            if ranges.is_empty() && versions.is_empty() {
                // Nothing evaluable: only GIT ranges, ranges that affect no version, or every
                // range invalid. An entry without ranges would mean "every version", which is
                // not what the feed said.
                continue;
            }
            let status = if ranges.iter().any(|r| r.fixed.is_some()) {
                Status::Fixed
            } else {
                Status::NotFixed
            };
            affected.push(Affected {
                ecosystem,
                release,
                name: pkg.name,
                ranges,
                versions,
                status,
                severity: a_severity,
            });
        }

        let summary = record
            .summary
            .filter(|s| !s.trim().is_empty())
            .or_else(|| {
                record
                    .details
                    .as_deref()
                    .and_then(|d| d.lines().find(|l| !l.trim().is_empty()))
                    .map(str::to_string)
            })
            .map(|s| Arc::from(truncate(s.trim(), MAX_SUMMARY_LEN)));
        let references = record
            .references
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.len() <= MAX_URL_LEN)
            .map(|r| Reference {
                kind: r.kind.unwrap_or_else(|| "WEB".to_string()),
                url: r.url,
            })
            .collect();
        let time = |t: Option<String>| t.map(|t| truncate(&t, 64));
        report.push(Advisory {
            id,
            aliases,
            related,
            source: self.feed.clone(),
            summary,
            severity,
            references,
            published: time(record.published),
            modified: time(record.modified),
            withdrawn: time(record.withdrawn),
            affected,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{Limits, import_bytes};

    #[test]
    fn upstream_ids() {
        // A DSA covering two CVEs is related to each, not an alias of either; a record about one
        // upstream CVE is that CVE.
        let dsa = br#"{"id": "DSA-5678-1", "upstream": ["CVE-2024-1", "CVE-2024-2"],
            "related": ["CVE-2023-9"], "affected": []}"#;
        let r = import_bytes(&Osv::default(), "x", dsa, &Limits::default()).unwrap();
        assert!(r.advisories[0].aliases.is_empty());
        assert_eq!(
            r.advisories[0].related,
            ["CVE-2023-9", "CVE-2024-1", "CVE-2024-2"]
        );
        let one = br#"{"id": "DEBIAN-CVE-2024-1", "upstream": ["CVE-2024-1"], "affected": []}"#;
        let r = import_bytes(&Osv::default(), "x", one, &Limits::default()).unwrap();
        assert_eq!(r.advisories[0].aliases, ["CVE-2024-1"]);
    }

    #[test]
    fn ecosystems_and_summaries() {
        let rec = br#"{"id": "X-1", "details": "\n\nFirst line.\nSecond line.",
            "database_specific": {"severity": "MODERATE"},
            "affected": [
              {"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"},
               "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.2-0ubuntu1.15"}]}]},
              {"package": {"ecosystem": "npm", "name": "lodash"},
               "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"last_affected": "4.17.20"}]}]}
            ]}"#;
        let r = import_bytes(&Osv::default(), "x", rec, &Limits::default()).unwrap();
        let a = &r.advisories[0];
        assert_eq!(a.summary.as_deref(), Some("First line."));
        assert_eq!(a.severity[0].level, crate::advisory::Level::Medium);
        assert_eq!(a.severity[0].source, "X");
        assert_eq!(a.affected[0].ecosystem, Ecosystem::Ubuntu);
        assert_eq!(a.affected[0].release.as_deref(), Some("22.04"));
        assert_eq!(a.affected[0].status, Status::Fixed);
        assert_eq!(a.affected[1].status, Status::NotFixed);
    }
}
