//! Berth's JSON vulnerability report: the serde form of [`VulnReport`], the same document
//! `berth scan --format json` embeds and the registry stores and serves.
//!
//! # Format
//!
//! Fields are added over time, never renamed or removed; readers should ignore fields they do
//! not know. Optional fields are left out when empty. `tests/fixtures/vulnreport.json` is a
//! complete example, and a test fails on any change to it.
//!
//! ```text
//! {
//!   "reference": "registry.example/acme/app:1.0",   the image as it was named
//!   "manifest_digest": "sha256:…",
//!   "platform": {"os", "architecture", "variant"?}?,
//!   "os": {"id", "version_id"?, "version_codename"?, "id_like"?, "pretty_name"?, "distroless"}?,
//!   "db_version": "…",            content hash of the vulnerability database used
//!   "packages": 4,                packages that were matched
//!   "findings": [{                in inventory order, most severe first within a package
//!     "ids": ["CVE-…", "GHSA-…", "RUSTSEC-…"],   CVEs first, then GHSAs, then the rest
//!     "package": {
//!       "ecosystem": "crates.io",                the advisory ecosystem (OSV names)
//!       "name", "version",
//!       "source_name"?, "source_version"?, "release"?,   distribution packages
//!       "evidence": {"purl", "locations": [{"layer": "sha256:…", "path": "usr/bin/app"}]}
//!     },
//!     "matched_name", "installed_version",       what was compared (source package for distros)
//!     "fixed_version"?,                          the lowest version that fixes it
//!     "status": "fixed" | "not_fixed" | "will_not_fix" | "undetermined",
//!     "severity"?: {"kind": "cvss_v2" | "cvss_v3" | "cvss_v4" | "vendor",
//!                   "vector"?, "score"?, "level", "source"},
//!     "summary"?,
//!     "feeds": ["osv-crates"]
//!   }],
//!   "summary": {"critical", "high", "medium", "low", "negligible", "unknown"},   counts
//!   "unmatched"?: [{"package": {…}, "reason"}],   versions invalid in their ecosystem
//!   "unsupported"?: [{"name", "version", "ecosystem", "reason"}]   no feed covers them
//! }
//! ```
//!
//! Levels are `critical`, `high`, `medium`, `low`, `negligible` and `unknown`.

use berth_scan::ImageReport;
use serde_json::Value;

use crate::VulnReport;

/// The report as JSON.
pub fn to_json(report: &VulnReport) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

/// `berth scan`'s JSON document for one image: the inventory (`berth_scan::output::to_json`,
/// unchanged), and when the image was matched, its [`VulnReport`] under `vulnerabilities`.
/// Without a database the document is the inventory alone, as before vulnerabilities existed.
pub fn scan_document(image: &ImageReport, vulns: Option<&VulnReport>) -> Value {
    let mut doc = berth_scan::output::to_json(image);
    if let (Some(v), Value::Object(map)) = (vulns, &mut doc) {
        map.insert("vulnerabilities".into(), to_json(v));
    }
    doc
}
