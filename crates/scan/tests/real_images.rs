//! Real images, built on this machine by `scripts/test-images` with the tools that build such
//! images in the wild (debootstrap, pip, npm, cargo-auditable, Debian's Go toolchain, rpm), read
//! from its cache (`BERTH_TEST_IMAGES`, default `~/.cache/berth/images`).
//!
//! Each inventory is checked whole against a snapshot (`tests/snapshots`, insta), with the
//! digests replaced by the layer they name: a digest depends on the tools' exact output (gzip,
//! the Rust and Go toolchains), the layer it names does not. What a snapshot cannot pin (the
//! versions of Debian's point release, the Go toolchain's) is replaced too, and checked exactly
//! against what the package manager itself reported when the image was built (`dpkg-query`,
//! `rpm -qa`, `go version -m`).
//!
//! Missing or stale images fail these tests: run `scripts/test-images`.

mod common;

use common::run;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_scan::{AnalyzeOptions, Ecosystem, ImageReport, LocalSource, MemoryLayerCache, Package};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn images_dir() -> PathBuf {
    match std::env::var_os("BERTH_TEST_IMAGES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".cache/berth/images"),
    }
}

/// The directory of image `name`, after `scripts/test-images --check` said it is there and
/// built by the current recipe.
fn image_dir(name: &str) -> PathBuf {
    let script = repo_root().join("scripts/test-images");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args(["--check", name])
        .env("BERTH_TEST_IMAGES", images_dir())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{}the test image {name:?} is missing or stale: run scripts/test-images",
        String::from_utf8_lossy(&out.stderr)
    );
    images_dir().join(name)
}

fn analyze_with(name: &str, options: &AnalyzeOptions) -> ImageReport {
    let layout = image_dir(name).join("layout");
    run(async {
        let source = LocalSource::oci_layout(&layout).unwrap();
        berth_scan::analyze_image(&source, name, options, berth_scan::no_progress()).await
    })
    .unwrap_or_else(|e| panic!("analysing {}: {e}", layout.display()))
}

fn analyze(name: &str) -> ImageReport {
    analyze_with(name, &AnalyzeOptions::default())
}

/// A file the image's recipe wrote next to it (the package manager's own listing).
fn oracle(name: &str, file: &str) -> String {
    let p = image_dir(name).join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The report as Berth's JSON, with every digest replaced by what it names (`<layer N>`,
/// `<manifest>`, `<config>`) and compressed layer sizes left out.
fn redacted(r: &ImageReport) -> Value {
    let mut names: Vec<(String, String)> =
        vec![(r.manifest_digest.to_string(), "<manifest>".into())];
    if let Some(c) = &r.config_digest {
        names.push((c.to_string(), "<config>".into()));
    }
    for (i, l) in r.layers.iter().enumerate() {
        names.push((l.digest.to_string(), format!("<layer {i}>")));
    }
    let mut v = berth_scan::output::to_json(r);
    for l in v["layers"].as_array_mut().unwrap() {
        l["size"] = Value::from("<size>");
    }
    replace_strings(&mut v, &|s| {
        names
            .iter()
            .find(|(d, _)| d == s)
            .map(|(_, label)| label.clone())
    });
    v
}

/// Replaces every string of `v` (values only, not keys) for which `f` gives a replacement.
fn replace_strings(v: &mut Value, f: &dyn Fn(&str) -> Option<String>) {
    match v {
        Value::String(s) => {
            if let Some(new) = f(s) {
                *s = new;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_strings(x, f)),
        _ => {}
    }
}

fn get<'a>(r: &'a ImageReport, name: &str) -> &'a Package {
    r.packages
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no package {name} in {:?}", names(r)))
}

fn names(r: &ImageReport) -> Vec<String> {
    r.packages
        .iter()
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect()
}

#[test]
fn debian_bookworm_from_debootstrap() {
    let r = analyze("debian");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // Exactly what dpkg-query said of the same database: name, version, architecture, and the
    // source package and version (which dpkg-query fills in when the Source field is absent).
    let want: BTreeSet<String> = oracle("debian", "dpkg-query.tsv")
        .lines()
        .map(str::to_owned)
        .collect();
    let got: BTreeSet<String> = r
        .packages
        .iter()
        .map(|p| {
            let src = p.source.as_ref().expect("a source package");
            format!(
                "{}\t{}\t{}\t{}\t{}",
                p.name,
                p.version,
                p.arch.as_deref().unwrap_or_default(),
                src.name,
                src.version
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(r.packages.len(), want.len(), "a package reported twice");
    // Every binary and library of the image belongs to a package: nothing else is reported.
    assert!(r.packages.iter().all(|p| p.ecosystem == Ecosystem::Deb));
    let libc = get(&r, "libc6");
    assert_eq!(
        libc.purl,
        format!(
            "pkg:deb/debian/libc6@{}?arch=amd64&distro=debian-12&upstream=glibc",
            libc.version.replace('+', "%2B")
        )
    );

    // The snapshot pins everything but the point release's versions.
    let mut v = redacted(&r);
    for p in v["packages"].as_array_mut().unwrap() {
        let version = p["version"].as_str().unwrap().to_owned();
        let source = p["source"]["version"].as_str().unwrap().to_owned();
        let enc = |s: &str| s.replace('+', "%2B");
        let purl = p["purl"]
            .as_str()
            .unwrap()
            .replace(&format!("%40{}", enc(&source)), "%40<source version>")
            .replace(&format!("@{}?", enc(&version)), "@<version>?");
        p["purl"] = purl.into();
        p["version"] = "<version>".into();
        p["source"]["version"] = "<source version>".into();
    }
    insta::assert_json_snapshot!("debian", v);
}

#[test]
fn python_packages_from_pip_install_target() {
    let r = analyze("python");
    let urllib3 = get(&r, "urllib3");
    assert_eq!(urllib3.version, "1.24.1");
    assert_eq!(urllib3.purl, "pkg:pypi/urllib3@1.24.1");
    assert_eq!(
        get(&r, "typing-extensions").properties["python.name"],
        "typing_extensions"
    );
    insta::assert_json_snapshot!("python", redacted(&r));
}

#[test]
fn npm_packages_from_npm_install() {
    let r = analyze("npm");
    // The nested copy of ms that debug 2.6.8 needs, beside the app's own.
    let ms: Vec<(&str, &str)> = r
        .packages
        .iter()
        .filter(|p| p.name == "ms")
        .map(|p| (p.version.as_str(), p.evidence[0].path.as_str()))
        .collect();
    assert_eq!(
        ms,
        [
            (
                "2.0.0",
                "srv/app/node_modules/debug/node_modules/ms/package.json"
            ),
            ("2.1.3", "srv/app/node_modules/ms/package.json")
        ]
    );
    assert_eq!(
        get(&r, "@sindresorhus/is").purl,
        "pkg:npm/%40sindresorhus/is@4.6.0"
    );
    insta::assert_json_snapshot!("npm", redacted(&r));
}

#[test]
fn rust_binary_from_cargo_auditable() {
    let r = analyze("rust");
    let smallvec = get(&r, "smallvec");
    assert_eq!(smallvec.version, "1.6.0");
    assert_eq!(smallvec.purl, "pkg:cargo/smallvec@1.6.0");
    assert_eq!(smallvec.found_by, "cargo-auditable");
    insta::assert_json_snapshot!("rust", redacted(&r));
}

#[test]
fn go_binary_from_debian_golang() {
    let r = analyze("go");
    // What `go version -m` printed for the binary: toolchain, main module, dependencies.
    let listing = oracle("go", "go-version-m.txt");
    let toolchain = listing
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("go version -m output")
        .to_owned();
    let mut want = vec![];
    for line in listing.lines().skip(1) {
        let f: Vec<&str> = line.trim_start().split('\t').collect();
        match f[0] {
            "mod" => want.push(format!("{}@{}", f[1], f[2].replace("(devel)", ""))),
            "dep" => want.push(format!("{}@{}", f[1], f[2])),
            _ => {}
        }
    }
    want.push(format!("stdlib@{toolchain}"));
    assert_eq!(names(&r), want);
    assert!(
        r.packages
            .iter()
            .all(|p| p.name == "stdlib" || p.properties["go.toolchain"] == toolchain)
    );
    let text = get(&r, "golang.org/x/text");
    assert_eq!(
        text.purl,
        format!("pkg:golang/golang.org/x/text@{}", text.version)
    );

    // The snapshot pins everything but the toolchain's version (Debian's golang-go).
    let mut v = redacted(&r);
    let bare = toolchain.trim_start_matches("go").to_owned();
    replace_strings(&mut v, &|s| {
        s.contains(&toolchain)
            .then(|| s.replace(&toolchain, "<go version>"))
            .or_else(|| {
                s.contains(&bare)
                    .then(|| s.replace(&bare, "<bare go version>"))
            })
    });
    insta::assert_json_snapshot!("go", v);
}

#[test]
fn rpm_database_written_by_rpm() {
    let r = analyze("rpm");
    // What `rpm -qa` said of the same database.
    let want: Vec<String> = oracle("rpm", "rpm-qa.tsv")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let epoch = if f[1] == "(none)" {
                String::new()
            } else {
                format!("{}:", f[1])
            };
            format!("{}@{epoch}{}-{}\t{}\t{}", f[0], f[2], f[3], f[4], f[5])
        })
        .collect();
    let got: Vec<String> = r
        .packages
        .iter()
        .map(|p| {
            format!(
                "{}@{}\t{}\t{}",
                p.name,
                p.version,
                p.arch.as_deref().unwrap_or_default(),
                p.properties["rpm.sourcerpm"]
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(r.os.as_ref().unwrap().id, "rocky");
    insta::assert_json_snapshot!("rpm", redacted(&r));
}

#[test]
fn whiteouts_and_an_opaque_directory_over_real_layers() {
    let r = analyze("whiteouts");
    // urllib3 1.24.1 (layer 0) was deleted by whiteouts and 1.26.18 installed in layer 2.
    let urllib3: Vec<&Package> = r.packages.iter().filter(|p| p.name == "urllib3").collect();
    assert_eq!(urllib3.len(), 1, "{:?}", names(&r));
    assert_eq!(urllib3[0].version, "1.26.18");
    assert_eq!(urllib3[0].evidence[0].layer, r.layers[2].digest);
    assert_eq!(get(&r, "requests").evidence[0].layer, r.layers[0].digest);
    // The opaque node_modules hides every package layer 1 installed; only the new lodash and
    // the new lock file's entries are left.
    let npm: Vec<String> = r
        .packages
        .iter()
        .filter(|p| p.ecosystem == Ecosystem::Npm)
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    assert_eq!(npm, ["lodash@4.17.21"]);
    insta::assert_json_snapshot!("whiteouts", redacted(&r));
}

/// The whiteouts image shares its two lower layers with the python and npm images: with one
/// cache, they are indexed once.
#[test]
fn layers_shared_between_real_images_are_indexed_once() {
    let cache = Arc::new(MemoryLayerCache::default());
    let options = AnalyzeOptions {
        cache: Some(cache),
        ..Default::default()
    };
    let python = analyze_with("python", &options);
    let npm = analyze_with("npm", &options);
    let whiteouts = analyze_with("whiteouts", &options);
    assert!(!python.layers[0].cached && !npm.layers[0].cached);
    let cached: Vec<bool> = whiteouts.layers.iter().map(|l| l.cached).collect();
    assert_eq!(cached, [true, true, false]);
    assert_eq!(whiteouts.layers[0].digest, python.layers[0].digest);
    assert_eq!(whiteouts.layers[1].digest, npm.layers[0].digest);
    // Cached or not, the same inventory.
    let fresh = analyze("whiteouts");
    assert_eq!(whiteouts.packages, fresh.packages);
}
