//! RPM databases (a real `rpmdb.sqlite` written by rpm 4.18, and its real header blobs in
//! Berkeley DB and NDB containers), and language packages (real Python metadata, real jars,
//! this workspace's Cargo.lock, npm, RubyGems).

mod common;

use std::io::Write;

use berth_scan::analyzer::{java, lang, rpm};
use berth_scan::{AnalyzeOptions, Ecosystem};
use common::*;

fn rhel() -> Entry {
    file("etc/os-release", fixture("os-release-ubi9"))
}

fn check_rpm_report(r: &berth_scan::ImageReport, db_path: &str) {
    assert_eq!(
        names(r),
        ["hello-berth@2:1.2.3-4.el9", "libdemo@0.9-4.el9"],
        "{db_path}"
    );
    let hello = find(r, "hello-berth").unwrap();
    assert_eq!(
        hello.purl,
        "pkg:rpm/redhat/hello-berth@1.2.3-4.el9?arch=x86_64&distro=rhel-9.3&epoch=2&upstream=hello-berth-1.2.3-4.el9.src.rpm"
    );
    let src = hello.source.as_ref().unwrap();
    assert_eq!(
        (src.name.as_str(), src.version.as_str()),
        ("hello-berth", "2:1.2.3-4.el9")
    );
    assert_eq!(hello.licenses, ["Apache-2.0"]);
    assert_eq!(hello.evidence[0].path, db_path);
    assert_eq!(find(r, "libdemo").unwrap().arch.as_deref(), Some("x86_64"));
}

#[test]
fn rpmdb_sqlite_written_by_rpm() {
    for path in [
        "var/lib/rpm/rpmdb.sqlite",
        "usr/lib/sysimage/rpm/rpmdb.sqlite",
    ] {
        let r = analyze_layers(
            &[vec![rhel(), file(path, fixture("rpm/rpmdb.sqlite"))]],
            Comp::Gzip,
        );
        check_rpm_report(&r, path);
    }
    let pkgs = rpm::read_sqlite(&fixture("rpm/rpmdb.sqlite")).unwrap();
    let hello = pkgs.iter().find(|p| p.name == "hello-berth").unwrap();
    assert_eq!(hello.files, ["etc/hello/hello.conf", "usr/bin/hello-berth"]);
    assert!(rpm::read_sqlite(b"not a database").is_err());
}

#[test]
fn berkeley_db_and_ndb_containers_of_real_headers() {
    let blobs = vec![fixture("rpm/header-1.bin"), fixture("rpm/header-2.bin")];
    let r = analyze_layers(
        &[vec![rhel(), file("var/lib/rpm/Packages", bdb(&blobs))]],
        Comp::Gzip,
    );
    check_rpm_report(&r, "var/lib/rpm/Packages");
    let r = analyze_layers(
        &[vec![
            rhel(),
            file("usr/lib/sysimage/rpm/Packages.db", ndb(&blobs)),
        ]],
        Comp::Gzip,
    );
    check_rpm_report(&r, "usr/lib/sysimage/rpm/Packages.db");
    // Garbage is a warning, not a failure.
    let r = analyze_layers(
        &[vec![rhel(), file("var/lib/rpm/Packages", vec![7u8; 8192])]],
        Comp::Gzip,
    );
    assert!(r.packages.is_empty());
    assert!(
        r.warnings.iter().any(|w| w.message.contains("Berkeley DB")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn rpm_files_attribute_binaries() {
    // libdemo owns usr/lib64/libdemo.so.0: a zlib copy there is the package's, not a finding.
    let r = analyze_layers(
        &[vec![
            rhel(),
            file("var/lib/rpm/rpmdb.sqlite", fixture("rpm/rpmdb.sqlite")),
            real(
                "usr/lib64/libdemo.so.0",
                "/usr/lib/x86_64-linux-gnu/libz.so.1",
            ),
            real("usr/lib64/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"),
        ]],
        Comp::Gzip,
    );
    let z = find(&r, "zlib").unwrap();
    assert_eq!(
        z.evidence
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
        ["usr/lib64/libz.so.1"]
    );
}

#[test]
fn truncated_rpm_headers_are_errors() {
    let h = fixture("rpm/header-1.bin");
    for cut in [0, 4, 8, 20, 100, h.len() - 1] {
        assert!(rpm::parse_header(&h[..cut]).is_err(), "cut at {cut}");
    }
    let p = rpm::parse_header(&h).unwrap().unwrap();
    assert!(!p.files.is_empty());
}

#[test]
fn python_metadata() {
    let r = analyze_layers(
        &[vec![
            file(
                "usr/lib/python3.11/site-packages/mypy_extensions-1.1.0.dist-info/METADATA",
                fixture("python/mypy_extensions-METADATA"),
            ),
            file(
                "usr/local/lib/python3.11/dist-packages/antlr4_python3_runtime-4.13.2.dist-info/METADATA",
                fixture("python/antlr4-METADATA"),
            ),
            file(
                "usr/lib/python3/dist-packages/Jinja2.egg-info/PKG-INFO",
                "Metadata-Version: 1.1\nName: Jinja2\nVersion: 3.1.2\nLicense: BSD-3-Clause\n\nlong description\n",
            ),
        ]],
        Comp::Gzip,
    );
    assert_eq!(
        names(&r),
        [
            "antlr4-python3-runtime@4.13.2",
            "jinja2@3.1.2",
            "mypy-extensions@1.1.0"
        ]
    );
    let m = find(&r, "mypy-extensions").unwrap();
    assert_eq!(m.purl, "pkg:pypi/mypy-extensions@1.1.0");
    assert_eq!(m.licenses, ["MIT"]);
    assert_eq!(m.properties["python.name"], "mypy_extensions");
    assert_eq!(lang::pep503("Foo.Bar__baz-"), "foo-bar-baz");
}

#[test]
fn npm_installed_and_locked() {
    let lock = r#"{"name":"app","version":"1.0.0","lockfileVersion":3,"packages":{
        "":{"name":"app","version":"1.0.0"},
        "node_modules/express":{"version":"4.18.2"},
        "node_modules/express/node_modules/debug":{"version":"2.6.9"},
        "node_modules/@types/node":{"version":"20.10.0"},
        "packages/local":{"version":"0.0.1"},
        "node_modules/local":{"resolved":"packages/local","link":true}}}"#;
    let r = analyze_layers(
        &[vec![
            file("srv/app/package-lock.json", lock),
            file(
                "srv/app/node_modules/express/package.json",
                r#"{"name":"express","version":"4.18.2","license":"MIT"}"#,
            ),
            file("srv/app/node_modules/broken/package.json", "{not json"),
        ]],
        Comp::Gzip,
    );
    let express: Vec<_> = r.packages.iter().filter(|p| p.name == "express").collect();
    // The installed one and the locked one are the same package: one entry, two locations.
    assert_eq!(express.len(), 1);
    assert_eq!(express[0].evidence.len(), 2);
    let t = find(&r, "@types/node").unwrap();
    assert_eq!(t.purl, "pkg:npm/%40types/node@20.10.0");
    assert_eq!(t.properties["declared"], "true");
    assert!(find(&r, "debug").is_some());
    assert!(find(&r, "local").is_none());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.path.as_deref() == Some("srv/app/node_modules/broken/package.json"))
    );
    // v1 lock files.
    let v1 = br#"{"lockfileVersion":1,"dependencies":{"a":{"version":"1.0.0","dependencies":{"b":{"version":"2.0.0"}}}}}"#;
    let mut got: Vec<_> = lang::parse_package_lock(v1)
        .unwrap()
        .into_iter()
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    got.sort();
    assert_eq!(got, ["a@1.0.0", "b@2.0.0"]);
}

/// Lock files are read one entry at a time; what does not have the expected shape loses that
/// entry, not the file.
#[test]
fn npm_lock_files_of_odd_shapes() {
    let check = |lock: &str, want: &[&str]| {
        let got: Vec<String> = lang::parse_package_lock(lock.as_bytes())
            .unwrap_or_else(|e| panic!("{lock}: {e}"))
            .into_iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(got, want, "{lock}");
    };
    // Entries that are not objects, versions that are not strings, an entry naming itself.
    check(
        r#"{"packages":{"node_modules/a":5,"node_modules/b":{"version":2},"node_modules/c":{"version":"1.0.0","name":"@s/c"},"node_modules/d":{"version":"3.0.0","link":"yes"}}}"#,
        &["@s/c@1.0.0", "d@3.0.0"],
    );
    // `packages` that is not an object: the v1 `dependencies` are read instead.
    check(
        r#"{"packages":[1,2],"dependencies":{"x":{"version":"1.0.0","dependencies":[]},"y":"1.0.0"}}"#,
        &["x@1.0.0"],
    );
    // Escaped keys and unknown fields of every type.
    check(
        r#"{"lockfileVersion":3,"extra":{"deep":[{"a":null}]},"packages":{"node_modules/\u0061b":{"version":"1.2.3","integrity":"sha512-x","dependencies":{"q":"^1"}}}}"#,
        &["ab@1.2.3"],
    );
    check(r#"{"name":"empty"}"#, &[]);
    assert!(lang::parse_package_lock(b"[1,2,3]").is_err());
    assert!(lang::parse_package_lock(br#"{"packages":{"node_modules/a":{"version":"1""#).is_err());
}

#[test]
fn cargo_lock_of_this_workspace() {
    let lock = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).unwrap();
    let r = analyze_layers(&[vec![file("src/berth/Cargo.lock", lock)]], Comp::Gzip);
    let tar = find(&r, "tar").unwrap();
    assert!(tar.purl.starts_with("pkg:cargo/tar@0.4."));
    assert!(tar.properties["cargo.source"].starts_with("registry+"));
    assert_eq!(
        find(&r, "berth-scan").unwrap().properties["cargo.local"],
        "true"
    );
    assert!(r.packages.iter().all(|p| p.ecosystem == Ecosystem::Cargo));
}

#[test]
fn ruby_gemspecs() {
    // As RubyGems writes specifications/<name>-<version>.gemspec.
    let spec = "# -*- encoding: utf-8 -*-\n# stub: rack 3.0.8 ruby lib\n\nGem::Specification.new do |s|\n  s.name = \"rack\".freeze\n  s.version = \"3.0.8\".freeze\n\n  s.required_rubygems_version = Gem::Requirement.new(\">= 0\".freeze) if s.respond_to? :required_rubygems_version=\n  s.authors = [\"Leah Neukirchen\".freeze]\n  s.licenses = [\"MIT\".freeze]\n  s.summary = \"A modular Ruby webserver interface\".freeze\nend\n";
    let r = analyze_layers(
        &[vec![file(
            "usr/local/bundle/specifications/rack-3.0.8.gemspec",
            spec,
        )]],
        Comp::Gzip,
    );
    let rack = find(&r, "rack").unwrap();
    assert_eq!(rack.purl, "pkg:gem/rack@3.0.8");
    assert_eq!(rack.licenses, ["MIT"]);
}

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn java_archives_real_and_nested() {
    let cdi = fixture("cdi-api-1.2.jar");
    let inject = fixture("javax.inject-1.jar");
    let war = zip(&[
        ("WEB-INF/lib/cdi-api-1.2.jar", &cdi),
        ("WEB-INF/lib/javax.inject-1.jar", &inject),
        ("index.html", b"<html/>"),
    ]);
    let r = analyze_layers(
        &[vec![
            file("opt/app/app.war", war),
            file("usr/share/java/cdi-api-1.2.jar", cdi.clone()),
        ]],
        Comp::Gzip,
    );
    let cdi_pkg = find(&r, "javax.enterprise:cdi-api").unwrap();
    assert_eq!(cdi_pkg.purl, "pkg:maven/javax.enterprise/cdi-api@1.2");
    let locations: Vec<_> = cdi_pkg.evidence.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        locations,
        ["opt/app/app.war", "usr/share/java/cdi-api-1.2.jar"]
    );
    // No pom.properties: the manifest and the file name.
    let inject_pkg = r
        .packages
        .iter()
        .find(|p| p.ecosystem == Ecosystem::Maven && p.name.ends_with("javax.inject"))
        .unwrap();
    assert_eq!(inject_pkg.version, "1.0.0");
}

#[test]
fn a_zip_bomb_in_a_jar_is_bounded() {
    let mut opts = berth_scan::AnalyzerOptions {
        max_archive_expansion: 8 << 20,
        ..Default::default()
    };
    let zeros = vec![0u8; 64 << 20];
    let bomb = zip(&[
        ("BOOT-INF/lib/bomb.jar", &zeros),
        (
            "META-INF/maven/x/y/pom.properties",
            b"groupId=x\nartifactId=y\nversion=1\n",
        ),
    ]);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let mut warnings = Vec::new();
    let pkgs = java::analyze_archive("app.jar", &bomb, &opts, &mut warnings);
    assert_eq!(pkgs.len(), 1);
    assert!(
        warnings.iter().any(|w| w.contains("budget")),
        "{warnings:?}"
    );
    // Nested deeper than allowed, and garbage.
    opts.max_archive_expansion = 256 << 20;
    let mut inner = zip(&[(
        "META-INF/maven/a/b/pom.properties",
        b"groupId=a\nartifactId=b\nversion=2\n",
    )]);
    for i in 0..5 {
        inner = zip(&[(&format!("lib/l{i}.jar"), &inner)]);
    }
    let mut warnings = Vec::new();
    assert!(java::analyze_archive("deep.jar", &inner, &opts, &mut warnings).is_empty());
    assert!(
        warnings.iter().any(|w| w.contains("deeper")),
        "{warnings:?}"
    );
    let mut warnings = Vec::new();
    assert!(java::analyze_archive("junk.jar", b"PK\x03\x04 junk", &opts, &mut warnings).is_empty());
    assert!(!warnings.is_empty());
    let r = analyze_layers_with(
        &[vec![file("app.jar", bomb)]],
        Comp::Gzip,
        AnalyzeOptions {
            limits: opts,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(names(&r), ["x:y@1"]);
}
