//! The fuzz targets' inputs, replayed on stable through the same entry points
//! (`berth_scan::fuzz`): the seed corpora, made here from the committed fixtures, and every
//! input that once crashed a target (`fuzz/regressions/<target>/`).
//!
//! `BERTH_FUZZ_SEEDS=DIR` also writes the seeds to `DIR/<target>/`, which is how
//! `fuzz/run` seeds the fuzzer's corpora (see `fuzz/README.md`).

mod common;

use std::path::{Path, PathBuf};

use berth_scan::fuzz::{TARGETS, target};
use common::*;
use object::{Object, ObjectSection};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// A layer seed: the selector byte of `tar_walker` and the layer's bytes.
fn layer_seed(entries: &[Entry], c: Comp) -> Vec<u8> {
    let selector = match c {
        Comp::None => 0,
        Comp::Gzip => 1,
        Comp::Zstd => 2,
    };
    let mut out = vec![selector];
    out.extend_from_slice(&compress(&layer_tar(entries), c).0);
    out
}

fn dep_v0_section() -> Vec<u8> {
    let bin = fixture("rust/audhello");
    let file = object::File::parse(bin.as_slice()).unwrap();
    let section = file.section_by_name(".dep-v0").unwrap();
    section.data().unwrap().to_vec()
}

/// The seeds of one target, by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let fx = |name: &str| (name.replace('/', "-"), fixture(name));
    let inline = |name: &str, text: &str| (name.to_owned(), text.as_bytes().to_vec());
    let headers = vec![fixture("rpm/header-1.bin"), fixture("rpm/header-2.bin")];
    match target {
        "tar_walker" => {
            let debian = vec![
                dir("etc"),
                symlink("etc/os-release", "../usr/lib/os-release"),
                file("usr/lib/os-release", fixture("os-release-debian12")),
                file("var/lib/dpkg/status", fixture("dpkg-status")),
                file(
                    "var/lib/dpkg/info/libc6:amd64.list",
                    "/.\n/usr\n/usr/bin/ldd\n",
                ),
                exe("usr/bin/terraform", fixture("go-buildinfo-terraform.bin")),
                hardlink("usr/bin/tf", "usr/bin/terraform"),
            ];
            let upper = vec![
                file("usr/lib/.wh.os-release", ""),
                file("var/lib/dpkg/.wh..wh..opq", ""),
                file("lib/apk/db/installed", fixture("apk-installed")),
                file("etc/os-release", fixture("os-release-alpine319")),
                file(
                    "usr/lib/python3/site-packages/antlr4-4.13.1.dist-info/METADATA",
                    fixture("python/antlr4-METADATA"),
                ),
                file("opt/app/javax.inject-1.jar", fixture("javax.inject-1.jar")),
                file(
                    "app/node_modules/@scope/thing/package.json",
                    r#"{"name":"@scope/thing","version":"1.0.0","license":"MIT"}"#,
                ),
                file("var/lib/rpm/Packages.db", ndb(&headers)),
            ];
            let mut out = Vec::new();
            for (name, c) in [
                ("none", Comp::None),
                ("gzip", Comp::Gzip),
                ("zstd", Comp::Zstd),
            ] {
                out.push((format!("debian-{name}"), layer_seed(&debian, c)));
                out.push((format!("upper-{name}"), layer_seed(&upper, c)));
            }
            // A tar that ends after its last file's data, as umoci 0.4 writes some.
            let mut cut = layer_seed(&upper, Comp::None);
            cut.truncate(cut.len() - 1024);
            out.push(("upper-no-end-blocks".into(), cut));
            out
        }
        "os_release" => [
            "os-release-alpine319",
            "os-release-debian12",
            "os-release-distroless",
            "os-release-rocky9",
            "os-release-ubi9",
            "os-release-ubuntu2204",
            "os-release-wolfi",
        ]
        .iter()
        .map(|n| fx(n))
        .collect(),
        "dpkg_status" => vec![
            fx("dpkg-status"),
            fx("distroless/base-files"),
            fx("distroless/libssl3"),
        ],
        "dpkg_file_list" => vec![
            fx("distroless/libssl3.md5sums"),
            inline(
                "list",
                "/.\n/usr\n/usr/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu/libc.so.6\n",
            ),
        ],
        "apk_installed" => vec![fx("apk-installed")],
        "rpm_header" => vec![fx("rpm/header-1.bin"), fx("rpm/header-2.bin")],
        "rpm_sqlite" => vec![fx("rpm/rpmdb.sqlite")],
        "rpm_bdb" => vec![("Packages".into(), bdb(&headers))],
        "rpm_ndb" => vec![("Packages.db".into(), ndb(&headers))],
        "python_metadata" => vec![
            fx("python/antlr4-METADATA"),
            fx("python/mypy_extensions-METADATA"),
        ],
        "npm_package_json" => vec![
            inline(
                "scoped",
                r#"{"name":"@scope/thing","version":"1.0.0","license":"MIT"}"#,
            ),
            inline(
                "license-object",
                r#"{"name":"thing","version":"2.1.0-beta.1","license":{"type":"ISC"}}"#,
            ),
        ],
        "npm_package_lock" => vec![
            inline(
                "v3",
                r#"{"name":"app","version":"1.0.0","lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/a":{"version":"1.0.0"},"node_modules/a/node_modules/@s/b":{"version":"2.0.0"}}}"#,
            ),
            inline(
                "v1",
                r#"{"lockfileVersion":1,"dependencies":{"a":{"version":"1.0.0","dependencies":{"b":{"version":"2.0.0"}}}}}"#,
            ),
        ],
        "gemspec" => vec![inline(
            "rack-3.0.8.gemspec",
            "# -*- encoding: utf-8 -*-\n# stub: rack 3.0.8 ruby lib\n\nGem::Specification.new do |s|\n  s.name = \"rack\".freeze\n  s.version = \"3.0.8\".freeze\n  s.licenses = [\"MIT\".freeze]\nend\n",
        )],
        "java_archive" => vec![fx("cdi-api-1.2.jar"), fx("javax.inject-1.jar")],
        "cargo_lock" => vec![(
            "Cargo.lock".into(),
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock")).unwrap(),
        )],
        "go_buildinfo" => vec![fx("go-buildinfo-terraform.bin")],
        "dep_v0" => vec![
            fx("rust/audhello"),
            ("dep-v0-section".into(), dep_v0_section()),
        ],
        "binary" => vec![
            fx("rust/audhello"),
            fx("go-buildinfo-terraform.bin"),
            ("openssl".into(), {
                let mut b = b"\x7fELF\x02\x01\x01".to_vec();
                b.resize(64, 0);
                b.extend_from_slice(b"\0OpenSSL 3.0.11 19 Sep 2023\0");
                b
            }),
        ],
        other => panic!("no seeds for the fuzz target {other}"),
    }
}

#[test]
fn seed_corpora_replay_through_the_fuzz_targets() {
    let write_to = std::env::var_os("BERTH_FUZZ_SEEDS").map(PathBuf::from);
    for (name, run) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for (seed, data) in &seeds {
            run(data);
            if let Some(dir) = &write_to {
                let d = dir.join(name);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(seed), data).unwrap();
            }
        }
    }
}

#[test]
fn crash_inputs_replay_through_the_fuzz_targets() {
    let dir = fuzz_dir().join("regressions");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        let name = entry.file_name().into_string().unwrap();
        let run = target(&name).unwrap_or_else(|| panic!("{}: no such fuzz target", name));
        for input in std::fs::read_dir(entry.path()).unwrap() {
            let path = input.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            replayed += 1;
        }
    }
    eprintln!("{replayed} crash inputs replayed");
}

/// Every target of `berth_scan::fuzz::TARGETS` has its file in `fuzz/fuzz_targets`, calling
/// that entry point, and a `[[bin]]` in `fuzz/Cargo.toml`; and there are no others.
#[test]
fn fuzz_crate_and_entry_points_agree() {
    let mut files: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .into_string()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    files.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(files, names);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in &names {
        let src =
            std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(
            src.contains(&format!("berth_scan::fuzz::{name}(data)")),
            "fuzz_targets/{name}.rs does not call berth_scan::fuzz::{name}"
        );
        assert!(
            manifest.contains(&format!(
                "name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\""
            )),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
    }
}
