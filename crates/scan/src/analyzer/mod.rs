//! The analysers: which files each wants, and what it finds in them.
//!
//! Each analyser is a pure function of one file's path and bytes, so a layer can be indexed on
//! its own (and cached) and the merge decides later which files survive in the final image.

pub mod apk;
pub mod binary;
pub mod dpkg;
pub mod golang;
pub mod java;
pub mod lang;
pub mod os;
pub mod rpm;
pub mod rust;

use crate::model::{Evidence, FileFindings};
use berth_oci::Digest;

/// What kind of file an analyser wants, decided from the path alone (and, for
/// [`Want::MaybeBinary`], from the file's first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    OsRelease,
    DpkgStatus,
    DpkgList,
    DpkgMd5sums,
    ApkInstalled,
    RpmSqlite,
    RpmBdb,
    RpmNdb,
    CargoLock,
    PythonMetadata,
    NpmPackageJson,
    NpmLock,
    JavaArchive,
    Gemspec,
    /// An executable or shared-library-looking file: read if its first bytes say ELF.
    MaybeBinary,
}

impl Want {
    /// Text databases are read up to the text cap, archives and binaries up to the binary cap.
    pub fn is_large(self) -> bool {
        matches!(
            self,
            Want::MaybeBinary | Want::JavaArchive | Want::RpmSqlite | Want::RpmBdb | Want::RpmNdb
        )
    }
}

/// Which analyser, if any, wants the regular file at `path` (normalised) with `mode`.
pub fn wants(path: &str, mode: u32) -> Option<Want> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    Some(match path {
        "etc/os-release" | "usr/lib/os-release" => Want::OsRelease,
        "var/lib/dpkg/status" => Want::DpkgStatus,
        "lib/apk/db/installed" | "usr/lib/apk/db/installed" => Want::ApkInstalled,
        "var/lib/rpm/rpmdb.sqlite" | "usr/lib/sysimage/rpm/rpmdb.sqlite" => Want::RpmSqlite,
        "var/lib/rpm/Packages" | "usr/lib/sysimage/rpm/Packages" => Want::RpmBdb,
        "var/lib/rpm/Packages.db" | "usr/lib/sysimage/rpm/Packages.db" => Want::RpmNdb,
        _ if parent == "var/lib/dpkg/status.d" => {
            if base.ends_with(".md5sums") {
                Want::DpkgMd5sums
            } else {
                Want::DpkgStatus
            }
        }
        _ if parent == "var/lib/dpkg/info" && base.ends_with(".list") => Want::DpkgList,
        _ if parent == "var/lib/dpkg/info" && base.ends_with(".md5sums") => Want::DpkgMd5sums,
        _ if base == "Cargo.lock" => Want::CargoLock,
        _ if (base == "METADATA" && parent.ends_with(".dist-info"))
            || (base == "PKG-INFO" && parent.ends_with(".egg-info"))
            || (base.ends_with(".egg-info") && parent.contains("-packages")) =>
        {
            Want::PythonMetadata
        }
        _ if base == "package.json" && parent.contains("node_modules/") => Want::NpmPackageJson,
        _ if base == "package-lock.json" && !parent.contains("node_modules") => Want::NpmLock,
        _ if base.ends_with(".jar") || base.ends_with(".war") || base.ends_with(".ear") => {
            Want::JavaArchive
        }
        _ if base.ends_with(".gemspec") && parent.ends_with("specifications") => Want::Gemspec,
        _ if mode & 0o111 != 0 || base.contains(".so") => Want::MaybeBinary,
        _ => return None,
    })
}

/// Limits that keep memory bounded whatever the image.
#[derive(Debug, Clone)]
pub struct AnalyzerOptions {
    /// Largest text database (dpkg status, apk installed, lock files) read into memory.
    pub max_text_size: u64,
    /// Largest binary, archive or RPM database read into memory. ELF files over it are scanned
    /// as a stream instead (the classifiers, and Go build info since Go 1.18), so the default
    /// keeps an analysis under 100 MB; archives and databases over it are skipped with a
    /// warning.
    pub max_binary_size: u64,
    /// Bytes a Java archive may expand to, nested archives included.
    pub max_archive_expansion: u64,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        AnalyzerOptions {
            max_text_size: 64 << 20,
            max_binary_size: 48 << 20,
            max_archive_expansion: 256 << 20,
        }
    }
}

/// Runs the analyser that wanted the file. Problems become `warnings` (messages about this
/// file), never errors: one bad file must not hide the rest of the image.
pub fn analyze_file(
    layer: &Digest,
    path: &str,
    want: Want,
    data: &[u8],
    opts: &AnalyzerOptions,
    warnings: &mut Vec<String>,
) -> Option<FileFindings> {
    let text = || String::from_utf8_lossy(data);
    let mut f = FileFindings {
        path: path.to_owned(),
        ..Default::default()
    };
    let base = path.rsplit('/').next().unwrap_or(path);
    match want {
        Want::OsRelease => f.os = os::parse_os_release(&text()),
        Want::DpkgStatus => f.packages = dpkg::parse_status(&text()),
        Want::DpkgList => {
            f.file_list = Some(dpkg::parse_file_list(
                base.trim_end_matches(".list"),
                &text(),
                false,
            ))
        }
        Want::DpkgMd5sums => {
            f.file_list = Some(dpkg::parse_file_list(
                base.trim_end_matches(".md5sums"),
                &text(),
                true,
            ))
        }
        Want::ApkInstalled => f.packages = apk::parse_installed(&text()),
        Want::RpmSqlite => match rpm::read_sqlite(data) {
            Ok(p) => f.packages = p,
            Err(e) => warnings.push(e.to_string()),
        },
        Want::RpmBdb => match rpm::read_bdb(data) {
            Ok(p) => f.packages = p,
            Err(e) => warnings.push(e.to_string()),
        },
        Want::RpmNdb => match rpm::read_ndb(data) {
            Ok(p) => f.packages = p,
            Err(e) => warnings.push(e.to_string()),
        },
        Want::CargoLock => f.packages = lang::parse_cargo_lock(&text()),
        Want::PythonMetadata => {
            f.packages = lang::parse_python_metadata(&text()).into_iter().collect()
        }
        Want::NpmPackageJson => match lang::parse_package_json(data) {
            Ok(p) => f.packages = p.into_iter().collect(),
            Err(e) => warnings.push(e),
        },
        Want::NpmLock => match lang::parse_package_lock(data) {
            Ok(p) => f.packages = p,
            Err(e) => warnings.push(e),
        },
        Want::JavaArchive => f.packages = java::analyze_archive(path, data, opts, warnings),
        Want::Gemspec => f.packages = lang::parse_gemspec(&text()).into_iter().collect(),
        Want::MaybeBinary => f.packages = analyze_binary(path, data, warnings),
    }
    for p in &mut f.packages {
        if p.evidence.is_empty() {
            p.evidence.push(Evidence {
                layer: layer.clone(),
                path: path.to_owned(),
            });
        }
    }
    (f.os.is_some() || !f.packages.is_empty() || f.file_list.is_some()).then_some(f)
}

/// Go build info, cargo-auditable dependency lists, then the classifier table.
fn analyze_binary(path: &str, data: &[u8], warnings: &mut Vec<String>) -> Vec<Package> {
    let mut out = Vec::new();
    let mut is_go = false;
    match golang::read_build_info(data) {
        Ok(info) => {
            is_go = true;
            out.extend(golang::packages(&info));
        }
        Err(golang::BuildInfoError::NotGo) => {}
        Err(e) => warnings.push(e.to_string()),
    }
    match rust::read_auditable(data) {
        Ok(Some(p)) => out.extend(p),
        Ok(None) => {}
        Err(e) => warnings.push(e),
    }
    out.extend(
        binary::classify(path, data)
            .into_iter()
            .filter(|p| !(is_go && p.name == "go")),
    );
    out
}

use std::io::{self, Read};

use crate::model::Package;

/// How much of an oversized binary is held at once, and how much of each window is kept for
/// the next so that a string cut by a window boundary is still seen whole.
const WINDOW: usize = 4 << 20;
const OVERLAP: usize = 4 << 10;
/// Bytes kept after a Go build info header: the module list of a large program is tens of KiB.
const GO_CAPTURE: usize = 1 << 20;

/// Scans a binary too large to hold, window by window: the classifier table, and Go build info
/// in the inline layout (Go 1.18+), whose module list follows its header. `head` is what was
/// already read of the file.
pub fn stream_binary(
    path: &str,
    head: &[u8],
    rest: &mut impl Read,
    warnings: &mut Vec<String>,
) -> io::Result<Vec<Package>> {
    let magic = golang::MAGIC_FINDER
        .as_ref()
        .ok_or_else(|| io::Error::other("Go magic regex"))?;
    let mut found: Vec<Package> = Vec::new();
    let mut window: Vec<u8> = Vec::with_capacity(WINDOW + OVERLAP);
    window.extend_from_slice(head);
    // Absolute offset of window[0] in the file.
    let mut base: u64 = 0;
    let mut go: Option<Vec<u8>> = None;
    let mut go_done = false;
    loop {
        let before = window.len();
        rest.take((WINDOW + OVERLAP - before) as u64)
            .read_to_end(&mut window)?;
        let eof = window.len() < WINDOW + OVERLAP;
        // Classifiers: keep the first version each one finds.
        for p in binary::classify(path, &window) {
            if !found.iter().any(|f| f.name == p.name) {
                found.push(p);
            }
        }
        // Go build info: find the header (16-byte aligned in the file), then collect what follows.
        if !go_done {
            match go.as_mut() {
                Some(buf) => {
                    let new = &window[OVERLAP.min(window.len())..];
                    let take = (GO_CAPTURE - buf.len()).min(new.len());
                    buf.extend_from_slice(&new[..take]);
                }
                None => {
                    if let Some(m) = magic
                        .find_iter(&window)
                        .find(|m| (base + m.start() as u64).is_multiple_of(16))
                    {
                        let end = (m.start() + GO_CAPTURE).min(window.len());
                        go = Some(window[m.start()..end].to_vec());
                    }
                }
            }
            if let Some(buf) = &go
                && (buf.len() >= GO_CAPTURE || eof)
            {
                go_done = true;
                match golang::read_build_info(buf) {
                    Ok(info) => found.extend(golang::packages(&info)),
                    Err(e) => warnings.push(e.to_string()),
                }
            }
        }
        if eof {
            break;
        }
        let keep = window.len() - OVERLAP;
        window.drain(..keep);
        base += keep as u64;
    }
    if found
        .iter()
        .any(|p| p.ecosystem == crate::model::Ecosystem::Golang)
    {
        found.retain(|p| p.name != "go" || p.ecosystem != crate::model::Ecosystem::Binary);
    }
    Ok(found)
}
