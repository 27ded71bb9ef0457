//! Joins an image's inventory ([`berth_scan::ImageReport`]) with the vulnerability database
//! ([`berth_vulndb::VulnDb`]).
//!
//! The scanner names packages the way images hold them (`deb`, `apk`, `golang`, ...); the
//! database names them the way advisories do (`Debian` within release `12`, `Go`, `PyPI`, ...).
//! [`package_refs`] translates one into the other and decides what can be matched at all:
//!
//! - OS packages need a distribution the database knows, from the image's `os-release`
//!   (Debian and distroless Debian, Ubuntu, Alpine, Wolfi, Red Hat Enterprise Linux, Rocky,
//!   AlmaLinux), and are matched by source package and source version within that release.
//! - Language packages are matched by their own name and version; lock-file entries too (they
//!   are what a build will install).
//! - Binaries recognised only by the strings compiled into them carry a CPE, not an advisory
//!   ecosystem: no feed Berth imports names them, so they are listed in the inventory and not
//!   matched (see [`Unsupported`]).
//!
//! The result of a match is a [`VulnReport`], the document behind the registry's vulnerability
//! reports and `berth scan`'s findings. Its stored form is small and stable: re-matching an
//! image after a database update needs only the [`PackageRef`]s, never the layers.
//!
//! Reports leave as [`json`] (Berth's own, documented there), [`sarif`] (SARIF 2.1.0 for
//! code-scanning services), [`cyclonedx`] (the `vulnerabilities` of a CycloneDX 1.6 BOM) and
//! [`table`] (for terminals). [`gate`] decides whether findings reach a severity threshold, with
//! an ignore list: `berth scan --fail-on`.

pub mod cyclonedx;
pub mod gate;
pub mod ids;
pub mod json;
pub mod sarif;
pub mod table;

use berth_scan::{Ecosystem as ScanEco, ImageReport, OsInfo, Package, Platform};
use berth_vulndb::matching::Unmatched;
use berth_vulndb::{Ecosystem, Finding, Level, PackageRef, SeveritySummary, VulnDb};
use serde::{Deserialize, Serialize};

/// A package of the inventory that cannot be matched, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsupported {
    pub name: String,
    pub version: String,
    /// The scanner's ecosystem (`deb`, `binary`, ...).
    pub ecosystem: String,
    pub reason: String,
}

/// The packages of an image, as the vulnerability database names them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MatchableInventory {
    pub packages: Vec<PackageRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<Unsupported>,
}

/// The advisory ecosystem of an image's OS packages, from its `os-release`.
fn distro(eco: ScanEco, os: Option<&OsInfo>) -> Result<Ecosystem, String> {
    let Some(os) = os else {
        return Err("the image has no os-release: its distribution is unknown".into());
    };
    let like = |n: &str| os.id == n || os.id_like.iter().any(|l| l == n);
    let found = match eco {
        ScanEco::Deb if os.id == "ubuntu" => Some(Ecosystem::Ubuntu),
        ScanEco::Deb if like("debian") => Some(Ecosystem::Debian),
        ScanEco::Apk if os.id == "wolfi" || os.id == "chainguard" => Some(Ecosystem::Wolfi),
        ScanEco::Apk if os.id == "alpine" => Some(Ecosystem::Alpine),
        ScanEco::Rpm if os.id == "rhel" => Some(Ecosystem::RedHat),
        ScanEco::Rpm if os.id == "rocky" => Some(Ecosystem::Rocky),
        ScanEco::Rpm if os.id == "almalinux" => Some(Ecosystem::AlmaLinux),
        _ => None,
    };
    found.ok_or_else(|| {
        format!(
            "no vulnerability feed covers {} packages of `{}`",
            eco.as_str(),
            os.id
        )
    })
}

/// The distribution release advisories name: `VERSION_ID` (`12`, `3.19.1`, `22.04`), else
/// the codename (Debian testing and sid have no `VERSION_ID`).
fn release(os: Option<&OsInfo>) -> Option<String> {
    let os = os?;
    os.version_id
        .clone()
        .or_else(|| os.version_codename.clone())
        .filter(|r| !r.is_empty())
}

/// Where the scanner saw a package, carried through matching into every finding: its purl and
/// each (layer, path).
fn evidence(p: &Package) -> serde_json::Value {
    serde_json::json!({
        "purl": p.purl,
        "locations": p.evidence.iter().map(|e| serde_json::json!({
            "layer": e.layer.to_string(),
            "path": e.path,
        })).collect::<Vec<_>>(),
    })
}

/// Translates an inventory into the packages the database can match.
pub fn package_refs(report: &ImageReport) -> MatchableInventory {
    let mut out = MatchableInventory::default();
    let os = report.os.as_ref();
    for p in &report.packages {
        let unsupported = |reason: String| Unsupported {
            name: p.name.clone(),
            version: p.version.clone(),
            ecosystem: p.ecosystem.as_str().to_string(),
            reason,
        };
        if p.version.is_empty() {
            out.unsupported
                .push(unsupported("its version is unknown".into()));
            continue;
        }
        let ecosystem = match p.ecosystem {
            ScanEco::Deb | ScanEco::Apk | ScanEco::Rpm => match distro(p.ecosystem, os) {
                Ok(e) => e,
                Err(reason) => {
                    out.unsupported.push(unsupported(reason));
                    continue;
                }
            },
            ScanEco::Golang => Ecosystem::Go,
            ScanEco::Cargo => Ecosystem::CratesIo,
            ScanEco::Pypi => Ecosystem::PyPI,
            ScanEco::Npm => Ecosystem::Npm,
            ScanEco::Maven => Ecosystem::Maven,
            ScanEco::Gem => Ecosystem::RubyGems,
            ScanEco::Binary => {
                out.unsupported.push(unsupported(
                    "recognised from its strings: no feed names binaries by CPE".into(),
                ));
                continue;
            }
        };
        let is_os = p.ecosystem.is_os();
        out.packages.push(PackageRef {
            ecosystem,
            name: p.name.clone(),
            version: p.version.clone(),
            source_name: p.source.as_ref().filter(|_| is_os).map(|s| s.name.clone()),
            source_version: p
                .source
                .as_ref()
                .filter(|s| is_os && !s.version.is_empty() && s.version != p.version)
                .map(|s| s.version.clone()),
            release: if is_os { release(os) } else { None },
            evidence: evidence(p),
        });
    }
    out
}

/// The vulnerabilities of one image (one platform).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnReport {
    pub reference: String,
    pub manifest_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    /// The database version the inventory was matched against.
    pub db_version: String,
    /// How many packages were matched.
    pub packages: usize,
    pub findings: Vec<Finding>,
    pub summary: SeveritySummary,
    /// Packages some record names whose version is not valid in their ecosystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<Unmatched>,
    /// Packages that could not be matched at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<Unsupported>,
}

/// Matches an already translated inventory.
pub fn assess_inventory(
    db: &VulnDb,
    inventory: &MatchableInventory,
    reference: &str,
    manifest_digest: &str,
    platform: Option<Platform>,
    os: Option<OsInfo>,
) -> VulnReport {
    let m = db.match_packages(&inventory.packages);
    VulnReport {
        reference: reference.to_string(),
        manifest_digest: manifest_digest.to_string(),
        platform,
        os,
        db_version: m.db_version,
        packages: inventory.packages.len(),
        findings: m.findings,
        summary: m.summary,
        unmatched: m.unmatched,
        unsupported: inventory.unsupported.clone(),
    }
}

/// Matches an image's inventory against the database.
pub fn assess(db: &VulnDb, report: &ImageReport) -> VulnReport {
    assess_inventory(
        db,
        &package_refs(report),
        &report.reference,
        &report.manifest_digest.to_string(),
        report.platform.clone(),
        report.os.clone(),
    )
}

/// The key that identifies a finding across matches of the same image: its primary id, the
/// package and its installed version. Two matches of one inventory against two database
/// versions differ by these keys exactly when a vulnerability appeared or went away.
pub fn finding_key(f: &Finding) -> String {
    format!(
        "{}|{}|{}|{}",
        f.ids.first().map_or("", String::as_str),
        f.package.ecosystem.osv_name(),
        f.package.name,
        f.installed_version
    )
}

/// Whether a finding is at or above a severity threshold. A finding without a rating counts
/// as `Unknown`, which only an `Unknown` threshold reaches.
pub fn reaches(f: &Finding, threshold: Level) -> bool {
    f.level() >= threshold
}

/// The lower-case name of a level, as JSON and the command line write it.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::High => "high",
        Level::Medium => "medium",
        Level::Low => "low",
        Level::Negligible => "negligible",
        Level::Unknown => "unknown",
    }
}

/// Parses a severity threshold: `critical`, `high`, `medium`, `low`, `negligible`, `unknown`
/// (any case).
pub fn parse_level(s: &str) -> Result<Level, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "critical" => Ok(Level::Critical),
        "high" => Ok(Level::High),
        "medium" => Ok(Level::Medium),
        "low" => Ok(Level::Low),
        "negligible" => Ok(Level::Negligible),
        "unknown" => Ok(Level::Unknown),
        other => Err(format!(
            "unknown severity `{other}`: use critical, high, medium, low, negligible or unknown"
        )),
    }
}
