//! Who publishes a vulnerability id, and where to read it: the `source` of CycloneDX
//! vulnerabilities and references, the `helpUri` of SARIF rules.

/// The publisher of an id and the address of its page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSource {
    pub name: &'static str,
    pub url: String,
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any id a feed sends
/// makes a valid URL.
fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The publisher of `id`, from its prefix. Ids of other prefixes are OSV's: osv.dev shows
/// every record the database imports.
pub fn id_source(id: &str) -> IdSource {
    let e = encode(id);
    let (name, url) = if id.starts_with("CVE-") {
        ("NVD", format!("https://nvd.nist.gov/vuln/detail/{e}"))
    } else if id.starts_with("GHSA-") {
        (
            "GitHub Advisory Database",
            format!("https://github.com/advisories/{e}"),
        )
    } else if id.starts_with("RUSTSEC-") {
        (
            "RustSec",
            format!("https://rustsec.org/advisories/{e}.html"),
        )
    } else if id.starts_with("GO-") {
        (
            "Go Vulnerability Database",
            format!("https://pkg.go.dev/vuln/{e}"),
        )
    } else if id.starts_with("DSA-") || id.starts_with("DLA-") || id.starts_with("DTSA-") {
        (
            "Debian Security Tracker",
            format!("https://security-tracker.debian.org/tracker/{e}"),
        )
    } else if id.starts_with("PYSEC-") {
        (
            "PyPI Advisory Database",
            format!("https://osv.dev/vulnerability/{e}"),
        )
    } else {
        ("OSV", format!("https://osv.dev/vulnerability/{e}"))
    };
    IdSource { name, url }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_by_prefix() {
        let check = |id: &str, name: &str, url: &str| {
            let got = id_source(id);
            assert_eq!((got.name, got.url.as_str()), (name, url), "{id}");
        };
        check(
            "CVE-2021-25900",
            "NVD",
            "https://nvd.nist.gov/vuln/detail/CVE-2021-25900",
        );
        check(
            "GHSA-43w2-9j62-hq99",
            "GitHub Advisory Database",
            "https://github.com/advisories/GHSA-43w2-9j62-hq99",
        );
        check(
            "RUSTSEC-2021-0003",
            "RustSec",
            "https://rustsec.org/advisories/RUSTSEC-2021-0003.html",
        );
        check(
            "GO-2021-0113",
            "Go Vulnerability Database",
            "https://pkg.go.dev/vuln/GO-2021-0113",
        );
        check(
            "DSA-5650-1",
            "Debian Security Tracker",
            "https://security-tracker.debian.org/tracker/DSA-5650-1",
        );
        check(
            "PYSEC-2019-132",
            "PyPI Advisory Database",
            "https://osv.dev/vulnerability/PYSEC-2019-132",
        );
        check(
            "OSV-2020-111",
            "OSV",
            "https://osv.dev/vulnerability/OSV-2020-111",
        );
        // Whatever a feed sends stays a valid URL.
        check(
            "odd id/with?chars#\u{fc}",
            "OSV",
            "https://osv.dev/vulnerability/odd%20id%2Fwith%3Fchars%23%C3%BC",
        );
    }
}
