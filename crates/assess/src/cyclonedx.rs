//! CycloneDX 1.6 `vulnerabilities`, added to the BOM [`berth_scan::output::to_cyclonedx`]
//! writes for the same image, so one document holds the inventory and what affects it.
//!
//! One vulnerability per issue (the findings' first id, its CVE when it has one), with:
//! `source` (who publishes the id), `references` (every other id, with its publisher),
//! `ratings` (score, severity, method `CVSSv2`/`CVSSv3`/`CVSSv31`/`CVSSv4`, or `other` for a
//! vendor's word, and vector), `description` (the summary), `recommendation` (the version to
//! upgrade each package to), and `affects`: the `bom-ref` of every component the issue hits,
//! with the installed version `affected` and the fixed version `unaffected`. The finding's
//! status (fixed, not fixed, will not fix) is a `berth:status` property.

use berth_scan::output::package_bom_ref;
use berth_scan::{ImageReport, Package};
use berth_vulndb::advisory::SeverityKind;
use berth_vulndb::{Finding, Level};
use serde_json::{Value, json};

use crate::ids::id_source;
use crate::sarif::{locations, purl};
use crate::{VulnReport, level_name};

/// The CycloneDX severity of a level (`info` is its word for negligible).
fn severity(level: Level) -> &'static str {
    match level {
        Level::Negligible => "info",
        other => level_name(other),
    }
}

/// The CycloneDX rating method of a severity statement.
fn method(kind: SeverityKind, vector: Option<&str>) -> &'static str {
    match kind {
        SeverityKind::CvssV2 => "CVSSv2",
        SeverityKind::CvssV3 if vector.is_some_and(|v| v.starts_with("CVSS:3.1/")) => "CVSSv31",
        SeverityKind::CvssV3 => "CVSSv3",
        SeverityKind::CvssV4 => "CVSSv4",
        SeverityKind::Vendor => "other",
    }
}

/// The index in `image.packages` of the package a finding is about: the one with its package
/// URL, seen at the same places.
fn package_index(image: &ImageReport, f: &Finding) -> Option<usize> {
    let purl = purl(f)?;
    let places = locations(f);
    let same_places = |p: &Package| {
        p.evidence.len() == places.len()
            && p.evidence
                .iter()
                .zip(&places)
                .all(|(e, (layer, path))| e.path == *path && e.layer.to_string() == *layer)
    };
    let with_purl = || {
        image
            .packages
            .iter()
            .enumerate()
            .filter(|(_, p)| p.purl == purl)
    };
    with_purl()
        .find(|(_, p)| same_places(p))
        .or_else(|| with_purl().next())
        .map(|(i, _)| i)
}

fn rating(f: &Finding) -> Vec<Value> {
    let Some(s) = &f.severity else {
        return Vec::new();
    };
    let mut r = json!({
        "source": {"name": s.source},
        "severity": severity(s.level),
        "method": method(s.kind, s.vector.as_deref()),
    });
    if let Some(score) = s.score {
        r["score"] = json!(score);
    }
    if let Some(v) = &s.vector {
        r["vector"] = json!(v);
    }
    vec![r]
}

/// The `vulnerabilities` array for the findings of `report`, whose inventory is `image`.
pub fn vulnerabilities(image: &ImageReport, report: &VulnReport) -> Vec<Value> {
    // Findings of one issue in several packages become one vulnerability affecting each.
    let mut order: Vec<&str> = Vec::new();
    let mut groups: Vec<Vec<&Finding>> = Vec::new();
    for f in &report.findings {
        let id = f.ids.first().map_or("unnamed", String::as_str);
        match order.iter().position(|o| *o == id) {
            Some(i) => groups[i].push(f),
            None => {
                order.push(id);
                groups.push(vec![f]);
            }
        }
    }
    order
        .iter()
        .zip(&groups)
        .map(|(id, group)| vulnerability(image, id, group))
        .collect()
}

fn vulnerability(image: &ImageReport, id: &str, group: &[&Finding]) -> Value {
    let source = id_source(id);
    let mut aliases: Vec<&str> = group
        .iter()
        .flat_map(|f| f.ids.iter().skip(1).map(String::as_str))
        .filter(|a| *a != id)
        .collect();
    aliases.sort();
    aliases.dedup();
    let references: Vec<Value> = aliases
        .iter()
        .map(|a| {
            let s = id_source(a);
            json!({"id": a, "source": {"name": s.name, "url": s.url}})
        })
        .collect();
    // The most severe rating among the findings (they usually agree: same records).
    let worst = group
        .iter()
        .max_by_key(|f| f.severity.as_ref().map(|s| s.rank()))
        .copied();
    let mut affects = Vec::new();
    let mut recommendations = Vec::new();
    for f in group {
        let Some(i) = package_index(image, f) else {
            continue;
        };
        let mut versions = vec![json!({"version": f.installed_version, "status": "affected"})];
        if let Some(fixed) = &f.fixed_version {
            versions.push(json!({"version": fixed, "status": "unaffected"}));
            let r = format!("Upgrade {} to {fixed}.", f.package.name);
            if !recommendations.contains(&r) {
                recommendations.push(r);
            }
        }
        affects.push(json!({
            "ref": package_bom_ref(i, &image.packages[i]),
            "versions": versions,
        }));
    }
    let mut v = json!({
        "bom-ref": format!("vuln:{id}"),
        "id": id,
        "source": {"name": source.name, "url": source.url},
        "ratings": worst.map(rating).unwrap_or_default(),
        "affects": affects,
        "properties": [
            {"name": "berth:status", "value": serde_json::to_value(group[0].status).unwrap_or_default()},
            {"name": "berth:feeds", "value": feeds(group)},
        ],
    });
    if !references.is_empty() {
        v["references"] = json!(references);
    }
    if let Some(s) = group.iter().find_map(|f| f.summary.as_deref()) {
        v["description"] = json!(s);
    }
    if recommendations.is_empty() {
        v["recommendation"] = json!("No fixed version is known.");
    } else {
        v["recommendation"] = json!(recommendations.join(" "));
    }
    v
}

fn feeds(group: &[&Finding]) -> String {
    let mut feeds: Vec<&str> = group
        .iter()
        .flat_map(|f| f.feeds.iter().map(String::as_str))
        .collect();
    feeds.sort();
    feeds.dedup();
    feeds.join(",")
}

/// The image's CycloneDX 1.6 BOM with its vulnerabilities.
pub fn to_cyclonedx(image: &ImageReport, report: &VulnReport) -> Value {
    let mut bom = berth_scan::output::to_cyclonedx(image);
    bom["vulnerabilities"] = Value::Array(vulnerabilities(image, report));
    bom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_severities() {
        let v31 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
        let v30 = "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
        assert_eq!(method(SeverityKind::CvssV3, Some(v31)), "CVSSv31");
        assert_eq!(method(SeverityKind::CvssV3, Some(v30)), "CVSSv3");
        assert_eq!(method(SeverityKind::CvssV4, None), "CVSSv4");
        assert_eq!(method(SeverityKind::CvssV2, None), "CVSSv2");
        assert_eq!(method(SeverityKind::Vendor, None), "other");
        assert_eq!(severity(Level::Negligible), "info");
        assert_eq!(severity(Level::Critical), "critical");
        assert_eq!(severity(Level::Unknown), "unknown");
    }
}
