//! Alpine secdb JSON (`https://secdb.alpinelinux.org/v3.19/main.json`):
//! `{distroversion, reponame, packages: [{pkg: {name, secfixes: {version: [CVE…]}}}]}`.
//!
//! A secfix says the CVE was fixed in that package version of that release, so versions below it
//! are affected. The pseudo-version `0` means the release was never affected. When one CVE is
//! listed under several versions of a package (a fix that was redone), versions below the
//! highest are reported, which errs on the side of telling.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ImportError, ImportReport, Importer, truncate};
use crate::advisory::{Advisory, Affected, Interval, MAX_ID_LEN, MAX_NAME_LEN, Status};
use crate::versions::{Ecosystem, normalize_release};

#[derive(Debug, Clone, Default)]
pub struct AlpineSecdb;

#[derive(Deserialize)]
struct Secdb {
    distroversion: String,
    packages: Vec<PackageEntry>,
}

#[derive(Deserialize)]
struct PackageEntry {
    pkg: Package,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    #[serde(default)]
    secfixes: BTreeMap<String, Option<Vec<String>>>,
}

const FEED: &str = "alpine-secdb";

fn looks_like_id(w: &str) -> bool {
    w.contains('-')
        && w.as_bytes()[0].is_ascii_alphabetic()
        && w.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c))
}

impl Importer for AlpineSecdb {
    fn feed(&self) -> &str {
        FEED
    }

    fn parse_document(
        &self,
        location: &str,
        bytes: &[u8],
        report: &mut ImportReport,
    ) -> Result<(), ImportError> {
        let doc: Secdb = serde_json::from_slice(bytes).map_err(|source| ImportError::Json {
            location: location.to_string(),
            source,
        })?;
        let invalid = |reason: &str| ImportError::Invalid {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        let release = normalize_release(Ecosystem::Alpine, &doc.distroversion);
        if release.is_empty() || release.len() > 32 {
            return Err(invalid("distroversion is empty or too long"));
        }
        for entry in doc.packages {
            let name = entry.pkg.name;
            if name.is_empty() || name.len() > MAX_NAME_LEN {
                return Err(invalid("package name is empty or too long"));
            }
            // CVE → (highest fixed version, aliases).
            let mut fixes: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
            for (version, ids) in entry.pkg.secfixes {
                let never_affected = version == "0";
                if !never_affected && let Err(e) = Ecosystem::Alpine.validate(&version) {
                    report.warn(location, format!("{name}: {e}"));
                    continue;
                }
                for line in ids.unwrap_or_default() {
                    let mut words = line.split_whitespace();
                    let Some(id) = words.next() else { continue };
                    if id.len() > MAX_ID_LEN {
                        report.warn(
                            location,
                            format!("{name}: id too long: {}", truncate(id, 40)),
                        );
                        continue;
                    }
                    if never_affected {
                        continue;
                    }
                    // Further words are ids of the same issue (`CVE-… GHSA-…`); anything that
                    // does not look like an id (a comment in parentheses) is left out.
                    let aliases: Vec<String> = words
                        .filter(|w| w.len() <= MAX_ID_LEN && looks_like_id(w))
                        .map(str::to_string)
                        .collect();
                    match fixes.get_mut(id) {
                        Some((v, a)) => {
                            if Ecosystem::Alpine.compare(&version, v) == Ok(Ordering::Greater) {
                                *v = version.clone();
                            }
                            a.extend(aliases);
                        }
                        None => {
                            fixes.insert(id.to_string(), (version.clone(), aliases));
                        }
                    }
                }
            }
            for (id, (fixed, aliases)) in fixes {
                report.push(Advisory {
                    id,
                    aliases,
                    related: Vec::new(),
                    source: FEED.to_string(),
                    summary: None,
                    severity: Vec::new(),
                    references: Vec::new(),
                    published: None,
                    modified: None,
                    withdrawn: None,
                    affected: vec![Affected {
                        ecosystem: Ecosystem::Alpine,
                        release: Some(release.clone()),
                        name: name.clone(),
                        ranges: vec![Interval {
                            fixed: Some(fixed),
                            ..Interval::default()
                        }],
                        versions: Vec::new(),
                        status: Status::Fixed,
                        severity: Vec::new(),
                    }],
                });
            }
        }
        Ok(())
    }
}
