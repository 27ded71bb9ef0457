//! Malformed, truncated and hostile input: every importer answers with an error (or a warning
//! for a bad part of a good record), never a panic, and never reads past its caps.

use std::io::{Cursor, Write};
use std::path::Path;

use berth_vulndb::import::{
    AlpineSecdb, DebianTracker, ImportError, Importer, Limits, Osv, import_bytes, import_dir,
    import_file, import_zip,
};
use proptest::prelude::*;

fn importers() -> [(&'static str, Box<dyn Importer>); 3] {
    [
        ("osv", Box::new(Osv::default())),
        ("debian", Box::new(DebianTracker)),
        ("alpine", Box::new(AlpineSecdb)),
    ]
}

fn real_record() -> Vec<u8> {
    std::fs::read(berth_testkit::shared_advisories().join("osv-crates/RUSTSEC-2016-0001.json"))
        .unwrap()
}

fn import(importer: &dyn Importer, bytes: &[u8]) -> Result<usize, ImportError> {
    import_bytes(importer, "input", bytes, &Limits::default()).map(|r| r.advisories.len())
}

#[test]
fn malformed_and_truncated_json() {
    let record = real_record();
    for (name, importer) in importers() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"\"x\"",
            b"{\"id\": 5}",
            b"\xff\xfe",
        ] {
            assert!(import(&*importer, bad).is_err(), "{name}: {bad:?}");
        }
        // Every truncation of a real record is refused.
        for cut in (0..record.len()).step_by(97) {
            assert!(
                import(&*importer, &record[..cut]).is_err(),
                "{name} cut {cut}"
            );
        }
        // Deep nesting hits serde_json's recursion limit instead of the stack.
        let deep = "[".repeat(1_000_000);
        assert!(import(&*importer, deep.as_bytes()).is_err());
        let deep_obj = "{\"a\":".repeat(100_000);
        assert!(import(&*importer, deep_obj.as_bytes()).is_err());
    }
    assert_eq!(import(&Osv::default(), &record).unwrap(), 1);
}

#[test]
fn shape_errors_name_the_problem() {
    let err = import(&AlpineSecdb, br#"{"packages": []}"#).unwrap_err();
    assert!(err.to_string().contains("distroversion"), "{err}");
    let err = import(
        &DebianTracker,
        br#"{"pkg": {"CVE-1": {"releases": {"bookworm": {}}}}}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("status"), "{err}");
    let err = import(&Osv::default(), br#"{"affected": []}"#).unwrap_err();
    assert!(err.to_string().contains("id"), "{err}");
}

#[test]
fn huge_strings_and_documents() {
    let huge = "A".repeat(1 << 20);
    let osv = Osv::default();
    let rec = format!(r#"{{"id": "{huge}", "affected": []}}"#);
    assert!(matches!(
        import(&osv, rec.as_bytes()),
        Err(ImportError::Invalid { .. })
    ));
    let rec = format!(
        r#"{{"id": "X-1", "affected": [{{"package": {{"ecosystem": "PyPI", "name": "{huge}"}}, "versions": ["1.0"]}}]}}"#
    );
    assert!(matches!(
        import(&osv, rec.as_bytes()),
        Err(ImportError::Invalid { .. })
    ));
    // A huge summary and huge aliases are cut or dropped, not stored whole.
    let rec = format!(
        r#"{{"id": "X-2", "summary": "{huge}", "aliases": ["{huge}", "CVE-1"], "affected": []}}"#
    );
    let report = import_bytes(&osv, "x", rec.as_bytes(), &Limits::default()).unwrap();
    assert!(report.advisories[0].summary.as_ref().unwrap().len() <= 4096);
    assert_eq!(report.advisories[0].aliases, ["CVE-1"]);
    // Documents above the cap are refused before parsing.
    let small = Limits {
        max_document_bytes: 1000,
        ..Limits::default()
    };
    assert!(matches!(
        import_bytes(&osv, "x", &real_record(), &small),
        Err(ImportError::TooLarge { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.json"), real_record()).unwrap();
    assert!(matches!(
        import_dir(&osv, dir.path(), &small),
        Err(ImportError::TooLarge { .. })
    ));
    assert!(matches!(
        import_file(&osv, &dir.path().join("big.json"), &small),
        Err(ImportError::TooLarge { .. })
    ));
    assert!(matches!(
        import_file(&osv, Path::new("/nonexistent/x.json"), &small),
        Err(ImportError::Io { .. })
    ));
}

#[test]
fn bad_versions_are_warnings() {
    let rec = br#"{"id": "X-3", "affected": [
        {"package": {"ecosystem": "crates.io", "name": "a"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "not.a.version"}]}]},
        {"package": {"ecosystem": "crates.io", "name": "b"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.0"}]}],
         "versions": ["0.9.0", "garbage"]},
        {"package": {"ecosystem": "Unknown-Ecosystem", "name": "c"}, "versions": ["1"]},
        {"package": {"ecosystem": "PyPI", "name": "d"},
         "ranges": [{"type": "GIT", "repo": "https://x", "events": [{"introduced": "0"}, {"fixed": "abc123"}]}]}
    ], "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/garbage"}]}"#;
    let report = import_bytes(&Osv::default(), "x", rec, &Limits::default()).unwrap();
    let adv = &report.advisories[0];
    // Only package b survives: a's range is invalid, c's ecosystem unknown, d has only GIT.
    assert_eq!(adv.affected.len(), 1);
    assert_eq!(adv.affected[0].name, "b");
    assert_eq!(adv.affected[0].versions, ["0.9.0"]);
    assert!(adv.severity.is_empty());
    assert_eq!(report.warnings.len(), 3, "{:?}", report.warnings);

    let secdb = br#"{"distroversion": "v3.19", "packages": [{"pkg": {"name": "x", "secfixes": {"not-a-version": ["CVE-1"], "1.0-r1": ["CVE-2 GHSA-aaaa-bbbb-cccc (see notes)", "", null]}}}]}"#;
    assert!(import_bytes(&AlpineSecdb, "x", secdb, &Limits::default()).is_err());
    let secdb = br#"{"distroversion": "v3.19", "packages": [{"pkg": {"name": "x", "secfixes": {"not-a-version": ["CVE-1"], "1.0-r1": ["CVE-2 GHSA-aaaa-bbbb-cccc (see notes)", ""]}}}]}"#;
    let report = import_bytes(&AlpineSecdb, "x", secdb, &Limits::default()).unwrap();
    assert_eq!(report.advisories.len(), 1);
    assert_eq!(report.advisories[0].aliases, ["GHSA-aaaa-bbbb-cccc"]);
    assert_eq!(report.warnings.len(), 1);

    let tracker = br#"{"p": {"CVE-1": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "a b"}}},
                              "CVE-2": {"releases": {"bookworm": {"status": "weird"}}}}}"#;
    let report = import_bytes(&DebianTracker, "x", tracker, &Limits::default()).unwrap();
    assert_eq!(report.advisories.len(), 0);
    assert_eq!(report.warnings.len(), 2);
}

fn zip_of(entries: &[(&str, &[u8])]) -> Cursor<Vec<u8>> {
    let mut buf = Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }
    buf.set_position(0);
    buf
}

#[test]
fn zip_bomb_is_stopped_at_the_cap() {
    // 64 MiB of zeros deflate to about 64 KiB.
    let mut buf = Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(false);
        zip.start_file("bomb.json", opts).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..64 {
            zip.write_all(&chunk).unwrap();
        }
        zip.finish().unwrap();
    }
    let compressed = buf.get_ref().len();
    assert!(compressed < 1 << 20, "{compressed}");
    buf.set_position(0);
    let limits = Limits {
        max_document_bytes: 4 << 20,
        ..Limits::default()
    };
    let err = import_zip(&Osv::default(), buf, "bomb.zip", &limits).unwrap_err();
    assert!(matches!(err, ImportError::TooLarge { .. }), "{err}");

    // The total across entries is capped too.
    let record = real_record();
    let many: Vec<(String, &[u8])> = (0..20)
        .map(|i| (format!("r{i}.json"), &record[..]))
        .collect();
    let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let limits = Limits {
        max_total_bytes: 5 * record.len() as u64,
        ..Limits::default()
    };
    let err = import_zip(&Osv::default(), zip_of(&refs), "many.zip", &limits).unwrap_err();
    assert!(matches!(err, ImportError::TooLarge { .. }), "{err}");
    let limits = Limits {
        max_documents: 5,
        ..Limits::default()
    };
    let err = import_zip(&Osv::default(), zip_of(&refs), "many.zip", &limits).unwrap_err();
    assert!(matches!(err, ImportError::TooManyDocuments { .. }), "{err}");
}

#[test]
fn zip_entry_names_are_only_labels() {
    let record = real_record();
    let dir = tempfile::tempdir().unwrap();
    let cwd_before: Vec<_> = std::fs::read_dir(".").unwrap().collect();
    let zip = zip_of(&[
        ("../../../../tmp/evil.json", &record),
        ("/abs/evil2.json", &record),
    ]);
    let report = import_zip(&Osv::default(), zip, "evil.zip", &Limits::default()).unwrap();
    // Both entries hold the same record: merged into one.
    assert_eq!(report.documents, 2);
    assert_eq!(report.advisories.len(), 1);
    assert!(!Path::new("/tmp/evil.json").exists());
    assert_eq!(std::fs::read_dir(".").unwrap().count(), cwd_before.len());
    drop(dir);
    // Not a zip, and a corrupt zip.
    let err = import_zip(
        &Osv::default(),
        Cursor::new(b"PK\x03\x04garbage".to_vec()),
        "x",
        &Limits::default(),
    );
    assert!(matches!(err, Err(ImportError::Zip { .. })));
    let mut bytes = zip_of(&[("a.json", &record)]).into_inner();
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 40] {
        *b ^= 0x5a;
    }
    assert!(import_zip(&Osv::default(), Cursor::new(bytes), "x", &Limits::default()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        for (_, importer) in importers() {
            let _ = import(&*importer, &bytes);
        }
        let _ = import_zip(&Osv::default(), Cursor::new(bytes.clone()), "x", &Limits::default());
        let _ = berth_vulndb::db::VulnDb::from_snapshot_bytes(&bytes);
    }

    #[test]
    fn mutated_records_never_panic(pos in 0usize..2000, byte in any::<u8>()) {
        let mut record = real_record();
        let n = record.len();
        record[pos % n] = byte;
        let _ = import(&Osv::default(), &record);
    }
}
