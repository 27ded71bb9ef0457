//! Semantic Versioning 2.0.0 (crates.io, npm) and Go module versions.
//!
//! Precedence ignores build metadata. Pre-release identifiers compare numerically when both are
//! numbers, a number sorts before text, and a longer list wins when one is a prefix of the other.
//! Go versions are SemVer with an optional leading `v`; `+incompatible` is build metadata, and
//! pseudo-versions (`v0.0.0-20191109021931-daa7c04131f5`) are ordinary pre-releases.

use std::cmp::Ordering;

use super::{VersionError, VersionScheme, check_len, cmp_digits, ord_by_precedence};

#[derive(Debug, Clone)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<String>,
    pub build: String,
}

pub fn parse(s: &str) -> Result<Version, VersionError> {
    parse_scheme(s, s, VersionScheme::SemVer)
}

/// Parses a Go module version (with or without its `v`), or a Go toolchain version as the Go
/// runtime reports it (`go1.21.5`, `go1.21`, `go1.21rc2`), which is converted the way the Go
/// vulnerability database writes `stdlib` versions (`1.21.5`, `1.21.0`, `1.21.0-rc.2`).
pub fn parse_go(s: &str) -> Result<Version, VersionError> {
    if let Some(toolchain) = s.strip_prefix("go") {
        let v = go_toolchain_to_semver(toolchain).ok_or_else(|| {
            VersionError::new(VersionScheme::Go, s, "invalid Go toolchain version")
        })?;
        return parse_scheme(s, &v, VersionScheme::Go);
    }
    let v = s.strip_prefix('v').unwrap_or(s);
    parse_scheme(s, v, VersionScheme::Go)
}

/// `1.21.5` → `1.21.5`, `1.21` → `1.21.0`, `1.21rc2` → `1.21.0-rc.2`, `1.9beta1` →
/// `1.9.0-beta.1`.
fn go_toolchain_to_semver(v: &str) -> Option<String> {
    let (core, pre) = match v.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let mut out = parts.join(".");
    for _ in parts.len()..3 {
        out.push_str(".0");
    }
    if !pre.is_empty() {
        let digits = pre.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let word = &pre[..pre.len() - digits.len()];
        if !matches!(word, "rc" | "beta" | "alpha")
            || digits.is_empty()
            || !digits.bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        out.push_str(&format!("-{word}.{digits}"));
    }
    Some(out)
}

fn parse_scheme(orig: &str, s: &str, scheme: VersionScheme) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new(scheme, orig, reason);
    check_len(scheme, s)?;
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, b),
        None => (s, ""),
    };
    if s.contains('+') {
        check_identifiers(build, false).map_err(err)?;
    }
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let mut nums = core.split('.');
    let mut num = || -> Result<u64, VersionError> {
        let n = nums
            .next()
            .ok_or_else(|| err("expected major.minor.patch"))?;
        if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err("version core must be numbers"));
        }
        if n.len() > 1 && n.starts_with('0') {
            return Err(err("leading zero in version core"));
        }
        n.parse().map_err(|_| err("number too large"))
    };
    let (major, minor, patch) = (num()?, num()?, num()?);
    if nums.next().is_some() {
        return Err(err("more than three version numbers"));
    }
    let pre = match pre {
        Some(p) => {
            check_identifiers(p, true).map_err(err)?;
            p.split('.').map(str::to_string).collect()
        }
        None => Vec::new(),
    };
    Ok(Version {
        major,
        minor,
        patch,
        pre,
        build: build.to_string(),
    })
}

fn check_identifiers(s: &str, pre: bool) -> Result<(), &'static str> {
    for id in s.split('.') {
        if id.is_empty() {
            return Err("empty identifier");
        }
        if !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return Err("invalid character in identifier");
        }
        if pre && id.len() > 1 && id.starts_with('0') && id.bytes().all(|c| c.is_ascii_digit()) {
            return Err("leading zero in numeric pre-release identifier");
        }
    }
    Ok(())
}

fn is_num(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_digit())
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let core =
            (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch));
        if core != Ordering::Equal {
            return core;
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {}
        }
        for (a, b) in self.pre.iter().zip(&other.pre) {
            let c = match (is_num(a), is_num(b)) {
                (true, true) => cmp_digits(a, b),
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => a.cmp(b),
            };
            if c != Ordering::Equal {
                return c;
            }
        }
        self.pre.len().cmp(&other.pre.len())
    }
}
ord_by_precedence!(Version);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_precedence() {
        // semver.org, section 11.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for w in chain.windows(2) {
            assert!(
                parse(w[0]).unwrap() < parse(w[1]).unwrap(),
                "{} < {}",
                w[0],
                w[1]
            );
        }
        assert_eq!(parse("1.0.0+build.1").unwrap(), parse("1.0.0").unwrap());
        assert!(parse("0.0.0-0").unwrap() < parse("0.0.0").unwrap());
    }

    #[test]
    fn invalid() {
        for v in [
            "",
            "1",
            "1.0",
            "01.0.0",
            "1.0.0-",
            "1.0.0-01",
            "1.0.0+",
            "1.0.0-a..b",
            "v1.0.0",
            "1.0.0.0",
            "a.b.c",
            "1.0.0-é",
        ] {
            assert!(parse(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn go() {
        let c = |a: &str, b: &str| parse_go(a).unwrap().cmp(&parse_go(b).unwrap());
        assert_eq!(c("v1.2.3", "1.2.3"), Ordering::Equal);
        assert_eq!(c("v2.0.0+incompatible", "v2.0.0"), Ordering::Equal);
        assert_eq!(
            c("v0.0.0-20191109021931-daa7c04131f5", "v0.0.1"),
            Ordering::Less
        );
        assert_eq!(
            c(
                "v0.0.0-20191109021931-daa7c04131f5",
                "v0.0.0-20200101000000-aaaaaaaaaaaa"
            ),
            Ordering::Less
        );
        assert_eq!(
            c("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.3"),
            Ordering::Greater
        );
        assert_eq!(
            c("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.4"),
            Ordering::Less
        );
        assert_eq!(c("1.21.0-0", "1.21.0-rc.1"), Ordering::Less);
        assert!(parse_go("vv1.0.0").is_err());
        // Toolchain versions as the Go runtime reports them.
        assert_eq!(c("go1.21.5", "1.21.5"), Ordering::Equal);
        assert_eq!(c("go1.21", "1.21.0"), Ordering::Equal);
        assert_eq!(c("go1.21rc2", "1.21.0-rc.2"), Ordering::Equal);
        assert_eq!(c("go1.22rc1", "1.22.0-0"), Ordering::Greater);
        for bad in ["go", "go1.", "gox", "go1.21x1", "go1.2.3.4", "go1.21rc"] {
            assert!(parse_go(bad).is_err(), "{bad}");
        }
    }
}
