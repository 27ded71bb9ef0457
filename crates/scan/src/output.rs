//! Output formats: Berth's JSON (the serde form of [`ImageReport`]), CycloneDX 1.6 JSON, SPDX
//! 2.3 JSON and a text table.
//!
//! CycloneDX and SPDX documents are deterministic for a given report (serial numbers and
//! namespaces derive from the manifest digest), except SPDX's required creation time, which is
//! passed in.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::model::{Ecosystem, ImageReport, Package};

const TOOL: &str = "berth-scan";
const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Berth's own JSON.
pub fn to_json(report: &ImageReport) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

/// A UUID (version 4 layout) made from the first 16 bytes of a digest's hex, so the same image
/// always gets the same serial number.
fn uuid_from(hex: &str) -> String {
    let mut b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0))
        .collect();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn occurrences(p: &Package) -> Vec<Value> {
    p.evidence
        .iter()
        .map(|e| json!({"location": format!("/{}", e.path), "additionalContext": format!("layer {}", e.layer)}))
        .collect()
}

fn properties(p: &Package) -> Vec<Value> {
    let mut out = vec![
        json!({"name": "berth:found-by", "value": p.found_by}),
        json!({"name": "berth:ecosystem", "value": p.ecosystem.as_str()}),
    ];
    if let Some(s) = &p.source {
        out.push(json!({"name": "berth:source-name", "value": s.name}));
        out.push(json!({"name": "berth:source-version", "value": s.version}));
    }
    if let Some(a) = &p.arch {
        out.push(json!({"name": "berth:arch", "value": a}));
    }
    for (k, v) in &p.properties {
        out.push(json!({"name": format!("berth:{k}"), "value": v}));
    }
    out
}

/// The `bom-ref` of the component [`to_cyclonedx`] writes for `report.packages[index]`, so that
/// other sections (vulnerabilities, say) can point at it.
pub fn package_bom_ref(index: usize, p: &Package) -> String {
    format!("pkg-{index}:{}", p.purl)
}

/// CycloneDX 1.6 JSON: the image as `metadata.component` (a container), the OS as an
/// `operating-system` component, every package as a component with its purl, CPE, licenses and
/// `evidence.occurrences` (the path in the image; the layer in `additionalContext`).
pub fn to_cyclonedx(report: &ImageReport) -> Value {
    let mut components = Vec::new();
    if let Some(os) = &report.os {
        let mut c = json!({"type": "operating-system", "bom-ref": format!("os:{}", os.distro()), "name": os.id});
        if let Some(v) = &os.version_id {
            c["version"] = json!(v);
        }
        if let Some(d) = &os.pretty_name {
            c["description"] = json!(d);
        }
        components.push(c);
    }
    for (i, p) in report.packages.iter().enumerate() {
        let kind = if p.ecosystem == Ecosystem::Binary || p.properties.contains_key("go.main") {
            "application"
        } else {
            "library"
        };
        let mut c = json!({
            "type": kind,
            "bom-ref": package_bom_ref(i, p),
            "name": p.name,
            "purl": p.purl,
            "properties": properties(p),
            "evidence": {"occurrences": occurrences(p)},
        });
        if !p.version.is_empty() {
            c["version"] = json!(p.version);
        }
        if let Some(cpe) = p.cpes.first() {
            c["cpe"] = json!(cpe);
        }
        if !p.licenses.is_empty() {
            c["licenses"] = Value::Array(
                p.licenses
                    .iter()
                    .map(|l| json!({"license": {"name": l}}))
                    .collect(),
            );
        }
        components.push(c);
    }
    let mut image = json!({
        "type": "container",
        "bom-ref": format!("image:{}", report.manifest_digest),
        "name": report.reference,
        "version": report.manifest_digest.to_string(),
    });
    if let Some(p) = &report.platform {
        image["properties"] = json!([{"name": "berth:platform", "value": p.to_string()}]);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_from(report.manifest_digest.hex())),
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": TOOL, "version": TOOL_VERSION}]},
            "component": image,
        },
        "components": components,
    })
}

/// SPDX identifiers allow letters, digits, `.` and `-`.
fn spdx_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A license string usable as an SPDX expression, else `NOASSERTION`.
fn spdx_license(licenses: &[String]) -> String {
    let ok = |l: &str| {
        !l.is_empty()
            && l.split_whitespace().enumerate().all(|(i, w)| {
                if i % 2 == 1 {
                    matches!(w, "AND" | "OR" | "WITH")
                } else {
                    w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
                }
            })
            && l.split_whitespace().count() % 2 == 1
    };
    match licenses {
        [l] if ok(l) => l.clone(),
        _ => "NOASSERTION".into(),
    }
}

/// Formats seconds since the epoch as `YYYY-MM-DDThh:mm:ssZ`.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// SPDX 2.3 JSON. `created_unix` is the document's creation time (seconds since the epoch).
pub fn to_spdx(report: &ImageReport, created_unix: u64) -> Value {
    let image_id = "SPDXRef-Image".to_owned();
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": report.reference,
        "versionInfo": report.manifest_digest.to_string(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": report.manifest_digest.hex()}],
    })];
    let mut relationships = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}),
    ];
    if let Some(os) = &report.os {
        packages.push(json!({
            "SPDXID": "SPDXRef-OperatingSystem",
            "name": os.id,
            "versionInfo": os.version_id.clone().unwrap_or_default(),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }));
        relationships.push(json!({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-OperatingSystem"}));
    }
    for (i, p) in report.packages.iter().enumerate() {
        let id = format!(
            "SPDXRef-Package-{}-{i}-{}",
            p.ecosystem.as_str(),
            spdx_id(&p.name)
        );
        let mut refs = vec![
            json!({"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": p.purl}),
        ];
        for cpe in &p.cpes {
            refs.push(json!({"referenceCategory": "SECURITY", "referenceType": "cpe23Type", "referenceLocator": cpe}));
        }
        let found: Vec<String> = p
            .evidence
            .iter()
            .map(|e| format!("/{} in layer {}", e.path, e.layer))
            .collect();
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": spdx_license(&p.licenses),
            "copyrightText": "NOASSERTION",
            "externalRefs": refs,
            "sourceInfo": format!("found by {}: {}", p.found_by, found.join(", ")),
        });
        if !p.version.is_empty() {
            pkg["versionInfo"] = json!(p.version);
        }
        if let Some(s) = &p.source {
            pkg["comment"] = json!(format!("source package {} {}", s.name, s.version));
        }
        packages.push(pkg);
        relationships.push(json!({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": report.reference,
        "documentNamespace": format!("https://berth.dev/spdx/{}/{}", spdx_id(&report.reference), report.manifest_digest.hex()),
        "creationInfo": {"created": rfc3339(created_unix), "creators": [format!("Tool: {TOOL}-{TOOL_VERSION}")]},
        "packages": packages,
        "relationships": relationships,
    })
}

/// A text table: one line per package, its type and first location.
pub fn to_table(report: &ImageReport) -> String {
    let mut out = String::new();
    let os = report
        .os
        .as_ref()
        .map(|o| o.pretty_name.clone().unwrap_or_else(|| o.distro()))
        .unwrap_or_else(|| "unknown".into());
    let _ = writeln!(
        out,
        "Image:    {} ({})",
        report.reference, report.manifest_digest
    );
    if let Some(p) = &report.platform {
        let _ = writeln!(out, "Platform: {p}");
    }
    let _ = writeln!(out, "OS:       {os}");
    let _ = writeln!(out, "Packages: {}\n", report.packages.len());
    let rows: Vec<[String; 4]> = report
        .packages
        .iter()
        .map(|p| {
            let loc = p
                .evidence
                .first()
                .map(|e| format!("/{}", e.path))
                .unwrap_or_default();
            let more = if p.evidence.len() > 1 {
                format!(" (+{})", p.evidence.len() - 1)
            } else {
                String::new()
            };
            [
                p.name.clone(),
                if p.version.is_empty() {
                    "?".into()
                } else {
                    p.version.clone()
                },
                p.ecosystem.as_str().into(),
                loc + &more,
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "TYPE", "LOCATION"].map(String::from);
    let mut w = [0usize; 4];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
    }
    if !report.warnings.is_empty() {
        let _ = writeln!(out, "\n{} warning(s):", report.warnings.len());
        for wn in &report.warnings {
            let _ = writeln!(
                out,
                "  {}{}",
                wn.path
                    .as_deref()
                    .map(|p| format!("/{p}: "))
                    .unwrap_or_default(),
                wn.message
            );
        }
    }
    out
}
