//! `berth scan` end to end: the real binary inventories images built from real files (a
//! Debian dpkg database, os-release, the machine's own Go binary skopeo) from an OCI layout,
//! from a `docker save`-style archive written by skopeo, and from a running Berth over the
//! registry API with credentials; every output format is checked, and bad targets fail clearly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scan/tests/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
}

/// A Debian 12 image: a base layer with os-release and a real dpkg database, and a layer with
/// the machine's skopeo (a real Go binary with build info).
fn debian_layout(dir: &Path) -> BuiltImage {
    let skopeo = std::fs::read(require_tool("skopeo")).unwrap();
    let mut w = LayoutWriter::new(dir);
    let image = w.add_image(
        Platform::linux_amd64(),
        &[
            vec![
                FileEntry::new("usr/lib/os-release", fixture("os-release-debian12")),
                FileEntry::new("var/lib/dpkg/status", fixture("dpkg-status")),
            ],
            vec![FileEntry::executable("usr/bin/skopeo", skopeo)],
        ],
    );
    w.tag("v1", &image.manifest);
    w.write();
    image
}

fn berth_scan(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = berth_command();
    cmd.arg("scan").args(args);
    cmd.envs(envs.iter().copied());
    cmd.output().expect("run berth scan")
}

fn ok_json(out: Output) -> Value {
    assert!(
        out.status.success(),
        "berth scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn names(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn assert_debian_inventory(report: &Value, layers: &[String]) {
    assert_eq!(report["os"]["id"], "debian", "{}", report["os"]);
    let pkgs = report["packages"].as_array().unwrap();
    let find = |name: &str| {
        pkgs.iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", names(report)))
    };
    let libssl = find("libssl3");
    assert_eq!(libssl["version"], "3.0.19-1~deb12u2");
    assert_eq!(libssl["source"]["name"], "openssl");
    assert!(
        libssl["purl"]
            .as_str()
            .unwrap()
            .starts_with("pkg:deb/debian/libssl3@3.0.19-1~deb12u2"),
        "{}",
        libssl["purl"]
    );
    assert_eq!(libssl["evidence"][0]["path"], "var/lib/dpkg/status");
    assert_eq!(libssl["evidence"][0]["layer"], layers[0].as_str());
    // The Go binary (Debian builds it without module information): its Go toolchain, found in
    // the second layer.
    let go = find("stdlib");
    assert!(go["version"].as_str().unwrap().starts_with("go1."), "{go}");
    assert_eq!(go["evidence"][0]["path"], "usr/bin/skopeo");
    assert_eq!(go["evidence"][0]["layer"], layers[1].as_str());
}

#[test]
fn scans_a_layout_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let image = debian_layout(&dir);
    let layers: Vec<String> = image.layers.iter().map(|b| b.digest.clone()).collect();
    let target = format!("{}:v1", dir.display());

    let report = ok_json(berth_scan(&["--format", "json", &target], &[]));
    assert_eq!(report["manifest_digest"], image.manifest.digest.as_str());
    assert_debian_inventory(&report, &layers);

    let cdx = ok_json(berth_scan(&["--format", "cyclonedx", &target], &[]));
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert_eq!(cdx["specVersion"], "1.6");
    let components = cdx["components"].as_array().unwrap();
    assert!(components.len() >= report["packages"].as_array().unwrap().len());
    // Every package component (the operating system is a component of its own kind, without a
    // package URL) has its purl and where it was found.
    for c in components
        .iter()
        .filter(|c| c["type"] != "operating-system")
    {
        assert!(c["purl"].is_string(), "component without purl: {c}");
        let locations = c["evidence"]["occurrences"].as_array().unwrap();
        assert!(
            !locations.is_empty() && locations[0]["location"].is_string(),
            "{c}"
        );
    }

    let spdx = ok_json(berth_scan(&["--format", "spdx", &target], &[]));
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    assert!(spdx["packages"].as_array().unwrap().len() > 5);

    let out_file = tmp.path().join("report.txt");
    let table = berth_scan(&[&target, "--output", out_file.to_str().unwrap()], &[]);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(table.stdout.is_empty(), "the report went to the file");
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        text.contains("libssl3") && text.contains("usr/bin/skopeo"),
        "{text}"
    );
    // No terminal, no progress bar: standard error stays empty for CI logs.
    assert!(
        table.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
}

#[test]
fn scans_an_archive_and_an_image_in_berth() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let image = debian_layout(&dir);
    let layers: Vec<String> = image.layers.iter().map(|b| b.digest.clone()).collect();
    let env = ClientEnv::new();

    // A docker-archive (as `docker save` writes) made by skopeo.
    let archive: PathBuf = tmp.path().join("image.tar");
    env.skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:v1", dir.display()),
        &format!("docker-archive:{}:acme/app:v1", archive.display()),
    ]);
    let from_archive = ok_json(berth_scan(
        &["--format", "json", archive.to_str().unwrap()],
        &[],
    ));
    assert_eq!(
        names(&from_archive),
        names(&ok_json(berth_scan(
            &["--format", "json", &format!("{}:v1", dir.display())],
            &[]
        )))
    );

    // The same image pushed to Berth, scanned over the registry API with credentials.
    let server = TestServer::start();
    env.log_in(&server.host(), "admin", ADMIN_PASSWORD);
    env.skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", dir.display()),
        &format!("docker://{}/acme/app:v1", server.host()),
    ]);
    let image_ref = format!("{}/acme/app:v1", server.host());
    let remote = ok_json(berth_scan(
        &[
            "--format",
            "json",
            "--plain-http",
            "-u",
            "admin",
            &image_ref,
        ],
        &[("BERTH_SCAN_PASSWORD", ADMIN_PASSWORD)],
    ));
    assert_debian_inventory(&remote, &layers);
    assert_eq!(remote["manifest_digest"], image.manifest.digest.as_str());

    // Wrong credentials, missing images and missing files fail with a clear message.
    let denied = berth_scan(
        &["--plain-http", "-u", "admin", &image_ref],
        &[("BERTH_SCAN_PASSWORD", "wrong")],
    );
    assert!(!denied.status.success());
    let msg = String::from_utf8_lossy(&denied.stderr).to_lowercase();
    assert!(
        msg.contains("401") || msg.contains("unauthor") || msg.contains("denied"),
        "{msg}"
    );
    let missing = berth_scan(
        &[
            "--plain-http",
            "-u",
            "admin",
            &format!("{}/acme/app:nope", server.host()),
        ],
        &[("BERTH_SCAN_PASSWORD", ADMIN_PASSWORD)],
    );
    assert!(!missing.status.success());
    let nothing = berth_scan(&["./no/such/layout"], &[]);
    assert!(!nothing.status.success());
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("no/such/layout"),
        "{}",
        String::from_utf8_lossy(&nothing.stderr)
    );
}
