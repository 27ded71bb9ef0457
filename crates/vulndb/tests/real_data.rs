//! Import all 8,158 real OSV records of the shared advisories (`berth_testkit::shared_advisories`) and match real packages
//! against them.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use berth_vulndb::advisory::{Level, SeverityKind, Status};
use berth_vulndb::db::VulnDb;
use berth_vulndb::import::{Limits, Osv, import_dir, import_file, import_zip};
use berth_vulndb::matching::{Finding, PackageRef};
use berth_vulndb::versions::Ecosystem;

fn advisories_dir() -> PathBuf {
    berth_testkit::shared_advisories()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The three real feeds plus a one-record GHSA fixture that aliases two real PYSEC records.
fn db() -> &'static VulnDb {
    static DB: OnceLock<VulnDb> = OnceLock::new();
    DB.get_or_init(|| {
        let t = Instant::now();
        let mut reports = Vec::new();
        for feed in ["osv-go", "osv-crates", "osv-pypi"] {
            let osv = Osv {
                feed: feed.to_string(),
            };
            reports
                .push(import_dir(&osv, &advisories_dir().join(feed), &Limits::default()).unwrap());
        }
        let ghsa = Osv {
            feed: "osv-ghsa".to_string(),
        };
        reports.push(import_dir(&ghsa, &fixtures().join("osv-ghsa"), &Limits::default()).unwrap());
        let db = VulnDb::from_imports(reports).unwrap();
        println!(
            "imported {} records in {:?}",
            db.advisories().len(),
            t.elapsed()
        );
        db
    })
}

fn pkg(eco: Ecosystem, name: &str, version: &str) -> PackageRef {
    PackageRef {
        ecosystem: eco,
        name: name.to_string(),
        version: version.to_string(),
        source_name: None,
        source_version: None,
        release: None,
        evidence: serde_json::json!({"path": format!("/{name}")}),
    }
}

fn findings(p: PackageRef) -> Vec<Finding> {
    let report = db().match_packages(&[p]);
    assert!(report.unmatched.is_empty(), "{:?}", report.unmatched);
    report.findings
}

fn with_id<'a>(f: &'a [Finding], id: &str) -> Option<&'a Finding> {
    f.iter().find(|f| f.ids.iter().any(|i| i == id))
}

fn imports_every_record() {
    let db = db();
    let count = |feed: &str| db.feed(feed).unwrap().records;
    assert_eq!(count("osv-go"), 4291);
    assert_eq!(count("osv-crates"), 1206);
    assert_eq!(count("osv-pypi"), 2661);
    assert_eq!(count("osv-ghsa"), 1);
    assert_eq!(db.advisories().len(), 8159);
    assert_eq!(db.feed("osv-go").unwrap().documents, 4291);
    // Two PyPI records hold versions PEP 440 cannot parse ("2019-09-12", "0.2.0-n653"): their
    // ranges are dropped with a warning, nothing else is.
    assert_eq!(db.feed("osv-pypi").unwrap().warnings, 2);
    assert_eq!(db.feed("osv-go").unwrap().warnings, 0);
    assert_eq!(db.feed("osv-crates").unwrap().warnings, 0);
    // Lookups by id and by alias.
    let about: Vec<_> = db.about("CVE-2021-42343").map(|a| a.id.as_str()).collect();
    // The same CVE also names dask (PYSEC-2021-387): a record about another package.
    assert_eq!(
        about,
        [
            "GHSA-hwqr-f3v9-hwxr",
            "PYSEC-2021-387",
            "PYSEC-2021-871",
            "PYSEC-2021-872"
        ]
    );
    assert!(about.contains(&"GHSA-hwqr-f3v9-hwxr") && about.contains(&"PYSEC-2021-872"));
    assert_eq!(db.get("PYSEC-2021-872").count(), 1);
    assert_eq!(db.get("CVE-2021-42343").count(), 0);
    let withdrawn = db
        .advisories()
        .iter()
        .filter(|a| a.withdrawn.is_some())
        .count();
    assert_eq!(withdrawn, 40);
    // Severity: CVSS v3 and v4 vectors are scored.
    let rs = db.get("RUSTSEC-2016-0001").next().unwrap();
    assert_eq!(rs.severity[0].kind, SeverityKind::CvssV3);
    assert_eq!(rs.severity[0].score, Some(8.1));
    let v4 = db.get("RUSTSEC-2024-0445").next().unwrap();
    assert_eq!(v4.severity[0].kind, SeverityKind::CvssV4);
    assert!(v4.severity[0].score.is_some());
}

fn rustsec_openssl() {
    // RUSTSEC-2016-0001: openssl before 0.9.0 (introduced "0.0.0-0").
    let f = findings(pkg(Ecosystem::CratesIo, "openssl", "0.8.3"));
    let hit = with_id(&f, "RUSTSEC-2016-0001").expect("0.8.3 is affected");
    assert_eq!(
        hit.ids,
        ["CVE-2016-10931", "GHSA-34p9-f4q3-c4r7", "RUSTSEC-2016-0001"]
    );
    assert_eq!(hit.fixed_version.as_deref(), Some("0.9.0"));
    assert_eq!(hit.status, Status::Fixed);
    assert_eq!(hit.level(), Level::High);
    assert_eq!(hit.severity.as_ref().unwrap().source, "RUSTSEC");
    assert_eq!(hit.package.evidence["path"], "/openssl");
    let f = findings(pkg(Ecosystem::CratesIo, "openssl", "0.9.0"));
    assert!(with_id(&f, "RUSTSEC-2016-0001").is_none());
}

fn go_stdlib_and_module() {
    // GO-2024-2687 (HTTP/2 CONTINUATION flood): stdlib <1.21.9 and 1.22.0-0..1.22.2,
    // golang.org/x/net <0.23.0.
    for (v, affected) in [
        ("1.21.8", true),
        ("1.21.9", false),
        ("1.22.0", true),
        ("1.22.1", true),
        ("1.22.2", false),
        ("v1.21.0", true),
    ] {
        let f = findings(pkg(Ecosystem::Go, "stdlib", v));
        assert_eq!(
            with_id(&f, "GO-2024-2687").is_some(),
            affected,
            "stdlib {v}"
        );
    }
    let f = findings(pkg(Ecosystem::Go, "golang.org/x/net", "v0.22.0"));
    let hit = with_id(&f, "GO-2024-2687").unwrap();
    assert!(hit.ids.contains(&"CVE-2023-45288".to_string()));
    assert_eq!(hit.fixed_version.as_deref(), Some("0.23.0"));
    let f = findings(pkg(Ecosystem::Go, "golang.org/x/net", "v0.23.0"));
    assert!(with_id(&f, "GO-2024-2687").is_none());
    // Pseudo-versions compare as pre-releases of the next patch.
    let f = findings(pkg(
        Ecosystem::Go,
        "golang.org/x/net",
        "v0.22.1-0.20240301000000-abcdefabcdef",
    ));
    assert!(with_id(&f, "GO-2024-2687").is_some());
}

fn withdrawn_records_never_match() {
    // GO-2024-2730 (github.com/gorilla/sessions, every version) was withdrawn.
    assert!(db().get("GO-2024-2730").next().unwrap().withdrawn.is_some());
    let f = findings(pkg(Ecosystem::Go, "github.com/gorilla/sessions", "v1.2.1"));
    assert!(with_id(&f, "GO-2024-2730").is_none());
}

fn aliases_merge_across_records_and_feeds() {
    // PYSEC-2021-871 and PYSEC-2021-872 are the same issue (CVE-2021-42343) in distributed, and
    // the GHSA fixture aliases them: one finding, every id. The name is PEP 503-normalised.
    let f = findings(pkg(Ecosystem::PyPI, "Distributed", "2021.9.1"));
    let hits: Vec<_> = f
        .iter()
        .filter(|f| f.ids.iter().any(|i| i == "CVE-2021-42343"))
        .collect();
    assert_eq!(hits.len(), 1, "{hits:#?}");
    let hit = hits[0];
    assert_eq!(
        hit.ids,
        [
            "CVE-2021-42343",
            "GHSA-hwqr-f3v9-hwxr",
            "GHSA-j8fq-86c5-5v2r",
            "PYSEC-2021-871",
            "PYSEC-2021-872"
        ]
    );
    assert_eq!(hit.feeds, ["osv-ghsa", "osv-pypi"]);
    assert_eq!(hit.fixed_version.as_deref(), Some("2021.10.0"));
    // The GHSA record carries the only rating: its CVSS 9.8 beats its vendor "CRITICAL" tie.
    let sev = hit.severity.as_ref().unwrap();
    assert_eq!(sev.level, Level::Critical);
    assert_eq!(sev.source, "GHSA");
    assert!(
        with_id(
            &findings(pkg(Ecosystem::PyPI, "distributed", "2021.10.0")),
            "CVE-2021-42343"
        )
        .is_none()
    );

    // RustSec published CVE-2022-24791 twice for wasmtime (RUSTSEC-2022-0016 and -0099).
    let f = findings(pkg(Ecosystem::CratesIo, "wasmtime", "0.35.1"));
    let hits: Vec<_> = f
        .iter()
        .filter(|f| f.ids.iter().any(|i| i == "CVE-2022-24791"))
        .collect();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].ids.contains(&"RUSTSEC-2022-0016".to_string()));
    assert!(hits[0].ids.contains(&"RUSTSEC-2022-0099".to_string()));
    assert_eq!(hits[0].fixed_version.as_deref(), Some("0.35.2"));
    for v in ["0.34.2", "0.35.2"] {
        let f = findings(pkg(Ecosystem::CratesIo, "wasmtime", v));
        assert!(with_id(&f, "CVE-2022-24791").is_none(), "{v}");
    }
}

fn invalid_installed_version_is_reported_not_ignored() {
    let report = db().match_packages(&[pkg(Ecosystem::CratesIo, "openssl", "not-a-version")]);
    assert!(report.findings.is_empty());
    assert_eq!(report.unmatched.len(), 1);
}

#[test]
fn zip_of_real_records() {
    // OSV publishes each ecosystem as one zip of records; build one from part of the data.
    let dir = advisories_dir().join("osv-crates");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names.truncate(300);
    let mut buf = Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for p in &names {
            zip.start_file(p.file_name().unwrap().to_str().unwrap(), opts)
                .unwrap();
            zip.write_all(&std::fs::read(p).unwrap()).unwrap();
        }
        zip.start_file("README.txt", opts).unwrap();
        zip.write_all(b"not a record").unwrap();
        zip.finish().unwrap();
    }
    // The same archive from disk: import_file recognises a zip by its signature.
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("all.zip");
    std::fs::write(&zip_path, buf.get_ref()).unwrap();
    let osv = Osv::default();
    let from_file = import_file(&osv, &zip_path, &Limits::default()).unwrap();
    assert_eq!(from_file.documents, 300);
    // And a single record file.
    let single = import_file(&osv, &names[0], &Limits::default()).unwrap();
    assert_eq!((single.documents, single.advisories.len()), (1, 1));

    buf.set_position(0);
    let report = import_zip(&osv, buf, "all.zip", &Limits::default()).unwrap();
    assert_eq!(report.documents, 300);
    assert_eq!(report.advisories.len(), 300);
    let db = VulnDb::from_imports(vec![report]).unwrap();
    let f = db.match_packages(&[pkg(Ecosystem::CratesIo, "openssl", "0.8.0")]);
    assert!(with_id(&f.findings, "RUSTSEC-2016-0001").is_some());
}

fn snapshot_round_trip_of_real_data() {
    let db = db();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vulndb.snapshot");
    let t = Instant::now();
    db.write_snapshot(&path).unwrap();
    let written = t.elapsed();
    let t = Instant::now();
    let loaded = VulnDb::load_snapshot(&path).unwrap();
    println!(
        "snapshot: {} bytes, written in {written:?}, loaded and validated in {:?}",
        std::fs::metadata(&path).unwrap().len(),
        t.elapsed()
    );
    assert_eq!(loaded.version(), db.version());
    assert_eq!(loaded.advisories().len(), db.advisories().len());
    assert_eq!(
        loaded.feeds().collect::<Vec<_>>(),
        db.feeds().collect::<Vec<_>>()
    );
}

/// CPU time of the calling thread in nanoseconds (Linux), if available.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// A 1,000-package inventory against the whole database: prints the time (no timed assertion;
/// run with `--release --nocapture` for a meaningful number).
fn match_speed_1000_packages() {
    let db = db();
    let mut inventory = Vec::new();
    // 600 distinct real package names from the data, at versions that hit some records and
    // miss others, and 400 packages no advisory names.
    let mut seen = std::collections::HashSet::new();
    for a in db.advisories().iter().step_by(3) {
        if inventory.len() == 600 {
            break;
        }
        if let Some(aff) = a.affected.first()
            && seen.insert((aff.ecosystem, aff.name.clone()))
        {
            let version = match aff.ecosystem {
                Ecosystem::Go => "v0.1.0",
                Ecosystem::PyPI => "1.0",
                _ => "0.1.0",
            };
            inventory.push(pkg(aff.ecosystem, &aff.name, version));
        }
    }
    while inventory.len() < 1000 {
        let n = inventory.len();
        inventory.push(pkg(Ecosystem::PyPI, &format!("no-such-package-{n}"), "1.0"));
    }
    // Warm up once, then time the best of twenty by the wall clock, and the average CPU time
    // of this thread (which other processes on a busy machine do not inflate).
    let _ = db.match_packages(&inventory);
    let mut best = std::time::Duration::MAX;
    let mut report = None;
    let cpu_before = thread_cpu_ns();
    for _ in 0..20 {
        let t = Instant::now();
        report = Some(db.match_packages(&inventory));
        best = best.min(t.elapsed());
    }
    let cpu = thread_cpu_ns()
        .zip(cpu_before)
        .map(|(after, before)| std::time::Duration::from_nanos((after - before) / 20));
    let report = report.unwrap();
    println!(
        "matched {} packages: best {best:?} wall, {cpu:?} CPU on average: {} findings {:?}",
        inventory.len(),
        report.findings.len(),
        report.summary
    );
    assert!(report.findings.len() > 100);
    assert_eq!(report.summary.total(), report.findings.len());
}

/// One test (one process under nextest) for every check that needs the whole database, so the
/// 8,158 records are imported once.
#[test]
fn real_osv_data() {
    imports_every_record();
    rustsec_openssl();
    go_stdlib_and_module();
    withdrawn_records_never_match();
    aliases_merge_across_records_and_feeds();
    invalid_installed_version_is_reported_not_ignored();
    snapshot_round_trip_of_real_data();
    match_speed_1000_packages();
}
