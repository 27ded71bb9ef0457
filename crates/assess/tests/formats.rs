//! The report formats on findings from real advisories: SARIF validated against the official
//! SARIF 2.1.0 schema, CycloneDX against the official CycloneDX 1.6 schema, Berth's JSON
//! against its committed example, the table, and the gate.

mod common;

use std::path::Path;

use berth_assess::gate::{Gate, IgnoreList};
use berth_assess::{VulnReport, assess, cyclonedx, finding_key, json, sarif, table};
use berth_oci::Digest;
use berth_scan::{Ecosystem, Evidence, ImageReport, Platform};
use berth_testkit::schemas::{cyclonedx_validator, sarif_validator, schema_errors as errors};
use berth_vulndb::Level;
use common::*;
use serde_json::Value;

/// An image with one affected package per feed, a Debian release with two binary packages
/// of one source (one issue affects both), and a dask `distributed` hit by a GHSA and the
/// PYSEC that aliases it (one finding, two records).
fn scanned() -> (ImageReport, VulnReport) {
    // An absolute path replaces the advisories directory it is joined to.
    let ghsa = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vulndb/tests/fixtures/osv-ghsa/GHSA-hwqr-f3v9-hwxr.json");
    let db = db_with(&[
        ("osv-pypi-871", "osv-pypi/PYSEC-2021-871.json"),
        ("ghsa", ghsa.to_str().unwrap()),
    ]);
    let mut smallvec = package(Ecosystem::Cargo, "smallvec", "1.6.0", "app/Cargo.lock");
    // Seen in two layers: a lock file copied twice.
    smallvec.evidence.push(Evidence {
        layer: LAYER2.parse::<Digest>().unwrap(),
        path: "srv/my app/Cargo.lock".into(),
    });
    let image = image(
        Some(debian12()),
        vec![
            deb("bsdutils", "1:2.38.1-5", "util-linux", "2.38.1-5"),
            deb("util-linux", "2.38.1-5", "util-linux", "2.38.1-5"),
            smallvec,
            package(
                Ecosystem::Pypi,
                "urllib3",
                "1.24.1",
                "usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/METADATA",
            ),
            package(
                Ecosystem::Pypi,
                "distributed",
                "2021.9.0",
                "usr/lib/python3/dist-packages/distributed-2021.9.0.dist-info/METADATA",
            ),
            package(
                Ecosystem::Golang,
                "golang.org/x/text",
                "v0.3.5",
                "usr/bin/goapp",
            ),
            // Not affected by anything: no finding, but a component.
            package(Ecosystem::Npm, "left-pad", "1.3.0", "app/node_modules/x"),
        ],
    );
    let report = assess(&db, &image);
    (image, report)
}

fn finding<'a>(r: &'a VulnReport, package: &str, id: &str) -> &'a berth_vulndb::Finding {
    r.findings
        .iter()
        .find(|f| f.package.name == package && f.ids.iter().any(|i| i == id))
        .unwrap_or_else(|| panic!("no {id} for {package} in {:#?}", r.findings))
}

#[test]
fn the_image_has_the_findings_the_formats_are_tested_on() {
    let (_, r) = scanned();
    let ids: Vec<&str> = r.findings.iter().map(|f| f.ids[0].as_str()).collect();
    // util-linux: CVE-2024-28085 (fixed) and CVE-2022-0563 (open) for each binary package.
    assert_eq!(
        ids,
        [
            "CVE-2024-28085",
            "CVE-2022-0563",
            "CVE-2024-28085",
            "CVE-2022-0563",
            "CVE-2021-25900",
            "CVE-2019-11236",
            "CVE-2021-42343",
            "CVE-2021-38561",
        ],
        "{:#?}",
        r.findings
    );
    let dask = finding(&r, "distributed", "GHSA-hwqr-f3v9-hwxr");
    assert_eq!(
        dask.ids,
        ["CVE-2021-42343", "GHSA-hwqr-f3v9-hwxr", "PYSEC-2021-871"]
    );
}

#[test]
fn sarif_is_valid_and_complete() {
    let (_, r) = scanned();
    let ignore = IgnoreList::new(["rustsec-2021-0003"]);
    let log = sarif::to_sarif(std::slice::from_ref(&r), &ignore);
    let v = sarif_validator();
    let errs = errors(&v, &log);
    assert!(errs.is_empty(), "{errs:#?}\n{log:#}");
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "berth");
    assert_eq!(run["properties"]["manifestDigest"], LAYER);
    assert_eq!(run["properties"]["databaseVersion"], r.db_version.as_str());
    assert!(run.get("automationDetails").is_none());

    // One rule per vulnerability, one result per finding.
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert_eq!(rules.len(), 6);
    assert_eq!(results.len(), r.findings.len());
    let rule = |id: &str| {
        rules
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no rule {id}"))
    };
    let smallvec = rule("CVE-2021-25900");
    assert_eq!(
        smallvec["properties"]["aliases"],
        serde_json::json!(["GHSA-43w2-9j62-hq99", "RUSTSEC-2021-0003"])
    );
    assert_eq!(smallvec["properties"]["security-severity"], "9.8");
    assert_eq!(smallvec["defaultConfiguration"]["level"], "error");
    let tags = smallvec["properties"]["tags"].as_array().unwrap();
    assert!(tags.contains(&Value::from("security")), "{tags:?}");
    assert!(tags.contains(&Value::from("critical")), "{tags:?}");
    assert_eq!(
        smallvec["helpUri"],
        "https://nvd.nist.gov/vuln/detail/CVE-2021-25900"
    );
    assert!(
        smallvec["help"]["text"]
            .as_str()
            .unwrap()
            .contains("SmallVec::insert_many"),
        "{smallvec}"
    );
    // Without a CVSS score, no security-severity; the level still says how bad.
    let urllib3 = rule("CVE-2019-11236");
    assert!(urllib3["properties"].get("security-severity").is_none());
    assert_eq!(urllib3["defaultConfiguration"]["level"], "warning");
    // Debian's "unimportant": a note.
    assert_eq!(
        rule("CVE-2022-0563")["defaultConfiguration"]["level"],
        "note"
    );

    let result = |package: &str, id: &str| {
        let f = finding(&r, package, id);
        results
            .iter()
            .find(|res| res["partialFingerprints"][sarif::FINGERPRINT] == finding_key(f).as_str())
            .unwrap()
    };
    let sv = result("smallvec", "RUSTSEC-2021-0003");
    assert_eq!(sv["ruleId"], "CVE-2021-25900");
    assert_eq!(
        rules[sv["ruleIndex"].as_u64().unwrap() as usize]["id"],
        "CVE-2021-25900"
    );
    assert_eq!(sv["level"], "error");
    let text = sv["message"]["text"].as_str().unwrap();
    assert!(
        text.contains("smallvec 1.6.0") && text.contains("Fixed in 1.6.1"),
        "{text}"
    );
    let locs = sv["locations"].as_array().unwrap();
    assert_eq!(locs.len(), 2);
    assert_eq!(
        locs[0]["physicalLocation"]["artifactLocation"]["uri"],
        "app/Cargo.lock"
    );
    assert_eq!(locs[0]["properties"]["layer"], LAYER);
    assert_eq!(
        locs[1]["physicalLocation"]["artifactLocation"]["uri"],
        "srv/my%20app/Cargo.lock"
    );
    assert_eq!(locs[1]["properties"]["layer"], LAYER2);
    // Ignored, not dropped.
    assert_eq!(sv["suppressions"][0]["kind"], "external");
    assert!(
        result("urllib3", "PYSEC-2019-132")
            .get("suppressions")
            .is_none()
    );
    // A distribution package names the source package it was matched as.
    let bsd = result("bsdutils", "CVE-2022-0563");
    let text = bsd["message"]["text"].as_str().unwrap();
    assert!(
        text.contains("as source package util-linux") && text.contains("No fixed version"),
        "{text}"
    );
    assert_eq!(bsd["properties"]["status"], "not_fixed");

    // The validator does reject what the schema forbids.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = Value::from("fatal");
    assert!(!v.is_valid(&broken));
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] =
        Value::from("a b:c");
    assert!(!v.is_valid(&broken));
}

#[test]
fn sarif_has_one_run_per_platform() {
    let (mut image, _) = scanned();
    let db = db();
    let mut reports = Vec::new();
    for arch in ["amd64", "arm64"] {
        image.platform = Some(Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        });
        reports.push(assess(&db, &image));
    }
    let log = sarif::to_sarif(&reports, &IgnoreList::default());
    let errs = errors(&sarif_validator(), &log);
    assert!(errs.is_empty(), "{errs:#?}");
    let runs = log["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[0]["automationDetails"]["id"],
        "berth-scan/linux/amd64/"
    );
    assert_eq!(
        runs[1]["automationDetails"]["id"],
        "berth-scan/linux/arm64/"
    );
    assert_eq!(runs[1]["properties"]["platform"], "linux/arm64");
    // No findings: a valid, empty run.
    let clean = assess(&db, &common::image(None, Vec::new()));
    let log = sarif::to_sarif(&[clean], &IgnoreList::default());
    assert!(sarif_validator().is_valid(&log));
    assert_eq!(log["runs"][0]["results"], serde_json::json!([]));
}

#[test]
fn cyclonedx_vulnerabilities_are_valid_and_point_at_components() {
    let (image, r) = scanned();
    let bom = cyclonedx::to_cyclonedx(&image, &r);
    let v = cyclonedx_validator();
    let errs = errors(&v, &bom);
    assert!(errs.is_empty(), "{errs:#?}\n{bom:#}");

    let bom_ref = |name: &str| {
        bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["bom-ref"]
            .clone()
    };
    let vulns = bom["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 6, "{vulns:#?}");
    let vuln = |id: &str| vulns.iter().find(|v| v["id"] == id).unwrap();
    let sv = vuln("CVE-2021-25900");
    assert_eq!(sv["source"]["name"], "NVD");
    let refs: Vec<&str> = sv["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["GHSA-43w2-9j62-hq99", "RUSTSEC-2021-0003"]);
    assert_eq!(
        sv["references"][1]["source"]["url"],
        "https://rustsec.org/advisories/RUSTSEC-2021-0003.html"
    );
    let rating = &sv["ratings"][0];
    assert_eq!(rating["method"], "CVSSv31");
    assert_eq!(rating["score"], 9.8);
    assert_eq!(rating["severity"], "critical");
    assert_eq!(
        rating["vector"],
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    );
    assert_eq!(
        sv["description"],
        "Buffer overflow in SmallVec::insert_many"
    );
    assert_eq!(sv["recommendation"], "Upgrade smallvec to 1.6.1.");
    assert_eq!(sv["affects"][0]["ref"], bom_ref("smallvec"));
    assert_eq!(
        sv["affects"][0]["versions"],
        serde_json::json!([
            {"version": "1.6.0", "status": "affected"},
            {"version": "1.6.1", "status": "unaffected"},
        ])
    );
    // One issue in two binary packages of one source: one vulnerability, two components.
    let wall = vuln("CVE-2024-28085");
    let affected: Vec<&Value> = wall["affects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["ref"])
        .collect();
    assert_eq!(affected, [&bom_ref("bsdutils"), &bom_ref("util-linux")]);
    assert_eq!(
        wall["ratings"][0]["method"], "other",
        "a vendor's word: {wall}"
    );
    let open = vuln("CVE-2022-0563");
    assert_eq!(open["recommendation"], "No fixed version is known.");
    assert_eq!(open["ratings"][0]["severity"], "info");
    // Go and PyPI records without ratings.
    let text = vuln("CVE-2021-38561");
    assert_eq!(text["ratings"], serde_json::json!([]));
    let refs: Vec<&str> = text["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["GHSA-ppp9-7jff-5vj2", "GO-2021-0113"]);
    assert_eq!(text["affects"][0]["ref"], bom_ref("golang.org/x/text"));
    // The inventory is the one berth-scan writes.
    let mut inventory = bom.clone();
    inventory.as_object_mut().unwrap().remove("vulnerabilities");
    assert_eq!(inventory, berth_scan::output::to_cyclonedx(&image));
    // The validator does check the vulnerabilities.
    let mut broken = bom.clone();
    broken["vulnerabilities"][0]["ratings"] =
        serde_json::json!([{"method": "CVSSv99", "severity": "high"}]);
    assert!(!v.is_valid(&broken));
}

/// The committed example of Berth's JSON report: any change to the format fails here, so a
/// change is a decision (re-bless with `BERTH_BLESS=1` and say so in the commit).
#[test]
fn berth_json_is_the_documented_format() {
    let (image, r) = scanned();
    let got = json::to_json(&r);
    let path = fixture("vulnreport.json");
    let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert!(
        want == text,
        "the JSON report changed; if that is intended, run with BERTH_BLESS=1 and review \
         the diff of {}",
        path.display()
    );
    // It reads back as the same report.
    let back: VulnReport = serde_json::from_str(&want).unwrap();
    assert_eq!(back, r);
    // berth scan's document: the inventory, plus the report under `vulnerabilities`.
    let doc = json::scan_document(&image, Some(&r));
    assert_eq!(doc["vulnerabilities"], got);
    assert_eq!(
        doc["packages"],
        berth_scan::output::to_json(&image)["packages"]
    );
    assert_eq!(
        json::scan_document(&image, None),
        berth_scan::output::to_json(&image)
    );
}

#[test]
fn table_lists_findings_most_severe_first() {
    let (_, r) = scanned();
    let text = table::to_table(&r, &IgnoreList::new(["CVE-2019-11236"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(
            "Vulnerabilities: 8 (critical 2, high 0, medium 0, low 2, negligible 2, unknown 2)"
        ),
        "{text}"
    );
    let header = lines
        .iter()
        .position(|l| l.starts_with("SEVERITY"))
        .unwrap();
    assert_eq!(
        lines[header].split_whitespace().collect::<Vec<_>>(),
        ["SEVERITY", "ID", "PACKAGE", "INSTALLED", "FIXED", "PATH"]
    );
    let rows = &lines[header + 1..];
    assert_eq!(rows.len(), 8, "{text}");
    let cells = |row: &str| {
        row.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(rows[0]),
        [
            "critical",
            "CVE-2021-25900",
            "smallvec",
            "1.6.0",
            "1.6.1",
            "/app/Cargo.lock",
            "(+1)"
        ]
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("unknown (ignored)") && r.contains("urllib3"))
    );
    let open = rows.iter().find(|r| r.contains("CVE-2022-0563")).unwrap();
    assert_eq!(cells(open)[4], "-", "{open}");
    // Most severe first, whatever the inventory order.
    let levels: Vec<Level> = rows
        .iter()
        .map(|r| berth_assess::parse_level(r.split_whitespace().next().unwrap()).unwrap())
        .collect();
    assert!(levels.windows(2).all(|w| w[0] >= w[1]), "{levels:?}");
}

#[test]
fn gate_counts_what_reaches_the_threshold_and_is_not_ignored() {
    let (_, r) = scanned();
    let gate = |level, ignore: &[&str]| Gate::new(level, IgnoreList::new(ignore)).evaluate([&r]);
    // Critical: smallvec and distributed.
    let o = gate(Level::High, &[]);
    assert_eq!((o.reached, o.ignored, o.passed()), (2, 0, false));
    // Ignored by an alias, in any case.
    let o = gate(Level::High, &["rustsec-2021-0003", "PYSEC-2021-871"]);
    assert_eq!((o.reached, o.ignored, o.passed()), (0, 2, true));
    // Unknown counts every finding.
    assert_eq!(gate(Level::Unknown, &[]).reached, 8);
    // Over several reports (platforms), every finding counts.
    let o = Gate::new(Level::Critical, IgnoreList::default()).evaluate([&r, &r]);
    assert_eq!(o.reached, 4);
    let g = Gate::new(Level::High, IgnoreList::new(["CVE-2021-25900"]));
    let failing: Vec<&str> = g.failing(&r).map(|f| f.package.name.as_str()).collect();
    assert_eq!(failing, ["distributed"]);
}
