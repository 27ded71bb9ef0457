//! Property tests of the parsers of untrusted input: whatever the bytes, a result or an error,
//! never a panic; and what a well-formed input says comes back out.

use berth_oci::Digest;
use berth_scan::analyzer::{AnalyzerOptions, apk, dpkg, golang, java, os, rpm};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn token() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.+~-]{0,20}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn dpkg_status_never_panics(text in "(?s).{0,2000}") {
        let _ = dpkg::parse_status(&text);
        let _ = dpkg::parse_file_list("x", &text, true);
    }

    #[test]
    fn dpkg_status_round_trips(pkgs in prop::collection::vec((token(), token(), prop::option::of((token(), prop::option::of(token())))), 1..8)) {
        let mut text = String::new();
        for (name, version, source) in &pkgs {
            text.push_str(&format!("Package: {name}\nStatus: install ok installed\nVersion: {version}\nArchitecture: amd64\n"));
            match source {
                Some((s, Some(v))) => text.push_str(&format!("Source: {s} ({v})\n")),
                Some((s, None)) => text.push_str(&format!("Source: {s}\n")),
                None => {}
            }
            text.push_str("Description: x\n long\n .\n text\n\n");
        }
        let got = dpkg::parse_status(&text);
        prop_assert_eq!(got.len(), pkgs.len());
        for (p, (name, version, source)) in got.iter().zip(&pkgs) {
            prop_assert_eq!(&p.name, name);
            prop_assert_eq!(&p.version, version);
            let src = p.source.as_ref().unwrap();
            let (sn, sv) = match source {
                Some((s, Some(v))) => (s, v),
                Some((s, None)) => (s, version),
                None => (name, version),
            };
            prop_assert_eq!(&src.name, sn);
            prop_assert_eq!(&src.version, sv);
        }
    }

    #[test]
    fn apk_db_never_panics(text in "(?s).{0,2000}") {
        let _ = apk::parse_installed(&text);
    }

    #[test]
    fn apk_db_round_trips(pkgs in prop::collection::vec((token(), token(), prop::collection::vec(token(), 0..4)), 1..8)) {
        let mut text = String::new();
        for (name, version, files) in &pkgs {
            text.push_str(&format!("C:Q1abc=\nP:{name}\nV:{version}\nA:x86_64\no:origin-{name}\nF:usr/lib\n"));
            for f in files {
                text.push_str(&format!("R:{f}\na:0:0:755\n"));
            }
            text.push('\n');
        }
        let got = apk::parse_installed(&text);
        prop_assert_eq!(got.len(), pkgs.len());
        for (p, (name, version, files)) in got.iter().zip(&pkgs) {
            prop_assert_eq!(&p.name, name);
            prop_assert_eq!(&p.version, version);
            prop_assert_eq!(p.source.as_ref().unwrap().name.clone(), format!("origin-{name}"));
            let want: Vec<String> = files.iter().map(|f| format!("usr/lib/{f}")).collect();
            prop_assert_eq!(&p.files, &want);
        }
    }

    #[test]
    fn os_release_never_panics(text in "(?s).{0,500}") {
        let _ = os::parse_os_release(&text);
    }

    #[test]
    fn rpm_header_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = rpm::parse_header(&bytes);
    }

    #[test]
    fn mutated_real_rpm_headers_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
        let mut h = fixture("rpm/header-1.bin");
        for (i, b) in flips {
            let at = i.index(h.len());
            h[at] = b;
        }
        let _ = rpm::parse_header(&h);
    }

    #[test]
    fn rpm_header_round_trips(name in "[a-z][a-z0-9-]{0,20}", version in token(), release in token(), epoch in prop::option::of(0u32..100)) {
        use rpm::tags::*;
        let h = rpm::build_header(
            &[(NAME, &[&name]), (VERSION, &[&version]), (RELEASE, &[&release]), (ARCH, &["x86_64"]),
              (BASENAMES, &["a", "b"]), (DIRNAMES, &["/usr/bin/", "/etc/"])],
            epoch,
            &[0, 1],
        );
        let p = rpm::parse_header(&h).unwrap().unwrap();
        prop_assert_eq!(&p.name, &name);
        let vr = format!("{version}-{release}");
        let want = match epoch { Some(e) => format!("{e}:{vr}"), None => vr };
        prop_assert_eq!(&p.version, &want);
        prop_assert_eq!(&p.files, &vec!["usr/bin/a".to_owned(), "etc/b".to_owned()]);
    }

    #[test]
    fn rpm_containers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..8192)) {
        let mut bdb = vec![0u8; 64];
        bdb[12..16].copy_from_slice(&0x061561u32.to_le_bytes());
        bdb[20..24].copy_from_slice(&512u32.to_le_bytes());
        bdb[32..36].copy_from_slice(&1000u32.to_le_bytes());
        bdb.extend_from_slice(&bytes);
        let _ = rpm::read_bdb(&bdb);
        let mut ndb = b"RpmP\0\0\0\0\0\0\0\0\x01\0\0\0".to_vec();
        ndb.extend_from_slice(&bytes);
        let _ = rpm::read_ndb(&ndb);
    }

    #[test]
    fn go_buildinfo_never_panics(prefix in prop::collection::vec(any::<u8>(), 0..64), rest in prop::collection::vec(any::<u8>(), 0..512), flags in any::<u8>(), ptr in any::<u8>()) {
        let mut data = prefix.clone();
        data.resize(prefix.len().div_ceil(16) * 16, 0);
        data.extend_from_slice(b"\xff Go buildinf:");
        data.push(ptr);
        data.push(flags);
        data.extend_from_slice(&rest);
        let _ = golang::read_build_info(&data);
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.extend_from_slice(&rest);
        let _ = golang::read_build_info(&elf);
    }

    #[test]
    fn go_modinfo_never_panics(text in "(?s).{0,1000}") {
        let info = golang::parse_modinfo("go1.22.0".into(), &text);
        let _ = golang::packages(&info);
    }

    #[test]
    fn java_archives_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut w = Vec::new();
        let _ = java::analyze_archive("x.jar", &bytes, &AnalyzerOptions::default(), &mut w);
        let mut zipish = b"PK\x03\x04".to_vec();
        zipish.extend_from_slice(&bytes);
        let _ = java::analyze_archive("x.jar", &zipish, &AnalyzerOptions::default(), &mut w);
    }

    #[test]
    fn layers_of_random_bytes_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let d = Digest::sha256_of(&bytes);
        for mt in ["application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+zstd"] {
            let _ = berth_scan::layer::index_layer(&d, mt, bytes.as_slice(), &AnalyzerOptions::default(), Box::new(|_| {}));
        }
    }
}
