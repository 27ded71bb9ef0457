//! Snapshot loading on arbitrary bytes: an error, never a panic, and whatever loads matches
//! without panicking. The input is sealed as a snapshot body with a correct header half of the
//! time, so the fuzzer reaches the validation behind the digest check.

#![no_main]

use berth_vulndb::db::VulnDb;
use berth_vulndb::matching::PackageRef;
use berth_vulndb::versions::Ecosystem;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Some((&seal, body)) = data.split_first() else {
        return;
    };
    let bytes = if seal % 2 == 0 {
        let digest = hex::encode(Sha256::digest(body));
        let mut out = format!("BERTH-VULNDB 1\nsha256:{digest} {}\n", body.len()).into_bytes();
        out.extend_from_slice(body);
        out
    } else {
        body.to_vec()
    };
    if let Ok(db) = VulnDb::from_snapshot_bytes(&bytes) {
        let packages: Vec<PackageRef> = db
            .advisories()
            .iter()
            .flat_map(|a| &a.affected)
            .take(50)
            .map(|a| PackageRef {
                ecosystem: a.ecosystem,
                name: a.name.clone(),
                version: match a.ecosystem {
                    Ecosystem::Go => "v1.0.0".to_string(),
                    _ => "1.0.0".to_string(),
                },
                source_name: None,
                source_version: None,
                release: a.release.clone(),
                evidence: Default::default(),
            })
            .collect();
        let _ = db.match_packages(&packages);
    }
});
