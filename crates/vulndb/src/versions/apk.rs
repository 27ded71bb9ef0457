//! Alpine (apk-tools) versions: `digit{.digit}...{letter}{_suffix{digits}}...{-r#}`.
//!
//! The version is split into typed tokens and compared token by token, as apk-tools does:
//! numbers numerically (a later component with leading zeros sorts as a decimal fraction,
//! `1.01 < 1.1`), then, where one version has a different kind of token than the other, a
//! pre-release suffix (`_alpha`, `_beta`, `_pre`, `_rc`) sorts lowest, then the end of the
//! version, then `-r` revisions, suffix numbers, post-release suffixes (`_cvs`, `_svn`, `_git`,
//! `_hg`, `_p`), letters, and further components.

use std::cmp::Ordering;

use super::{VersionError, VersionScheme, check_len, ord_by_precedence};

/// Token kinds, ranked by how they sort when two versions differ in kind at the same position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    PreSuffix,
    End,
    Revision,
    SuffixNumber,
    PostSuffix,
    Letter,
    /// The digits after the leading zeros of a component (`1` in `.01`).
    Fraction,
    /// The first component or a component after `.`.
    Number,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Token {
    kind: Kind,
    value: i64,
}

#[derive(Debug, Clone)]
pub struct Version {
    tokens: Vec<Token>,
}

const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

pub fn parse(s: &str) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Apk, s, reason);
    check_len(VersionScheme::Apk, s)?;
    let b = s.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    // Reads a run of digits as a number; components after the first with leading zeros become
    // negative (more zeros, smaller), so they sort like decimal fractions.
    let number = |i: &mut usize, fraction: bool| -> Result<i64, VersionError> {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        let digits = &s[start..*i];
        if digits.is_empty() {
            return Err(err("expected a number"));
        }
        if digits.len() > 18 {
            return Err(err("number too large"));
        }
        if fraction && digits.starts_with('0') {
            // `.01`: the count of leading zeros, negated (more zeros, smaller); the digits after
            // them follow as a separate `Fraction` token.
            let zeros = digits.bytes().take_while(|&c| c == b'0').count() as i64;
            return Ok(-zeros);
        }
        digits.parse::<i64>().map_err(|_| err("number too large"))
    };
    // Major version and further dotted components.
    if b.first().is_none_or(|c| !c.is_ascii_digit()) {
        return Err(err("must start with a digit"));
    }
    tokens.push(Token {
        kind: Kind::Number,
        value: number(&mut i, false)?,
    });
    while i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        let value = number(&mut i, true)?;
        tokens.push(Token {
            kind: Kind::Number,
            value,
        });
        // A fractional component keeps its digits after the zeros as a further number, so
        // `1.02` and `1.03` still differ.
        if value < 0 {
            let digits = s[start..i].trim_start_matches('0');
            if !digits.is_empty() {
                tokens.push(Token {
                    kind: Kind::Fraction,
                    value: digits.parse::<i64>().map_err(|_| err("number too large"))?,
                });
            }
        }
    }
    if i < b.len() && b[i].is_ascii_lowercase() {
        tokens.push(Token {
            kind: Kind::Letter,
            value: i64::from(b[i]),
        });
        i += 1;
    }
    while i < b.len() && b[i] == b'_' {
        i += 1;
        let rest = &s[i..];
        let (kind, value, len) = if let Some(p) = PRE.iter().position(|p| rest.starts_with(p)) {
            (Kind::PreSuffix, p as i64 - PRE.len() as i64, PRE[p].len())
        } else if let Some(p) = POST.iter().position(|p| rest.starts_with(p)) {
            (Kind::PostSuffix, p as i64, POST[p].len())
        } else {
            return Err(err("unknown suffix"));
        };
        tokens.push(Token { kind, value });
        i += len;
        if i < b.len() && b[i].is_ascii_digit() {
            tokens.push(Token {
                kind: Kind::SuffixNumber,
                value: number(&mut i, false)?,
            });
        }
    }
    if i < b.len() && b[i] == b'-' {
        if b.get(i + 1) != Some(&b'r') {
            return Err(err("expected -r<revision>"));
        }
        i += 2;
        let value = if i < b.len() {
            number(&mut i, false)?
        } else {
            0
        };
        tokens.push(Token {
            kind: Kind::Revision,
            value,
        });
    }
    if i != b.len() {
        return Err(err("unexpected character"));
    }
    Ok(Version { tokens })
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        const END: Token = Token {
            kind: Kind::End,
            value: 0,
        };
        let n = self.tokens.len().max(other.tokens.len());
        for k in 0..n {
            let a = self.tokens.get(k).copied().unwrap_or(END);
            let b = other.tokens.get(k).copied().unwrap_or(END);
            let c = a.cmp(&b);
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    }
}
ord_by_precedence!(Version);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, b: &str, expected: Ordering) {
        let (pa, pb) = (parse(a).unwrap(), parse(b).unwrap());
        assert_eq!(pa.cmp(&pb), expected, "{a} vs {b}");
        assert_eq!(pb.cmp(&pa), expected.reverse(), "{b} vs {a}");
    }

    #[test]
    fn apk_vectors() {
        use Ordering::*;
        // Cases from apk-tools' test/version.data and Alpine's secdb.
        check("1.0", "1.0", Equal);
        check("1.0", "1.0.1", Less);
        check("1.0_alpha1", "1.0", Less);
        check("1.0_alpha1", "1.0_alpha2", Less);
        check("1.0_alpha2", "1.0_beta1", Less);
        check("1.0_beta1", "1.0_pre1", Less);
        check("1.0_pre1", "1.0_rc1", Less);
        check("1.0_rc1", "1.0", Less);
        check("1.0", "1.0_p1", Less);
        check("1.0_p1", "1.0_p2", Less);
        check("1.0_cvs1", "1.0_p1", Less);
        check("1.0", "1.0-r1", Less);
        check("1.0-r1", "1.0-r2", Less);
        check("1.0-r9", "1.0-r10", Less);
        check("1.0_p1-r0", "1.0-r5", Greater);
        check("1.0a", "1.0b", Less);
        check("1.0", "1.0a", Less);
        check("1.0a", "1.0.1", Less);
        check("1.01", "1.1", Less);
        check("1.001", "1.01", Less);
        check("1.02", "1.03", Less);
        check("1.01", "1.0", Greater);
        check("1.01", "1.0.1", Less);
        check("3.1.4-r5", "3.1.4-r6", Less);
        check("1.36.1-r15", "1.36.1-r20", Less);
        check("3.1.4-r0", "3.1.3-r9", Greater);
        check("2.0_rc1", "1.9", Greater);
        check("1.2.3_git20240101-r0", "1.2.3-r0", Greater);
        check("0.8.0_alpha2", "0.8.0_alpha", Greater);
        check("1.1.1w-r1", "1.1.1v-r0", Greater);
        check("6.2_p20231230-r0", "6.2-r0", Greater);
    }

    #[test]
    fn apk_invalid() {
        for v in [
            "",
            "a1",
            "1.0_foo",
            "1.0-1",
            "1..0",
            "1.0.",
            "1.0-r1x",
            "1.0A",
            "1.0_alpha_x",
        ] {
            assert!(parse(v).is_err(), "{v:?} should be invalid");
        }
    }
}

#[cfg(test)]
mod upstream {
    use super::*;

    /// apk-tools' own test/version.data (lines `a OP b`); lines whose versions apk-tools itself
    /// calls invalid are skipped.
    #[test]
    fn apk_tools_version_data() {
        let data = include_str!("../../tests/fixtures/apk-version.data");
        let (mut checked, mut skipped) = (0, Vec::new());
        for line in data.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [a, op, b] = parts[..] else { continue };
            let want = match op {
                "<" => Ordering::Less,
                "=" => Ordering::Equal,
                ">" => Ordering::Greater,
                _ => panic!("bad op in {line}"),
            };
            match (parse(a), parse(b)) {
                (Ok(pa), Ok(pb)) => {
                    assert_eq!(pa.cmp(&pb), want, "{line}");
                    checked += 1;
                }
                _ => skipped.push(line.to_string()),
            }
        }
        assert_eq!(skipped, ["23_foo > 4_beta", "1.0 < 1.0bc"]);
        assert_eq!(checked, 339);
    }
}
