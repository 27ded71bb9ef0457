//! Debian and Alpine feeds in their upstream formats (fixtures with real package names and
//! versions), and OSV records for distribution ecosystems.

use std::path::{Path, PathBuf};

use berth_vulndb::advisory::{Level, Status};
use berth_vulndb::db::VulnDb;
use berth_vulndb::import::{AlpineSecdb, DebianTracker, Limits, Osv, import_dir, import_file};
use berth_vulndb::matching::{Finding, PackageRef};
use berth_vulndb::versions::Ecosystem;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn db() -> VulnDb {
    let limits = Limits::default();
    let debian = import_file(
        &DebianTracker,
        &fixtures().join("debian/tracker.json"),
        &limits,
    )
    .unwrap();
    assert!(debian.warnings.is_empty(), "{:?}", debian.warnings);
    let alpine = import_file(
        &AlpineSecdb,
        &fixtures().join("alpine/v3.19-main.json"),
        &limits,
    )
    .unwrap();
    assert!(alpine.warnings.is_empty(), "{:?}", alpine.warnings);
    let osv = import_dir(
        &Osv {
            feed: "osv-distro".to_string(),
        },
        &fixtures().join("osv-distro"),
        &limits,
    )
    .unwrap();
    VulnDb::from_imports(vec![debian, alpine, osv]).unwrap()
}

fn deb(name: &str, version: &str, source: Option<(&str, &str)>, release: &str) -> PackageRef {
    PackageRef {
        ecosystem: Ecosystem::Debian,
        name: name.to_string(),
        version: version.to_string(),
        source_name: source.map(|s| s.0.to_string()),
        source_version: source.map(|s| s.1.to_string()).filter(|s| !s.is_empty()),
        release: Some(release.to_string()),
        evidence: serde_json::json!({"db": "/var/lib/dpkg/status"}),
    }
}

fn apk(name: &str, version: &str, origin: &str) -> PackageRef {
    PackageRef {
        ecosystem: Ecosystem::Alpine,
        name: name.to_string(),
        version: version.to_string(),
        source_name: Some(origin.to_string()),
        source_version: None,
        release: Some("3.19.1".to_string()),
        evidence: serde_json::Value::Null,
    }
}

fn find<'a>(f: &'a [Finding], id: &str) -> Option<&'a Finding> {
    f.iter().find(|f| f.ids.iter().any(|i| i == id))
}

#[test]
fn feed_statistics() {
    let db = db();
    // util-linux: 2 CVEs; openssl: CVE-2010-5298 is "fixed_version 0" in its only release, so
    // only 2 of 3; zlib 1; glibc 1.
    assert_eq!(db.feed("debian-tracker").unwrap().records, 6);
    // openssl: 6 CVEs (the "0" one is not affected), busybox: 5.
    assert_eq!(db.feed("alpine-secdb").unwrap().records, 11);
    assert_eq!(db.feed("osv-distro").unwrap().records, 2);
    assert!(db.feed("debian-tracker").unwrap().imported_at > 0);
}

#[test]
fn debian_source_package_and_version() {
    let db = db();
    // bsdutils 1:2.38.1-5+deb12u3 is built from util-linux 2.38.1-5+deb12u3: fixed.
    let r = db.match_packages(&[deb(
        "bsdutils",
        "1:2.38.1-5+deb12u3",
        Some(("util-linux", "2.38.1-5+deb12u3")),
        "bookworm",
    )]);
    assert!(find(&r.findings, "CVE-2024-28085").is_none());
    // The open, unimportant CVE-2022-0563 still applies.
    let open = find(&r.findings, "CVE-2022-0563").unwrap();
    assert_eq!(open.status, Status::NotFixed);
    assert_eq!(open.fixed_version, None);
    assert_eq!(open.level(), Level::Negligible);
    assert_eq!(open.matched_name, "util-linux");
    assert_eq!(open.installed_version, "2.38.1-5+deb12u3");
    assert_eq!(open.package.name, "bsdutils");
    assert_eq!(open.package.evidence["db"], "/var/lib/dpkg/status");

    // Before the fix: one finding from the tracker and the OSV record, merged by CVE id.
    let r = db.match_packages(&[deb(
        "bsdutils",
        "1:2.38.1-5",
        Some(("util-linux", "2.38.1-5")),
        "12",
    )]);
    let hit = find(&r.findings, "CVE-2024-28085").unwrap();
    assert_eq!(hit.ids, ["CVE-2024-28085", "DEBIAN-CVE-2024-28085"]);
    assert_eq!(hit.status, Status::Fixed);
    assert_eq!(hit.fixed_version.as_deref(), Some("2.38.1-5+deb12u1"));
    assert_eq!(hit.feeds, ["debian-tracker", "osv-distro"]);
    // The OSV record's CVSS 5.5 outranks the tracker's "low" urgency.
    assert_eq!(hit.level(), Level::Medium);
    assert_eq!(r.summary.medium, 1);
}

#[test]
fn debian_binnmu_and_release() {
    let db = db();
    // A binNMU of the unfixed source: `+b1` is dropped before comparing.
    let r = db.match_packages(&[deb(
        "libuuid1",
        "2.38.1-5+b1",
        Some(("util-linux", "")),
        "12",
    )]);
    let hit = find(&r.findings, "CVE-2024-28085").unwrap();
    assert_eq!(hit.installed_version, "2.38.1-5");
    // Debian 11 has its own fixed version.
    let r = db.match_packages(&[deb("util-linux", "2.36.1-8+deb11u1", None, "bullseye")]);
    assert_eq!(
        find(&r.findings, "CVE-2024-28085")
            .unwrap()
            .fixed_version
            .as_deref(),
        Some("2.36.1-8+deb11u2")
    );
    let r = db.match_packages(&[deb("util-linux", "2.36.1-8+deb11u2", None, "bullseye")]);
    assert!(find(&r.findings, "CVE-2024-28085").is_none());
    // A release the feed does not cover matches nothing release-specific.
    let r = db.match_packages(&[deb("util-linux", "2.30-1", None, "10")]);
    assert!(r.findings.is_empty());
}

#[test]
fn debian_statuses() {
    let db = db();
    let r = db.match_packages(&[deb(
        "libssl3",
        "3.0.11-1~deb12u2",
        Some(("openssl", "")),
        "bookworm",
    )]);
    let fixed = find(&r.findings, "CVE-2024-0727").unwrap();
    assert_eq!(fixed.status, Status::Fixed);
    assert_eq!(fixed.fixed_version.as_deref(), Some("3.0.13-1~deb12u1"));
    // `nodsa`: Debian will not fix it in a security update.
    assert_eq!(
        find(&r.findings, "CVE-2024-2511").unwrap().status,
        Status::WillNotFix
    );
    // fixed_version "0": bookworm never had the bug.
    assert!(find(&r.findings, "CVE-2010-5298").is_none());
    let r = db.match_packages(&[deb(
        "libssl3",
        "3.0.13-1~deb12u1",
        Some(("openssl", "")),
        "12",
    )]);
    assert!(find(&r.findings, "CVE-2024-0727").is_none());

    let r = db.match_packages(&[deb("zlib1g", "1:1.2.13.dfsg-1", Some(("zlib", "")), "12")]);
    assert_eq!(
        find(&r.findings, "CVE-2023-45853").unwrap().status,
        Status::WillNotFix
    );
    let r = db.match_packages(&[deb("libc6", "2.36-9+deb12u9", Some(("glibc", "")), "12")]);
    assert_eq!(
        find(&r.findings, "CVE-2025-0395").unwrap().status,
        Status::Undetermined
    );
}

#[test]
fn alpine_secfixes() {
    let db = db();
    let r = db.match_packages(&[apk("libcrypto3", "3.1.4-r5", "openssl")]);
    let ids: Vec<_> = r.findings.iter().flat_map(|f| f.ids.clone()).collect();
    // Fixed in -r5 and earlier: not reported. -r6 and 3.1.5-r0: reported.
    assert!(find(&r.findings, "CVE-2024-0727").is_none(), "{ids:?}");
    assert!(find(&r.findings, "CVE-2023-5678").is_none());
    let hit = find(&r.findings, "CVE-2024-2511").unwrap();
    assert_eq!(hit.fixed_version.as_deref(), Some("3.1.4-r6"));
    // The secdb entry and the OSV Alpine record merge.
    assert_eq!(hit.ids, ["CVE-2024-2511", "ALPINE-CVE-2024-2511"]);
    assert!(find(&r.findings, "CVE-2024-4603").is_some());
    // "0": never affected.
    assert!(find(&r.findings, "CVE-2022-1292").is_none());
    assert_eq!(r.findings.len(), 2);

    let r = db.match_packages(&[apk("busybox", "1.36.1-r14", "busybox")]);
    assert_eq!(r.findings.len(), 4);
    assert!(
        r.findings
            .iter()
            .all(|f| f.fixed_version.as_deref() == Some("1.36.1-r15"))
    );
    let r = db.match_packages(&[apk("ssl_client", "1.36.1-r15", "busybox")]);
    assert!(r.findings.is_empty());
    // Another release: the v3.19 secdb says nothing about it.
    let mut other = apk("busybox", "1.36.1-r14", "busybox");
    other.release = Some("3.20".to_string());
    assert!(db.match_packages(&[other]).findings.is_empty());
}

#[test]
fn finding_json_shape() {
    // The JSON the server will hand out: ecosystems by OSV name, statuses and levels in snake
    // case, the package (with its evidence) inside each finding.
    let db = db();
    let r = db.match_packages(&[deb(
        "bsdutils",
        "1:2.38.1-5",
        Some(("util-linux", "2.38.1-5")),
        "12",
    )]);
    let json = serde_json::to_value(&r).unwrap();
    let f = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["ids"][0] == "CVE-2024-28085")
        .unwrap();
    assert_eq!(
        f,
        &serde_json::json!({
            "ids": ["CVE-2024-28085", "DEBIAN-CVE-2024-28085"],
            "package": {
                "ecosystem": "Debian",
                "name": "bsdutils",
                "version": "1:2.38.1-5",
                "source_name": "util-linux",
                "source_version": "2.38.1-5",
                "release": "12",
                "evidence": {"db": "/var/lib/dpkg/status"}
            },
            "matched_name": "util-linux",
            "installed_version": "2.38.1-5",
            "fixed_version": "2.38.1-5+deb12u1",
            "status": "fixed",
            "severity": {
                "kind": "cvss_v3",
                "vector": "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:N/A:N",
                "score": 5.5,
                "level": "medium",
                "source": "DEBIAN"
            },
            "summary": "wall in util-linux through 2.40, often installed with setgid tty permissions, allows escape sequences to be sent to other users' terminals through argv.",
            "feeds": ["debian-tracker", "osv-distro"]
        })
    );
    assert_eq!(json["summary"]["medium"], 1);
    assert_eq!(json["db_version"].as_str().unwrap().len(), 64);
    // And it reads back.
    let back: berth_vulndb::MatchReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}
