//! `berth scan` end to end: the real binary inventories images built from real files (a
//! Debian dpkg database, os-release, the machine's own Go binary skopeo) from an OCI layout,
//! from a `docker save`-style archive written by skopeo, and from a running Berth over the
//! registry API with credentials; every output format is checked, and bad targets fail clearly.
//!
//! Then vulnerabilities: the 8,158 shared OSV records imported with `berth vulndb import`, an
//! image holding known-affected versions (smallvec 1.6.0, urllib3 1.24.1, golang.org/x/text
//! v0.3.5) and one holding known-unaffected ones, in every format (SARIF and CycloneDX checked
//! against their official schemas), the `--fail-on` gate with its ignore lists and across
//! platforms, exported snapshots, and what happens without a database.

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

// ---------------------------------------------------------------------------
// Vulnerabilities: the real shared advisories, imported with `berth vulndb import`
// ---------------------------------------------------------------------------

const CLI_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A lock file as Cargo writes it, for an application depending on smallvec `version`.
fn cargo_lock(smallvec: &str) -> String {
    format!(
        "# This file is automatically @generated by Cargo.\n\
         # It is not intended for manual editing.\n\
         version = 3\n\n\
         [[package]]\n\
         name = \"app\"\n\
         version = \"0.1.0\"\n\
         dependencies = [\n \"smallvec\",\n]\n\n\
         [[package]]\n\
         name = \"smallvec\"\n\
         version = \"{smallvec}\"\n\
         source = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
    )
}

/// The head of urllib3's METADATA as its wheels carry it.
fn urllib3_metadata(version: &str) -> String {
    format!(
        "Metadata-Version: 2.1\n\
         Name: urllib3\n\
         Version: {version}\n\
         Summary: HTTP library with thread-safe connection pooling, file post, and more.\n\
         Home-page: https://urllib3.readthedocs.io/\n\
         Author: Andrey Petrov\n\
         Author-email: andrey.petrov@shazow.net\n\
         License: MIT\n\n"
    )
}

/// An executable holding the build information of a real Go 1.19 binary that depends on
/// golang.org/x/text `version` (tests/fixtures/go-buildinfo.sh cut it out), behind an ELF
/// magic, as crates/scan's tests place the terraform one.
fn go_binary(version: &str) -> Vec<u8> {
    let mut bin = b"\x7fELF".to_vec();
    bin.resize(4096, 0);
    bin.extend_from_slice(
        &std::fs::read(Path::new(CLI_FIXTURES).join(format!("go-buildinfo-xtext-{version}.bin")))
            .unwrap(),
    );
    bin
}

/// Cargo.lock with smallvec, urllib3's METADATA, and (in a second layer) a Go binary with
/// golang.org/x/text.
fn app_layers(smallvec: &str, urllib3: &str, xtext: &str) -> Vec<Vec<FileEntry>> {
    vec![
        vec![
            FileEntry::new("app/Cargo.lock", cargo_lock(smallvec)),
            FileEntry::new(
                &format!("usr/lib/python3/dist-packages/urllib3-{urllib3}.dist-info/METADATA"),
                urllib3_metadata(urllib3),
            ),
        ],
        vec![FileEntry::executable(
            "usr/local/bin/textapp",
            go_binary(xtext),
        )],
    ]
}

struct AppLayout {
    dir: PathBuf,
    /// Known-affected versions (linux/amd64), tag `vulnerable`.
    vulnerable: BuiltImage,
    /// Known-unaffected versions (linux/arm64), tag `fixed`; with the other, tag `both`.
    fixed: BuiltImage,
}

impl AppLayout {
    fn target(&self, tag: &str) -> String {
        format!("{}:{tag}", self.dir.display())
    }
}

fn app_layout(dir: &Path) -> AppLayout {
    let mut w = LayoutWriter::new(dir);
    let vulnerable = w.add_image(
        Platform::linux_amd64(),
        &app_layers("1.6.0", "1.24.1", "v0.3.5"),
    );
    let fixed = w.add_image(
        Platform::linux_arm64(),
        &app_layers("1.6.1", "1.24.3", "v0.3.7"),
    );
    let index = w.add_index(vec![vulnerable.clone(), fixed.clone()]);
    w.tag("vulnerable", &vulnerable.manifest);
    w.tag("fixed", &fixed.manifest);
    w.tag("both", &index.index);
    w.write();
    AppLayout {
        dir: dir.to_owned(),
        vulnerable,
        fixed,
    }
}

/// A data dir holding the 8,158 shared advisories, imported by the CLI.
fn data_dir_with_advisories(dir: &Path) {
    let mut cmd = berth_command();
    cmd.arg("vulndb")
        .arg("--data-dir")
        .arg(dir)
        .args(["import", "--format", "osv"])
        .arg(berth_testkit::shared_advisories());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("records: 8158"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every id of every finding of a JSON document's vulnerability report.
fn finding_ids(doc: &Value) -> Vec<String> {
    doc["vulnerabilities"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["ids"].as_array().unwrap().iter())
        .map(|i| i.as_str().unwrap().to_owned())
        .collect()
}

/// The findings of a JSON document about `package`.
fn findings_of<'a>(doc: &'a Value, package: &str) -> Vec<&'a Value> {
    doc["vulnerabilities"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["package"]["name"] == package)
        .collect()
}

const LEVELS: [&str; 6] = ["unknown", "negligible", "low", "medium", "high", "critical"];

/// How many findings of the documents are at or above `level`, leaving out those with an id in
/// `ignored`: what the gate should count, computed from the report itself.
fn at_or_above(docs: &[&Value], level: &str, ignored: &[&str]) -> usize {
    let rank = |l: &str| LEVELS.iter().position(|x| *x == l).unwrap();
    docs.iter()
        .flat_map(|d| d["vulnerabilities"]["findings"].as_array().unwrap())
        .filter(|f| {
            let l = f["severity"]["level"].as_str().unwrap_or("unknown");
            rank(l) >= rank(level)
                && !f["ids"].as_array().unwrap().iter().any(|i| {
                    ignored
                        .iter()
                        .any(|x| x.eq_ignore_ascii_case(i.as_str().unwrap()))
                })
        })
        .count()
}

/// The three issues the tests are built around, with their aliases.
const RUSTSEC: [&str; 3] = ["RUSTSEC-2021-0003", "CVE-2021-25900", "GHSA-43w2-9j62-hq99"];
const PYSEC: [&str; 3] = ["PYSEC-2019-132", "CVE-2019-11236", "GHSA-r64q-w8jr-g9qp"];
const GO: [&str; 3] = ["GO-2021-0113", "CVE-2021-38561", "GHSA-ppp9-7jff-5vj2"];

#[test]
fn scan_finds_known_vulnerabilities_in_every_format_and_gates_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = app_layout(&tmp.path().join("layout"));
    let data = tmp.path().join("data");
    data_dir_with_advisories(&data);
    let data_arg = data.to_str().unwrap();
    let vulnerable = layout.target("vulnerable");
    let fixed = layout.target("fixed");

    // JSON: the inventory, and the findings under `vulnerabilities`.
    let doc = ok_json(berth_scan(
        &["--format", "json", "--data-dir", data_arg, &vulnerable],
        &[],
    ));
    assert_eq!(
        doc["manifest_digest"],
        layout.vulnerable.manifest.digest.as_str()
    );
    let ids = finding_ids(&doc);
    for id in RUSTSEC.iter().chain(&PYSEC).chain(&GO) {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }
    let smallvec = findings_of(&doc, "smallvec");
    assert_eq!(smallvec.len(), 1, "{smallvec:#?}");
    assert_eq!(smallvec[0]["fixed_version"], "1.6.1");
    assert_eq!(smallvec[0]["severity"]["level"], "critical");
    let layers = layout.vulnerable.layer_digests();
    let location = &smallvec[0]["package"]["evidence"]["locations"][0];
    assert_eq!(location["path"], "app/Cargo.lock");
    assert_eq!(location["layer"], layers[0].as_str());
    let urllib3 = findings_of(&doc, "urllib3");
    let crlf = urllib3
        .iter()
        .find(|f| {
            f["ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i == "PYSEC-2019-132")
        })
        .unwrap();
    assert_eq!(crlf["fixed_version"], "1.24.3");
    let text = findings_of(&doc, "golang.org/x/text");
    let go = text
        .iter()
        .find(|f| {
            f["ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i == "GO-2021-0113")
        })
        .unwrap();
    assert_eq!(
        go["package"]["evidence"]["locations"][0]["path"],
        "usr/local/bin/textapp"
    );
    assert_eq!(
        go["package"]["evidence"]["locations"][0]["layer"],
        layers[1].as_str()
    );

    // Known-unaffected versions of the same packages: none of the three issues. (urllib3
    // 1.24.3 and x/text v0.3.7 have later advisories of their own; smallvec 1.6.1 has none.)
    let clean = ok_json(berth_scan(
        &["--format", "json", "--data-dir", data_arg, &fixed],
        &[],
    ));
    assert_eq!(
        clean["manifest_digest"],
        layout.fixed.manifest.digest.as_str()
    );
    let clean_ids = finding_ids(&clean);
    for id in RUSTSEC.iter().chain(&PYSEC).chain(&GO) {
        assert!(!clean_ids.iter().any(|i| i == id), "{id} in {clean_ids:?}");
    }
    assert!(findings_of(&clean, "smallvec").is_empty());
    let versions: Vec<&str> = clean["vulnerabilities"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["installed_version"].as_str().unwrap())
        .collect();
    assert!(!versions.contains(&"1.24.1") && !versions.contains(&"v0.3.5"));

    // CycloneDX: the issues as vulnerabilities with their aliases, pointing at components.
    let bom = ok_json(berth_scan(
        &["--format", "cyclonedx", "--data-dir", data_arg, &vulnerable],
        &[],
    ));
    let errors =
        berth_testkit::schemas::schema_errors(&berth_testkit::schemas::cyclonedx_validator(), &bom);
    assert!(errors.is_empty(), "{errors:#?}");
    let vulns = bom["vulnerabilities"].as_array().unwrap();
    let component_ref = |name: &str| {
        bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no component {name}"))["bom-ref"]
            .clone()
    };
    for (issue, package) in [
        (RUSTSEC, "smallvec"),
        (PYSEC, "urllib3"),
        (GO, "golang.org/x/text"),
    ] {
        // The CVE is the vulnerability's id; the others are references.
        let v = vulns
            .iter()
            .find(|v| v["id"] == issue[1])
            .unwrap_or_else(|| panic!("no vulnerability {}", issue[1]));
        let refs: Vec<&str> = v["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert!(
            refs.contains(&issue[0]) && refs.contains(&issue[2]),
            "{v:#}"
        );
        assert_eq!(v["affects"][0]["ref"], component_ref(package), "{v:#}");
    }

    // SARIF: valid against the official schema, one result per finding.
    let sarif = ok_json(berth_scan(
        &["--format", "sarif", "--data-dir", data_arg, &vulnerable],
        &[],
    ));
    let errors =
        berth_testkit::schemas::schema_errors(&berth_testkit::schemas::sarif_validator(), &sarif);
    assert!(errors.is_empty(), "{errors:#?}");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        doc["vulnerabilities"]["findings"].as_array().unwrap().len()
    );
    let sv = results
        .iter()
        .find(|r| r["ruleId"] == "CVE-2021-25900")
        .unwrap();
    assert_eq!(sv["level"], "error");
    assert_eq!(
        sv["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "app/Cargo.lock"
    );

    // Table: the inventory, then the findings.
    let table = berth_scan(&["--data-dir", data_arg, &vulnerable], &[]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("Vulnerabilities: "), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("CVE-2021-25900"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "critical",
            "CVE-2021-25900",
            "smallvec",
            "1.6.0",
            "1.6.1",
            "/app/Cargo.lock"
        ]
    );
    assert!(table.stderr.is_empty(), "{}", stderr(&table));

    // The gate: exit code 3 and one line on standard error, after the report.
    let high = at_or_above(&[&doc], "high", &[]);
    assert!(high >= 1);
    let gated = berth_scan(
        &[
            "--format",
            "json",
            "--data-dir",
            data_arg,
            "--fail-on",
            "high",
            &vulnerable,
        ],
        &[],
    );
    assert_eq!(gated.status.code(), Some(3), "{}", stderr(&gated));
    let report: Value = serde_json::from_slice(&gated.stdout).unwrap();
    assert_eq!(report["vulnerabilities"], doc["vulnerabilities"]);
    let line = stderr(&gated);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains(&format!("{high} finding(s) at or above high")),
        "{line}"
    );

    // Ignored by any alias (case does not matter), from the command line and from a file.
    let ignored = berth_scan(
        &[
            "--data-dir",
            data_arg,
            "--fail-on",
            "high",
            "--ignore",
            "rustsec-2021-0003",
            "--output",
            tmp.path().join("r.txt").to_str().unwrap(),
            &vulnerable,
        ],
        &[],
    );
    let left = at_or_above(&[&doc], "high", &["RUSTSEC-2021-0003"]);
    assert_eq!(left, high - 1);
    assert_eq!(
        ignored.status.code(),
        Some(if left == 0 { 0 } else { 3 }),
        "{}",
        stderr(&ignored)
    );
    assert!(
        stderr(&ignored).contains("(1 more ignored)"),
        "{}",
        stderr(&ignored)
    );
    // Every finding counts at `unknown`; a file that ignores all three issues leaves the rest.
    let ignore_file = tmp.path().join("berthignore");
    std::fs::write(
        &ignore_file,
        "# accepted: not reachable\nCVE-2021-25900  # smallvec\nPYSEC-2019-132\n\n  GHSA-ppp9-7jff-5vj2\n",
    )
    .unwrap();
    let all = at_or_above(&[&doc], "unknown", &[]);
    let rest = at_or_above(
        &[&doc],
        "unknown",
        &["CVE-2021-25900", "PYSEC-2019-132", "GHSA-ppp9-7jff-5vj2"],
    );
    assert_eq!(rest, all - 3);
    let out = berth_scan(
        &[
            "--format",
            "sarif",
            "--data-dir",
            data_arg,
            "--fail-on",
            "unknown",
            "--ignore-file",
            ignore_file.to_str().unwrap(),
            &vulnerable,
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(if rest == 0 { 0 } else { 3 }),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "{rest} finding(s) at or above unknown (3 more ignored)"
        )),
        "{}",
        stderr(&out)
    );
    // In SARIF the ignored findings are suppressed, not dropped.
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    let suppressed = log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("suppressions").is_some())
        .count();
    assert_eq!(suppressed, 3);
    // A malformed ignore file is an error, not a guess.
    std::fs::write(&ignore_file, "CVE-2021-25900 PYSEC-2019-132\n").unwrap();
    let bad = berth_scan(
        &[
            "--data-dir",
            data_arg,
            "--fail-on",
            "high",
            "--ignore-file",
            ignore_file.to_str().unwrap(),
            &vulnerable,
        ],
        &[],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("line 1"), "{}", stderr(&bad));

    // The known-unaffected image passes a critical gate; both platforms together do not.
    let clean_critical = at_or_above(&[&clean], "critical", &[]);
    assert_eq!(clean_critical, 0, "{clean:#}");
    let out = berth_scan(
        &[
            "--data-dir",
            data_arg,
            "--fail-on",
            "critical",
            "--format",
            "json",
            &fixed,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no findings at or above critical"),
        "{}",
        stderr(&out)
    );
    let out = berth_scan(
        &[
            "--data-dir",
            data_arg,
            "--fail-on",
            "critical",
            "--format",
            "json",
            "--all-platforms",
            &layout.target("both"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let docs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let docs = docs.as_array().unwrap();
    assert_eq!(docs.len(), 2);
    let critical = at_or_above(&docs.iter().collect::<Vec<_>>(), "critical", &[]);
    assert!(critical >= 1);
    assert!(
        stderr(&out).contains(&format!("{critical} finding(s) at or above critical")),
        "{}",
        stderr(&out)
    );
    // SARIF over both platforms: one run each.
    let out = berth_scan(
        &[
            "--data-dir",
            data_arg,
            "--format",
            "sarif",
            "--all-platforms",
            &layout.target("both"),
        ],
        &[],
    );
    let log = ok_json(out);
    assert_eq!(log["runs"].as_array().unwrap().len(), 2);
    assert_eq!(
        log["runs"][1]["automationDetails"]["id"],
        "berth-scan/linux/arm64/v8/"
    );

    // An exported snapshot gives the same answer without the data dir.
    let snapshot = tmp.path().join("vulndb.snapshot");
    let mut cmd = berth_command();
    cmd.arg("vulndb")
        .arg("--data-dir")
        .arg(&data)
        .arg("export")
        .arg(&snapshot);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let from_file = ok_json(berth_scan(
        &[
            "--format",
            "json",
            "--vulndb",
            snapshot.to_str().unwrap(),
            &vulnerable,
        ],
        &[],
    ));
    assert_eq!(from_file["vulnerabilities"], doc["vulnerabilities"]);
    let out = berth_scan(
        &[
            "--vulndb",
            snapshot.to_str().unwrap(),
            "--fail-on",
            "high",
            &vulnerable,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // A damaged snapshot is an error, never an empty database.
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    std::fs::write(&snapshot, bytes).unwrap();
    let out = berth_scan(&["--vulndb", snapshot.to_str().unwrap(), &vulnerable], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
}

#[test]
fn scan_without_a_database_reports_the_inventory_and_refuses_a_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = app_layout(&tmp.path().join("layout"));
    let vulnerable = layout.target("vulnerable");
    let empty = tmp.path().join("empty");
    let empty_arg = empty.to_str().unwrap();

    // A data dir with no registry in it: said on standard error, inventory only, and nothing
    // created there.
    let out = berth_scan(
        &["--format", "json", "--data-dir", empty_arg, &vulnerable],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc.get("vulnerabilities").is_none(), "{doc:#}");
    assert!(names(&doc).contains(&"smallvec".to_owned()));
    assert!(
        stderr(&out).contains("no vulnerability database") && stderr(&out).contains(empty_arg),
        "{}",
        stderr(&out)
    );
    assert!(!empty.exists(), "the scan created {}", empty.display());
    // CycloneDX without a database: the inventory BOM, no vulnerabilities section.
    let bom = ok_json(berth_scan(
        &[
            "--format",
            "cyclonedx",
            "--data-dir",
            empty_arg,
            &vulnerable,
        ],
        &[],
    ));
    assert!(bom.get("vulnerabilities").is_none());

    // The gate cannot be evaluated: an error (exit code 1), before any analysis.
    let out = berth_scan(
        &["--data-dir", empty_arg, "--fail-on", "high", &vulnerable],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--fail-on needs a vulnerability database"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    let out = berth_scan(&["--fail-on", "high", &vulnerable], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--data-dir"), "{}", stderr(&out));
    let out = berth_scan(&["--format", "sarif", &vulnerable], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--format sarif needs"),
        "{}",
        stderr(&out)
    );
    let out = berth_scan(&["--fail-on", "severe", &vulnerable], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A registry data dir whose database was never imported: the same.
    let mut cmd = berth_command();
    cmd.arg("vulndb")
        .arg("--data-dir")
        .arg(&empty)
        .arg("status");
    assert!(cmd.output().unwrap().status.success());
    assert!(empty.join("meta.db").exists());
    let out = berth_scan(&["--data-dir", empty_arg, &vulnerable], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no vulnerability database"),
        "{}",
        stderr(&out)
    );
    let out = berth_scan(
        &["--data-dir", empty_arg, "--fail-on", "low", &vulnerable],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // And nothing to export.
    let mut cmd = berth_command();
    cmd.arg("vulndb")
        .arg("--data-dir")
        .arg(&empty)
        .arg("export")
        .arg(tmp.path().join("x"));
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no vulnerability database"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("x").exists());
}
