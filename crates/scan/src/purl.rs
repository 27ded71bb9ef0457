//! Package URLs (<https://github.com/package-url/purl-spec>).
//!
//! Written here rather than taken from a crate because the rules Berth needs are few (type,
//! namespace, name, version, sorted qualifiers, percent-encoding) and the output has to be
//! byte-stable: vulnerability matching keys on these strings.

use std::fmt::Write;

/// Builds a purl. Qualifiers with empty values are left out; the rest are sorted by key.
pub fn purl(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: Option<&str>,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut out = format!("pkg:{ty}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        for seg in ns.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&encode(seg));
            out.push('/');
        }
    }
    out.push_str(&encode(name));
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        out.push('@');
        out.push_str(&encode(v));
    }
    let mut q: Vec<_> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    q.sort_by_key(|(k, _)| *k);
    for (i, (k, v)) in q.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        let _ = write!(out, "{k}={}", encode(v));
    }
    out
}

/// Percent-encodes everything but the unreserved characters (and `:`, which the spec allows
/// unencoded and which every purl of a Debian epoch contains).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::purl;

    #[test]
    fn known_purls() {
        let check = |got: String, want: &str| assert_eq!(got, want);
        check(
            purl(
                "deb",
                Some("debian"),
                "libc6",
                Some("2.36-9+deb12u3"),
                &[("arch", "amd64"), ("distro", "debian-12")],
            ),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64&distro=debian-12",
        );
        check(
            purl("npm", Some("@babel"), "core", Some("7.0.0"), &[]),
            "pkg:npm/%40babel/core@7.0.0",
        );
        check(
            purl(
                "golang",
                Some("github.com/opencontainers"),
                "umoci",
                Some("v0.4.7"),
                &[],
            ),
            "pkg:golang/github.com/opencontainers/umoci@v0.4.7",
        );
        check(
            purl("generic", None, "openssl", None, &[("x", "")]),
            "pkg:generic/openssl",
        );
    }
}
