//! Inventories translated and matched against real advisories: the shared OSV records (Go,
//! crates.io, PyPI) and a Debian security tracker file in the upstream format.

mod common;

use berth_assess::{assess, finding_key, package_refs, parse_level, reaches};
use berth_scan::{Ecosystem, OsInfo, SourcePackage};
use berth_vulndb::Level;
use common::*;

fn ids(r: &berth_assess::VulnReport) -> Vec<String> {
    let mut v: Vec<String> = r
        .findings
        .iter()
        .flat_map(|f| f.ids.iter().cloned())
        .collect();
    v.sort();
    v
}

#[test]
fn known_affected_packages_are_found_with_their_evidence() {
    let db = db();
    let report = assess(
        &db,
        &image(
            Some(debian12()),
            vec![
                package(Ecosystem::Cargo, "smallvec", "1.6.0", "usr/bin/app"),
                package(
                    Ecosystem::Pypi,
                    "urllib3",
                    "1.24.1",
                    "usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/METADATA",
                ),
                package(
                    Ecosystem::Golang,
                    "golang.org/x/text",
                    "v0.3.5",
                    "usr/bin/goapp",
                ),
                // bsdutils is built from util-linux: matched as util-linux 2.38.1-5.
                deb("bsdutils", "1:2.38.1-5", "util-linux", "2.38.1-5"),
            ],
        ),
    );
    let ids = ids(&report);
    for id in [
        "RUSTSEC-2021-0003",
        "CVE-2021-25900",
        "PYSEC-2019-132",
        "CVE-2019-11236",
        "GO-2021-0113",
        "CVE-2021-38561",
        "CVE-2024-28085",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }
    // util-linux also has CVE-2022-0563, open (no fix) in bookworm.
    assert!(ids.iter().any(|i| i == "CVE-2022-0563"), "{ids:?}");
    assert_eq!(report.findings.len(), 5, "{:#?}", report.findings);
    assert_eq!(report.packages, 4);
    let smallvec = report
        .findings
        .iter()
        .find(|f| f.package.name == "smallvec")
        .unwrap();
    assert_eq!(smallvec.fixed_version.as_deref(), Some("1.6.1"));
    assert_eq!(
        smallvec.package.evidence["purl"],
        "pkg:cargo/smallvec@1.6.0"
    );
    assert_eq!(
        smallvec.package.evidence["locations"][0]["path"],
        "usr/bin/app"
    );
    assert_eq!(smallvec.package.evidence["locations"][0]["layer"], LAYER);
    let debian = report
        .findings
        .iter()
        .find(|f| f.package.name == "bsdutils")
        .unwrap();
    assert_eq!(debian.matched_name, "util-linux");
    assert_eq!(debian.fixed_version.as_deref(), Some("2.38.1-5+deb12u1"));
    assert_eq!(report.summary.total(), 5);
}

#[test]
fn fixed_versions_and_other_releases_are_not_affected() {
    let db = db();
    let report = assess(
        &db,
        &image(
            Some(debian12()),
            vec![
                package(Ecosystem::Cargo, "smallvec", "1.6.1", "a"),
                package(Ecosystem::Pypi, "urllib3", "1.24.3", "b"),
                package(Ecosystem::Golang, "golang.org/x/text", "v0.3.7", "c"),
                deb(
                    "bsdutils",
                    "1:2.38.1-5+deb12u3",
                    "util-linux",
                    "2.38.1-5+deb12u3",
                ),
            ],
        ),
    );
    // Only the issue Debian has not fixed in any version remains.
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let open = &report.findings[0];
    assert_eq!(open.ids, ["CVE-2022-0563"]);
    assert_eq!(open.status, berth_vulndb::Status::NotFixed);
    assert_eq!(open.fixed_version, None);
    assert_eq!(open.level(), Level::Negligible);
}

#[test]
fn what_cannot_be_matched_is_said_not_dropped() {
    let mut openssl = package(Ecosystem::Binary, "openssl", "3.0.2", "usr/bin/static");
    openssl
        .cpes
        .push("cpe:2.3:a:openssl:openssl:3.0.2:*:*:*:*:*:*:*".into());
    let no_version = package(Ecosystem::Binary, "busybox", "", "bin/busybox");
    let gentoo = OsInfo {
        id: "gentoo".into(),
        ..debian12()
    };
    let inv = package_refs(&image(
        Some(gentoo),
        vec![
            openssl,
            no_version,
            deb("bash", "5.2.15-2+b2", "bash", "5.2.15-2"),
            package(
                Ecosystem::Npm,
                "lodash",
                "4.17.20",
                "node_modules/lodash/package.json",
            ),
        ],
    ));
    assert_eq!(inv.packages.len(), 1);
    assert_eq!(inv.packages[0].name, "lodash");
    let reasons: Vec<&str> = inv.unsupported.iter().map(|u| u.reason.as_str()).collect();
    assert_eq!(inv.unsupported.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("no feed names binaries"), "{reasons:?}");
    assert!(reasons[1].contains("version is unknown"), "{reasons:?}");
    assert!(reasons[2].contains("`gentoo`"), "{reasons:?}");
    // Without an os-release at all, OS packages cannot be placed either.
    let none = package_refs(&image(
        None,
        vec![deb("bash", "5.2.15-2", "bash", "5.2.15-2")],
    ));
    assert!(none.packages.is_empty());
    assert!(none.unsupported[0].reason.contains("no os-release"));
}

#[test]
fn distributions_and_releases_are_named_as_advisories_name_them() {
    let alpine = OsInfo {
        id: "alpine".into(),
        version_id: Some("3.19.1".into()),
        version_codename: None,
        id_like: Vec::new(),
        pretty_name: None,
        distroless: false,
    };
    let mut musl = package(
        Ecosystem::Apk,
        "musl-utils",
        "1.2.4_git20230717-r4",
        "lib/apk/db/installed",
    );
    musl.source = Some(SourcePackage {
        name: "musl".into(),
        version: "1.2.4_git20230717-r4".into(),
    });
    let inv = package_refs(&image(Some(alpine), vec![musl]));
    let p = &inv.packages[0];
    assert_eq!(p.ecosystem, berth_vulndb::Ecosystem::Alpine);
    assert_eq!(p.source_name.as_deref(), Some("musl"));
    // Same version as the binary package: not repeated.
    assert_eq!(p.source_version, None);
    assert_eq!(p.release.as_deref(), Some("3.19.1"));
    // Debian sid has no VERSION_ID; distroless Debian says `debian`; Ubuntu is its own.
    let sid = OsInfo {
        version_id: None,
        version_codename: Some("sid".into()),
        ..debian12()
    };
    let inv = package_refs(&image(
        Some(sid),
        vec![deb("bash", "5.2.21-2+b1", "bash", "5.2.21-2")],
    ));
    assert_eq!(inv.packages[0].release.as_deref(), Some("sid"));
    assert_eq!(inv.packages[0].source_version.as_deref(), Some("5.2.21-2"));
    let ubuntu = OsInfo {
        id: "ubuntu".into(),
        id_like: vec!["debian".into()],
        version_id: Some("22.04".into()),
        ..debian12()
    };
    let inv = package_refs(&image(
        Some(ubuntu),
        vec![deb("bash", "5.1-6ubuntu1", "bash", "5.1-6ubuntu1")],
    ));
    assert_eq!(inv.packages[0].ecosystem, berth_vulndb::Ecosystem::Ubuntu);
}

#[test]
fn finding_keys_thresholds_and_levels() {
    let db = db();
    let report = assess(
        &db,
        &image(
            None,
            vec![package(Ecosystem::Cargo, "smallvec", "1.6.0", "a")],
        ),
    );
    let f = &report.findings[0];
    assert_eq!(
        finding_key(f),
        format!("{}|crates.io|smallvec|1.6.0", f.ids[0])
    );
    assert!(reaches(f, Level::Unknown));
    assert_eq!(reaches(f, Level::Critical), f.level() == Level::Critical);
    assert_eq!(parse_level("HIGH"), Ok(Level::High));
    assert!(
        parse_level("severe")
            .unwrap_err()
            .contains("critical, high")
    );
}
