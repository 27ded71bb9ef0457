//! Package name normalisation, so that a feed's spelling and an image's spelling of one package
//! meet in the index.

use crate::versions::Ecosystem;

/// The index key for a package name in an ecosystem.
///
/// - PyPI: PEP 503 (lower case, runs of `-`, `_` and `.` become one `-`): `Django_REST.framework`
///   → `django-rest-framework`.
/// - crates.io: lower case, `_` as `-` (crates.io refuses names that differ only so).
/// - npm, RubyGems, distribution packages: lower case.
/// - Go: module paths are case-sensitive; only surrounding space and a trailing `/` are removed.
/// - Maven: `group:artifact` as written, trimmed.
pub fn normalize_name(eco: Ecosystem, name: &str) -> String {
    let name = name.trim();
    match eco {
        Ecosystem::PyPI => {
            let mut out = String::with_capacity(name.len());
            let mut sep = false;
            for c in name.chars() {
                if matches!(c, '-' | '_' | '.') {
                    sep = true;
                } else {
                    if sep && !out.is_empty() {
                        out.push('-');
                    }
                    sep = false;
                    out.push(c.to_ascii_lowercase());
                }
            }
            out
        }
        Ecosystem::CratesIo => name.to_ascii_lowercase().replace('_', "-"),
        Ecosystem::Go => name.trim_end_matches('/').to_string(),
        Ecosystem::Maven => name.to_string(),
        _ => name.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let check = |eco, a: &str, b: &str| assert_eq!(normalize_name(eco, a), b, "{a}");
        check(
            Ecosystem::PyPI,
            "Django_REST.framework",
            "django-rest-framework",
        );
        check(Ecosystem::PyPI, "friendly-bard", "friendly-bard");
        check(Ecosystem::PyPI, "Friendly-Bard", "friendly-bard");
        check(Ecosystem::PyPI, "FRIENDLY-BARD", "friendly-bard");
        check(Ecosystem::PyPI, "friendly.bard", "friendly-bard");
        check(Ecosystem::PyPI, "friendly_bard", "friendly-bard");
        check(Ecosystem::PyPI, "friendly--bard", "friendly-bard");
        check(Ecosystem::PyPI, "FrIeNdLy-._.-bArD", "friendly-bard");
        check(Ecosystem::CratesIo, "Serde_JSON", "serde-json");
        check(Ecosystem::Go, "github.com/Foo/bar/", "github.com/Foo/bar");
        check(Ecosystem::Debian, "Util-Linux", "util-linux");
    }
}
