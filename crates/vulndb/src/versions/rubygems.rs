//! RubyGems versions, ordered like `Gem::Version#<=>`.
//!
//! A version is `N(.X)*(-X(.X)*)?`; `-` means `.pre.`. It is split into numbers and letter runs,
//! trailing zeros are dropped from its numeric part and from the part after its first letters,
//! and segments compare pairwise (missing segments are 0): numbers numerically, strings as
//! strings, and any string is lower than any number (so `1.0.a < 1.0`).

use std::cmp::Ordering;

use super::{VersionError, VersionScheme, check_len, cmp_digits, ord_by_precedence};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Digits without leading zeros (empty means 0).
    Num(String),
    Str(String),
}

static ZERO: Segment = Segment::Num(String::new());

#[derive(Debug, Clone)]
pub struct Version {
    segments: Vec<Segment>,
}

pub fn parse(s: &str) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::RubyGems, s, reason);
    check_len(VersionScheme::RubyGems, s)?;
    let v = s.trim();
    // The pattern RubyGems accepts: [0-9]+(\.[0-9a-zA-Z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?
    let (main, pre) = match v.split_once('-') {
        Some((m, p)) => (m, Some(p)),
        None => (v, None),
    };
    if !main.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return Err(err("must start with a digit"));
    }
    for part in main.split('.') {
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(err("invalid segment"));
        }
    }
    if let Some(p) = pre {
        for part in p.split('.') {
            if part.is_empty() || !part.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
                return Err(err("invalid pre-release segment"));
            }
        }
    }
    let text = match pre {
        Some(p) => format!("{main}.pre.{}", p.replace('-', ".pre.")),
        None => main.to_string(),
    };
    // Scan `[0-9]+|[a-z]+` (case-insensitively), skipping everything else.
    let mut segments = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i].is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            segments.push(Segment::Num(
                text[start..i].trim_start_matches('0').to_string(),
            ));
        } else if b[i].is_ascii_alphabetic() {
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            segments.push(Segment::Str(text[start..i].to_string()));
        } else {
            i += 1;
        }
    }
    // Canonical segments: trailing zeros dropped from the numeric prefix and from the rest.
    let split = segments
        .iter()
        .position(|s| matches!(s, Segment::Str(_)))
        .unwrap_or(segments.len());
    let mut rest = segments.split_off(split);
    while segments.last() == Some(&ZERO) {
        segments.pop();
    }
    while rest.last() == Some(&ZERO) {
        rest.pop();
    }
    segments.extend(rest);
    Ok(Version { segments })
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.segments.len().max(other.segments.len());
        for k in 0..n {
            let a = self.segments.get(k).unwrap_or(&ZERO);
            let b = other.segments.get(k).unwrap_or(&ZERO);
            let c = match (a, b) {
                (Segment::Num(x), Segment::Num(y)) => cmp_digits(x, y),
                (Segment::Str(x), Segment::Str(y)) => x.cmp(y),
                (Segment::Str(_), Segment::Num(_)) => Ordering::Less,
                (Segment::Num(_), Segment::Str(_)) => Ordering::Greater,
            };
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

    fn cmp(a: &str, b: &str) -> Ordering {
        parse(a).unwrap().cmp(&parse(b).unwrap())
    }

    #[test]
    fn gem_version_vectors() {
        // RubyGems' test/rubygems/test_gem_version.rb (test_spaceship, test_eql, test_prerelease).
        use Ordering::*;
        let cases = [
            ("1.0.0", "1", Equal),
            ("1.0", "1.0.0", Equal),
            ("1.0", "1.0.a", Greater),
            ("1.8.2", "0.0.0", Greater),
            ("1.8.2", "1.8.2.a", Greater),
            ("1.8.2.b", "1.8.2.a", Greater),
            ("1.8.2.a", "1.8.2", Less),
            ("1.8.2.a10", "1.8.2.a9", Greater),
            ("", "0", Equal),
            ("0.beta.1", "0.0.beta.1", Equal),
            ("0.0.beta", "0.0.beta.1", Less),
            ("0.0.beta", "0.beta.1", Less),
            ("5.a", "5.0.0.rc2", Less),
            ("5.x", "5.0.0.rc2", Greater),
            ("1.9.3", "1.9.3.0", Equal),
            ("1.0.0-rc1", "1.0.0.pre.rc1", Equal),
            ("1.0.0-rc1", "1.0.0", Less),
            ("1.2.0.a", "1.2.0.b", Less),
            ("2.2.3", "2.2.10", Less),
        ];
        for (a, b, want) in cases {
            if a.is_empty() {
                continue;
            }
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn invalid() {
        for v in [
            "",
            "junk",
            "1.0\n2.0",
            "1..2",
            "1.2 3.4",
            "2.3422222.222.222222222.22222.ads0as.dasd0.ddd2222.2.qd3e.",
            "-1",
            "1.0-",
        ] {
            assert!(parse(v).is_err(), "{v:?}");
        }
    }
}
