//! The Debian security tracker's JSON (`https://security-tracker.debian.org/tracker/data/json`):
//! `{source package: {CVE id: {description, releases: {codename: {status, fixed_version,
//! urgency, …}}}}}`.
//!
//! Per release: `resolved` with a `fixed_version` means versions below it are affected (a
//! `fixed_version` of `0` means the release never had the bug); `open` means every version is
//! affected and no fix exists; `undetermined` is reported as such. An urgency of `<no-dsa>`,
//! `<ignored>`, `<postponed>` or `end-of-life`, or a `nodsa` mark (with a `nodsa_reason` of
//! `""`, `postponed` or `ignored`), means Debian will not fix it in a security update.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::{ImportError, ImportReport, Importer, truncate};
use crate::advisory::{
    Advisory, Affected, Interval, Level, MAX_ID_LEN, MAX_NAME_LEN, MAX_SUMMARY_LEN, Severity,
    Status,
};
use crate::versions::{Ecosystem, normalize_release};

#[derive(Debug, Clone, Default)]
pub struct DebianTracker;

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    releases: BTreeMap<String, Release>,
}

#[derive(Deserialize)]
struct Release {
    status: String,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
    #[serde(default)]
    nodsa: Option<serde_json::Value>,
}

const FEED: &str = "debian-tracker";

fn will_not_fix(urgency: &str) -> bool {
    matches!(
        urgency.trim_matches(['<', '>']),
        "no-dsa" | "ignored" | "postponed" | "end-of-life"
    )
}

impl Importer for DebianTracker {
    fn feed(&self) -> &str {
        FEED
    }

    fn parse_document(
        &self,
        location: &str,
        bytes: &[u8],
        report: &mut ImportReport,
    ) -> Result<(), ImportError> {
        let doc: BTreeMap<String, BTreeMap<String, Entry>> = serde_json::from_slice(bytes)
            .map_err(|source| ImportError::Json {
                location: location.to_string(),
                source,
            })?;
        for (package, cves) in doc {
            if package.is_empty() || package.len() > MAX_NAME_LEN {
                return Err(ImportError::Invalid {
                    location: location.to_string(),
                    reason: "package name is empty or too long".to_string(),
                });
            }
            for (id, entry) in cves {
                if id.is_empty() || id.len() > MAX_ID_LEN {
                    report.warn(location, "advisory id is empty or too long");
                    continue;
                }
                let mut affected = Vec::new();
                for (codename, rel) in entry.releases {
                    // The tracker lists some entries under an empty release name: they belong to
                    // no release an image can have.
                    if codename.is_empty() {
                        continue;
                    }
                    let urgency = rel.urgency.as_deref().unwrap_or("");
                    let interval = |fixed: Option<String>| Interval {
                        fixed,
                        ..Interval::default()
                    };
                    let (status, range) = match rel.status.as_str() {
                        "resolved" => match rel.fixed_version {
                            Some(v) if v == "0" => continue,
                            Some(v) => {
                                if let Err(e) = Ecosystem::Debian.validate(&v) {
                                    report.warn(location, format!("{id} {package}: {e}"));
                                    continue;
                                }
                                (Status::Fixed, interval(Some(v)))
                            }
                            None => {
                                report.warn(
                                    location,
                                    format!("{id} {package} {codename}: resolved without a fixed version"),
                                );
                                continue;
                            }
                        },
                        "open" if will_not_fix(urgency) || rel.nodsa.is_some() => {
                            (Status::WillNotFix, interval(None))
                        }
                        "open" => (Status::NotFixed, interval(None)),
                        "undetermined" => (Status::Undetermined, interval(None)),
                        other => {
                            report.warn(
                                location,
                                format!("{id} {package}: unknown status {:?}", truncate(other, 32)),
                            );
                            continue;
                        }
                    };
                    let level = Level::from_vendor(urgency.trim_end_matches('*'));
                    let severity = if level == Level::Unknown {
                        Vec::new()
                    } else {
                        vec![Severity::vendor(urgency.trim_end_matches('*'), "debian")]
                    };
                    affected.push(Affected {
                        ecosystem: Ecosystem::Debian,
                        release: Some(normalize_release(Ecosystem::Debian, &codename)),
                        name: package.clone(),
                        ranges: vec![range],
                        versions: Vec::new(),
                        status,
                        severity,
                    });
                }
                if affected.is_empty() {
                    continue;
                }
                report.push(Advisory {
                    id,
                    aliases: Vec::new(),
                    related: Vec::new(),
                    source: FEED.to_string(),
                    summary: entry
                        .description
                        .filter(|d| !d.is_empty())
                        .map(|d| Arc::from(truncate(&d, MAX_SUMMARY_LEN))),
                    severity: Vec::new(),
                    references: Vec::new(),
                    published: None,
                    modified: None,
                    withdrawn: None,
                    affected,
                });
            }
        }
        Ok(())
    }
}
