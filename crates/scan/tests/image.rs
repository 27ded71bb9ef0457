//! Layers, the merge, the OS and OS packages, through the whole pipeline: OCI layouts written
//! here, analysed with `analyze_image`.

mod common;

use berth_scan::{AnalyzeOptions, Ecosystem, ScanError};
use common::*;

fn debian_base() -> Vec<Entry> {
    vec![
        dir("etc"),
        symlink("etc/os-release", "../usr/lib/os-release"),
        file("usr/lib/os-release", fixture("os-release-debian12")),
        file("var/lib/dpkg/status", fixture("dpkg-status")),
    ]
}

#[test]
fn debian_with_os_release_symlink_across_layers() {
    // The symlink is in the first layer, its target only in the second.
    let l1 = vec![
        dir("etc"),
        symlink("etc/os-release", "../usr/lib/os-release"),
    ];
    let l2 = vec![
        file("usr/lib/os-release", fixture("os-release-debian12")),
        file("var/lib/dpkg/status", fixture("dpkg-status")),
    ];
    for c in [Comp::None, Comp::Gzip, Comp::Zstd] {
        let r = analyze_layers(&[l1.clone(), l2.clone()], c);
        let os = r.os.as_ref().expect("os");
        assert_eq!(
            (
                os.id.as_str(),
                os.version_id.as_deref(),
                os.version_codename.as_deref()
            ),
            ("debian", Some("12"), Some("bookworm"))
        );
        assert!(!os.distroless);
        let debs: Vec<_> = r
            .packages
            .iter()
            .filter(|p| p.ecosystem == Ecosystem::Deb)
            .collect();
        assert_eq!(debs.len(), 9, "{:?} with {c:?}", names(&r));
        let bash = find(&r, "bash").unwrap();
        assert_eq!(bash.version, "5.2.15-2+b8");
        let src = bash.source.as_ref().unwrap();
        assert_eq!(
            (src.name.as_str(), src.version.as_str()),
            ("bash", "5.2.15-2")
        );
        assert_eq!(
            bash.purl,
            "pkg:deb/debian/bash@5.2.15-2%2Bb8?arch=amd64&distro=debian-12&upstream=bash%405.2.15-2"
        );
        let libssl = find(&r, "libssl3").unwrap();
        let src = libssl.source.as_ref().unwrap();
        assert_eq!(
            (src.name.as_str(), src.version.as_str()),
            ("openssl", "3.0.19-1~deb12u2")
        );
        let curl = find(&r, "curl").unwrap();
        assert_eq!(curl.source.as_ref().unwrap().name, "curl");
        assert_eq!(
            find(&r, "zlib1g").unwrap().purl,
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"
        );
        assert!(
            find(&r, "oldpkg").is_none(),
            "config-files-only packages are not installed"
        );
        assert_eq!(bash.evidence[0].path, "var/lib/dpkg/status");
        assert_eq!(bash.evidence[0].layer, r.layers[1].digest);
    }
}

#[test]
fn this_machines_dpkg_status_parses_completely() {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    let installed = status
        .lines()
        .filter(|l| l.starts_with("Status: ") && l.ends_with(" installed"))
        .count();
    let pkgs = berth_scan::analyzer::dpkg::parse_status(&status);
    assert_eq!(pkgs.len(), installed);
    assert!(
        pkgs.iter()
            .all(|p| !p.version.is_empty() && p.source.is_some())
    );
}

#[test]
fn whiteouts_opaque_dirs_and_overrides() {
    let l1 = {
        let mut v = debian_base();
        v.push(file("app/a/package.json", "{}"));
        v.push(file(
            "opt/old/node_modules/left-pad/package.json",
            r#"{"name":"left-pad","version":"1.0.0"}"#,
        ));
        v.push(file(
            "opt/keep/node_modules/keep/package.json",
            r#"{"name":"keep","version":"1.0.0"}"#,
        ));
        v.push(file(
            "srv/node_modules/gone/package.json",
            r#"{"name":"gone","version":"1.0.0"}"#,
        ));
        v.push(file(
            "srv2/node_modules/replaced/package.json",
            r#"{"name":"replaced","version":"1.0.0"}"#,
        ));
        v
    };
    let l2 = vec![
        // Opaque: hides everything the lower layer put under opt/old, but not what this layer adds.
        file("opt/old/.wh..wh..opq", ""),
        file(
            "opt/old/node_modules/new/package.json",
            r#"{"name":"new","version":"2.0.0"}"#,
        ),
        // Whiteout of a directory.
        file("srv/.wh.node_modules", ""),
        // Override.
        file(
            "srv2/node_modules/replaced/package.json",
            r#"{"name":"replaced","version":"2.0.0"}"#,
        ),
        // A newer status without curl: the dpkg database in the final image is this one.
        file("var/lib/dpkg/status", {
            let s = String::from_utf8(fixture("dpkg-status")).unwrap();
            s.split("\n\n")
                .filter(|p| !p.starts_with("Package: curl\n"))
                .collect::<Vec<_>>()
                .join("\n\n")
        }),
    ];
    let r = analyze_layers(&[l1, l2], Comp::Gzip);
    let n = names(&r);
    assert!(!n.contains(&"left-pad@1.0.0".into()), "{n:?}");
    assert!(n.contains(&"new@2.0.0".into()));
    assert!(n.contains(&"keep@1.0.0".into()));
    assert!(!n.contains(&"gone@1.0.0".into()));
    assert!(n.contains(&"replaced@2.0.0".into()) && !n.contains(&"replaced@1.0.0".into()));
    assert!(find(&r, "curl").is_none());
    assert!(find(&r, "libcurl4").is_some());
}

#[test]
fn whiteout_of_os_release_and_file_replacing_directory() {
    let l1 = debian_base();
    let l2 = vec![
        file("usr/lib/.wh.os-release", ""),
        file("var/lib/dpkg", "now a file"),
    ];
    let r = analyze_layers(&[l1, l2], Comp::None);
    assert!(r.os.is_none());
    assert!(
        r.packages.iter().all(|p| p.ecosystem != Ecosystem::Deb),
        "{:?}",
        names(&r)
    );
}

#[test]
fn hard_links_share_their_targets_findings() {
    let l1 = vec![
        real("usr/lib/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"),
        hardlink("opt/libz-copy.so.1", "usr/lib/libz.so.1"),
    ];
    // A hard link in a later layer to a file of an earlier one.
    let l2 = vec![hardlink("opt/libz-again.so.1", "usr/lib/libz.so.1")];
    let r = analyze_layers(&[l1, l2], Comp::Gzip);
    let z = find(&r, "zlib").expect("zlib");
    let paths: Vec<_> = z.evidence.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "opt/libz-again.so.1",
            "opt/libz-copy.so.1",
            "usr/lib/libz.so.1"
        ],
        "{:?}",
        z.evidence
    );
}

#[test]
fn os_release_variants() {
    let check = |fixture_name: &str, id: &str, version: &str, distroless: bool| {
        let r = analyze_layers(
            &[vec![file("etc/os-release", fixture(fixture_name))]],
            Comp::None,
        );
        let os = r.os.unwrap();
        assert_eq!(
            (
                os.id.as_str(),
                os.version_id.as_deref().unwrap_or(""),
                os.distroless
            ),
            (id, version, distroless),
            "{fixture_name}"
        );
    };
    check("os-release-debian12", "debian", "12", false);
    check("os-release-ubuntu2204", "ubuntu", "22.04", false);
    check("os-release-alpine319", "alpine", "3.19.1", false);
    check("os-release-ubi9", "rhel", "9.3", false);
    check("os-release-rocky9", "rocky", "9.3", false);
    check("os-release-wolfi", "wolfi", "20230201", false);
    check("os-release-distroless", "debian", "12", true);
}

#[test]
fn distroless_status_d() {
    let r = analyze_layers(
        &[vec![
            file("etc/os-release", fixture("os-release-distroless")),
            file(
                "var/lib/dpkg/status.d/base-files",
                fixture("distroless/base-files"),
            ),
            file(
                "var/lib/dpkg/status.d/libssl3",
                fixture("distroless/libssl3"),
            ),
            file(
                "var/lib/dpkg/status.d/libssl3.md5sums",
                fixture("distroless/libssl3.md5sums"),
            ),
            // The OpenSSL library owned by libssl3: attributed to the package, not reported again.
            real(
                "usr/lib/x86_64-linux-gnu/libcrypto.so.3",
                "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
            ),
            // The same library at a path no package owns: a finding of its own.
            real(
                "opt/vendored/libcrypto.so.3",
                "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
            ),
        ]],
        Comp::Gzip,
    );
    assert_eq!(
        names(&r)
            .iter()
            .filter(|n| !n.starts_with("openssl@"))
            .count(),
        2,
        "{:?}",
        names(&r)
    );
    let ssl = find(&r, "libssl3").unwrap();
    assert_eq!(ssl.source.as_ref().unwrap().name, "openssl");
    assert_eq!(
        ssl.purl,
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl"
    );
    let openssl = find(&r, "openssl").expect("vendored openssl");
    assert_eq!(openssl.evidence.len(), 1);
    assert_eq!(openssl.evidence[0].path, "opt/vendored/libcrypto.so.3");
    assert!(
        openssl.cpes[0].starts_with("cpe:2.3:a:openssl:openssl:3.0."),
        "{:?}",
        openssl.cpes
    );
}

#[test]
fn dpkg_info_lists_attribute_binaries() {
    let mut l = debian_base();
    l.push(file(
        "var/lib/dpkg/info/zlib1g:amd64.list",
        "/.\n/usr\n/usr/lib/x86_64-linux-gnu/libz.so.1.2.13\n",
    ));
    l.push(real(
        "usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
        "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
    ));
    let r = analyze_layers(&[l], Comp::Gzip);
    assert!(
        find(&r, "zlib").is_none(),
        "owned by zlib1g: {:?}",
        names(&r)
    );
    // Without the list the library is reported as a binary finding.
    let mut l = debian_base();
    l.push(real(
        "usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
        "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
    ));
    let r = analyze_layers(&[l], Comp::Gzip);
    let z = find(&r, "zlib").expect("zlib");
    assert_eq!(z.version, "1.2.13");
    assert_eq!(z.purl, "pkg:generic/zlib@1.2.13");
    assert_eq!(z.cpes, ["cpe:2.3:a:zlib:zlib:1.2.13:*:*:*:*:*:*:*"]);
}

#[test]
fn alpine_apk_database() {
    for db in ["lib/apk/db/installed", "usr/lib/apk/db/installed"] {
        let r = analyze_layers(
            &[vec![
                file("etc/os-release", fixture("os-release-alpine319")),
                file(db, fixture("apk-installed")),
                // Owned by libcrypto3 through F:/R:, so not a second finding.
                real(
                    "usr/lib/libcrypto.so.3",
                    "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
                ),
            ]],
            Comp::Gzip,
        );
        assert_eq!(
            names(&r),
            [
                "busybox@1.36.1-r15",
                "libcrypto3@3.1.4-r5",
                "musl@1.2.4_git20230717-r4"
            ],
            "{db}"
        );
        let c = find(&r, "libcrypto3").unwrap();
        assert_eq!(c.source.as_ref().unwrap().name, "openssl");
        assert_eq!(
            c.purl,
            "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1"
        );
        assert_eq!(c.licenses, ["Apache-2.0"]);
    }
}

#[test]
fn unknown_media_type_is_rejected_clearly() {
    let mut l = Layout::new();
    let d = l.image(
        &[(
            layer_tar(&debian_base()),
            "application/vnd.example.layer.v1+squashfs",
        )],
        "amd64",
    );
    l.tag(d, "t");
    l.write_index();
    let err = run(async {
        let src = berth_scan::LocalSource::oci_layout(l.path()).unwrap();
        berth_scan::analyze_image(
            &src,
            "t",
            &AnalyzeOptions::default(),
            berth_scan::no_progress(),
        )
        .await
    })
    .unwrap_err();
    assert!(
        matches!(err, ScanError::UnsupportedMediaType { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("squashfs"), "{err}");
}

/// Writes a layout whose layer blob is `blob` (stored under its own digest) and analyses it.
fn analyze_blob(blob: Vec<u8>, media_type: &str) -> Result<berth_scan::ImageReport, ScanError> {
    let mut l = Layout::new();
    let d = l.image(&[(blob, media_type)], "amd64");
    l.tag(d, "t");
    l.write_index();
    run(async {
        let src = berth_scan::LocalSource::oci_layout(l.path()).unwrap();
        berth_scan::analyze_image(
            &src,
            "t",
            &AnalyzeOptions::default(),
            berth_scan::no_progress(),
        )
        .await
    })
}

#[test]
fn truncated_and_corrupt_layers_are_errors() {
    let tar = layer_tar(&debian_base());
    let (gz, mt) = compress(&tar, Comp::Gzip);
    let err = analyze_blob(gz[..gz.len() / 2].to_vec(), mt).unwrap_err();
    assert!(matches!(err, ScanError::Layer { .. }), "{err}");
    let mut bad = gz.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    bad[n / 2 + 1] ^= 0xff;
    assert!(analyze_blob(bad, mt).is_err());
    let (zs, zmt) = compress(&tar, Comp::Zstd);
    assert!(analyze_blob(zs[..zs.len() - 10].to_vec(), zmt).is_err());
    // A tar whose header checksum is wrong.
    let mut t = tar.clone();
    t[100] ^= 0x55;
    let err = analyze_blob(t, "application/vnd.oci.image.layer.v1.tar").unwrap_err();
    assert!(err.to_string().contains("layer"), "{err}");
    // Random bytes announced as gzip.
    assert!(analyze_blob(vec![0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7], mt).is_err());
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_an_error() {
    let mut l = Layout::new();
    let (gz, mt) = compress(&layer_tar(&debian_base()), Comp::Gzip);
    let d = l.image(&[(gz, mt)], "amd64");
    l.tag(d, "t");
    l.write_index();
    // Tamper with the layer file after the manifest recorded its digest.
    let (other, _) = compress(&layer_tar(&[file("x", "y")]), Comp::Gzip);
    for e in std::fs::read_dir(l.path().join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let b = std::fs::read(&p).unwrap();
        if b.starts_with(&[0x1f, 0x8b]) {
            std::fs::write(&p, &other).unwrap();
        }
    }
    let err = run(async {
        let src = berth_scan::LocalSource::oci_layout(l.path()).unwrap();
        berth_scan::analyze_image(
            &src,
            "t",
            &AnalyzeOptions::default(),
            berth_scan::no_progress(),
        )
        .await
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
}

#[test]
fn hostile_paths_are_skipped_with_warnings() {
    let r = analyze_layers(
        &[vec![
            Entry::RawFile {
                path: b"../../etc/os-release".to_vec(),
                data: fixture("os-release-alpine319"),
            },
            Entry::RawFile {
                path: b"/usr/lib/os-release".to_vec(),
                data: fixture("os-release-debian12"),
            },
            Entry::RawFile {
                path: b"./var/../../x".to_vec(),
                data: b"x".to_vec(),
            },
        ]],
        Comp::None,
    );
    // The absolute path is read relative to the root, with a warning; the climbing ones skipped.
    assert_eq!(r.os.unwrap().id, "debian");
    let msgs: Vec<_> = r.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        msgs.iter().filter(|m| m.contains("climbs out")).count(),
        2,
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("absolute path")), "{msgs:?}");
}

#[test]
fn oversized_files_are_skipped_with_warnings() {
    let mut opts = AnalyzeOptions::default();
    opts.limits.max_text_size = 1024;
    let mut big = fixture("dpkg-status");
    big.resize(4096, b'\n');
    let r =
        analyze_layers_with(&[vec![file("var/lib/dpkg/status", big)]], Comp::Gzip, opts).unwrap();
    assert!(r.packages.is_empty());
    assert!(
        r.warnings.iter().any(
            |w| w.path.as_deref() == Some("var/lib/dpkg/status") && w.message.contains("limit")
        ),
        "{:?}",
        r.warnings
    );
}

#[test]
fn ownership_through_a_merged_usr_symlink() {
    // Debian bookworm: /lib is a symlink to usr/lib, dpkg records /lib/... paths.
    let mut l = debian_base();
    l.push(symlink("lib", "usr/lib"));
    l.push(file(
        "var/lib/dpkg/info/zlib1g:amd64.list",
        "/.\n/lib/x86_64-linux-gnu/libz.so.1.2.13\n",
    ));
    l.push(real(
        "usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
        "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
    ));
    let r = analyze_layers(&[l], Comp::Gzip);
    assert!(find(&r, "zlib").is_none(), "{:?}", names(&r));
}

#[test]
fn ownership_through_merged_usr_aliases_without_the_symlink() {
    let mut l = debian_base();
    l.push(file(
        "var/lib/dpkg/info/zlib1g:amd64.list",
        "/lib/x86_64-linux-gnu/libz.so.1.2.13\n",
    ));
    l.push(real(
        "usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
        "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
    ));
    let r = analyze_layers(&[l], Comp::Gzip);
    assert!(find(&r, "zlib").is_none(), "{:?}", names(&r));
}

#[test]
fn a_tar_without_end_blocks_is_read_with_a_warning() {
    // As umoci 0.4 writes some layers: the last file's data, then nothing.
    let full = layer_tar(&[
        file("etc/os-release", fixture("os-release-alpine319")),
        file("x/y", "hello"),
    ]);
    let end = 512 * 3 + 5; // header, os-release data (< 512), header, "hello"
    assert!(fixture("os-release-alpine319").len() < 512);
    let cut = full[..end].to_vec();
    let (gz, mt) = compress(&cut, Comp::Gzip);
    let r = analyze_blob(gz, mt).unwrap();
    assert_eq!(r.os.unwrap().id, "alpine");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.message.contains("end-of-archive")),
        "{:?}",
        r.warnings
    );
    // Cut inside the last file's data: an error.
    let (gz, mt) = compress(&full[..end - 2], Comp::Gzip);
    assert!(analyze_blob(gz, mt).is_err());
    // Cut inside a header: an error.
    let (gz, mt) = compress(&full[..512 * 2 + 100], Comp::Gzip);
    assert!(analyze_blob(gz, mt).is_err());
}
