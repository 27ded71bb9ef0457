//! The entry points of the fuzz targets (`crates/scan/fuzz`, one target per parser of untrusted
//! input), here so that the stable test suite replays the seed corpora and every crash input
//! through exactly the code the fuzzer ran (`tests/fuzz_corpus.rs`).
//!
//! Each takes arbitrary bytes and must return without panicking, whatever they are. Files go
//! through [`analyze_file`] with the path and [`Want`] the layer walker would give them, so the
//! fuzzer exercises the analyser as the walker calls it. The limits are smaller than the
//! defaults so that the fuzzer spends its time on parsing rather than on copying, and
//! [`fuzz_limits`] is what every target uses.

use berth_oci::Digest;

use crate::analyzer::{self, AnalyzerOptions, Want, golang, rpm, rust};
use crate::layer;

/// A fuzz target: its name (the `fuzz_targets/<name>.rs` file) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `crates/scan/fuzz/run` runs them.
pub const TARGETS: &[Target] = &[
    ("tar_walker", tar_walker),
    ("os_release", os_release),
    ("dpkg_status", dpkg_status),
    ("dpkg_file_list", dpkg_file_list),
    ("apk_installed", apk_installed),
    ("rpm_header", rpm_header),
    ("rpm_sqlite", rpm_sqlite),
    ("rpm_bdb", rpm_bdb),
    ("rpm_ndb", rpm_ndb),
    ("python_metadata", python_metadata),
    ("npm_package_json", npm_package_json),
    ("npm_package_lock", npm_package_lock),
    ("gemspec", gemspec),
    ("java_archive", java_archive),
    ("cargo_lock", cargo_lock),
    ("go_buildinfo", go_buildinfo),
    ("dep_v0", dep_v0),
    ("binary", binary),
];

/// The entry point of the target `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The limits every target analyses with.
pub fn fuzz_limits() -> AnalyzerOptions {
    AnalyzerOptions {
        max_text_size: 1 << 20,
        max_binary_size: 1 << 20,
        max_archive_expansion: 8 << 20,
    }
}

fn file(path: &str, want: Want, data: &[u8]) {
    let digest = Digest::sha256_of(b"fuzz");
    let mut warnings = Vec::new();
    let _ = analyzer::analyze_file(&digest, path, want, data, &fuzz_limits(), &mut warnings);
}

/// A layer blob: the first byte picks how the rest is compressed (0 none, 1 gzip, 2 zstd,
/// anything else: detected, as for `docker save` layers). The digest is the rest's own, so the
/// walk is not cut short by a mismatch, and the layer is then merged on its own (whiteouts,
/// links, purls of whatever was found).
pub fn tar_walker(data: &[u8]) {
    let Some((&selector, blob)) = data.split_first() else {
        return;
    };
    let media_type = match selector {
        0 => "application/vnd.oci.image.layer.v1.tar",
        1 => "application/vnd.oci.image.layer.v1.tar+gzip",
        2 => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => crate::source::DOCKER_ARCHIVE_LAYER,
    };
    let digest = Digest::sha256_of(blob);
    if let Ok(index) =
        layer::index_layer(&digest, media_type, blob, &fuzz_limits(), Box::new(|_| {}))
    {
        let _ = crate::merge::inventory(&[index]);
    }
}

pub fn os_release(data: &[u8]) {
    file("etc/os-release", Want::OsRelease, data);
}

pub fn dpkg_status(data: &[u8]) {
    file("var/lib/dpkg/status", Want::DpkgStatus, data);
}

/// `info/*.list` and `*.md5sums`, the two forms of a package's file list.
pub fn dpkg_file_list(data: &[u8]) {
    file("var/lib/dpkg/info/libc6:amd64.list", Want::DpkgList, data);
    file(
        "var/lib/dpkg/status.d/libc6.md5sums",
        Want::DpkgMd5sums,
        data,
    );
}

pub fn apk_installed(data: &[u8]) {
    file("lib/apk/db/installed", Want::ApkInstalled, data);
}

/// One header blob as the three databases store it.
pub fn rpm_header(data: &[u8]) {
    let _ = rpm::parse_header(data);
}

pub fn rpm_sqlite(data: &[u8]) {
    file("var/lib/rpm/rpmdb.sqlite", Want::RpmSqlite, data);
}

pub fn rpm_bdb(data: &[u8]) {
    file("var/lib/rpm/Packages", Want::RpmBdb, data);
}

pub fn rpm_ndb(data: &[u8]) {
    file("usr/lib/sysimage/rpm/Packages.db", Want::RpmNdb, data);
}

pub fn python_metadata(data: &[u8]) {
    file(
        "usr/lib/python3/dist-packages/x-1.0.dist-info/METADATA",
        Want::PythonMetadata,
        data,
    );
}

pub fn npm_package_json(data: &[u8]) {
    file(
        "app/node_modules/x/package.json",
        Want::NpmPackageJson,
        data,
    );
}

pub fn npm_package_lock(data: &[u8]) {
    file("app/package-lock.json", Want::NpmLock, data);
}

pub fn gemspec(data: &[u8]) {
    file(
        "usr/lib/ruby/gems/3.1.0/specifications/x-1.0.gemspec",
        Want::Gemspec,
        data,
    );
}

/// A `.jar` (zip), with `pom.properties`, `MANIFEST.MF` and nested archives.
pub fn java_archive(data: &[u8]) {
    file("opt/app/lib/x.jar", Want::JavaArchive, data);
}

pub fn cargo_lock(data: &[u8]) {
    file("src/app/Cargo.lock", Want::CargoLock, data);
}

/// Go build info: found in a whole file (ELF section or 16-byte-aligned magic), both header
/// layouts, then the module list turned into packages.
pub fn go_buildinfo(data: &[u8]) {
    if let Ok(info) = golang::read_build_info(data) {
        let _ = golang::packages(&info);
    }
}

/// cargo-auditable: the `.dep-v0` section found in an ELF file, and the section's content
/// (zlib-compressed JSON) on its own.
pub fn dep_v0(data: &[u8]) {
    let _ = rust::read_auditable(data);
    let _ = rust::parse_dep_v0(data);
}

/// An executable as the walker hands it over: whole (Go build info, `.dep-v0`, classifiers),
/// and as a stream in windows, as for binaries over the size cap.
pub fn binary(data: &[u8]) {
    file("usr/bin/x", Want::MaybeBinary, data);
    let mut warnings = Vec::new();
    let (head, rest) = data.split_at(data.len().min(4));
    let _ = analyzer::stream_binary("usr/bin/x", head, &mut &rest[..], &mut warnings);
}
