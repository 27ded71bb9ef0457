//! Inventories and databases shared by the tests: real advisories (a few of the shared OSV
//! records, the Debian security tracker fixture) and images built from packages.
#![allow(dead_code)]

use std::path::Path;

use berth_oci::Digest;
use berth_scan::{Ecosystem, Evidence, ImageReport, OsInfo, Package, SourcePackage};
use berth_vulndb::VulnDb;
use berth_vulndb::import::{DebianTracker, Limits, Osv, import_file};

pub const LAYER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const LAYER2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

pub fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// RUSTSEC-2021-0003 (smallvec), PYSEC-2019-132 (urllib3), GO-2021-0113 (golang.org/x/text),
/// and the Debian tracker fixture (util-linux, openssl, zlib, glibc in bookworm).
pub fn db() -> VulnDb {
    db_with(&[])
}

/// [`db`] with more shared OSV records, each `(feed, path under the advisories)`.
pub fn db_with(more: &[(&str, &str)]) -> VulnDb {
    let adv = berth_testkit::shared_advisories();
    let mut reports = Vec::new();
    // One feed each: a database holds one import per feed name.
    for (feed, f) in [
        ("osv-crates", "osv-crates/RUSTSEC-2021-0003.json"),
        ("osv-pypi", "osv-pypi/PYSEC-2019-132.json"),
        ("osv-go", "osv-go/GO-2021-0113.json"),
    ]
    .iter()
    .chain(more)
    {
        let osv = Osv {
            feed: feed.to_string(),
        };
        reports.push(import_file(&osv, &adv.join(f), &Limits::default()).unwrap());
    }
    let tracker =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../vulndb/tests/fixtures/debian/tracker.json");
    reports.push(import_file(&DebianTracker, &tracker, &Limits::default()).unwrap());
    VulnDb::from_imports(reports).unwrap()
}

pub fn package(eco: Ecosystem, name: &str, version: &str, path: &str) -> Package {
    let mut p = Package::new(eco, name, version, "test");
    p.purl = format!("pkg:{}/{name}@{version}", eco.as_str());
    p.evidence.push(Evidence {
        layer: LAYER.parse::<Digest>().unwrap(),
        path: path.to_string(),
    });
    p
}

pub fn deb(name: &str, version: &str, source: &str, source_version: &str) -> Package {
    let mut p = package(Ecosystem::Deb, name, version, "var/lib/dpkg/status");
    p.purl = match version.split_once(':') {
        Some((epoch, v)) => format!("pkg:deb/debian/{name}@{v}?distro=debian-12&epoch={epoch}"),
        None => format!("pkg:deb/debian/{name}@{version}?distro=debian-12"),
    };
    p.source = Some(SourcePackage {
        name: source.to_string(),
        version: source_version.to_string(),
    });
    p
}

pub fn image(os: Option<OsInfo>, packages: Vec<Package>) -> ImageReport {
    ImageReport {
        analyzer_version: berth_scan::ANALYZER_VERSION,
        reference: "registry.example/acme/app:1.0".into(),
        manifest_digest: LAYER.parse().unwrap(),
        config_digest: None,
        platform: None,
        layers: Vec::new(),
        os,
        packages,
        warnings: Vec::new(),
    }
}

pub fn debian12() -> OsInfo {
    OsInfo {
        id: "debian".into(),
        version_id: Some("12".into()),
        version_codename: Some("bookworm".into()),
        id_like: Vec::new(),
        pretty_name: None,
        distroless: false,
    }
}
