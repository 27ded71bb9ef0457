//! Version comparison per ecosystem.
//!
//! Each scheme has a module with a `Version` type whose `Ord` is the scheme's precedence and a
//! `parse` that rejects what the scheme's own tools would reject (an invalid version is an error,
//! never a panic and never a guess). [`compare`] is the entry point: it parses both sides with the
//! ecosystem's scheme and compares them.
//!
//! Parsed versions compare by precedence, not by spelling: `1.0` and `1.0.0` are equal in Maven,
//! `1.0` and `1.0-0` in dpkg. Their `PartialEq` agrees with their `Ord`.

pub mod apk;
pub mod dpkg;
pub mod maven;
pub mod pep440;
pub mod rpm;
pub mod rubygems;
pub mod semver;

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest version string any parser accepts. Real versions are far shorter; the cap keeps a
/// hostile feed from making every comparison expensive.
pub const MAX_VERSION_LEN: usize = 256;

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {version:?}: {reason}")]
pub struct VersionError {
    pub scheme: VersionScheme,
    /// The refused string, cut to 80 characters so an error never carries a huge input.
    pub version: String,
    pub reason: &'static str,
}

impl VersionError {
    pub(crate) fn new(scheme: VersionScheme, version: &str, reason: &'static str) -> Self {
        let version = version.chars().take(80).collect();
        Self {
            scheme,
            version,
            reason,
        }
    }
}

/// A version comparison algorithm. Several ecosystems share one (Debian and Ubuntu use dpkg's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionScheme {
    Dpkg,
    Apk,
    Rpm,
    /// Semantic Versioning 2.0.0 (crates.io, npm).
    SemVer,
    /// Go module versions: SemVer with an optional `v`, `+incompatible`, pseudo-versions.
    Go,
    Pep440,
    Maven,
    RubyGems,
}

impl fmt::Display for VersionScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dpkg => "dpkg",
            Self::Apk => "apk",
            Self::Rpm => "rpm",
            Self::SemVer => "semver",
            Self::Go => "go",
            Self::Pep440 => "pep440",
            Self::Maven => "maven",
            Self::RubyGems => "rubygems",
        })
    }
}

/// A package ecosystem: where a package name lives and how its versions compare.
///
/// Distribution ecosystems carry their release (`Debian:12`, `Alpine:v3.19`) separately, in
/// [`crate::advisory::Affected::release`] and [`crate::matching::PackageRef::release`].
///
/// It serialises as OSV's ecosystem name (`"crates.io"`, `"PyPI"`, `"Red Hat"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ecosystem {
    Debian,
    Ubuntu,
    Alpine,
    Wolfi,
    #[serde(rename = "Red Hat", alias = "RedHat")]
    RedHat,
    #[serde(rename = "Rocky Linux", alias = "Rocky")]
    Rocky,
    AlmaLinux,
    #[serde(rename = "crates.io", alias = "CratesIo", alias = "cargo")]
    CratesIo,
    #[serde(rename = "npm", alias = "Npm")]
    Npm,
    #[serde(alias = "golang")]
    Go,
    #[serde(alias = "pypi")]
    PyPI,
    Maven,
    #[serde(alias = "gem")]
    RubyGems,
}

impl Ecosystem {
    pub const ALL: [Self; 13] = [
        Self::Debian,
        Self::Ubuntu,
        Self::Alpine,
        Self::Wolfi,
        Self::RedHat,
        Self::Rocky,
        Self::AlmaLinux,
        Self::CratesIo,
        Self::Npm,
        Self::Go,
        Self::PyPI,
        Self::Maven,
        Self::RubyGems,
    ];

    pub fn scheme(self) -> VersionScheme {
        match self {
            Self::Debian | Self::Ubuntu => VersionScheme::Dpkg,
            Self::Alpine | Self::Wolfi => VersionScheme::Apk,
            Self::RedHat | Self::Rocky | Self::AlmaLinux => VersionScheme::Rpm,
            Self::CratesIo | Self::Npm => VersionScheme::SemVer,
            Self::Go => VersionScheme::Go,
            Self::PyPI => VersionScheme::Pep440,
            Self::Maven => VersionScheme::Maven,
            Self::RubyGems => VersionScheme::RubyGems,
        }
    }

    /// Whether packages of this ecosystem are operating-system packages, matched by source
    /// package and distribution release.
    pub fn is_distro(self) -> bool {
        matches!(
            self,
            Self::Debian
                | Self::Ubuntu
                | Self::Alpine
                | Self::Wolfi
                | Self::RedHat
                | Self::Rocky
                | Self::AlmaLinux
        )
    }

    /// The name OSV uses (the part of `ecosystem` before any `:`).
    pub fn osv_name(self) -> &'static str {
        match self {
            Self::Debian => "Debian",
            Self::Ubuntu => "Ubuntu",
            Self::Alpine => "Alpine",
            Self::Wolfi => "Wolfi",
            Self::RedHat => "Red Hat",
            Self::Rocky => "Rocky Linux",
            Self::AlmaLinux => "AlmaLinux",
            Self::CratesIo => "crates.io",
            Self::Npm => "npm",
            Self::Go => "Go",
            Self::PyPI => "PyPI",
            Self::Maven => "Maven",
            Self::RubyGems => "RubyGems",
        }
    }

    /// Parses an OSV ecosystem string (`"PyPI"`, `"Debian:12"`, `"Alpine:v3.19"`) into the
    /// ecosystem and its normalised release, if any. Unknown ecosystems are `None`.
    pub fn parse_osv(s: &str) -> Option<(Self, Option<String>)> {
        let (name, release) = match s.split_once(':') {
            Some((n, r)) => (n, Some(r)),
            None => (s, None),
        };
        let eco = Self::ALL.into_iter().find(|e| e.osv_name() == name)?;
        let release = release
            .filter(|r| !r.is_empty())
            .map(|r| normalize_release(eco, r));
        Some((eco, release))
    }

    pub fn compare(self, a: &str, b: &str) -> Result<Ordering, VersionError> {
        compare_scheme(self.scheme(), a, b)
    }

    /// Checks that `v` is a valid version of this ecosystem.
    pub fn validate(self, v: &str) -> Result<(), VersionError> {
        validate_scheme(self.scheme(), v)
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.osv_name())
    }
}

/// Normalises a distribution release so that feeds and images agree: Debian code names become
/// numbers (`bookworm` → `12`, `12.5` → `12`), Alpine releases lose their `v` and patch level
/// (`v3.19`, `3.19.1` → `3.19`), Ubuntu code names become numbers and `Pro:22.04:LTS` becomes
/// `22.04`. Other distributions' releases are only trimmed and lower-cased.
pub fn normalize_release(eco: Ecosystem, release: &str) -> String {
    let r = release.trim().to_ascii_lowercase();
    match eco {
        Ecosystem::Debian => {
            let code = match r.as_str() {
                "buster" => "10",
                "bullseye" => "11",
                "bookworm" => "12",
                "trixie" => "13",
                "forky" => "14",
                "sid" | "unstable" => "sid",
                _ => "",
            };
            if !code.is_empty() {
                return code.to_string();
            }
            r.split('.').next().unwrap_or_default().to_string()
        }
        Ecosystem::Alpine => {
            let r = r.strip_prefix('v').unwrap_or(&r);
            let mut parts = r.split('.');
            match (parts.next(), parts.next()) {
                (Some(a), Some(b)) => format!("{a}.{b}"),
                _ => r.to_string(),
            }
        }
        // `22.04:LTS`, `Pro:22.04:LTS`, `Pro:FIPS:20.04:LTS`: the numbered part is the release.
        Ecosystem::Ubuntu => match r.as_str() {
            "xenial" => "16.04".to_string(),
            "bionic" => "18.04".to_string(),
            "focal" => "20.04".to_string(),
            "jammy" => "22.04".to_string(),
            "noble" => "24.04".to_string(),
            _ => r
                .split(':')
                .find(|p| p.starts_with(|c: char| c.is_ascii_digit()))
                .unwrap_or(&r)
                .to_string(),
        },
        _ => r,
    }
}

fn check_len(scheme: VersionScheme, v: &str) -> Result<(), VersionError> {
    if v.is_empty() {
        return Err(VersionError::new(scheme, v, "empty"));
    }
    if v.len() > MAX_VERSION_LEN {
        return Err(VersionError::new(scheme, v, "too long"));
    }
    Ok(())
}

/// Compares two versions of an ecosystem. Errors if either is not a valid version.
pub fn compare(ecosystem: Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    compare_scheme(ecosystem.scheme(), a, b)
}

/// Compares two versions under a scheme. Errors if either is not a valid version.
pub fn compare_scheme(scheme: VersionScheme, a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(match scheme {
        VersionScheme::Dpkg => dpkg::parse(a)?.cmp(&dpkg::parse(b)?),
        VersionScheme::Apk => apk::parse(a)?.cmp(&apk::parse(b)?),
        VersionScheme::Rpm => rpm::parse(a)?.cmp(&rpm::parse(b)?),
        VersionScheme::SemVer => semver::parse(a)?.cmp(&semver::parse(b)?),
        VersionScheme::Go => semver::parse_go(a)?.cmp(&semver::parse_go(b)?),
        VersionScheme::Pep440 => pep440::parse(a)?.cmp(&pep440::parse(b)?),
        VersionScheme::Maven => maven::parse(a)?.cmp(&maven::parse(b)?),
        VersionScheme::RubyGems => rubygems::parse(a)?.cmp(&rubygems::parse(b)?),
    })
}

/// Checks that `v` is valid under `scheme`.
pub fn validate_scheme(scheme: VersionScheme, v: &str) -> Result<(), VersionError> {
    match scheme {
        VersionScheme::Dpkg => dpkg::parse(v).map(drop),
        VersionScheme::Apk => apk::parse(v).map(drop),
        VersionScheme::Rpm => rpm::parse(v).map(drop),
        VersionScheme::SemVer => semver::parse(v).map(drop),
        VersionScheme::Go => semver::parse_go(v).map(drop),
        VersionScheme::Pep440 => pep440::parse(v).map(drop),
        VersionScheme::Maven => maven::parse(v).map(drop),
        VersionScheme::RubyGems => rubygems::parse(v).map(drop),
    }
}

/// Compares two strings of ASCII digits numerically, whatever their length: leading zeros are
/// skipped, then the longer number is larger, then the digits decide.
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Implements `PartialEq`, `Eq` and `PartialOrd` from an `Ord` impl, so equality means equal
/// precedence.
macro_rules! ord_by_precedence {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == std::cmp::Ordering::Equal
            }
        }
        impl Eq for $t {}
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}
pub(crate) use ord_by_precedence;

/// A version parsed once under its scheme, for repeated comparisons without re-parsing (the
/// database parses every range bound when it is built, the matcher each installed version once).
#[derive(Debug, Clone)]
pub enum ParsedVersion {
    Dpkg(dpkg::Version),
    Apk(apk::Version),
    Rpm(rpm::Version),
    SemVer(semver::Version),
    Pep440(pep440::Version),
    Maven(maven::Version),
    RubyGems(rubygems::Version),
}

impl ParsedVersion {
    pub fn parse(scheme: VersionScheme, v: &str) -> Result<Self, VersionError> {
        Ok(match scheme {
            VersionScheme::Dpkg => Self::Dpkg(dpkg::parse(v)?),
            VersionScheme::Apk => Self::Apk(apk::parse(v)?),
            VersionScheme::Rpm => Self::Rpm(rpm::parse(v)?),
            VersionScheme::SemVer => Self::SemVer(semver::parse(v)?),
            VersionScheme::Go => Self::SemVer(semver::parse_go(v)?),
            VersionScheme::Pep440 => Self::Pep440(pep440::parse(v)?),
            VersionScheme::Maven => Self::Maven(maven::parse(v)?),
            VersionScheme::RubyGems => Self::RubyGems(rubygems::parse(v)?),
        })
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Dpkg(_) => 0,
            Self::Apk(_) => 1,
            Self::Rpm(_) => 2,
            Self::SemVer(_) => 3,
            Self::Pep440(_) => 4,
            Self::Maven(_) => 5,
            Self::RubyGems(_) => 6,
        }
    }
}

impl Ord for ParsedVersion {
    /// Versions of one scheme compare by precedence; versions of different schemes (never
    /// compared by the matcher) by scheme, so the order stays total.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Dpkg(a), Self::Dpkg(b)) => a.cmp(b),
            (Self::Apk(a), Self::Apk(b)) => a.cmp(b),
            (Self::Rpm(a), Self::Rpm(b)) => a.cmp(b),
            (Self::SemVer(a), Self::SemVer(b)) => a.cmp(b),
            (Self::Pep440(a), Self::Pep440(b)) => a.cmp(b),
            (Self::Maven(a), Self::Maven(b)) => a.cmp(b),
            (Self::RubyGems(a), Self::RubyGems(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}
ord_by_precedence!(ParsedVersion);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystem_names() {
        for eco in Ecosystem::ALL {
            // Serde and OSV agree on every name, and OSV strings round-trip.
            let json = serde_json::to_string(&eco).unwrap();
            assert_eq!(json, format!("\"{}\"", eco.osv_name()));
            assert_eq!(serde_json::from_str::<Ecosystem>(&json).unwrap(), eco);
            assert_eq!(Ecosystem::parse_osv(eco.osv_name()), Some((eco, None)));
        }
        assert_eq!(
            serde_json::from_str::<Ecosystem>("\"cargo\"").unwrap(),
            Ecosystem::CratesIo
        );
        assert_eq!(
            Ecosystem::parse_osv("Debian:12"),
            Some((Ecosystem::Debian, Some("12".into())))
        );
        assert_eq!(
            Ecosystem::parse_osv("Alpine:v3.19"),
            Some((Ecosystem::Alpine, Some("3.19".into())))
        );
        assert_eq!(Ecosystem::parse_osv("Packagist"), None);
        assert_eq!(normalize_release(Ecosystem::Debian, "bookworm"), "12");
        assert_eq!(normalize_release(Ecosystem::Debian, "12.7"), "12");
        assert_eq!(normalize_release(Ecosystem::Alpine, "3.19.1"), "3.19");
        assert_eq!(normalize_release(Ecosystem::Alpine, "edge"), "edge");
        assert_eq!(normalize_release(Ecosystem::Ubuntu, "22.04:LTS"), "22.04");
        assert_eq!(
            normalize_release(Ecosystem::Ubuntu, "Pro:FIPS:20.04:LTS"),
            "20.04"
        );
        assert_eq!(normalize_release(Ecosystem::Ubuntu, "jammy"), "22.04");
    }

    #[test]
    fn compare_entry_point() {
        assert_eq!(
            compare(Ecosystem::Debian, "1:1.0", "2.0"),
            Ok(Ordering::Greater)
        );
        assert_eq!(
            compare(Ecosystem::PyPI, "1.0rc1", "1.0"),
            Ok(Ordering::Less)
        );
        assert!(compare(Ecosystem::CratesIo, "1.0", "1.0.0").is_err());
        let err = compare(Ecosystem::Npm, "1.0.0", &"9".repeat(1000)).unwrap_err();
        assert_eq!(err.reason, "too long");
        assert!(err.version.len() <= 80);
    }
}
