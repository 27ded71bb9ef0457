//! SARIF 2.1.0 (OASIS), the format code-scanning services read (GitHub code scanning, Azure
//! DevOps, GitLab), for one or more [`VulnReport`]s.
//!
//! - One run per report (per image platform). A run of a multi-platform image has
//!   `automationDetails.id` `berth-scan/<platform>/`, so services that track runs by category
//!   keep each platform's alerts apart.
//! - One rule per vulnerability, named by the finding's first id (its CVE when it has one):
//!   the other ids in `properties.aliases`, the summary as its description and help, the
//!   publisher's page as `helpUri`, `properties.security-severity` (the CVSS base score, a
//!   string, as GitHub reads it) when a score is known, and `tags`.
//! - One result per finding: `level` `error` for critical and high, `warning` for medium and
//!   unknown (an unrated issue may be anything), `note` for low and negligible; a message that
//!   names the package, the installed and the fixed version; one location per place the
//!   package was found (the path in the image as a relative `artifactLocation.uri`, the layer
//!   digest in the location's `properties.layer`); `partialFingerprints` from
//!   [`finding_key`], so an alert keeps its identity across scans of new builds.
//! - Findings the ignore list names carry an external suppression: they stay visible, and
//!   services show them as dismissed.

use berth_vulndb::{Finding, Level};
use serde_json::{Value, json};

use crate::gate::IgnoreList;
use crate::ids::id_source;
use crate::{VulnReport, finding_key, level_name};

/// The schema URI written into every log.
pub const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The name of the fingerprint the results carry (versioned, as SARIF asks).
pub const FINGERPRINT: &str = "berthFindingKey/v1";

const TOOL: &str = "berth";
const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The SARIF level of a severity.
pub fn sarif_level(level: Level) -> &'static str {
    match level {
        Level::Critical | Level::High => "error",
        Level::Medium | Level::Unknown => "warning",
        Level::Low | Level::Negligible => "note",
    }
}

/// Percent-encodes a path in an image for use as a relative URI reference: every byte
/// but the unreserved characters, `/` and the sub-delimiters RFC 3986 allows in a path is
/// encoded; `:` too, which would otherwise read as a scheme in a first segment.
fn path_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.trim_start_matches('/').bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'/'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'@'
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The (layer, path) pairs where the package of a finding was seen.
pub(crate) fn locations(f: &Finding) -> Vec<(&str, &str)> {
    f.package.evidence["locations"]
        .as_array()
        .map(|locs| {
            locs.iter()
                .filter_map(|l| Some((l["layer"].as_str()?, l["path"].as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn purl(f: &Finding) -> Option<&str> {
    f.package.evidence["purl"].as_str()
}

/// "smallvec 1.6.0 is affected by CVE-2021-25900 (also GHSA-…, RUSTSEC-2021-0003): summary.
/// Fixed in 1.6.1."
fn message(f: &Finding) -> String {
    let id = f
        .ids
        .first()
        .map_or("an unnamed vulnerability", String::as_str);
    let mut text = format!(
        "{} {} is affected by {id}",
        f.package.name, f.installed_version
    );
    if f.ids.len() > 1 {
        text.push_str(&format!(" (also {})", f.ids[1..].join(", ")));
    }
    if f.matched_name != f.package.name {
        text.push_str(&format!(
            ", as source package {} {}",
            f.matched_name, f.installed_version
        ));
    }
    if let Some(s) = &f.summary {
        text.push_str(&format!(": {}", s.trim_end_matches('.')));
    }
    text.push_str(". ");
    match &f.fixed_version {
        Some(v) => text.push_str(&format!("Fixed in {v}.")),
        None => text.push_str(&format!(
            "No fixed version is known ({}).",
            status_words(f.status)
        )),
    }
    text
}

fn status_words(s: berth_vulndb::Status) -> &'static str {
    match s {
        berth_vulndb::Status::Fixed => "fixed",
        berth_vulndb::Status::NotFixed => "not fixed yet",
        berth_vulndb::Status::WillNotFix => "the distribution will not fix it",
        berth_vulndb::Status::Undetermined => "not yet determined",
    }
}

/// The rule for a vulnerability, from the first finding that names it.
fn rule(id: &str, f: &Finding, aliases: &[String]) -> Value {
    let source = id_source(id);
    let summary = f.summary.as_deref().unwrap_or(id);
    let level = f.level();
    let mut help = format!("{summary}\n\nMore: {}", source.url);
    let mut markdown = format!("{summary}\n\nMore: [{id}]({})", source.url);
    if !aliases.is_empty() {
        help.push_str(&format!("\nAlso known as: {}", aliases.join(", ")));
        markdown.push_str("\n\nAlso known as: ");
        let links: Vec<String> = aliases
            .iter()
            .map(|a| format!("[{a}]({})", id_source(a).url))
            .collect();
        markdown.push_str(&links.join(", "));
    }
    let mut tags = vec![
        "security".to_string(),
        "vulnerability".to_string(),
        level_name(level).to_string(),
    ];
    tags.push(f.package.ecosystem.osv_name().to_string());
    let mut properties = json!({
        "tags": tags,
        "aliases": aliases,
        "severity": level_name(level),
    });
    if let Some(s) = &f.severity {
        if let Some(score) = s.score {
            properties["security-severity"] = json!(format!("{score:.1}"));
        }
        if let Some(v) = &s.vector {
            properties["cvssVector"] = json!(v);
        }
        properties["severitySource"] = json!(s.source);
    }
    json!({
        "id": id,
        "shortDescription": {"text": format!("{id}: {summary}")},
        "fullDescription": {"text": summary},
        "helpUri": source.url,
        "help": {"text": help, "markdown": markdown},
        "defaultConfiguration": {"level": sarif_level(level)},
        "properties": properties,
    })
}

fn result(f: &Finding, rule_index: usize, ignored: bool) -> Value {
    let places = locations(f);
    let mut sarif_locations: Vec<Value> = places
        .iter()
        .map(|(layer, path)| {
            json!({
                "physicalLocation": {"artifactLocation": {"uri": path_uri(path)}},
                "message": {"text": format!("/{path} in layer {layer}")},
                "properties": {"layer": layer},
            })
        })
        .collect();
    if sarif_locations.is_empty() {
        // A package with no recorded place: its package URL names it.
        if let Some(p) = purl(f) {
            sarif_locations.push(json!({"physicalLocation": {"artifactLocation": {"uri": p}}}));
        }
    }
    let mut layers: Vec<&str> = Vec::new();
    for (layer, _) in &places {
        if !layers.contains(layer) {
            layers.push(layer);
        }
    }
    let mut properties = json!({
        "package": f.package.name,
        "ecosystem": f.package.ecosystem.osv_name(),
        "installedVersion": f.installed_version,
        "status": f.status,
        "severity": level_name(f.level()),
        "ids": f.ids,
        "layers": layers,
    });
    if let Some(p) = purl(f) {
        properties["purl"] = json!(p);
    }
    if let Some(v) = &f.fixed_version {
        properties["fixedVersion"] = json!(v);
    }
    let mut r = json!({
        "ruleId": f.ids.first().map_or("unnamed", String::as_str),
        "ruleIndex": rule_index,
        "kind": "fail",
        "level": sarif_level(f.level()),
        "message": {"text": message(f)},
        "locations": sarif_locations,
        "partialFingerprints": {FINGERPRINT: finding_key(f)},
        "properties": properties,
    });
    if ignored {
        r["suppressions"] = json!([{
            "kind": "external",
            "status": "accepted",
            "justification": "listed in the ignore list of berth scan",
        }]);
    }
    r
}

fn run(report: &VulnReport, ignore: &IgnoreList) -> Value {
    // Rules in order of first appearance; a vulnerability's aliases are the union over its
    // findings (two packages hit by one issue may have been merged with different records).
    let mut rule_ids: Vec<&str> = Vec::new();
    let mut aliases: Vec<Vec<String>> = Vec::new();
    let mut firsts: Vec<&Finding> = Vec::new();
    let mut results = Vec::with_capacity(report.findings.len());
    for f in &report.findings {
        let id = f.ids.first().map_or("unnamed", String::as_str);
        let index = match rule_ids.iter().position(|r| *r == id) {
            Some(i) => i,
            None => {
                rule_ids.push(id);
                aliases.push(Vec::new());
                firsts.push(f);
                rule_ids.len() - 1
            }
        };
        for a in f.ids.iter().skip(1) {
            if !aliases[index].contains(a) {
                aliases[index].push(a.clone());
            }
        }
        results.push(result(f, index, ignore.ignores(f)));
    }
    let rules: Vec<Value> = rule_ids
        .iter()
        .zip(&firsts)
        .zip(&aliases)
        .map(|((id, f), a)| {
            let mut a = a.clone();
            a.sort();
            rule(id, f, &a)
        })
        .collect();
    let mut properties = json!({
        "image": report.reference,
        "manifestDigest": report.manifest_digest,
        "databaseVersion": report.db_version,
        "packages": report.packages,
        "summary": report.summary,
        "unmatchedPackages": report.unmatched.len(),
        "unsupportedPackages": report.unsupported.len(),
    });
    if let Some(p) = &report.platform {
        properties["platform"] = json!(p.to_string());
    }
    let mut run = json!({
        "tool": {"driver": {
            "name": TOOL,
            "version": TOOL_VERSION,
            "semanticVersion": TOOL_VERSION,
            "rules": rules,
        }},
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": properties,
    });
    if let Some(p) = &report.platform {
        run["automationDetails"] = json!({"id": format!("berth-scan/{p}/")});
    }
    run
}

/// A SARIF 2.1.0 log with one run per report. Findings `ignore` names are suppressed
/// (`suppressions`, kind `external`), not left out.
pub fn to_sarif(reports: &[VulnReport], ignore: &IgnoreList) -> Value {
    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": reports.iter().map(|r| run(r, ignore)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_relative_uri_references() {
        assert_eq!(
            path_uri("usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/METADATA"),
            "usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/METADATA"
        );
        assert_eq!(path_uri("/app/Cargo.lock"), "app/Cargo.lock");
        assert_eq!(
            path_uri("opt/my app/c:d/100%/ü"),
            "opt/my%20app/c%3Ad/100%25/%C3%BC"
        );
    }

    #[test]
    fn levels() {
        assert_eq!(sarif_level(Level::Critical), "error");
        assert_eq!(sarif_level(Level::High), "error");
        assert_eq!(sarif_level(Level::Medium), "warning");
        assert_eq!(sarif_level(Level::Unknown), "warning");
        assert_eq!(sarif_level(Level::Low), "note");
        assert_eq!(sarif_level(Level::Negligible), "note");
    }
}
