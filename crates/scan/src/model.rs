//! The inventory's data model: what a layer index and an image report hold.

use std::collections::BTreeMap;

use berth_oci::Digest;
use serde::{Deserialize, Serialize};

/// Bumped whenever an analyser changes what it finds, so cached [`LayerIndex`]es from an older
/// analyser are recomputed rather than trusted.
pub const ANALYZER_VERSION: u32 = 2;

/// Where a package's ecosystem is; decides its purl type and how versions compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Deb,
    Apk,
    Rpm,
    Golang,
    Cargo,
    Pypi,
    Npm,
    Maven,
    Gem,
    /// A program or library recognised from the strings compiled into a binary.
    Binary,
}

impl Ecosystem {
    pub fn is_os(self) -> bool {
        matches!(self, Ecosystem::Deb | Ecosystem::Apk | Ecosystem::Rpm)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Golang => "golang",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Pypi => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Maven => "maven",
            Ecosystem::Gem => "gem",
            Ecosystem::Binary => "binary",
        }
    }
}

/// Where a package was seen: the layer that holds the file, and the file's path in the image
/// (relative, without a leading `/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Evidence {
    pub layer: Digest,
    pub path: String,
}

/// The source package a binary package was built from (Debian `Source:`, Alpine origin, RPM
/// source RPM). Vulnerability data is mostly keyed by source package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePackage {
    pub name: String,
    pub version: String,
}

/// One package of the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    /// The name in its ecosystem: Debian binary package, Go module path, PEP 503 normalised
    /// Python name, npm name with its `@scope/`, Maven `group:artifact`.
    pub name: String,
    /// The version as the ecosystem writes it; for RPM `[epoch:]version-release`. Empty when a
    /// binary was recognised but its version was not.
    pub version: String,
    pub ecosystem: Ecosystem,
    /// Filled in when the image report is assembled (the distro qualifier needs the final OS).
    #[serde(default)]
    pub purl: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourcePackage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
    /// Which analyser found it (`dpkg-db`, `go-buildinfo`, `binary-classifier`, ...).
    pub found_by: String,
    pub evidence: Vec<Evidence>,
    /// Ecosystem details that do not deserve a field: `go.toolchain`, `go.main`, `go.replaced`,
    /// `declared` (found in a lock file, not installed), `rpm.epoch`, `maven.group`, ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Files the package manager says this package owns (OS packages only). Used to attribute
    /// binaries to packages; left out of reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

impl Package {
    pub fn new(
        ecosystem: Ecosystem,
        name: impl Into<String>,
        version: impl Into<String>,
        found_by: &str,
    ) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            ecosystem,
            purl: String::new(),
            cpes: Vec::new(),
            arch: None,
            source: None,
            licenses: Vec::new(),
            found_by: found_by.to_owned(),
            evidence: Vec::new(),
            properties: BTreeMap::new(),
            files: Vec::new(),
        }
    }
}

/// The operating system, from `os-release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// `ID`: `debian`, `ubuntu`, `alpine`, `rhel`, `rocky`, `wolfi`, ...
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_codename: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_like: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    /// A Google distroless image (Debian files without dpkg's database).
    #[serde(default)]
    pub distroless: bool,
}

impl OsInfo {
    /// The purl `distro` qualifier: `debian-12`, `alpine-3.19.1`, `rhel-9.3`.
    pub fn distro(&self) -> String {
        match &self.version_id {
            Some(v) => format!("{}-{v}", self.id),
            None => self.id.clone(),
        }
    }

    /// Whether this is a Red Hat family distribution (for the rpm purl namespace).
    pub fn is_rhel_family(&self) -> bool {
        self.id == "rhel" || self.id_like.iter().any(|l| l == "rhel" || l == "fedora")
    }
}

/// How a tar entry changes the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    File {
        size: u64,
        mode: u32,
    },
    Dir,
    Symlink {
        target: String,
    },
    /// A hard link to `target`, a normalised image path.
    Hardlink {
        target: String,
    },
    /// `.wh.<name>`: deletes `path` from the layers below.
    Whiteout,
    /// `.wh..wh..opq`: hides everything under the directory `path` in the layers below.
    Opaque,
    /// Devices, FIFOs: present, never analysed.
    Other,
}

/// One tar entry, its path normalised (relative, no `.`/`..`, no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// What the analysers found in one file of a layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileFindings {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
    /// For a package manager's per-package file list (dpkg `info/<pkg>.list`, distroless
    /// `status.d/<pkg>.md5sums`): the package it describes and the files it owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_list: Option<OwnedFiles>,
}

/// A package manager's list of files owned by one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedFiles {
    /// `name` or `name:arch`, as the list's file name says.
    pub owner: String,
    pub files: Vec<String>,
}

/// A problem that did not stop the analysis: a file skipped or a database that would not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
}

/// Everything learnt from one layer on its own: its entries and what its files contain. It
/// depends only on the layer's bytes and [`ANALYZER_VERSION`], so it can be cached by layer
/// digest and shared by every image that contains the layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerIndex {
    pub analyzer_version: u32,
    pub digest: Digest,
    /// Uncompressed bytes read.
    pub tar_size: u64,
    pub entries: Vec<FileEntry>,
    /// Only files in which an analyser found something.
    pub findings: Vec<FileFindings>,
    pub warnings: Vec<Warning>,
}

/// A platform from an image index or an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A layer of an analysed image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub digest: Digest,
    pub media_type: String,
    pub size: i64,
    /// The index came from the cache instead of the layer's bytes.
    pub cached: bool,
}

/// The inventory of one image (one platform).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageReport {
    pub analyzer_version: u32,
    pub reference: String,
    pub manifest_digest: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    pub layers: Vec<LayerSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    pub packages: Vec<Package>,
    pub warnings: Vec<Warning>,
}
