//! Snapshots: round trip, atomic replacement, complete validation on load, the shared handle
//! keeping the previous database when a load fails, and Ed25519 bundle signatures.

use std::path::{Path, PathBuf};

use berth_vulndb::db::{SharedVulnDb, SnapshotError, VulnDb};
use berth_vulndb::import::{AlpineSecdb, DebianTracker, Limits, import_file};
use berth_vulndb::signature::{self, SignatureError};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn small_db() -> VulnDb {
    let limits = Limits::default();
    let debian = import_file(
        &DebianTracker,
        &fixtures().join("debian/tracker.json"),
        &limits,
    )
    .unwrap();
    let alpine = import_file(
        &AlpineSecdb,
        &fixtures().join("alpine/v3.19-main.json"),
        &limits,
    )
    .unwrap();
    VulnDb::from_imports(vec![debian, alpine]).unwrap()
}

/// Rebuilds a snapshot around a modified body with a correct header, to reach the validation
/// that runs after the digest check.
fn reseal(body: &[u8]) -> Vec<u8> {
    let digest = hex::encode(Sha256::digest(body));
    let mut out = format!("BERTH-VULNDB 1\nsha256:{digest} {}\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn body_of(snapshot: &[u8]) -> &[u8] {
    let first = snapshot.iter().position(|&c| c == b'\n').unwrap();
    let second = first
        + 1
        + snapshot[first + 1..]
            .iter()
            .position(|&c| c == b'\n')
            .unwrap();
    &snapshot[second + 1..]
}

#[test]
fn round_trip_and_stable_version() {
    let db = small_db();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.snapshot");
    db.write_snapshot(&path).unwrap();
    let loaded = VulnDb::load_snapshot(&path).unwrap();
    assert_eq!(loaded.version(), db.version());
    assert_eq!(loaded.advisories(), db.advisories());
    assert_eq!(loaded.feeds().count(), 2);
    // Overwriting leaves no temporary files behind.
    db.write_snapshot(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["db.snapshot"]);

    // The version depends on content, not on import times.
    let limits = Limits::default();
    let again = import_file(
        &DebianTracker,
        &fixtures().join("debian/tracker.json"),
        &limits,
    )
    .unwrap();
    let same = db.with_feed_at(again, 1).unwrap();
    assert_eq!(same.version(), db.version());
    assert_eq!(same.feed("debian-tracker").unwrap().imported_at, 1);
    // And changes when the content does.
    let mut fewer = import_file(
        &DebianTracker,
        &fixtures().join("debian/tracker.json"),
        &limits,
    )
    .unwrap();
    fewer.advisories.pop();
    let changed = db.with_feed(fewer).unwrap();
    assert_ne!(changed.version(), db.version());
    assert_eq!(changed.feed("debian-tracker").unwrap().records, 5);
    assert_eq!(VulnDb::empty().advisories().len(), 0);
}

#[test]
fn corrupt_snapshots_are_refused() {
    let db = small_db();
    let good = db.to_snapshot_bytes().unwrap();
    assert!(VulnDb::from_snapshot_bytes(&good).is_ok());

    let check = |bytes: &[u8], what: &str| {
        let err = VulnDb::from_snapshot_bytes(bytes).expect_err(what);
        println!("{what}: {err}");
        err
    };
    // Truncated anywhere.
    for cut in [0, 5, 20, 90, good.len() / 2, good.len() - 1] {
        check(&good[..cut], &format!("truncated at {cut}"));
    }
    // Trailing data.
    let mut longer = good.clone();
    longer.push(b' ');
    assert!(matches!(
        check(&longer, "trailing"),
        SnapshotError::Length { .. }
    ));
    // One flipped byte in the body.
    let mut flipped = good.clone();
    let n = flipped.len() - 10;
    flipped[n] ^= 0x01;
    assert!(matches!(check(&flipped, "flipped"), SnapshotError::Digest));
    // Not a snapshot, or a future format.
    assert!(matches!(check(b"{}", "json"), SnapshotError::NotASnapshot));
    let future = String::from_utf8_lossy(&good).replacen("BERTH-VULNDB 1", "BERTH-VULNDB 2", 1);
    assert!(matches!(
        check(future.as_bytes(), "future"),
        SnapshotError::UnsupportedFormat(2)
    ));
    // A correctly sealed body with an invalid version inside.
    let body = String::from_utf8(body_of(&good).to_vec()).unwrap();
    let bad_version = body.replacen("3.1.4-r6", "3.1.4-x6", 1);
    assert_ne!(bad_version, body);
    assert!(matches!(
        check(&reseal(bad_version.as_bytes()), "bad version"),
        SnapshotError::Record(_)
    ));
    // Feed statistics that disagree with the records.
    let bad_count = body.replacen("\"records\":11", "\"records\":12", 1);
    assert_ne!(bad_count, body);
    assert!(matches!(
        check(&reseal(bad_count.as_bytes()), "bad count"),
        SnapshotError::Feeds(_)
    ));
    // Valid JSON of the wrong shape, and deeply nested JSON.
    check(&reseal(b"{\"feeds\":[],\"advisories\":{}}"), "shape");
    let deep = "[".repeat(100_000);
    check(&reseal(deep.as_bytes()), "deep");
}

#[test]
fn shared_db_keeps_the_previous_database_on_failure() {
    let db = small_db();
    let version = db.version().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.snapshot");
    db.write_snapshot(&path).unwrap();

    let shared = SharedVulnDb::default();
    assert_eq!(shared.get().advisories().len(), 0);
    assert_eq!(shared.reload(&path, None).unwrap(), version);
    let before = shared.get();
    assert_eq!(before.version(), version);

    // A truncated snapshot: an error, and the database in use does not change.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(shared.reload(&path, None).is_err());
    assert_eq!(shared.get().version(), version);
    // A missing file, likewise.
    assert!(shared.reload(&dir.path().join("missing"), None).is_err());
    assert_eq!(shared.get().version(), version);
    // Readers holding the old Arc keep it across a swap.
    shared.replace(VulnDb::empty());
    assert_eq!(before.version(), version);
    assert_ne!(shared.get().version(), version);
}

#[test]
fn signed_bundles() {
    let db = small_db();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.snapshot");
    db.write_snapshot(&path).unwrap();
    let bundle = std::fs::read(&path).unwrap();
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let public = key.verifying_key();
    let other = SigningKey::from_bytes(&[9u8; 32]);
    let sig_path = signature::signature_path(&path);
    assert_eq!(sig_path, dir.path().join("db.snapshot.sig"));

    // No key configured: unsigned bundles load.
    assert!(VulnDb::load_snapshot_verified(&path, None).is_ok());
    // Key configured, no signature: refused.
    let err = VulnDb::load_snapshot_verified(&path, Some(&public)).unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::Signature(SignatureError::Missing)
    ));
    // Signed by another key: refused.
    std::fs::write(&sig_path, signature::sign_hex(&other, &bundle)).unwrap();
    let err = VulnDb::load_snapshot_verified(&path, Some(&public)).unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::Signature(SignatureError::Invalid)
    ));
    // Garbage signature: refused.
    std::fs::write(&sig_path, "not hex").unwrap();
    let err = VulnDb::load_snapshot_verified(&path, Some(&public)).unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::Signature(SignatureError::Malformed)
    ));
    // Correctly signed, as hex with a newline and as raw bytes: accepted.
    std::fs::write(&sig_path, signature::sign_hex(&key, &bundle) + "\n").unwrap();
    let loaded = VulnDb::load_snapshot_verified(&path, Some(&public)).unwrap();
    assert_eq!(loaded.version(), db.version());
    let raw = hex::decode(signature::sign_hex(&key, &bundle)).unwrap();
    std::fs::write(&sig_path, &raw).unwrap();
    assert!(VulnDb::load_snapshot_verified(&path, Some(&public)).is_ok());
    // The signature covers every byte: a bundle changed after signing is refused.
    let mut tampered = bundle.clone();
    tampered.push(b'\n');
    std::fs::write(&path, &tampered).unwrap();
    let err = VulnDb::load_snapshot_verified(&path, Some(&public)).unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::Signature(SignatureError::Invalid)
    ));
    // The shared handle refuses it too and keeps what it had.
    let shared = SharedVulnDb::new(db.clone());
    assert!(shared.reload(&path, Some(&public)).is_err());
    assert_eq!(shared.get().version(), db.version());

    // Bundles received as bytes: same rules.
    let sig = hex::decode(signature::sign_hex(&key, &bundle)).unwrap();
    assert!(VulnDb::from_bundle(&bundle, Some(&sig), Some(&public)).is_ok());
    assert!(VulnDb::from_bundle(&bundle, None, None).is_ok());
    assert!(matches!(
        VulnDb::from_bundle(&bundle, None, Some(&public)),
        Err(SnapshotError::Signature(SignatureError::Missing))
    ));
    assert!(matches!(
        VulnDb::from_bundle(&tampered, Some(&sig), Some(&public)),
        Err(SnapshotError::Signature(SignatureError::Invalid))
    ));

    // Public keys parse from hex or raw bytes.
    let hex_key = hex::encode(public.as_bytes());
    assert_eq!(
        signature::parse_public_key(hex_key.as_bytes()).unwrap(),
        public
    );
    assert_eq!(
        signature::parse_public_key(public.as_bytes()).unwrap(),
        public
    );
    assert!(signature::parse_public_key(b"short").is_err());
}
